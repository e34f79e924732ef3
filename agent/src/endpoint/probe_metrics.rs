//! `GET /probe`'s answer: a check report as a Prometheus exposition in the blackbox-exporter
//! convention (`probe_success`, `probe_duration_seconds`), plus one series per checklist layer
//! with its status, one for the verdict, and the stable code of what the step the check stopped at
//! found. A check the agent could not run (the API server could
//! not be asked, a bound was reached) still answers `probe_success 0`, so that an alert on it
//! fires rather than losing its series. Built as a `prometheus-client` registry of its own per
//! answer and encoded in the OpenMetrics text format, as `/metrics` is. Pure.

use netdiag_engine::report::{Report, Status, Verdict};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A sample's labels. Every value is an identifier of a closed set (a layer, a status, a verdict,
/// a finding code, an error code), so none needs escaping.
type Labels = Vec<(&'static str, &'static str)>;

/// One gauge family with its samples, encoded in the order given (a `Family` would encode its
/// series in hash order).
#[derive(Debug)]
struct Gauges<N> {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Labels, N)>,
}

impl<N> Gauges<N> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Gauges {
            name,
            help,
            samples: vec![],
        }
    }

    fn sample(mut self, labels: Labels, value: N) -> Self {
        self.samples.push((labels, value));
        self
    }
}

impl<N> Collector for Gauges<N>
where
    N: EncodeGaugeValue + Copy + std::fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        match self.samples.as_slice() {
            // One series without labels: `name value`, without `{}`.
            [(labels, value)] if labels.is_empty() => ConstGauge::new(*value).encode(family),
            samples => {
                for (labels, value) in samples {
                    ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
                }
                Ok(())
            }
        }
    }
}

fn success(reachable: bool) -> Gauges<i64> {
    Gauges::new(
        "probe_success",
        "Whether the target is reachable from the source pod.",
    )
    .sample(vec![], i64::from(reachable))
}

fn duration(seconds: f64) -> Gauges<f64> {
    Gauges::new("probe_duration_seconds", "How long the check took.").sample(vec![], seconds)
}

fn verdicts(given: Verdict) -> Gauges<i64> {
    [Verdict::Reachable, Verdict::Unreachable, Verdict::Undetermined]
        .into_iter()
        .fold(
            Gauges::new(
                "netdiag_check_verdict",
                "The check's verdict (1 for the one it gave).",
            ),
            |family, verdict| family.sample(vec![("verdict", verdict.as_str())], i64::from(given == verdict)),
        )
}

