//! The engine end to end over a snapshot built by hand and a fake agent transport: execution
//! groups the plan into one request per namespace, assembly puts each reply where it belongs,
//! and the judge reads the result. No API server, no root.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use netdiag_proto::{
    AgentIdentity, CaptureResult, ConntrackFill, DnsAnswer, DnsOutcome, DnsResult, ListenersResult,
    ListeningSocket, NodeDataplaneResult, PathMtuOutcome, PathMtuResult, Probe, ProbeReport, ProbeRequest,
    ProbeResult, ProbeSource, RecordType, ResolvConfSummary, ResolvedNetns, RuleSource, ServiceRules,
    TcpOutcome, TcpResult, Transport, UdpOutcome, UdpPayload, UdpResult,
};
use serde_json::json;

use super::evidence::*;
use super::probe::AgentReply;
use super::report::{Layer, Verdict};
use super::snapshot::Snapshot;
use super::*;
use crate::cluster::NamespacedName;

/// Answers like agents would: each node's TCP outcome per destination IP, DNS answers per name.
#[derive(Default)]
struct FakeAgents {
    tcp: BTreeMap<IpAddr, TcpOutcome>,
    udp: BTreeMap<IpAddr, UdpOutcome>,
    resolves_to: Vec<IpAddr>,
    listening: Vec<(IpAddr, u16)>,
    missing_on: Vec<String>,
    /// Requests with a capture answer after this long, like an agent watching its window.
    capture_window: Option<Duration>,
    /// How long the source's request takes besides waiting out its probes' timeouts.
    source_delay: Duration,
    requests: Mutex<Vec<(String, ProbeRequest)>>,
}

impl FakeAgents {
    /// The longest timeout the request's TCP probes wait out.
    fn longest_timeout(&self, request: &ProbeRequest) -> Duration {
        let waited = |p: &Probe| match p {
            Probe::Tcp(t) => match self.tcp.get(&t.ip) {
                Some(TcpOutcome::Timeout { after_ms }) => *after_ms,
                _ => 0,
            },
            _ => 0,
        };
        Duration::from_millis(request.probes.iter().map(waited).max().unwrap_or(0))
    }

    fn answer(&self, probe: &Probe) -> ProbeResult {
        match probe {
            Probe::Tcp(t) => ProbeResult::Tcp(TcpResult {
                ip: t.ip,
                port: t.port,
                timeout_ms: t.timeout_ms,
                outcome: self
                    .tcp
                    .get(&t.ip)
                    .cloned()
                    .unwrap_or(TcpOutcome::Connected { rtt_us: 100 }),
                local_port: None,
                started_unix_us: None,
                last_syn_unix_us: None,
            }),
            Probe::Udp(u) => ProbeResult::Udp(UdpResult {
                ip: u.ip,
                port: u.port,
                timeout_ms: u.timeout_ms,
                payload: UdpPayload::Empty,
                outcome: self.udp.get(&u.ip).cloned().unwrap_or(UdpOutcome::Answered {
                    rtt_us: 100,
                    bytes: 8,
                }),
                local_port: None,
            }),
            Probe::Dns(d) => ProbeResult::Dns(DnsResult {
                name: d.name.clone(),
                record_type: RecordType::A,
                resolv_conf: ResolvConfSummary {
                    path: "/proc/7/root/etc/resolv.conf".into(),
                    nameservers: vec!["10.96.0.10:53".parse().unwrap()],
                    search: vec![],
                    ndots: 5,
                },
                candidates: vec![],
                answer: DnsAnswer {
                    name: Some(d.name.clone()),
                    outcome: DnsOutcome::Resolved {
                        addresses: self.resolves_to.clone(),
                        ttl: 30,
                    },
                },
            }),
            Probe::Listeners | Probe::PodListeners(_) => ProbeResult::Listeners(ListenersResult {
                sockets: self
                    .listening
                    .iter()
                    .map(|(ip, port)| ListeningSocket {
                        protocol: Transport::Tcp,
                        local_ip: *ip,
                        local_port: *port,
                        inode: 1,
                        v6_only: None,
                    })
                    .collect(),
                error: None,
            }),
            // The witnesses answer as an agent without the capability would: the verdict must
            // then rest on today's rules.
            Probe::PathMtu(m) => ProbeResult::PathMtu(PathMtuResult {
                ip: m.ip,
                port: m.port,
                outcome: PathMtuOutcome::NotMeasured {
                    reason: "not measured in this test".into(),
                },
                last_syn_unix_us: None,
            }),
            Probe::Capture(c) => ProbeResult::Capture(CaptureResult {
                peer: Some(c.peer),
                port: c.port,
                error: Some("the agent lacks CAP_NET_RAW".into()),
                ..Default::default()
            }),
            Probe::NodeDataplane(_) => ProbeResult::NodeDataplane(NodeDataplaneResult {
                service_rules: Some(ServiceRules {
                    source: RuleSource::Iptables,
                    error: Some("cannot run iptables-save".into()),
                    ..Default::default()
                }),
                conntrack: ConntrackFill {
                    error: Some("nf_conntrack is not loaded".into()),
                    ..Default::default()
                },
            }),
            other => panic!("the check never sends {other:?}"),
        }
    }
}

