//! Builders for the judge's tests: evidence built by hand, from a healthy TCP check
//! (`healthy()`) and a healthy UDP one (`healthy_udp()`), and the assertions every layer uses.

pub(super) use std::collections::BTreeMap;
pub(super) use std::net::{IpAddr, SocketAddr};

pub(super) use netdiag_proto::{
    DnsAnswer, DnsCandidate, DnsOutcome, DnsResult, ListeningSocket, RecordType, ResolvConfSummary,
    TcpOutcome, Transport, UdpOutcome, UnreachableReason,
};

pub(super) use super::outcomes::Certainty;
pub(super) use super::sockets::ListenerFinding;
pub(super) use super::*;
pub(super) use crate::check::report::Code;
pub(super) use crate::check::target::PortRef;
pub(super) use crate::cluster::endpoints::{Conditions, Topology, TrafficPolicy};
pub(super) use crate::policy::{PolicyRef, Protocol};

pub(super) fn forbidden(action: &str) -> ToolFailure {
    ToolFailure::Forbidden {
        action: action.into(),
        message: "forbidden".into(),
        access: None,
    }
}

pub(super) fn agent_missing(node: &str) -> ToolFailure {
    ToolFailure::AgentMissing {
        node: node.into(),
        namespace: "netdiag".into(),
        selector: "app.kubernetes.io/name=netdiag-agent".into(),
    }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) const VIP: &str = "10.96.12.7";

pub(super) const DNS_VIP: &str = "10.96.0.10";

pub(super) fn pod(ns: &str, name: &str, node: &str, ip_: &str) -> PodFacts {
    PodFacts {
        namespace: ns.into(),
        name: name.into(),
        phase: "Running".into(),
        node: Some(node.into()),
        ip: Some(ip(ip_)),
        host_ips: vec![ip(if node == "node-a" {
            "192.168.0.1"
        } else {
            "192.168.0.2"
        })],
        ready: true,
        terminating: false,
        host_network: false,
        container_ports: vec![ServingPort {
            name: Some("http".into()),
            port: 8080,
            protocol: Protocol::Tcp,
            container: "app".into(),
            sidecar: false,
        }],
        labels: BTreeMap::from([
            (
                "app".to_string(),
                name.split('-').next().unwrap_or(name).to_string(),
            ),
            ("tier".to_string(), "backend".to_string()),
        ]),
    }
}

/// `subject` (`NAMESPACE/POD` or an address) is isolated by `policy` and no rule allows the flow
/// `other` on `port`/`protocol`.
pub(super) fn denied_side(
    subject: &str,
    other: FlowEnd,
    policy: &str,
    port: u16,
    protocol: &str,
) -> Box<DeniedSide> {
    let (ns, name) = policy.split_once('/').unwrap();
    let policies = NonEmpty::new(PolicyRef {
        namespace: ns.into(),
        name: name.into(),
    });
    Box::new(DeniedSide {
        subject: subject.parse().unwrap(),
        other,
        cause: DenialCause::Isolated(policies.clone()),
        policies: Some(policies),
        port,
        protocol: protocol.parse().unwrap(),
        excepted_by: None,
    })
}

/// Egress to `peer` (`NAMESPACE/POD` or an address).
pub(super) fn to(peer: &str) -> FlowEnd {
    FlowEnd::To(peer.parse().unwrap())
}

/// Ingress from `peer` (`NAMESPACE/POD` or an address).
pub(super) fn from(peer: &str) -> FlowEnd {
    FlowEnd::From(peer.parse().unwrap())
}

pub(super) fn listening(addr: &str, port: u16) -> ListeningSocket {
    ListeningSocket {
        protocol: Transport::Tcp,
        local_ip: ip(addr),
        local_port: port,
        inode: 1,
        v6_only: None,
    }
}

pub(super) fn connected() -> Fact<TcpOutcome> {
    Fact::Known(TcpOutcome::Connected { rtt_us: 150 })
}

pub(super) fn timeout() -> Fact<TcpOutcome> {
    Fact::Known(TcpOutcome::Timeout { after_ms: 1000 })
}

pub(super) fn refused() -> Fact<TcpOutcome> {
    Fact::Known(TcpOutcome::Refused { rtt_us: 90 })
}

pub(super) fn allowed() -> PolicyCheck {
    PolicyCheck::Allowed {
        detail: "allowed: no NetworkPolicy isolates either side".into(),
    }
}

pub(super) fn ingress_denied() -> PolicyCheck {
    PolicyCheck::Denied {
        egress: None,
        ingress: Some(denied_side(
            "shop/payments-0",
            from("shop/checkout"),
            "shop/default-deny",
            8080,
            "TCP",
        )),
    }
}

