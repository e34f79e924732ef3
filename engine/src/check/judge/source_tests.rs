//! The `source` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

#[test]
fn missing_source_pod_fails_the_source_layer_and_names_where_it_exists() {
    let mut ev = healthy();
    ev.source = SourceFacts::Missing {
        namespace: "shop".into(),
        name: "checkout".into(),
        elsewhere: vec!["web".into()],
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Source);
    assert_eq!(code(&report, Layer::Source), Some(Code::SourcePodNotFound));
    assert!(step(&report, Layer::Source).evidence[0].contains("web"));
}

#[test]
fn pending_source_pod_without_ip_fails_the_source_layer() {
    let mut ev = healthy();
    let mut p = pod("shop", "checkout", "node-a", "10.244.1.5");
    p.phase = "Pending".into();
    p.ip = None;
    ev.source = SourceFacts::Found {
        pod: p,
        agent: AgentFacts::NotAsked,
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Source);
    assert_eq!(code(&report, Layer::Source), Some(Code::SourcePodWithoutIp));
}

#[test]
fn missing_agent_on_the_source_node_is_undetermined_never_a_network_layer() {
    let mut ev = healthy();
    if let SourceFacts::Found { agent, .. } = &mut ev.source {
        *agent = AgentFacts::Failed(agent_missing("node-a"));
    }
    // The probes did not run.
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(Fact::Unknown(agent_missing("node-a")));
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(report.reachable, None);
    assert_eq!(report.failing_layer, None);
    assert_eq!(report.exit_code(), 3);
    assert_eq!(step(&report, Layer::Source).status, Status::Undetermined);
    assert_eq!(
        finding(&ev, judge_source),
        Finding::Source(SourceFinding::AgentUnavailable {
            pod: NamespacedName::new("shop", "checkout"),
            node: "node-a".into(),
            reason: agent_missing("node-a"),
        })
    );
    assert!(report.steps.iter().all(|s| s.status != Status::Fail));
    assert!(report.fix.iter().any(|f| f.contains("netdiag-agent")));
}

#[test]
fn unreadable_api_is_undetermined() {
    let mut ev = healthy();
    ev.source = SourceFacts::Unknown(forbidden("list pods in all namespaces"));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(
        finding(&ev, judge_source),
        Finding::Source(SourceFinding::Unreadable {
            from: NamespacedName::new("shop", "checkout"),
            reason: forbidden("list pods in all namespaces"),
        })
    );
    assert_eq!(report.fix, ["kubectl auth can-i get pods -n shop"]);
}

#[test]
fn a_forbidden_source_read_names_the_permission_it_needed() {
    let mut ev = healthy();
    let read = crate::check::reads::Read::Pod(NamespacedName::new("shop", "checkout"));
    let access = read.access().expect("a pod read needs a permission");
    ev.source = SourceFacts::Unknown(forbidden(&read.action()).needing(access));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(report.fix, ["kubectl auth can-i get pods/checkout -n shop"]);
}

#[test]
fn forbidden_port_forward_to_the_agent_is_undetermined_and_points_at_rbac() {
    let mut ev = healthy();
    if let SourceFacts::Found { agent, .. } = &mut ev.source {
        *agent = AgentFacts::Failed(ToolFailure::AgentForbidden {
            agent: "netdiag/netdiag-agent-x".into(),
            detail: "pods \"netdiag-agent-x\" is forbidden".into(),
        });
    }
    let report = judge(&ev, 0);
    assert_eq!(report.exit_code(), 3);
    assert_eq!(report.fix, ["kubectl auth can-i get pods/portforward -n netdiag"]);
}

#[test]
fn agent_fix_commands_look_where_the_check_looked_for_the_agents() {
    let mut ev = healthy();
    ev.agents = Some(AgentPods {
        namespace: "ops".into(),
        selector: "app=probe".into(),
    });
    if let SourceFacts::Found { agent, .. } = &mut ev.source {
        *agent = AgentFacts::Failed(agent_missing("node-a"));
    }
    let report = judge(&ev, 0);
    assert_eq!(report.exit_code(), 3);
    assert_eq!(
        report.fix,
        [
            "kubectl -n ops get pods -l app=probe -o wide",
            "kubectl -n ops get daemonsets",
            crate::agent_identity::agent_install_command().as_str(),
        ]
    );
}

#[test]
fn a_missing_agent_fix_installs_the_release_without_a_checkout() {
    let mut ev = healthy();
    if let SourceFacts::Found { agent, .. } = &mut ev.source {
        *agent = AgentFacts::Failed(agent_missing("node-a"));
    }
    let report = judge(&ev, 0);
    let install = format!(
        "kubectl apply -k 'github.com/netdiag/netdiag/deploy?ref=v{}'",
        env!("CARGO_PKG_VERSION")
    );
    assert!(report.fix.contains(&install), "{:?}", report.fix);
    assert!(
        !report.fix.iter().any(|f| f.contains("-k deploy/")),
        "{:?}",
        report.fix
    );
}

#[test]
fn an_agent_that_fails_is_looked_at_not_reinstalled() {
    let mut ev = healthy();
    if let SourceFacts::Found { agent, .. } = &mut ev.source {
        *agent = AgentFacts::Failed(ToolFailure::Agent {
            detail: "agent answered 500".into(),
        });
    }
    let report = judge(&ev, 0);
    assert!(
        !report.fix.iter().any(|f| f.contains("apply -k")),
        "{:?}",
        report.fix
    );
}
