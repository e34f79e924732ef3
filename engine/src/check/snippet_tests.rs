//! The suggested NetworkPolicy admits exactly the denied flow: built from a check over a
//! hand-made snapshot (agents faked: every TCP connection to a pod times out), then added to the
//! snapshot's objects and evaluated again.

use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netdiag_proto::{
    AgentIdentity, DnsAnswer, DnsOutcome, DnsResult, ListenersResult, Probe, ProbeReport, ProbeRequest,
    ProbeResult, RecordType, ResolvConfSummary, ResolvedNetns, TcpOutcome, TcpResult,
};
use serde_json::{Value, json};

use super::*;
use crate::check::evidence::{AgentPods, Evidence, Fact};
use crate::check::plan::CheckRequest;
use crate::check::probe::{AgentReply, AgentTransport};
use crate::check::report::Layer;
use crate::check::{collect, judge};
use crate::cluster::{NamespacedName, ToolFailure};
use crate::policy::{Flow, Peer, PolicyIndex, Protocol};

/// Agents whose every TCP probe times out (the policy drops it) and whose DNS resolves.
struct DroppingAgents;

impl AgentTransport for DroppingAgents {
    async fn probe(
        &self,
        node: &str,
        request: &ProbeRequest,
        _: Duration,
    ) -> Result<AgentReply, ToolFailure> {
        let results = request
            .probes
            .iter()
            .map(|probe| match probe {
                Probe::Tcp(t) => ProbeResult::Tcp(TcpResult {
                    ip: t.ip,
                    port: t.port,
                    timeout_ms: t.timeout_ms,
                    outcome: TcpOutcome::Timeout { after_ms: 1000 },
                    local_port: None,
                    started_unix_us: None,
                    last_syn_unix_us: None,
                }),
                Probe::Dns(d) => ProbeResult::Dns(DnsResult {
                    name: d.name.clone(),
                    record_type: RecordType::A,
                    resolv_conf: ResolvConfSummary {
                        path: "/etc/resolv.conf".into(),
                        nameservers: vec!["10.96.0.10:53".parse().unwrap()],
                        search: vec![],
                        ndots: 5,
                    },
                    candidates: vec![],
                    answer: DnsAnswer {
                        name: Some(d.name.clone()),
                        outcome: DnsOutcome::Resolved {
                            addresses: vec!["10.96.1.1".parse().unwrap()],
                            ttl: 30,
                        },
                    },
                }),
                _ => ProbeResult::Listeners(ListenersResult::default()),
            })
            .collect();
        Ok(AgentReply {
            agent: format!("netdiag/agent-{node}"),
            report: ProbeReport {
                agent: AgentIdentity {
                    node: node.into(),
                    version: "test".into(),
                    pod: None,
                },
                netns: ResolvedNetns {
                    inode: 1,
                    path: "netns".into(),
                    pid: None,
                },
                results,
            },
        })
    }

    fn location(&self) -> Option<AgentPods> {
        None
    }
}

fn list<T: serde::de::DeserializeOwned>(items: Value) -> Vec<T> {
    serde_json::from_value(items).unwrap()
}