impl AgentTransport for FakeAgents {
    async fn probe(
        &self,
        node: &str,
        request: &ProbeRequest,
        _: Duration,
    ) -> Result<AgentReply, ToolFailure> {
        self.requests
            .lock()
            .unwrap()
            .push((node.to_string(), request.clone()));
        if let Some(window) = self.capture_window
            && request.probes.iter().any(|p| matches!(p, Probe::Capture(_)))
        {
            tokio::time::sleep(window).await;
        }
        if let ProbeSource::PodIp { .. } = request.source {
            // Like an agent: the request answers once its slowest probe has.
            tokio::time::sleep(self.source_delay + self.longest_timeout(request)).await;
        }
        if self.missing_on.iter().any(|n| n == node) {
            return Err(ToolFailure::AgentMissing {
                node: node.into(),
                namespace: "netdiag".into(),
                selector: "app=agent".into(),
            });
        }
        let netns = match request.source {
            ProbeSource::PodIp { ip } => ip.to_string(),
            ProbeSource::Node => "the node".to_string(),
            ref other => panic!("the check never probes from {other:?}"),
        };
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
                    path: format!("netns of {netns}"),
                    pid: None,
                },
                results: request.probes.iter().map(|p| self.answer(p)).collect(),
            },
        })
    }

    fn location(&self) -> Option<AgentPods> {
        Some(AgentPods {
            namespace: "netdiag".into(),
            selector: "app=agent".into(),
        })
    }
}

fn list<T: serde::de::DeserializeOwned>(items: serde_json::Value) -> Vec<T> {
    serde_json::from_value(items).unwrap()
}

fn snapshot() -> Snapshot {
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
            pod("payments-0", "node-b", "10.244.2.2", "payments"),
            pod("payments-1", "node-b", "10.244.2.3", "payments"),
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
                {"addresses": ["10.244.2.2"], "targetRef": {"kind": "Pod", "name": "payments-0"}},
                {"addresses": ["10.244.2.3"], "targetRef": {"kind": "Pod", "name": "payments-1"}}]}]))),
        namespaces: Fact::Known(list(json!([{"metadata": {"name": "shop"}}]))),
        policies: Fact::Known(vec![]),
        admin: Fact::Known(Default::default()),
        cluster_dns_unread: None,
        ..Snapshot::unread(crate::cluster::ToolFailure::NotProbed(String::new()))
    }
}

