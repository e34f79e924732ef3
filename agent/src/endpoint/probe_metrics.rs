//! `GET /probe`'s answer: a check report as Prometheus text exposition in the blackbox-exporter
//! convention (`probe_success`, `probe_duration_seconds`), plus one series per checklist layer
//! with its status and one for the verdict. A check the agent could not run (the API server could
//! not be asked, a bound was reached) still answers `probe_success 0`, so that an alert on it
//! fires rather than losing its series. Pure.

use std::fmt::Write as _;

use netdiag_engine::report::Report;
use netdiag_engine::report::{Status, Verdict};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn status_id(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Skip => "skip",
        Status::Undetermined => "undetermined",
    }
}

fn verdict_id(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Reachable => "reachable",
        Verdict::Unreachable => "unreachable",
        Verdict::Undetermined => "undetermined",
    }
}

/// A label value with `\`, `"` and newlines escaped as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

fn verdicts(out: &mut String, given: Verdict) {
    family(
        out,
        "netdiag_check_verdict",
        "The check's verdict (1 for the one it gave).",
    );
    for verdict in [Verdict::Reachable, Verdict::Unreachable, Verdict::Undetermined] {
        let value = u8::from(given == verdict);
        let _ = writeln!(
            out,
            "netdiag_check_verdict{{verdict=\"{}\"}} {value}",
            verdict_id(verdict)
        );
    }
}

/// The exposition for a check the agent could not run, for the reason `code` (an error code such
/// as `unavailable` or `tooManyRequests`), after `seconds`.
pub fn encode_not_run(code: &str, seconds: f64) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "probe_success",
        "Whether the target is reachable from the source pod.",
    );
    let _ = writeln!(out, "probe_success 0");
    family(&mut out, "probe_duration_seconds", "How long the check took.");
    let _ = writeln!(out, "probe_duration_seconds {seconds:.6}");
    verdicts(&mut out, Verdict::Undetermined);
    family(
        &mut out,
        "netdiag_check_not_run",
        "Why the agent could not run the check (1 for the reason).",
    );
    let _ = writeln!(out, "netdiag_check_not_run{{reason=\"{}\"}} 1", escape(code));
    out
}

/// The exposition for `report`, a check that took `seconds`.
pub fn encode(report: &Report, seconds: f64) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "probe_success",
        "Whether the target is reachable from the source pod.",
    );
    let success = u8::from(report.verdict == Verdict::Reachable);
    let _ = writeln!(out, "probe_success {success}");
    family(&mut out, "probe_duration_seconds", "How long the check took.");
    let _ = writeln!(out, "probe_duration_seconds {seconds:.6}");
    verdicts(&mut out, report.verdict);
    family(
        &mut out,
        "netdiag_check_layer",
        "One series per checklist layer, labelled with its status.",
    );
    for step in &report.steps {
        let _ = writeln!(
            out,
            "netdiag_check_layer{{layer=\"{}\",status=\"{}\"}} 1",
            escape(step.layer.id()),
            status_id(step.status)
        );
    }
    if let Some(layer) = report.failing_layer {
        family(
            &mut out,
            "netdiag_check_failing_layer",
            "The layer the check found at fault.",
        );
        let _ = writeln!(
            out,
            "netdiag_check_failing_layer{{layer=\"{}\"}} 1",
            escape(layer.id())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag_engine::report::{Layer, Step};

    fn step(layer: Layer, status: Status) -> Step {
        Step {
            layer,
            status,
            summary: "s".into(),
            evidence: vec![],
        }
    }

    #[test]
    fn an_unreachable_report_fails_the_probe_and_names_each_layer_status() {
        let report = Report {
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
        };
        let text = encode(&report, 1.2);
        assert!(text.contains("\nprobe_success 0\n"), "{text}");
        assert!(text.contains("netdiag_check_layer{layer=\"dns\",status=\"pass\"} 1\n"));
        assert!(text.contains("netdiag_check_layer{layer=\"network-policy\",status=\"fail\"} 1\n"));
        assert!(text.contains("netdiag_check_layer{layer=\"pod-network\",status=\"skip\"} 1\n"));
        assert!(text.contains("netdiag_check_verdict{verdict=\"unreachable\"} 1\n"));
        assert!(text.contains("netdiag_check_failing_layer{layer=\"network-policy\"} 1\n"));
        assert!(text.contains("probe_duration_seconds 1.200000\n"));
    }

    #[test]
    fn a_check_not_run_fails_the_probe_and_says_why() {
        let text = encode_not_run("unavailable", 0.01);
        assert!(text.contains("\nprobe_success 0\n"), "{text}");
        assert!(text.contains("netdiag_check_verdict{verdict=\"undetermined\"} 1\n"));
        assert!(text.contains("netdiag_check_not_run{reason=\"unavailable\"} 1\n"));
        assert!(!text.contains("netdiag_check_layer"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
