//! The reduced report on plain values: every field of a report that names the destination is
//! marked, and no mark survives [`withheld`] in JSON (the plugin's render tests check the checklist).

use super::*;
use crate::check::evidence::IpFamily;
use crate::check::report::{EndpointReport, PolicySuggestion, Verdict};

const MARK: &str = "SECRET";

/// A report of a check denied by policy whose every free-text field carries [`MARK`].
fn marked_report() -> Report {
    let step = |layer, status| Step {
        layer,
        status,
        summary: format!("{MARK} admin/vault-0 10.244.2.9 on node-b").into(),
        evidence: vec![format!("{MARK} isolated by admin/deny-all").into()],
    };
    let mut report = Report {
        verdict: Verdict::Unreachable,
        reachable: Some(false),
        failing_layer: Some(Layer::NetworkPolicy),
        steps: vec![
            step(Layer::Source, Status::Pass),
            step(Layer::Dns, Status::Skip),
            step(Layer::NetworkPolicy, Status::Fail),
            step(Layer::Application, Status::Skip),
        ],
        fix: vec![],
        commands: vec![],
        hints: vec![],
        network_policy: Some(PolicySuggestion {
            yaml: format!("metadata: {{name: {MARK}}}"),
            admits: vec![format!("{MARK} shop/checkout → admin/vault-0:9999/TCP")],
            verified: true,
        }),
        duration_ms: 42,
        endpoints: vec![EndpointReport {
            address: format!("{MARK}:9999"),
            pod: Some(MARK.into()),
            node: Some(MARK.into()),
            status: Status::Fail,
            failing_layer: Some(Layer::NetworkPolicy),
            tcp: MARK.into(),
            udp: Some(MARK.into()),
            path_mtu: Some(MARK.into()),
        }],
        families: vec![FamilyReport {
            family: IpFamily::V4,
            verdict: Verdict::Unreachable,
            failing_layer: Some(Layer::NetworkPolicy),
            summary: MARK.into(),
        }],
        withheld: false,
        repeat: None,
    };
    report.set_fix(vec![
        FixLine::Hint(format!("{MARK} allow ingress in admin/deny-all")),
        FixLine::Command(format!("kubectl -n admin get networkpolicy {MARK}")),
    ]);
    report
}

#[test]
fn a_withheld_report_keeps_the_verdict_and_each_layers_status() {
    let full = marked_report();
    let reduced = withheld(&full);
    assert_eq!(reduced.verdict, full.verdict);
    assert_eq!(reduced.reachable, full.reachable);
    assert_eq!(reduced.failing_layer, Some(Layer::NetworkPolicy));
    assert_eq!(reduced.exit_code(), full.exit_code());
    let outline = |r: &Report| r.steps.iter().map(|s| (s.layer, s.status)).collect::<Vec<_>>();
    assert_eq!(outline(&reduced), outline(&full));
    assert_eq!(
        reduced.steps[2].summary.text,
        sentence(Layer::NetworkPolicy, Status::Fail)
    );
    assert!(reduced.steps.iter().all(|s| s.evidence.is_empty()));
    assert!(reduced.withheld);
    assert_eq!(reduced.hints, [WITHHELD_HINT]);
    assert_eq!(reduced.families[0].failing_layer, Some(Layer::NetworkPolicy));
}

#[test]
fn nothing_of_the_destination_survives_in_json() {
    let full = marked_report();
    assert!(serde_json::to_string(&full).unwrap().contains(MARK));
    let reduced = withheld(&full);
    let json = serde_json::to_string(&reduced).unwrap();
    assert!(!json.contains(MARK), "{json}");
    for hidden in ["10.244.", "node-b", "deny-all", "admin", "vault"] {
        assert!(!json.contains(hidden), "{hidden} in {json}");
    }
}

#[test]
fn a_withheld_report_says_so_in_json_and_a_full_one_does_not() {
    let full = marked_report();
    let field = |r: &Report| serde_json::to_value(r).unwrap().get("withheld").cloned();
    assert_eq!(field(&full), None);
    assert_eq!(field(&withheld(&full)), Some(serde_json::Value::Bool(true)));
}

#[test]
fn every_layer_and_status_has_a_sentence_that_names_nothing() {
    for layer in Layer::ALL {
        for status in [Status::Pass, Status::Fail, Status::Skip, Status::Undetermined] {
            let s = sentence(layer, status);
            assert!(!s.is_empty());
            assert!(!s.chars().any(|c| c.is_ascii_digit()), "{s}");
        }
    }
}