fn request(to: &str) -> CheckRequest {
    CheckRequest {
        from: NamespacedName::new("shop", "checkout"),
        target: to.parse().unwrap(),
        target_namespace: "shop".into(),
        to_text: to.into(),
        timeout: Duration::from_secs(1),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl FakeAgents {
    /// The same agents, with the TCP probe to `pod` ending in `outcome`.
    fn with_tcp(mut self, pod: &str, outcome: TcpOutcome) -> FakeAgents {
        self.tcp.insert(ip(pod), outcome);
        self
    }
}

fn listening_everywhere() -> FakeAgents {
    FakeAgents {
        resolves_to: vec![ip("10.96.1.1")],
        listening: vec![(ip("0.0.0.0"), 8080)],
        ..Default::default()
    }
}

#[tokio::test]
async fn every_reply_lands_on_its_own_fact_and_a_healthy_service_is_reachable() {
    let agents = listening_everywhere();
    let ev = collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    assert!(matches!(
        &ev.source,
        SourceFacts::Found { agent: AgentFacts::Answered { agent_pod, .. }, .. } if agent_pod == "netdiag/agent-node-a"
    ));
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!("{:?}", ev.endpoints)
    };
    assert_eq!(endpoints.len(), 2);
    for e in endpoints {
        assert!(
            matches!(e.live, LiveFact::Tcp(Fact::Known(TcpOutcome::Connected { .. }))),
            "{e:?}"
        );
        // Every connection was established: the pods' sockets have nothing to explain.
        assert!(
            matches!(&e.listeners, Fact::Unknown(ToolFailure::NotProbed(why)) if why.contains("not needed")),
            "{e:?}"
        );
        assert!(matches!(e.policy, PolicyCheck::Allowed { .. }), "{e:?}");
    }
    let report = judge::judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
}

#[tokio::test(start_paused = true)]
async fn the_source_pod_gets_one_request_and_each_destination_node_one_for_all_its_pods() {
    // One connection fails, so that the speculative captures are wanted too.
    let agents = listening_everywhere().with_tcp("10.244.2.3", TcpOutcome::Timeout { after_ms: 1000 });
    collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    let requests = agents.requests.lock().unwrap();
    let mut asked: Vec<(String, String, usize)> = requests
        .iter()
        .map(|(node, r)| (node.clone(), format!("{:?}", r.source), r.probes.len()))
        .collect();
    asked.sort();
    // node-a: DNS, the ClusterIP and the two endpoints, with the witnesses at the source (the
    // path MTU to node-b, the node's dataplane); node-b: one request for both its pods.
    assert_eq!(
        asked,
        [
            (
                "node-a".to_string(),
                "PodIp { ip: 10.244.1.2 }".to_string(),
                4 + 2
            ),
            // Both pods' sockets and captures.
            ("node-b".to_string(), "Node".to_string(), 2 + 2),
        ]
    );
}

/// Every capture of `ev` was not sent, for a reason that says `why`.
fn assert_no_capture(ev: &Evidence, why: &str) {
    for (ip, capture) in captures(ev) {
        assert!(
            matches!(&capture, Fact::Unknown(ToolFailure::NotProbed(reason)) if reason.contains(why)),
            "{ip}: {capture:?}"
        );
    }
}

/// The capture facts of `ev`, by endpoint address.
fn captures(ev: &Evidence) -> Vec<(IpAddr, Fact<CaptureResult>)> {
    ev.witnesses
        .captures
        .iter()
        .map(|c| (c.ip, c.capture.clone()))
        .collect()
}

#[tokio::test]
async fn a_healthy_check_does_not_wait_for_the_captures() {
    let agents = FakeAgents {
        capture_window: Some(Duration::from_secs(3600)),
        ..listening_everywhere()
    };
    let ev = collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    assert_eq!(captures(&ev).len(), 2);
    assert_no_capture(&ev, "not needed");
    assert_eq!(judge::judge(&ev, 0).verdict, Verdict::Reachable);
}

#[tokio::test(start_paused = true)]
async fn a_failed_connection_keeps_the_sockets_and_captures_of_its_node() {
    let agents = FakeAgents {
        capture_window: Some(Duration::from_millis(20)),
        ..listening_everywhere()
    }
    .with_tcp("10.244.2.3", TcpOutcome::Timeout { after_ms: 1000 });
    let ev = collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    // Both pods share node-b's request: it is awaited for the one that failed.
    for (ip, capture) in captures(&ev) {
        assert!(
            matches!(&capture, Fact::Known(c) if c.port == 8080),
            "{ip}: {capture:?}"
        );
    }
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!("{:?}", ev.endpoints)
    };
    assert!(
        endpoints
            .iter()
            .all(|e| matches!(&e.listeners, Fact::Known(l) if l.len() == 1))
    );
}