pub(super) fn endpoint(p: PodFacts) -> EndpointFacts {
    let node = p.node.clone();
    EndpointFacts {
        ip: p.ip.unwrap(),
        port: Some(8080),
        pod: Some(p),
        slice: Some(NamespacedName::new("shop", "payments-abcde")),
        conditions: Conditions::READY,
        topology: Topology {
            node,
            ..Topology::default()
        },
        live: LiveFact::Tcp(connected()),
        listeners: Fact::Known(vec![listening("0.0.0.0", 8080)]),
        policy: allowed(),
        entered_policy: None,
    }
}

pub(super) fn dns_result(name: &str, outcome: DnsOutcome) -> DnsResult {
    let server: SocketAddr = format!("{DNS_VIP}:53").parse().unwrap();
    DnsResult {
        name: name.into(),
        record_type: RecordType::A,
        resolv_conf: ResolvConfSummary {
            path: "/proc/7/root/etc/resolv.conf".into(),
            nameservers: vec![server],
            search: vec![
                "shop.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            ndots: 5,
        },
        candidates: vec![
            DnsCandidate {
                name: format!("{name}.shop.svc.cluster.local."),
                server,
                outcome: DnsOutcome::Nxdomain,
                rtt_us: 400,
                truncated: false,
                cnames: vec![],
            },
            DnsCandidate {
                name: format!("{name}.svc.cluster.local."),
                server,
                outcome: outcome.clone(),
                rtt_us: 800,
                truncated: false,
                cnames: vec![],
            },
        ],
        answer: DnsAnswer {
            name: Some(format!("{name}.svc.cluster.local.")),
            outcome,
        },
    }
}

pub(super) fn resolved_vip() -> DnsOutcome {
    DnsOutcome::Resolved {
        addresses: vec![ip(VIP)],
        ttl: 5,
    }
}

pub(super) fn cluster_dns() -> ClusterDnsFacts {
    ClusterDnsFacts {
        service_ip: Some(ip(DNS_VIP)),
        pods: vec![DnsPodFacts {
            pod: Some(NamespacedName::new("kube-system", "coredns-0")),
            ip: ip("10.244.1.2"),
            ready: true,
            direct: Fact::Known(DnsOutcome::Resolved {
                addresses: vec![ip(DNS_VIP)],
                ttl: 5,
            }),
            egress_policy: allowed(),
        }],
    }
}

pub(super) fn payments_service() -> ServiceSpecFacts {
    ServiceSpecFacts {
        namespace: "shop".into(),
        name: "payments".into(),
        service_type: "ClusterIP".into(),
        headless: false,
        external_name: None,
        ports: vec![ServicePortFacts {
            name: Some("http".into()),
            port: 80,
            protocol: Protocol::Tcp,
            target_port: PortRef::Name("http".into()),
            node_port: None,
        }],
        alias_of: None,
        entry: None,
        external_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: None,
        load_balancer_source_ranges: vec![],
        internal_traffic_policy: TrafficPolicy::Cluster,
        traffic_distribution: None,
        requested: PortRef::Number(80),
        requested_protocol: None,
        selector: Some(BTreeMap::from([("app".to_string(), "payments".to_string())])),
        selected_pods: vec![
            pod("shop", "payments-0", "node-a", "10.244.1.14"),
            pod("shop", "payments-1", "node-b", "10.244.2.14"),
        ],
    }
}

/// `shop/checkout` on node-a → `svc/payments.shop:80`, two endpoints (node-a and node-b), all healthy.
pub(super) fn healthy() -> Evidence {
    let svc = payments_service();
    let endpoints = svc.selected_pods.iter().cloned().map(endpoint).collect();
    Evidence {
        from: NamespacedName::new("shop", "checkout"),
        to: "svc/payments.shop:80".into(),
        destination: Destination::Service,
        timeout_ms: 1000,
        source: SourceFacts::Found {
            pod: pod("shop", "checkout", "node-a", "10.244.1.5"),
            agent: AgentFacts::Answered {
                agent_pod: "netdiag/agent-a".into(),
                netns: "/proc/7/ns/net".into(),
            },
        },
        dns: Some(DnsFacts {
            name: "payments.shop".into(),
            result: Fact::Known(dns_result("payments.shop", resolved_vip())),
            expected: vec![ip(VIP)],
            service_guess: Some(NamespacedName::new("shop", "payments")),
            same_name_elsewhere: vec![],
            names_in_namespace: vec!["payments".into(), "checkout".into()],
            cluster_dns: Fact::Known(cluster_dns()),
        }),
        service: ServiceFacts::Found(Box::new(svc)),
        endpoints: EndpointsFacts::Known(endpoints),
        cluster_ip: Some(ClusterIpFacts {
            ip: ip(VIP),
            port: 80,
            live: LiveFact::Tcp(connected()),
        }),
        agents: Some(AgentPods {
            namespace: "netdiag".into(),
            selector: "app.kubernetes.io/name=netdiag-agent".into(),
        }),
        secondary: None,
        node_witnesses: vec![NodeWitness {
            node: "node-b".into(),
            ip: ip("192.168.0.2"),
            port: 10250,
            tcp: refused(),
        }],
        witnesses: DatapathWitnesses::default(),
        policy_enforcers: None,
        source_zone: None,
        repeats: None,
    }
}

pub(super) fn endpoints_mut(ev: &mut Evidence) -> &mut Vec<EndpointFacts> {
    match &mut ev.endpoints {
        EndpointsFacts::Known(list) => list,
        _ => panic!("endpoints not known"),
    }
}

pub(super) fn service_mut(ev: &mut Evidence) -> &mut ServiceSpecFacts {
    match &mut ev.service {
        ServiceFacts::Found(svc) => svc,
        _ => panic!("service not found"),
    }
}

pub(super) fn dns_mut(ev: &mut Evidence) -> &mut DnsFacts {
    ev.dns.as_mut().unwrap()
}

pub(super) fn step(report: &Report, layer: Layer) -> &Step {
    report.steps.iter().find(|s| s.layer == layer).unwrap()
}

/// Exactly one failing layer, the given one; every later layer not judged; the exit code of that layer.
pub(super) fn assert_fails_at(report: &Report, layer: Layer) {
    assert_eq!(report.verdict, Verdict::Unreachable, "{report:#?}");
    assert_eq!(report.failing_layer, Some(layer), "{report:#?}");
    assert_eq!(report.reachable, Some(false));
    assert_eq!(report.exit_code(), layer.exit_code());
    let fails: Vec<Layer> = report
        .steps
        .iter()
        .filter(|s| s.status == Status::Fail)
        .map(|s| s.layer)
        .collect();
    assert_eq!(fails, vec![layer], "{report:#?}");
    for s in report.steps.iter().filter(|s| s.layer > layer) {
        assert_eq!(s.status, Status::Skip, "{s:?}");
        assert!(s.summary.starts_with("not judged"), "{s:?}");
    }
    assert_eq!(report.steps.len(), 8);
}

pub(super) fn summary(report: &Report, layer: Layer) -> String {
    step(report, layer).summary.text.clone()
}

/// The code of the layer's step.
pub(super) fn code(report: &Report, layer: Layer) -> Option<Code> {
    step(report, layer).summary.code
}

/// The endpoints layer passing with `ready` (pod names) of `total` endpoints ready.
pub(super) fn ready_of(ready: &[&str], total: usize) -> Finding {
    Finding::Endpoints(EndpointsFinding::Ready {
        ready: NonEmpty::from_vec(ready.iter().map(|n| n.to_string()).collect()).unwrap(),
        total,
    })
}

/// The port `payments_service()` exposes.
pub(super) const PORT_80: ServicePort = ServicePort {
    port: 80,
    protocol: Protocol::Tcp,
};

/// What the layer found, judged on its own from `ev`.
pub(super) fn finding(ev: &Evidence, judge_layer: fn(&Context) -> Judgment) -> Finding {
    *judge_layer(&Context::new(ev)).finding
}

pub(super) fn evidence_text(report: &Report, layer: Layer) -> String {
    step(report, layer)
        .evidence
        .iter()
        .map(|l| l.text.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn answered() -> Fact<UdpOutcome> {
    Fact::Known(UdpOutcome::Answered {
        rtt_us: 300,
        bytes: 12,
    })
}

pub(super) fn silent() -> Fact<UdpOutcome> {
    Fact::Known(UdpOutcome::Silent { after_ms: 1000 })
}

pub(super) fn port_unreachable() -> Fact<UdpOutcome> {
    Fact::Known(UdpOutcome::Refused { rtt_us: 80 })
}

pub(super) fn bound(addr: &str, port: u16) -> ListeningSocket {
    ListeningSocket {
        protocol: Transport::Udp,
        ..listening(addr, port)
    }
}

/// `svc/payments.shop:5353` as a UDP Service port over pods that declare and bind 5353/UDP, every
/// datagram answered.
pub(super) fn healthy_udp() -> Evidence {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.ports = vec![ServicePortFacts {
        name: Some("stats".into()),
        port: 5353,
        protocol: Protocol::Udp,
        target_port: PortRef::Number(5353),
        node_port: None,
    }];
    svc.requested = PortRef::Number(5353);
    for p in &mut svc.selected_pods {
        p.container_ports[0].port = 5353;
        p.container_ports[0].protocol = Protocol::Udp;
    }
    let pods = svc.selected_pods.clone();
    for (e, p) in endpoints_mut(&mut ev).iter_mut().zip(pods) {
        e.pod = Some(p);
        e.port = Some(5353);
        e.live = LiveFact::Udp(answered());
        e.listeners = Fact::Known(vec![bound("0.0.0.0", 5353)]);
    }
    let cip = ev.cluster_ip.as_mut().unwrap();
    cip.port = 5353;
    cip.live = LiveFact::Udp(answered());
    ev
}

pub(super) fn set_udp(ev: &mut Evidence, outcome: Fact<UdpOutcome>) {
    for e in endpoints_mut(ev) {
        e.live = LiveFact::Udp(outcome.clone());
    }
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Udp(outcome);
}
