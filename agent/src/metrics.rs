//! Prometheus metrics: the build, probes by kind and outcome, probe durations, probe API requests
//! in flight and by HTTP status code.

use std::time::Duration;

use netdiag_proto::{DnsOutcome, ProbeResult, TcpOutcome, UdpOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// The HTTP status code of an answer, as Prometheus' own HTTP metrics label it (`code="200"`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub code: String,
}

/// The `build_info` labels: which build answers, for joins in queries (`* on(pod) group_left`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub arch: String,
}

pub struct Metrics {
    registry: Registry,
    probes: Family<ProbeLabels, Counter>,
    durations: Family<KindLabel, Histogram>,
    requests: Family<StatusLabel, Counter>,
    in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("netdiag_agent");
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                arch: std::env::consts::ARCH.into(),
            })
            .set(1);
        let probes = Family::<ProbeLabels, Counter>::default();
        let durations = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        let requests = Family::<StatusLabel, Counter>::default();
        let in_flight = Gauge::default();
        registry.register(
            "build_info",
            "The agent's version and architecture, always 1",
            build,
        );
        registry.register("probes", "Probes run, by kind and outcome", probes.clone());
        registry.register(
            "probe_duration_seconds",
            "Time one probe took, by kind",
            durations.clone(),
        );
        registry.register(
            "requests",
            "Probe API requests answered, by HTTP status code",
            requests.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Probe API requests being answered now",
            in_flight.clone(),
        );
        Metrics {
            registry,
            probes,
            durations,
            requests,
            in_flight,
        }
    }
}

/// A probe API request in flight; counted out when dropped, also when its client goes away and
/// the request's future is dropped unfinished.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn observe(&self, result: &ProbeResult, took: Duration) {
        let kind = result_kind(result);
        self.probes
            .get_or_create(&ProbeLabels {
                kind: kind.into(),
                outcome: outcome_label(result),
            })
            .inc();
        self.durations
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    /// Counts a probe API request answered with the HTTP status `code`.
    pub fn request(&self, code: u16) {
        self.requests
            .get_or_create(&StatusLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a probe API request in until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String fails only when a metric's encoding does, which these never do.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn result_kind(result: &ProbeResult) -> &'static str {
    match result {
        ProbeResult::Dns(_) => "dns",
        ProbeResult::Tcp(_) => "tcp",
        ProbeResult::Udp(_) => "udp",
        ProbeResult::Listeners(_) => "listeners",
        ProbeResult::Interfaces(_) => "interfaces",
        ProbeResult::PathMtu(_) => "pathMtu",
        ProbeResult::Capture(_) => "capture",
        ProbeResult::Egress(_) => "egress",
        ProbeResult::NodeDataplane(_) => "nodeDataplane",
    }
}

/// The `outcome` label: the outcome's `kind` tag, or `ok`/`error` for the inventory probes.
pub fn outcome_label(result: &ProbeResult) -> String {
    let label = match result {
        ProbeResult::Tcp(t) => match t.outcome {
            TcpOutcome::Connected { .. } => "connected",
            TcpOutcome::Refused { .. } => "refused",
            TcpOutcome::Timeout { .. } => "timeout",
            TcpOutcome::Unreachable { .. } => "unreachable",
            TcpOutcome::Error { .. } => "error",
        },
        ProbeResult::Udp(u) => match u.outcome {
            UdpOutcome::Answered { .. } => "answered",
            UdpOutcome::Refused { .. } => "refused",
            UdpOutcome::Unreachable { .. } => "unreachable",
            UdpOutcome::Silent { .. } => "silent",
            UdpOutcome::Error { .. } => "error",
        },
        ProbeResult::Dns(d) => match d.answer.outcome {
            DnsOutcome::Resolved { .. } => "resolved",
            DnsOutcome::Nxdomain => "nxdomain",
            DnsOutcome::Nodata => "nodata",
            DnsOutcome::Servfail => "servfail",
            DnsOutcome::Refused => "refused",
            DnsOutcome::Timeout => "timeout",
            DnsOutcome::Error { .. } => "error",
        },
        ProbeResult::Listeners(l) => {
            if l.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
        ProbeResult::Interfaces(i) => {
            if i.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
        ProbeResult::PathMtu(m) => match m.outcome {
            netdiag_proto::PathMtuOutcome::Measured { .. } => "measured",
            netdiag_proto::PathMtuOutcome::NotMeasured { .. } => "notMeasured",
        },
        ProbeResult::Capture(c) => {
            if c.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
        ProbeResult::Egress(e) => {
            if e.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
        ProbeResult::NodeDataplane(d) => {
            if d.conntrack.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
    };
    label.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn the_exposition_has_build_info_in_flight_requests_and_requests_by_http_status_code() {
        let metrics = Metrics::default();
        let text = metrics.encode();
        let build = format!(
            r#"netdiag_agent_build_info{{version="{}",arch="{}"}}"#,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        assert_eq!(sample(&text, &build), Some("1"), "{text}");
        assert!(text.contains("# TYPE netdiag_agent_build_info gauge"), "{text}");
        assert!(
            text.contains("# TYPE netdiag_agent_requests_in_flight gauge"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "netdiag_agent_requests_in_flight"),
            Some("0"),
            "{text}"
        );

        let first = metrics.in_flight();
        let second = metrics.in_flight();
        metrics.request(200);
        metrics.request(200);
        metrics.request(503);
        drop(first);
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "netdiag_agent_requests_in_flight"),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"netdiag_agent_requests_total{code="200"}"#),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"netdiag_agent_requests_total{code="503"}"#),
            Some("1"),
            "{text}"
        );
        drop(second);
        assert_eq!(
            sample(&metrics.encode(), "netdiag_agent_requests_in_flight"),
            Some("0")
        );
    }
}