/// The exposition of `families`, in order.
fn exposition(families: Vec<Box<dyn Collector>>) -> String {
    let mut registry = Registry::default();
    for family in families {
        registry.register_collector(family);
    }
    let mut out = String::new();
    // Writing to a String fails only when a metric's encoding does, which these never do.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The exposition for a check the agent could not run, for the reason `code` (an error code such
/// as `unavailable` or `tooManyRequests`), after `seconds`.
pub fn encode_not_run(code: &'static str, seconds: f64) -> String {
    exposition(vec![
        Box::new(success(false)),
        Box::new(duration(seconds)),
        Box::new(verdicts(Verdict::Undetermined)),
        Box::new(
            Gauges::new(
                "netdiag_check_not_run",
                "Why the agent could not run the check (1 for the reason).",
            )
            .sample(vec![("reason", code)], 1),
        ),
    ])
}

/// The exposition for `report`, a check that took `seconds`.
pub fn encode(report: &Report, seconds: f64) -> String {
    let layers = report.steps.iter().fold(
        Gauges::new(
            "netdiag_check_layer",
            "One series per checklist layer, labelled with its status.",
        ),
        |family, step| {
            family.sample(
                vec![("layer", step.layer.id()), ("status", step.status.as_str())],
                1_i64,
            )
        },
    );
    let mut families: Vec<Box<dyn Collector>> = vec![
        Box::new(success(report.verdict == Verdict::Reachable)),
        Box::new(duration(seconds)),
        Box::new(verdicts(report.verdict)),
        Box::new(layers),
    ];
    if let Some(layer) = report.failing_layer {
        families.push(Box::new(
            Gauges::new(
                "netdiag_check_failing_layer",
                "The layer the check found at fault.",
            )
            .sample(vec![("layer", layer.id())], 1_i64),
        ));
    }
    // The step the walk stopped at (failed, or could not be checked), when its layer codes
    // what it found.
    let stopped = report
        .steps
        .iter()
        .find(|s| matches!(s.status, Status::Fail | Status::Undetermined));
    if let Some((step, code)) = stopped.and_then(|s| s.summary.code.map(|code| (s, code))) {
        families.push(Box::new(
            Gauges::new(
                "netdiag_check_finding",
                "What the step the check stopped at found, as its stable code.",
            )
            .sample(vec![("layer", step.layer.id()), ("code", code.as_str())], 1_i64),
        ));
    }
    exposition(families)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use netdiag_engine::report::{Code, Layer, Step, Summary};

    fn step(layer: Layer, status: Status) -> Step {
        Step {
            layer,
            status,
            summary: "s".into(),
            evidence: vec![],
        }
    }

    /// The samples of an exposition by `name{labels}`, as a scraper reads them.
    fn scrape(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(series, value)| (series.to_string(), value.to_string()))
            .collect()
    }

    fn unreachable() -> Report {
        Report {
            verdict: Verdict::Unreachable,
            reachable: Some(false),
            failing_layer: Some(Layer::NetworkPolicy),
            steps: vec![
                step(Layer::Dns, Status::Pass),
                step(Layer::NetworkPolicy, Status::Fail),
                step(Layer::PodNetwork, Status::Skip),
            ],
            fix: vec![],
            commands: vec![],
            hints: vec![],
            network_policy: None,
            duration_ms: 1200,
            endpoints: vec![],
            families: vec![],
            withheld: false,
            repeat: None,
        }
    }

    #[test]
    fn an_unreachable_report_fails_the_probe_and_names_each_layer_status() {
        let text = encode(&unreachable(), 1.2);
        let samples = scrape(&text);
        let expected = [
            ("probe_success", "0"),
            ("probe_duration_seconds", "1.2"),
            ("netdiag_check_verdict{verdict=\"reachable\"}", "0"),
            ("netdiag_check_verdict{verdict=\"unreachable\"}", "1"),
            ("netdiag_check_verdict{verdict=\"undetermined\"}", "0"),
            ("netdiag_check_layer{layer=\"dns\",status=\"pass\"}", "1"),
            (
                "netdiag_check_layer{layer=\"network-policy\",status=\"fail\"}",
                "1",
            ),
            ("netdiag_check_layer{layer=\"pod-network\",status=\"skip\"}", "1"),
            ("netdiag_check_failing_layer{layer=\"network-policy\"}", "1"),
        ];
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(samples, expected, "{text}");
    }

    #[test]
    fn each_family_keeps_its_help_and_type_and_the_exposition_ends_with_eof() {
        let text = encode(&unreachable(), 1.2);
        for (name, help) in [
            (
                "probe_success",
                "Whether the target is reachable from the source pod.",
            ),
            ("probe_duration_seconds", "How long the check took."),
            (
                "netdiag_check_verdict",
                "The check's verdict (1 for the one it gave).",
            ),
            (
                "netdiag_check_layer",
                "One series per checklist layer, labelled with its status.",
            ),
            (
                "netdiag_check_failing_layer",
                "The layer the check found at fault.",
            ),
        ] {
            assert!(
                text.contains(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n")),
                "{text}"
            );
        }
        assert!(text.ends_with("\n# EOF\n"), "{text}");
    }

    #[test]
    fn the_code_of_the_step_the_check_stopped_at_is_a_label() {
        let mut report = unreachable();
        report.failing_layer = Some(Layer::Dns);
        report.steps = vec![
            step(Layer::Source, Status::Pass),
            Step {
                summary: Summary::coded(Code::DnsServerDown, "s".into()),
                ..step(Layer::Dns, Status::Fail)
            },
            step(Layer::Service, Status::Skip),
        ];
        let text = encode(&report, 1.2);
        assert!(
            text.contains("netdiag_check_finding{layer=\"dns\",code=\"dns-server-down\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "# HELP netdiag_check_finding What the step the check stopped at found, as its stable code.\n"
        ));
        report.verdict = Verdict::Undetermined;
        report.failing_layer = None;
        report.steps[1].status = Status::Undetermined;
        let text = encode(&report, 1.2);
        assert!(
            text.contains("netdiag_check_finding{layer=\"dns\",code=\"dns-server-down\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn a_step_without_a_code_adds_no_finding_series() {
        let text = encode(&unreachable(), 1.2);
        assert!(!text.contains("netdiag_check_finding"), "{text}");
    }

    #[test]
    fn finding_codes_need_no_escaping_in_a_label_value() {
        let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert!(codes.iter().all(|c| !c.contains(['"', '\\', '\n'])), "{codes:?}");
    }

    #[test]
    fn a_reachable_report_passes_the_probe_without_a_failing_layer() {
        let mut report = unreachable();
        report.verdict = Verdict::Reachable;
        report.failing_layer = None;
        let text = encode(&report, 0.5);
        assert!(text.lines().any(|l| l == "probe_success 1"), "{text}");
        assert!(!text.contains("netdiag_check_failing_layer"), "{text}");
    }

    #[test]
    fn a_check_not_run_fails_the_probe_and_says_why() {
        let text = encode_not_run("unavailable", 0.01);
        assert!(text.lines().any(|l| l == "probe_success 0"), "{text}");
        assert!(text.contains("netdiag_check_verdict{verdict=\"undetermined\"} 1\n"));
        assert!(text.contains("netdiag_check_not_run{reason=\"unavailable\"} 1\n"));
        assert!(!text.contains("netdiag_check_layer"));
    }

    #[test]
    fn layer_ids_need_no_escaping_in_a_label_value() {
        let ids = Layer::ALL.map(Layer::id);
        assert!(ids.iter().all(|id| !id.contains(['"', '\\', '\n'])), "{ids:?}");
    }
}
