//! A withheld report rendered: nothing the engine withheld comes back in the human checklist.

use netdiag_engine::report::{Layer, Report, Status, Step, Verdict};
use netdiag_engine::withheld;

use crate::render::{Layout, render_report};

const MARK: &str = "SECRET";

/// A report denied by policy whose free-text fields carry [`MARK`].
fn marked_report() -> Report {
    let step = |layer, status| Step {
        layer,
        status,
        summary: format!("{MARK} admin/vault-0 10.244.2.9 on node-b").into(),
        evidence: vec![format!("{MARK} isolated by admin/deny-all").into()],
    };
    Report {
        verdict: Verdict::Unreachable,
        reachable: Some(false),
        failing_layer: Some(Layer::NetworkPolicy),
        steps: vec![
            step(Layer::Source, Status::Pass),
            step(Layer::NetworkPolicy, Status::Fail),
        ],
        fix: vec![format!("{MARK} allow ingress in admin/deny-all")],
        commands: vec![format!("kubectl -n admin get networkpolicy {MARK}")],
        hints: vec![format!("{MARK} allow ingress in admin/deny-all")],
        network_policy: None,
        duration_ms: 42,
        endpoints: vec![],
        families: vec![],
        withheld: false,
        repeat: None,
    }
}

#[test]
fn nothing_of_the_destination_survives_in_the_checklist() {
    let full = marked_report();
    let wide = Layout {
        width: Some(100),
        wide: true,
    };
    assert!(render_report("shop/checkout", "the target", &full, wide).contains(MARK));
    let text = render_report("shop/checkout", "the target", &withheld(&full), wide);
    assert!(!text.contains(MARK), "{text}");
    assert!(text.contains("network-policy"), "{text}");
}