/// shop/checkout (app=checkout), shop/other (app=other), payments behind svc/payments:80 → 8080,
/// and the given NetworkPolicies.
fn snapshot(policies: Value) -> Snapshot {
    let pod = |name: &str, node: &str, ip: &str, app: &str| {
        json!({"metadata": {"namespace": "shop", "name": name, "labels": {"app": app}},
               "spec": {"nodeName": node, "containers": [{"name": "app",
                        "ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    Snapshot {
        pods: Fact::Known(list(json!([
            pod("checkout", "node-a", "10.244.1.2", "checkout"),
            pod("other", "node-a", "10.244.1.3", "other"),
            pod("payments-0", "node-b", "10.244.2.2", "payments"),
        ]))),
        services: Fact::Known(list(json!([{
            "metadata": {"namespace": "shop", "name": "payments"},
            "spec": {"clusterIP": "10.96.1.1", "selector": {"app": "payments"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}]))),
        slices: Fact::Known(list(json!([{
            "metadata": {"namespace": "shop", "name": "payments-x",
                         "labels": {"kubernetes.io/service-name": "payments"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.2.2"], "targetRef": {"kind": "Pod", "name": "payments-0"}}]}]))),
        namespaces: Fact::Known(list(json!([
            {"metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}}}]))),
        policies: Fact::Known(list(policies)),
        admin: Fact::Known(Default::default()),
        cluster_dns_unread: None,
        ..Snapshot::unread(ToolFailure::NotProbed(String::new()))
    }
}

async fn check(snap: &Snapshot) -> Evidence {
    let request = CheckRequest {
        from: NamespacedName::new("shop", "checkout"),
        target: "svc/payments:80".parse().unwrap(),
        target_namespace: "shop".into(),
        to_text: "svc/payments:80".into(),
        timeout: Duration::from_secs(1),
    };
    collect(snap, &DroppingAgents, &request).await
}

fn allowed(snap: &Snapshot, extra: &[NetworkPolicy], from: &str, to: &str) -> bool {
    let (Fact::Known(ns), Fact::Known(pods), Fact::Known(pols)) =
        (&snap.namespaces, &snap.pods, &snap.policies)
    else {
        panic!("a hand-made snapshot is known")
    };
    let mut all = pols.clone();
    all.extend(extra.iter().cloned());
    let flow = Flow {
        from: from.parse::<Peer>().unwrap(),
        to: to.parse::<Peer>().unwrap(),
        port: 8080,
        protocol: Protocol::Tcp,
    };
    PolicyIndex::new(ns, pods, &all).evaluate(&flow).unwrap().allowed
}

fn parse(yaml: &str) -> Vec<NetworkPolicy> {
    yaml.split("---\n")
        .map(|doc| serde_yaml_ng::from_str(doc).expect("each document is a NetworkPolicy"))
        .collect()
}

#[tokio::test]
async fn an_ingress_denial_gets_a_policy_that_admits_exactly_the_source_on_the_port() {
    let snap = snapshot(json!([{
        "metadata": {"namespace": "shop", "name": "payments-ingress"},
        "spec": {"podSelector": {"matchLabels": {"app": "payments"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}}]));
    let ev = check(&snap).await;
    assert_eq!(judge::judge(&ev, 0).failing_layer, Some(Layer::NetworkPolicy));
    let suggestion = suggest(&snap, &ev).expect("a NetworkPolicy can admit the flow");
    assert!(suggestion.verified, "{suggestion:#?}");
    assert_eq!(suggestion.admits, ["shop/checkout → shop/payments-0:8080/TCP"]);
    let added = parse(&suggestion.yaml);
    assert_eq!(added.len(), 1, "{}", suggestion.yaml);
    assert_eq!(added[0].metadata.namespace.as_deref(), Some("shop"));
    assert!(!allowed(&snap, &[], "shop/checkout", "shop/payments-0"));
    assert!(allowed(&snap, &added, "shop/checkout", "shop/payments-0"));
    // Exactly this flow: another pod of the namespace is still denied.
    assert!(!allowed(&snap, &added, "shop/other", "shop/payments-0"));
}

#[tokio::test]
async fn an_egress_denial_gets_a_policy_selecting_the_source() {
    let snap = snapshot(json!([{
        "metadata": {"namespace": "shop", "name": "checkout-egress"},
        "spec": {"podSelector": {"matchLabels": {"app": "checkout"}}, "policyTypes": ["Egress"]}}]));
    let ev = check(&snap).await;
    let suggestion = suggest(&snap, &ev).expect("a NetworkPolicy can admit the flow");
    assert!(suggestion.verified, "{suggestion:#?}");
    let added = parse(&suggestion.yaml);
    let spec = added[0].spec.as_ref().unwrap();
    assert_eq!(spec.policy_types.as_deref(), Some(&["Egress".to_string()][..]));
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("app")),
        Some(&"checkout".to_string())
    );
    assert!(allowed(&snap, &added, "shop/checkout", "shop/payments-0"));
}

#[tokio::test]
async fn an_allowed_flow_gets_no_policy() {
    let snap = snapshot(json!([]));
    let ev = check(&snap).await;
    assert_eq!(suggest(&snap, &ev), None);
}