#[tokio::test]
async fn the_failing_endpoint_keeps_its_own_outcome() {
    let agents = listening_everywhere().with_tcp("10.244.2.3", TcpOutcome::Refused { rtt_us: 80 });
    let ev = collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!()
    };
    let outcome = |addr: &str| {
        endpoints
            .iter()
            .find(|e| e.ip == ip(addr))
            .and_then(|e| e.live.tcp().cloned())
    };
    assert!(matches!(
        outcome("10.244.2.2"),
        Some(Fact::Known(TcpOutcome::Connected { .. }))
    ));
    assert!(matches!(
        outcome("10.244.2.3"),
        Some(Fact::Known(TcpOutcome::Refused { .. }))
    ));
}

#[tokio::test]
async fn a_missing_source_agent_makes_every_source_probe_unknown_with_that_failure() {
    let agents = FakeAgents {
        missing_on: vec!["node-a".into()],
        ..listening_everywhere()
    };
    let ev = collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    let missing = |f: &ToolFailure| matches!(f, ToolFailure::AgentMissing { node, .. } if node == "node-a");
    assert!(matches!(&ev.source, SourceFacts::Found { agent: AgentFacts::Failed(f), .. } if missing(f)));
    assert!(
        matches!(&ev.cluster_ip, Some(c) if matches!(&c.live, LiveFact::Tcp(Fact::Unknown(f)) if missing(f)))
    );
    let report = judge::judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(report.steps[0].layer, Layer::Source);
}

#[tokio::test]
async fn a_name_outside_the_cluster_is_followed_to_the_pod_it_resolves_to() {
    let agents = FakeAgents {
        resolves_to: vec![ip("10.244.2.3")],
        ..listening_everywhere()
    };
    let ev = collect(&snapshot(), &agents, &request("payments.example.internal:8080")).await;
    assert_eq!(ev.destination, Destination::Pod);
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!()
    };
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        endpoints[0].pod.as_ref().map(|p| p.name.as_str()),
        Some("payments-1")
    );
    assert!(matches!(
        endpoints[0].live,
        LiveFact::Tcp(Fact::Known(TcpOutcome::Connected { .. }))
    ));
}

#[tokio::test]
async fn unreadable_policies_leave_each_flow_not_evaluated_with_the_failed_read() {
    let mut snap = snapshot();
    let failure = ToolFailure::Forbidden {
        action: "list networkpolicies in all namespaces".into(),
        message: "no".into(),
        access: None,
    };
    snap.policies = Fact::Unknown(failure.clone());
    let ev = collect(&snap, &listening_everywhere(), &request("svc/payments:80")).await;
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!()
    };
    assert!(
        endpoints
            .iter()
            .all(|e| e.policy == PolicyCheck::NotEvaluated(failure.clone()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_policy_denies_does_not_wait_for_the_witnesses_at_its_pod() {
    let mut snap = snapshot();
    snap.policies = Fact::Known(list(json!([{
        "metadata": {"namespace": "shop", "name": "default-deny"},
        "spec": {"podSelector": {"matchLabels": {"app": "payments"}}, "policyTypes": ["Ingress"]}
    }])));
    let mut agents = FakeAgents {
        capture_window: Some(Duration::from_secs(3600)),
        ..listening_everywhere()
    };
    for pod in ["10.244.2.2", "10.244.2.3"] {
        agents.tcp.insert(ip(pod), TcpOutcome::Timeout { after_ms: 1000 });
    }
    let ev = collect(&snap, &agents, &request("svc/payments:80")).await;
    assert_no_capture(&ev, "NetworkPolicy denies");
    // Not even started: node-b's agent is never asked.
    assert_eq!(asked_nodes(&agents), ["node-a"]);
    let report = judge::judge(&ev, 0);
    assert_eq!(report.failing_layer, Some(Layer::NetworkPolicy), "{report:#?}");
}

/// The nodes asked, in order, and for node-b what each request held.
fn asked_nodes(agents: &FakeAgents) -> Vec<String> {
    agents
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(node, _)| node.clone())
        .collect()
}

/// The probes of each request to `node`, by kind and address.
fn requests_to(agents: &FakeAgents, node: &str) -> Vec<Vec<String>> {
    let described = |p: &Probe| match p {
        Probe::PodListeners(l) => format!("podListeners {}", l.pod_ip),
        Probe::Capture(c) => format!("capture {}", c.pod_ip.map(|i| i.to_string()).unwrap_or_default()),
        other => other.kind().to_string(),
    };
    agents
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == node)
        .map(|(_, r)| r.probes.iter().map(described).collect())
        .collect()
}

#[tokio::test]
async fn a_healthy_check_asks_only_the_source_agent() {
    let agents = listening_everywhere();
    collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    assert_eq!(asked_nodes(&agents), ["node-a"]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_asks_only_its_pods_sockets_once_the_source_answered() {
    let agents = FakeAgents {
        capture_window: Some(Duration::from_secs(3600)),
        ..listening_everywhere()
    }
    .with_tcp("10.244.2.3", TcpOutcome::Refused { rtt_us: 80 });
    let started = tokio::time::Instant::now();
    let ev = collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests_to(&agents, "node-b"), [["podListeners 10.244.2.3"]]);
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!("{:?}", ev.endpoints)
    };
    let listeners = |addr: &str| {
        endpoints
            .iter()
            .find(|e| e.ip == ip(addr))
            .map(|e| e.listeners.clone())
    };
    assert!(matches!(listeners("10.244.2.3"), Some(Fact::Known(l)) if l.len() == 1));
    assert!(matches!(
        listeners("10.244.2.2"),
        Some(Fact::Unknown(ToolFailure::NotProbed(_)))
    ));
    assert_no_capture(&ev, "");
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_starts_the_witnesses_and_drops_them_once_every_connection_was_made() {
    let agents = FakeAgents {
        capture_window: Some(Duration::from_secs(3600)),
        source_delay: Duration::from_millis(400),
        ..listening_everywhere()
    };
    let started = tokio::time::Instant::now();
    let ev = collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Started at the grace, while the source was still probing, then abandoned.
    assert_eq!(requests_to(&agents, "node-b").len(), 1);
    assert_no_capture(&ev, "not needed");
    assert_eq!(judge::judge(&ev, 0).verdict, Verdict::Reachable);
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_with_a_refused_connection_asks_its_pods_sockets_on_their_own() {
    let agents = FakeAgents {
        capture_window: Some(Duration::from_secs(3600)),
        source_delay: Duration::from_millis(400),
        ..listening_everywhere()
    }
    .with_tcp("10.244.2.3", TcpOutcome::Refused { rtt_us: 80 });
    let started = tokio::time::Instant::now();
    collect(&snapshot(), &agents, &request("svc/payments:80")).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let to_b = requests_to(&agents, "node-b");
    assert_eq!(to_b.len(), 2, "{to_b:?}");
    assert_eq!(to_b[1], ["podListeners 10.244.2.3"]);
}

/// The snapshot plus `svc/stats`: port 8125/UDP over the payments pods.
fn with_udp_service() -> Snapshot {
    let mut snap = snapshot();
    if let Fact::Known(services) = &mut snap.services {
        services.extend(list::<k8s_openapi::api::core::v1::Service>(json!([{
            "metadata": {"namespace": "shop", "name": "stats"},
            "spec": {"clusterIP": "10.96.1.2", "selector": {"app": "payments"},
                     "ports": [{"port": 8125, "targetPort": 8125, "protocol": "UDP"}]}}])));
    }
    if let Fact::Known(slices) = &mut snap.slices {
        slices.extend(list::<k8s_openapi::api::discovery::v1::EndpointSlice>(json!([{
            "metadata": {"namespace": "shop", "name": "stats-x",
                         "labels": {"kubernetes.io/service-name": "stats"}},
            "addressType": "IPv4", "ports": [{"port": 8125, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.244.2.2"], "targetRef": {"kind": "Pod", "name": "payments-0"}},
                {"addresses": ["10.244.2.3"], "targetRef": {"kind": "Pod", "name": "payments-1"}}]}])));
    }
    snap
}

#[tokio::test]
async fn a_udp_service_port_is_probed_with_datagrams_and_their_replies_land_on_udp_facts() {
    let agents = FakeAgents {
        resolves_to: vec![ip("10.96.1.2")],
        ..Default::default()
    };
    let ev = collect(&with_udp_service(), &agents, &request("svc/stats:8125")).await;
    let sent: Vec<Probe> = agents
        .requests
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, r)| r.probes.clone())
        .collect();
    assert!(!sent.iter().any(|p| matches!(p, Probe::Tcp(t) if t.port == 8125)));
    assert_eq!(sent.iter().filter(|p| matches!(p, Probe::Udp(_))).count(), 3);
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!("{:?}", ev.endpoints)
    };
    for e in endpoints {
        assert!(
            matches!(e.live, LiveFact::Udp(Fact::Known(UdpOutcome::Answered { .. }))),
            "{e:?}"
        );
    }
    let cip = ev.cluster_ip.as_ref().unwrap();
    assert!(matches!(
        cip.live,
        LiveFact::Udp(Fact::Known(UdpOutcome::Answered { .. }))
    ));
    let report = judge::judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    // The report's TCP column for a datagram-probed endpoint reads as it always has.
    assert_eq!(
        report.endpoints[0].tcp,
        "not probed: a UDP port: probed with datagrams, not TCP"
    );
}

#[tokio::test]
async fn one_refusing_udp_endpoint_of_two_fails_application_with_its_share() {
    let agents = FakeAgents {
        resolves_to: vec![ip("10.96.1.2")],
        udp: BTreeMap::from([(ip("10.244.2.3"), UdpOutcome::Refused { rtt_us: 50 })]),
        ..Default::default()
    };
    let ev = collect(&with_udp_service(), &agents, &request("svc/stats:8125")).await;
    let report = judge::judge(&ev, 0);
    assert_eq!(report.failing_layer, Some(Layer::Application), "{report:#?}");
    let step = report
        .steps
        .iter()
        .find(|s| s.layer == Layer::Application)
        .unwrap();
    assert!(
        step.summary
            .starts_with("1 of 2 endpoints has nothing bound to the port: shop/payments-1"),
        "{}",
        step.summary
    );
    assert!(
        step.summary.contains("about 1 in 2 new connections fail"),
        "{}",
        step.summary
    );
}

/// The shop snapshot with a pod `admin/vault-0` on node-c that an `admin/deny-all` policy isolates.
fn with_admin_vault() -> Snapshot {
    let mut snap = snapshot();
    let Fact::Known(pods) = &mut snap.pods else {
        unreachable!()
    };
    pods.extend(list::<k8s_openapi::api::core::v1::Pod>(json!([{
        "metadata": {"namespace": "admin", "name": "vault-0", "labels": {"app": "vault"}},
        "spec": {"nodeName": "node-c", "containers": [{"name": "vault"}]},
        "status": {"phase": "Running", "podIP": "10.244.3.9",
                   "conditions": [{"type": "Ready", "status": "True"}]}}])));
    snap.namespaces = Fact::Known(list(json!([{"metadata": {"name": "shop"}},
                                              {"metadata": {"name": "admin"}}])));
    snap.policies = Fact::Known(list(json!([{
        "metadata": {"namespace": "admin", "name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}])));
    snap
}

#[tokio::test(start_paused = true)]
async fn a_check_into_another_namespace_names_it_foreign_and_its_withheld_report_names_nothing_there() {
    let agents = listening_everywhere().with_tcp("10.244.3.9", TcpOutcome::Timeout { after_ms: 1000 });
    let snap = with_admin_vault();
    let ev = collect(&snap, &agents, &request("pod/vault-0.admin:9999")).await;
    assert_eq!(
        disclose::foreign_namespaces(&ev).into_iter().collect::<Vec<_>>(),
        ["admin"]
    );
    let full = verdict(&snap, &ev, 0);
    assert_eq!(full.failing_layer, Some(Layer::NetworkPolicy), "{full:#?}");
    let full_json = serde_json::to_string(&full).unwrap();
    for detail in ["10.244.3.9", "node-c", "deny-all"] {
        assert!(
            full_json.contains(detail),
            "the full report names {detail}: {full_json}"
        );
    }
    let reduced = serde_json::to_string(&disclose::withheld(&full)).unwrap();
    for detail in ["10.244.3.9", "node-c", "deny-all", "admin", "vault"] {
        assert!(!reduced.contains(detail), "{detail} in {reduced}");
    }
}

#[tokio::test]
async fn a_check_within_the_source_namespace_has_no_foreign_namespace() {
    let ev = collect(&snapshot(), &listening_everywhere(), &request("svc/payments:80")).await;
    assert!(disclose::foreign_namespaces(&ev).is_empty());
}

/// [`snapshot`] with the cluster DNS (kube-dns, one CoreDNS pod on node-b) and checkout's
/// egress limited to the DNS pod on the given ports (`[(53, "UDP")]`).
fn with_dns_egress(ports: &[(u16, &str)]) -> Snapshot {
    let mut snap = snapshot();
    let Fact::Known(pods) = &mut snap.pods else {
        unreachable!()
    };
    pods.extend(list::<k8s_openapi::api::core::v1::Pod>(json!([{
        "metadata": {"namespace": "kube-system", "name": "coredns-0", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"nodeName": "node-b", "containers": [{"name": "coredns"}]},
        "status": {"phase": "Running", "podIP": "10.244.2.53",
                   "conditions": [{"type": "Ready", "status": "True"}]}}])));
    let Fact::Known(services) = &mut snap.services else {
        unreachable!()
    };
    services.extend(list::<k8s_openapi::api::core::v1::Service>(json!([{
        "metadata": {"namespace": "kube-system", "name": "kube-dns"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"},
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}])));
    let Fact::Known(slices) = &mut snap.slices else {
        unreachable!()
    };
    slices.extend(list::<k8s_openapi::api::discovery::v1::EndpointSlice>(json!([{
        "metadata": {"namespace": "kube-system", "name": "kube-dns-x",
                     "labels": {"kubernetes.io/service-name": "kube-dns"}},
        "addressType": "IPv4",
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.2.53"],
                       "targetRef": {"kind": "Pod", "namespace": "kube-system", "name": "coredns-0"}}]}])));
    let Fact::Known(namespaces) = &mut snap.namespaces else {
        unreachable!()
    };
    namespaces.extend(list::<k8s_openapi::api::core::v1::Namespace>(json!([
        {"metadata": {"name": "kube-system", "labels": {"kubernetes.io/metadata.name": "kube-system"}}}])));
    let ports: Vec<_> = ports
        .iter()
        .map(|(port, protocol)| json!({"port": port, "protocol": protocol}))
        .collect();
    snap.policies = Fact::Known(list(json!([{
        "metadata": {"namespace": "shop", "name": "checkout-egress"},
        "spec": {"podSelector": {"matchLabels": {"app": "checkout"}}, "policyTypes": ["Egress"],
                 "egress": [
                     {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                              "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                      "ports": ports},
                     {"to": [{"podSelector": {"matchLabels": {"app": "payments"}}}]}]}}])));
    snap
}

/// The egress verdict on the source's DNS traffic to each DNS pod.
async fn dns_egress(snap: &Snapshot) -> Vec<PolicyCheck> {
    let ev = collect(snap, &listening_everywhere(), &request("svc/payments:80")).await;
    let dns = ev.dns.expect("the check looks the Service's name up");
    let Fact::Known(cluster_dns) = dns.cluster_dns else {
        panic!("the cluster DNS is read: {:?}", dns.cluster_dns)
    };
    cluster_dns.pods.into_iter().map(|p| p.egress_policy).collect()
}

#[tokio::test]
async fn dns_egress_is_evaluated_for_udp_port_53() {
    let udp_only = dns_egress(&with_dns_egress(&[(53, "UDP")])).await;
    assert!(
        matches!(udp_only[..], [PolicyCheck::Allowed { .. }]),
        "{udp_only:?}"
    );
    let tcp_only = dns_egress(&with_dns_egress(&[(53, "TCP")])).await;
    assert!(
        matches!(tcp_only[..], [PolicyCheck::Denied { egress: Some(_), .. }]),
        "an egress rule for 53/TCP alone leaves DNS's datagrams denied: {tcp_only:?}"
    );
}

/// [`snapshot`] made dual-stack (pods, Service, a slice per family), with payments admitting
/// ingress only from checkout's IPv4 range.
fn dual_stack_with_ipv4_only_ingress() -> Snapshot {
    let pod = |name: &str, node: &str, v4: &str, v6: &str, app: &str| {
        json!({"metadata": {"namespace": "shop", "name": name, "labels": {"app": app}},
               "spec": {"nodeName": node, "containers": [{"name": "app",
                        "ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}],
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    let slice = |family: &str, name: &str, address: &str| {
        json!({"metadata": {"namespace": "shop", "name": name,
                            "labels": {"kubernetes.io/service-name": "payments"}},
               "addressType": family, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [{"addresses": [address], "targetRef": {"kind": "Pod", "name": "payments-0"}}]})
    };
    let mut snap = snapshot();
    snap.pods = Fact::Known(list(json!([
        pod("checkout", "node-a", "10.244.1.2", "fd00:244:1::2", "checkout"),
        pod("payments-0", "node-b", "10.244.2.2", "fd00:244:2::2", "payments"),
    ])));
    snap.services = Fact::Known(list(json!([{
        "metadata": {"namespace": "shop", "name": "payments"},
        "spec": {"clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1", "fd00:96::1"],
                 "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                 "selector": {"app": "payments"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}])));
    snap.slices = Fact::Known(list(json!([
        slice("IPv4", "payments-v4", "10.244.2.2"),
        slice("IPv6", "payments-v6", "fd00:244:2::2"),
    ])));
    snap.policies = Fact::Known(list(json!([{
        "metadata": {"namespace": "shop", "name": "payments-from-ipv4"},
        "spec": {"podSelector": {"matchLabels": {"app": "payments"}},
                 "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.1.0/24"}}]}]}}])));
    snap
}

#[tokio::test]
async fn each_endpoint_address_is_evaluated_in_its_own_family() {
    let snap = dual_stack_with_ipv4_only_ingress();
    let mut agents = listening_everywhere();
    agents.resolves_to = vec![ip("10.96.1.1"), ip("fd00:96::1")];
    agents.listening = vec![(ip("::"), 8080)];
    let ev = collect(&snap, &agents, &request("svc/payments:80")).await;
    let EndpointsFacts::Known(endpoints) = &ev.endpoints else {
        panic!("{:?}", ev.endpoints)
    };
    let policy_at = |address: &str| {
        endpoints
            .iter()
            .find(|e| e.ip == ip(address))
            .map(|e| e.policy.clone())
            .unwrap_or_else(|| panic!("no endpoint {address} in {endpoints:?}"))
    };
    assert!(
        matches!(policy_at("10.244.2.2"), PolicyCheck::Allowed { .. }),
        "{:?}",
        policy_at("10.244.2.2")
    );
    assert!(
        matches!(
            policy_at("fd00:244:2::2"),
            PolicyCheck::Denied { ingress: Some(_), .. }
        ),
        "the IPv4 ipBlock admits nothing over IPv6: {:?}",
        policy_at("fd00:244:2::2")
    );
}

#[tokio::test]
async fn a_repeated_check_sends_only_the_live_probes_again_and_tallies_each_round() {
    let agents = listening_everywhere();
    let repetition = crate::check::repeat::Repetition::Rounds(4);
    let ev =
        crate::check::collect_repeated(&snapshot(), &agents, &request("svc/payments:80"), repetition).await;
    let facts = ev.repeats.as_ref().expect("a repeated check has tallies");
    assert_eq!(facts.rounds, 4);
    let endpoints: Vec<_> = facts
        .probes
        .iter()
        .filter(|p| matches!(p.probed, crate::check::repeat::Probed::Endpoint { .. }))
        .collect();
    assert_eq!(endpoints.len(), 2);
    assert!(
        endpoints
            .iter()
            .all(|p| p.attempts() == 4 && p.intermittent().is_empty())
    );
    // The rounds after the first ask the source only, and no witness.
    let requests = agents.requests.lock().unwrap();
    let later: Vec<&ProbeRequest> = requests.iter().skip(requests.len() - 3).map(|(_, r)| r).collect();
    assert!(
        later.iter().all(|r| r
            .probes
            .iter()
            .all(|p| matches!(p, Probe::Tcp(_) | Probe::Dns(_)))),
        "{later:?}"
    );
    assert_eq!(judge::judge(&ev, 0).verdict, Verdict::Reachable);
}
