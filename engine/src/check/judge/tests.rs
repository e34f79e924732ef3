//! Every branch of the judge, with evidence built by hand.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use netdiag_proto::{
    DnsAnswer, DnsCandidate, DnsOutcome, DnsResult, ListeningSocket, RecordType, ResolvConfSummary,
    TcpOutcome, Transport, UnreachableReason,
};

use super::*;
use crate::check::report::Code;
use crate::check::target::PortRef;
use crate::cluster::endpoints::Conditions;
use crate::policy::{PolicyRef, Protocol};

fn forbidden(action: &str) -> ToolFailure {
    ToolFailure::Forbidden {
        action: action.into(),
        message: "forbidden".into(),
    }
}

fn agent_missing(node: &str) -> ToolFailure {
    ToolFailure::AgentMissing {
        node: node.into(),
        namespace: "netdiag".into(),
        selector: "app.kubernetes.io/name=netdiag-agent".into(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const VIP: &str = "10.96.12.7";
const DNS_VIP: &str = "10.96.0.10";

fn pod(ns: &str, name: &str, node: &str, ip_: &str) -> PodFacts {
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

fn denied_side(why: &str, policy: &str, port: u16, protocol: &str) -> DeniedSide {
    let (ns, name) = policy.split_once('/').unwrap();
    DeniedSide {
        why: why.into(),
        policies: Some(NonEmpty::new(PolicyRef {
            namespace: ns.into(),
            name: name.into(),
        })),
        port,
        protocol: protocol.parse().unwrap(),
        admin_rule: None,
    }
}

fn listening(addr: &str, port: u16) -> ListeningSocket {
    ListeningSocket {
        protocol: Transport::Tcp,
        local_ip: ip(addr),
        local_port: port,
        inode: 1,
        v6_only: None,
    }
}

fn connected() -> Fact<TcpOutcome> {
    Fact::Known(TcpOutcome::Connected { rtt_us: 150 })
}

fn timeout() -> Fact<TcpOutcome> {
    Fact::Known(TcpOutcome::Timeout { after_ms: 1000 })
}

fn refused() -> Fact<TcpOutcome> {
    Fact::Known(TcpOutcome::Refused { rtt_us: 90 })
}

fn allowed() -> PolicyCheck {
    PolicyCheck::Allowed {
        detail: "allowed: no NetworkPolicy isolates either side".into(),
    }
}

fn ingress_denied() -> PolicyCheck {
    PolicyCheck::Denied {
        egress: None,
        ingress: Some(denied_side(
            "shop/payments-0 is isolated by shop/default-deny; no rule allows from shop/checkout on 8080/TCP",
            "shop/default-deny",
            8080,
            "TCP",
        )),
    }
}

fn endpoint(p: PodFacts) -> EndpointFacts {
    EndpointFacts {
        ip: p.ip.unwrap(),
        port: Some(8080),
        pod: Some(p),
        slice: Some(NamespacedName::new("shop", "payments-abcde")),
        conditions: Conditions::READY,
        tcp: connected(),
        udp: None,
        listeners: Fact::Known(vec![listening("0.0.0.0", 8080)]),
        policy: allowed(),
    }
}

fn dns_result(name: &str, outcome: DnsOutcome) -> DnsResult {
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
            },
            DnsCandidate {
                name: format!("{name}.svc.cluster.local."),
                server,
                outcome: outcome.clone(),
                rtt_us: 800,
                truncated: false,
            },
        ],
        answer: DnsAnswer {
            name: Some(format!("{name}.svc.cluster.local.")),
            outcome,
        },
    }
}

fn resolved_vip() -> DnsOutcome {
    DnsOutcome::Resolved {
        addresses: vec![ip(VIP)],
        ttl: 5,
    }
}

fn cluster_dns() -> ClusterDnsFacts {
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

fn payments_service() -> ServiceSpecFacts {
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
        }],
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
fn healthy() -> Evidence {
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
            tcp: connected(),
            udp: None,
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
    }
}

fn endpoints_mut(ev: &mut Evidence) -> &mut Vec<EndpointFacts> {
    match &mut ev.endpoints {
        EndpointsFacts::Known(list) => list,
        _ => panic!("endpoints not known"),
    }
}

fn service_mut(ev: &mut Evidence) -> &mut ServiceSpecFacts {
    match &mut ev.service {
        ServiceFacts::Found(svc) => svc,
        _ => panic!("service not found"),
    }
}

fn dns_mut(ev: &mut Evidence) -> &mut DnsFacts {
    ev.dns.as_mut().unwrap()
}

fn step(report: &Report, layer: Layer) -> &Step {
    report.steps.iter().find(|s| s.layer == layer).unwrap()
}

/// Exactly one failing layer, the given one; every later layer not judged; the exit code of that layer.
fn assert_fails_at(report: &Report, layer: Layer) {
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

fn summary(report: &Report, layer: Layer) -> String {
    step(report, layer).summary.text.clone()
}

/// The code of the layer's step.
fn code(report: &Report, layer: Layer) -> Option<Code> {
    step(report, layer).summary.code
}

/// The endpoints layer passing with `ready` (pod names) of `total` endpoints ready.
fn ready_of(ready: &[&str], total: usize) -> Finding {
    Finding::Endpoints(EndpointsFinding::Ready {
        ready: NonEmpty::from_vec(ready.iter().map(|n| n.to_string()).collect()).unwrap(),
        total,
    })
}

/// The port `payments_service()` exposes.
const PORT_80: ServicePort = ServicePort {
    port: 80,
    protocol: Protocol::Tcp,
};

/// What the layer found, judged on its own from `ev`.
fn finding(ev: &Evidence, judge_layer: fn(&Context) -> Judgment) -> Finding {
    judge_layer(&Context::new(ev))
        .finding()
        .cloned()
        .expect("a layer whose findings are values")
}

#[test]
fn healthy_service_is_reachable_with_every_layer_passing() {
    let report = judge(&healthy(), 42);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.failing_layer, None);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.duration_ms, 42);
    let layers: Vec<Layer> = report.steps.iter().map(|s| s.layer).collect();
    assert_eq!(layers, Layer::ALL.to_vec());
    assert!(
        report.steps.iter().all(|s| s.status == Status::Pass),
        "{report:#?}"
    );
    assert_eq!(code(&report, Layer::Source), Some(Code::SourceProbed));
    assert!(matches!(
        finding(&healthy(), judge_dns),
        Finding::Dns(DnsFinding::Resolved {
            via: Some(Via { position: 1, .. }),
            ..
        })
    ));
    assert_eq!(
        finding(&healthy(), judge_endpoints),
        ready_of(&["payments-0", "payments-1"], 2)
    );
    assert!(report.fix.is_empty());
}

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
        e.tcp = Fact::Unknown(agent_missing("node-a"));
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
    assert_eq!(report.fix, ["kubectl auth can-i list pods --all-namespaces"]);
}

#[test]
fn nxdomain_for_a_typo_fails_dns_and_suggests_the_close_service_name() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.name = "paymnts.shop".into();
    dns.service_guess = Some(NamespacedName::new("shop", "paymnts"));
    dns.result = Fact::Known(dns_result("paymnts.shop", DnsOutcome::Nxdomain));
    ev.service = ServiceFacts::Missing {
        namespace: "shop".into(),
        name: "paymnts".into(),
        names_in_namespace: vec!["payments".into()],
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::NoSuchService {
            name: "paymnts.shop".into(),
            outcome: DnsOutcome::Nxdomain,
            service: NamespacedName::new("shop", "paymnts"),
            did_you_mean: Some("payments".into()),
        })
    );
    assert!(
        step(&report, Layer::Dns)
            .evidence
            .iter()
            .any(|e| e.contains("NXDOMAIN"))
    );
}

/// `web/frontend` asks for the short name `payments`, which `web` does not have.
fn short_name_from_web() -> Evidence {
    let mut ev = healthy();
    ev.source = SourceFacts::Found {
        pod: pod("web", "frontend", "node-a", "10.244.1.6"),
        agent: AgentFacts::Answered {
            agent_pod: "netdiag/agent-a".into(),
            netns: "/proc/9/ns/net".into(),
        },
    };
    let dns = dns_mut(&mut ev);
    dns.name = "payments".into();
    dns.service_guess = Some(NamespacedName::new("web", "payments"));
    dns.names_in_namespace = vec!["frontend".into()];
    dns.result = Fact::Known(dns_result("payments", DnsOutcome::Nxdomain));
    ev
}

#[test]
fn short_name_from_another_namespace_fails_dns_and_names_the_real_namespace() {
    let mut ev = short_name_from_web();
    dns_mut(&mut ev).same_name_elsewhere = vec![NamespacedName::new("shop", "payments")];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        code(&report, Layer::Dns),
        Some(Code::DnsShortNameAcrossNamespaces)
    );
    assert!(
        report.fix.iter().any(|f| f.contains("payments.shop")),
        "{:?}",
        report.fix
    );
}

#[test]
fn short_name_whose_service_exists_in_several_namespaces_names_each_of_them() {
    let mut ev = short_name_from_web();
    dns_mut(&mut ev).same_name_elsewhere = vec![
        NamespacedName::new("billing", "payments"),
        NamespacedName::new("shop", "payments"),
    ];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    let Finding::Dns(DnsFinding::ShortNameAcrossNamespaces { services, .. }) = finding(&ev, judge_dns) else {
        panic!("{report:#?}");
    };
    assert_eq!(
        services.to_vec(),
        [
            NamespacedName::new("billing", "payments"),
            NamespacedName::new("shop", "payments")
        ]
    );
    for fqdn in ["payments.billing", "payments.shop"] {
        assert!(
            report.fix.iter().any(|f| f.contains(fqdn)),
            "{fqdn}: {:?}",
            report.fix
        );
    }
}

#[test]
fn refusal_while_the_pod_listens_on_the_port_does_not_claim_a_missing_listener() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.tcp = refused();
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    let s = summary(&report, Layer::Application);
    assert!(
        s.contains("yet it listens on 8080") && s.contains("REJECT"),
        "{s}"
    );
}

#[test]
fn nxdomain_for_an_existing_service_from_cluster_dns_blames_the_dns_server_not_the_service() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result("payments.shop", DnsOutcome::Nxdomain));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::ClusterZoneNotServed {
            outcome: DnsOutcome::Nxdomain,
            fqdn: "payments.shop.svc.cluster.local.".into(),
            service: NamespacedName::new("shop", "payments"),
        })
    );
}

#[test]
fn nxdomain_for_an_existing_service_with_a_resolver_off_cluster_names_resolv_conf() {
    let mut ev = healthy();
    let mut result = dns_result("payments.shop", DnsOutcome::Nxdomain);
    result.resolv_conf.nameservers = vec!["169.254.0.53:53".parse().unwrap()];
    dns_mut(&mut ev).result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::ResolverOffCluster {
            name: "payments.shop".into(),
            outcome: DnsOutcome::Nxdomain,
            existing: Some(NamespacedName::new("shop", "payments")),
            dns_service_ip: ip(DNS_VIP),
        })
    );
    assert!(report.fix[0].contains("dnsPolicy"), "{:?}", report.fix);
}

#[test]
fn nxdomain_for_an_existing_service_never_asked_by_its_full_name_names_the_search_list() {
    let mut ev = healthy();
    let mut result = dns_result("payments.shop", DnsOutcome::Nxdomain);
    result.resolv_conf.search = vec!["shop.svc.cluster.local".into()];
    result.candidates.truncate(1);
    dns_mut(&mut ev).result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    let Finding::Dns(DnsFinding::SearchListIncomplete { search, .. }) = finding(&ev, judge_dns) else {
        panic!("{report:#?}");
    };
    assert_eq!(
        search.map(|s| s.to_vec()),
        Some(vec!["shop.svc.cluster.local".to_string()])
    );
}

#[test]
fn external_name_service_is_undetermined_and_gives_the_check_that_probes_its_host() {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.service_type = "ExternalName".into();
    svc.external_name = Some("payments.example.com".into());
    svc.selector = None;
    svc.selected_pods.clear();
    ev.endpoints = EndpointsFacts::Known(vec![]);
    ev.cluster_ip = None;
    dns_mut(&mut ev).expected.clear();
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined, "{report:#?}");
    assert_eq!(step(&report, Layer::Service).status, Status::Pass);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::ExternalName {
            service: NamespacedName::new("shop", "payments"),
            external: "payments.example.com".into(),
        })
    );
    assert_eq!(step(&report, Layer::PodNetwork).status, Status::Undetermined);
    assert_eq!(
        report.fix,
        ["kubectl netdiag check --from shop/checkout --to payments.example.com:80"]
    );
}

#[test]
fn dns_timeout_with_silent_dns_pods_is_the_dns_server_down() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsServerDown));
}

#[test]
fn dns_timeout_while_dns_pods_answer_directly_blames_the_dns_service_ip() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsServiceIpNotProxied));
}

#[test]
fn dns_timeout_without_ready_dns_endpoints_says_so() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].ready = false;
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsNoReadyPods));
}

#[test]
fn dns_refused_rcode_via_the_service_ip_is_the_server_declining_not_an_unproxied_ip() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result("payments.shop", DnsOutcome::Refused));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsRefused));
}

#[test]
fn dns_timeout_with_egress_to_dns_denied_is_a_network_policy_failure() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
        c.pods[0].egress_policy = PolicyCheck::Denied {
            egress: Some(denied_side(
                "shop/checkout is isolated by shop/egress-lockdown; no rule allows to kube-system/coredns-0 on 53/UDP",
                "shop/egress-lockdown",
                53,
                "UDP",
            )),
            ingress: None,
        };
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert_eq!(step(&report, Layer::Dns).status, Status::Skip);
    assert!(matches!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::BlockedByPolicy { denials: DnsDenials(sides), .. })
            if sides.len() == 1 && sides[0].port == 53
    ));
    assert_eq!(step(&report, Layer::Service).status, Status::Pass);
    assert_eq!(step(&report, Layer::Endpoints).status, Status::Pass);
    assert!(summary(&report, Layer::NetworkPolicy).contains("shop/egress-lockdown"));
    assert_eq!(
        report.fix,
        [
            "allow egress to pods with k8s-app=kube-dns in namespace kube-system on port 53/UDP and 53/TCP in \
             shop/egress-lockdown, or add a NetworkPolicy selecting app=checkout in namespace shop that allows it",
            "kubectl -n shop get networkpolicy egress-lockdown -o yaml",
        ]
    );
    let evidence = &step(&report, Layer::NetworkPolicy).evidence;
    assert!(
        evidence.iter().any(|e| e.contains("@10.96.0.10:53 → timed out")),
        "{evidence:?}"
    );
}

#[test]
fn dns_blocked_by_policy_stays_the_one_failing_layer_when_the_service_has_no_ready_pods_too() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
        c.pods[0].egress_policy = PolicyCheck::Denied {
            egress: Some(denied_side(
                "shop/checkout is isolated by shop/egress-lockdown",
                "shop/egress-lockdown",
                53,
                "UDP",
            )),
            ingress: None,
        };
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions.ready = false;
    }
    for p in &mut service_mut(&mut ev).selected_pods {
        p.ready = false;
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    let endpoints = step(&report, Layer::Endpoints);
    assert_eq!(endpoints.status, Status::Skip);
    assert!(
        endpoints.summary.contains("judged at network-policy"),
        "{endpoints:?}"
    );
    assert_eq!(
        endpoints.summary.code,
        Some(Code::EndpointsNoneReady),
        "{endpoints:?}"
    );
}

#[test]
fn dns_timeout_with_unevaluated_dns_egress_policy_is_undetermined_not_dns_down() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
        c.pods[0].egress_policy =
            PolicyCheck::NotEvaluated(forbidden("list networkpolicies in all namespaces"));
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined, "{report:#?}");
    assert_eq!(report.failing_layer, None);
    let dns = step(&report, Layer::Dns);
    assert_eq!(dns.status, Status::Undetermined);
    assert_eq!(dns.summary.code, Some(Code::DnsPolicyNotEvaluated), "{dns:?}");
    assert!(
        dns.evidence
            .iter()
            .any(|e| e.contains("forbidden to list networkpolicies")),
        "{dns:?}"
    );
}

#[test]
fn dns_answer_that_is_not_the_service_address_fails_dns() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result(
        "payments.shop",
        DnsOutcome::Resolved {
            addresses: vec![ip("10.96.99.99")],
            ttl: 5,
        },
    ));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert!(matches!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::WrongAddress { expected, .. }) if expected == [ip(VIP)]
    ));
}

#[test]
fn dns_probe_that_could_not_run_is_undetermined() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Unknown(ToolFailure::Agent {
        detail: "agent timed out".into(),
    });
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(step(&report, Layer::Dns).status, Status::Undetermined);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsProbeFailed));
}

#[test]
fn a_port_the_service_does_not_expose_fails_service() {
    let mut ev = healthy();
    service_mut(&mut ev).requested = PortRef::Number(81);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::PortNotExposed {
            service: NamespacedName::new("shop", "payments"),
            requested: PortRef::Number(81),
            requested_protocol: None,
            exposed: payments_service().ports,
        })
    );
}

#[test]
fn named_target_port_no_selected_pod_declares_fails_service() {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    for p in &mut svc.selected_pods {
        p.container_ports[0].name = Some("web".into());
    }
    // The EndpointSlice controller leaves such pods out.
    ev.endpoints = EndpointsFacts::Known(vec![]);
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NamedPortUndeclared {
            service: NamespacedName::new("shop", "payments"),
            port: PORT_80,
            name: "http".into(),
            selected: 2,
        })
    );
    assert!(step(&report, Layer::Service).evidence[0].contains("declares web:8080"));
}

#[test]
fn wrong_numeric_target_port_fails_service_when_pods_listen_elsewhere() {
    let mut ev = healthy();
    service_mut(&mut ev).ports[0].target_port = PortRef::Number(9090);
    for e in endpoints_mut(&mut ev) {
        e.port = Some(9090);
        e.tcp = refused();
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::TargetPortNotListening {
            service: NamespacedName::new("shop", "payments"),
            port: PORT_80,
            target: 9090,
            listening: NonEmpty::new(8080),
        })
    );
    assert!(
        report
            .fix
            .iter()
            .any(|f| f.contains("/spec/ports/0/targetPort") && f.contains(":8080")),
        "{:?}",
        report.fix
    );
}

#[test]
fn numeric_target_port_the_pods_declare_but_nothing_listens_is_application() {
    let mut ev = healthy();
    service_mut(&mut ev).ports[0].target_port = PortRef::Number(8080);
    for e in endpoints_mut(&mut ev) {
        e.tcp = refused();
        e.listeners = Fact::Known(vec![]);
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    let s = summary(&report, Layer::Application);
    assert!(
        s.starts_with("all 2 endpoints refuse: ")
            && s.ends_with("nothing in the pod listens on any TCP port (wanted 8080)"),
        "{s}"
    );
    assert_eq!(step(&report, Layer::ServiceProxy).status, Status::Pass);
}

#[test]
fn selector_matching_no_pods_fails_endpoints() {
    let mut ev = healthy();
    service_mut(&mut ev).selected_pods.clear();
    ev.endpoints = EndpointsFacts::Known(vec![]);
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::SelectorMatchesNoPods {
            service: NamespacedName::new("shop", "payments"),
            selector: "app=payments".into(),
        })
    );
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NamedPortUnresolved {
            port: PORT_80,
            name: "http".into(),
        })
    );
    assert!(report.fix.iter().any(|f| f.contains("--show-labels")));
}

#[test]
fn pods_selected_but_not_ready_fail_endpoints() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.ready = false;
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions.ready = false;
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::NoneReady {
            service: NamespacedName::new("shop", "payments"),
            selected: 2,
            selector: "app=payments".into(),
        })
    );
    assert!(
        step(&report, Layer::Endpoints)
            .evidence
            .iter()
            .any(|e| e.contains("Ready=False"))
    );
}

#[test]
fn partially_ready_endpoints_pass_and_list_the_unready_ones() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].conditions.ready = false;
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(finding(&ev, judge_endpoints), ready_of(&["payments-0"], 2));
    assert_eq!(evidence_text(&report, Layer::Endpoints), "not ready: payments-1");
}

#[test]
fn ingress_denied_and_probes_timing_out_fail_network_policy() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
        e.tcp = timeout();
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: timeout(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    let s = summary(&report, Layer::NetworkPolicy);
    assert!(
        s.starts_with("ingress to shop/payments-0") && s.contains("shop/default-deny"),
        "{s}"
    );
    assert_eq!(
        report.fix,
        [
            "allow ingress from pods with app=checkout in namespace shop to port 8080/TCP in shop/default-deny, \
             or add a NetworkPolicy selecting app=payments in namespace shop that allows it",
            "kubectl -n shop get networkpolicy default-deny -o yaml",
        ]
    );
    assert!(
        step(&report, Layer::NetworkPolicy)
            .evidence
            .iter()
            .all(|e| e.contains("timed out"))
    );
}

#[test]
fn ingress_fix_names_a_pod_without_labels_and_falls_back_to_all_labels_without_an_app_label() {
    let mut ev = healthy();
    if let SourceFacts::Found { pod, .. } = &mut ev.source {
        pod.labels.clear();
    }
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::Denied {
            egress: None,
            ingress: Some(DeniedSide {
                why: "isolated".into(),
                policies: NonEmpty::from_vec(
                    ["a", "b", "c", "d"]
                        .map(|name| PolicyRef {
                            namespace: "shop".into(),
                            name: name.into(),
                        })
                        .to_vec(),
                ),
                port: 8080,
                protocol: Protocol::Tcp,
                admin_rule: None,
            }),
        };
        e.tcp = timeout();
        if let Some(p) = &mut e.pod {
            p.labels = BTreeMap::from([
                ("role".to_string(), "pay".to_string()),
                ("tier".to_string(), "x".to_string()),
            ]);
        }
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert_eq!(
        report.fix,
        [
            "allow ingress from pod shop/checkout (it has no labels to select it by) to port 8080/TCP in one of \
             shop/a, shop/b, shop/c, shop/d, or add a NetworkPolicy selecting role=pay,tier=x in namespace shop \
             that allows it",
            "kubectl -n shop get networkpolicy a -o yaml",
            "kubectl -n shop get networkpolicy b -o yaml",
            "kubectl -n shop get networkpolicy c -o yaml",
        ]
    );
}

#[test]
fn egress_denied_fails_network_policy_naming_the_source() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::Denied {
            egress: Some(denied_side(
                "shop/checkout is isolated by shop/lockdown; no rule allows to shop/payments-0 on 8080/TCP",
                "shop/lockdown",
                8080,
                "TCP",
            )),
            ingress: None,
        };
        e.tcp = timeout();
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert!(summary(&report, Layer::NetworkPolicy).starts_with("egress from shop/checkout denied"));
    assert_eq!(
        report.fix,
        [
            "allow egress to pods with app=payments in namespace shop on port 8080/TCP in shop/lockdown, \
             or add a NetworkPolicy selecting app=checkout in namespace shop that allows it",
            "kubectl -n shop get networkpolicy lockdown -o yaml",
        ]
    );
}

#[test]
fn a_baseline_deny_with_no_isolating_policy_advises_a_new_policy_never_an_empty_list() {
    use crate::policy::{AdminAction, AdminKind, AdminPolicyRef, AdminRuleRef, AdminTier, Direction};
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        let mut side = denied_side(
            "shop/checkout is denied to shop/payments-0 on 8080/TCP by BaselineAdminNetworkPolicy default egress[0] in the Baseline tier",
            "shop/unused",
            8080,
            "TCP",
        );
        side.policies = None;
        side.admin_rule = Some(AdminRuleRef {
            policy: AdminPolicyRef {
                kind: AdminKind::BaselineAdminNetworkPolicy,
                name: "default".into(),
                tier: AdminTier::Baseline,
                priority: None,
            },
            direction: Direction::Egress,
            index: 0,
            name: None,
            action: AdminAction::Deny,
        });
        e.policy = PolicyCheck::Denied {
            egress: Some(side),
            ingress: None,
        };
        e.tcp = timeout();
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    let advice = report
        .fix
        .iter()
        .find(|line| line.contains("8080/TCP"))
        .expect("advice for the denied port");
    assert_eq!(
        advice,
        "add a NetworkPolicy selecting app=checkout in namespace shop that allows egress to pods with \
         app=payments in namespace shop on port 8080/TCP"
    );
    assert!(
        report
            .fix
            .iter()
            .all(|line| !line.contains("one of ,") && !line.contains(" in ,"))
    );
}

#[test]
fn policy_denying_a_flow_that_connects_is_reported_as_a_disagreement() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    let s = step(&report, Layer::NetworkPolicy);
    assert!(
        s.summary.contains("the CNI does not enforce NetworkPolicy"),
        "{}",
        s.summary
    );
    assert!(s.evidence.iter().any(|e| e.starts_with("disagreement")));
}

#[test]
fn unevaluated_policy_with_timeouts_is_undetermined_not_pod_network() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::NotEvaluated(forbidden("list networkpolicies"));
        e.tcp = timeout();
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(step(&report, Layer::NetworkPolicy).status, Status::Undetermined);
    assert_eq!(step(&report, Layer::PodNetwork).status, Status::Skip);
}

#[test]
fn a_cross_node_timeout_while_that_node_answers_is_a_drop_of_the_pod_or_port_not_the_path() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].tcp = timeout();
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(
        s.contains("shop/payments-1")
            && s.contains("node-b itself answers")
            && s.contains("a drop of that pod or port on node-b, not the path between node-a and node-b")
            && s.contains("about 1 in 2 new connections fail")
            && !s.contains("broken"),
        "{s}"
    );
}

#[test]
fn a_cross_node_timeout_is_a_broken_path_only_when_the_node_does_not_answer_either() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].tcp = timeout();
    ev.node_witnesses[0].tcp = timeout();
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(
        s.contains("from node-a to pods on node-b")
            && s.contains("node-b itself (192.168.0.2) does not answer either")
            && s.contains("cross-node path between node-a and node-b is broken"),
        "{s}"
    );
    assert!(report.fix.iter().any(|f| f.contains("get nodes")));
}

#[test]
fn without_a_second_witness_a_cross_node_timeout_claims_no_path_failure() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].tcp = timeout();
    ev.node_witnesses[0].tcp = Fact::Unknown(agent_missing("node-a"));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(s.contains("no second witness") && !s.contains("broken"), "{s}");
}

#[test]
fn one_dropped_endpoint_among_answering_ones_on_its_node_names_that_endpoint_only() {
    let mut ev = healthy();
    let mut third = pod("shop", "payments-2", "node-b", "10.244.2.15");
    third.labels.insert("app".into(), "payments".into());
    let mut dropped = endpoint(third);
    dropped.tcp = timeout();
    endpoints_mut(&mut ev).push(dropped);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(
        s.starts_with("1 of 3 endpoints fail: shop/payments-2")
            && s.contains("while 1 other endpoint(s) on node-b connect")
            && s.contains("about 1 in 3 new connections fail"),
        "{s}"
    );
    let failing: Vec<_> = report
        .endpoints
        .iter()
        .filter(|e| e.status == Status::Fail)
        .map(|e| (e.pod.as_deref(), e.failing_layer))
        .collect();
    assert_eq!(failing, [(Some("shop/payments-2"), Some(Layer::PodNetwork))]);
}

#[test]
fn one_same_node_endpoint_timing_out_names_it_its_node_and_the_count() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[0].tcp = timeout();
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(
        s.contains("shop/payments-0") && s.contains("[same node node-a]") && s.contains("(1/2 endpoints)"),
        "{s}"
    );
}

#[test]
fn icmp_unreachable_is_a_pod_network_failure_too() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.tcp = Fact::Known(TcpOutcome::Unreachable {
            reason: UnreachableReason::Host,
            detail: String::new(),
            rtt_us: 5,
        });
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert!(step(&report, Layer::PodNetwork).evidence[0].contains("unreachable (host)"));
}

#[test]
fn cluster_ip_timing_out_while_pod_ips_connect_fails_service_proxy() {
    let mut ev = healthy();
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: timeout(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("rules are missing on node-a"));
}

#[test]
fn cluster_ip_refused_while_pod_ips_connect_is_stale_service_rules() {
    let mut ev = healthy();
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("stale"));
}

#[test]
fn app_bound_to_loopback_fails_application_and_says_so() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.tcp = refused();
        e.listeners = Fact::Known(vec![listening("127.0.0.1", 8080)]);
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    let s = summary(&report, Layer::Application);
    assert!(s.contains("listens on 127.0.0.1:8080 only"), "{s}");
    assert!(report.fix[0].contains("0.0.0.0"));
}

#[test]
fn refusal_with_unknown_listeners_is_still_the_application() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.tcp = refused();
        e.listeners = Fact::Unknown(agent_missing("node-b"));
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        tcp: refused(),
        udp: None,
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    assert!(summary(&report, Layer::Application).contains("its listening sockets are unknown"));
}

#[test]
fn pod_target_skips_service_layers_as_not_applicable() {
    let mut ev = healthy();
    ev.destination = Destination::Pod;
    ev.dns = None;
    ev.service = ServiceFacts::NotApplicable;
    ev.cluster_ip = None;
    ev.endpoints = EndpointsFacts::Known(vec![endpoint(pod("shop", "payments-0", "node-b", "10.244.2.14"))]);
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    for layer in [Layer::Dns, Layer::Service, Layer::ServiceProxy] {
        assert_eq!(step(&report, layer).status, Status::Skip);
        assert!(summary(&report, layer).starts_with("not applicable"));
    }
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsNotApplicable));
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NotApplicable {
            destination: Destination::Pod
        })
    );
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::PodRunning {
            pod: NamespacedName::new("shop", "payments-0"),
            node: Some("node-b".into()),
            ip: ip("10.244.2.14"),
            port: 8080,
        })
    );
}

#[test]
fn missing_target_pod_fails_endpoints() {
    let mut ev = healthy();
    ev.destination = Destination::Pod;
    ev.dns = None;
    ev.service = ServiceFacts::NotApplicable;
    ev.cluster_ip = None;
    ev.endpoints = EndpointsFacts::TargetPodMissing {
        namespace: "shop".into(),
        name: "nope".into(),
    };
    assert_fails_at(&judge(&ev, 0), Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::TargetPodNotFound {
            pod: NamespacedName::new("shop", "nope"),
        })
    );
}

#[test]
fn external_address_is_judged_on_policy_and_path_only() {
    let mut ev = healthy();
    ev.destination = Destination::External;
    ev.dns = None;
    ev.service = ServiceFacts::NotApplicable;
    ev.cluster_ip = None;
    let mut e = endpoint(pod("x", "y", "node-b", "192.0.2.10"));
    e.pod = None;
    e.tcp = timeout();
    ev.endpoints = EndpointsFacts::Known(vec![e]);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(step(&report, Layer::Endpoints).status, Status::Skip);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::NotApplicable(NoEndpoints::External))
    );
}

#[test]
fn a_service_without_a_named_port_match_in_a_missing_service_fails_service() {
    let mut ev = healthy();
    ev.dns = None;
    ev.service = ServiceFacts::Missing {
        namespace: "shop".into(),
        name: "paymnts".into(),
        names_in_namespace: vec!["payments".into()],
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NotFound {
            service: NamespacedName::new("shop", "paymnts"),
            did_you_mean: Some("payments".into()),
        })
    );
}

#[test]
fn a_missing_service_in_a_namespace_without_services_says_so_not_an_empty_list() {
    let mut ev = healthy();
    ev.dns = None;
    ev.service = ServiceFacts::Missing {
        namespace: "shop".into(),
        name: "payments".into(),
        names_in_namespace: vec![],
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(code(&report, Layer::Service), Some(Code::ServiceNotFound));
    let evidence = evidence_text(&report, Layer::Service);
    assert!(evidence.contains("namespace shop has no Services"), "{evidence}");
    assert!(!evidence.contains("Services in namespace shop:"), "{evidence}");
}

#[test]
fn a_resolv_conf_without_a_search_list_or_nameserver_is_said_in_words() {
    let mut result = dns_result("payments.shop", DnsOutcome::Timeout);
    result.resolv_conf.search.clear();
    result.resolv_conf.nameservers.clear();
    let line = &dns_evidence(&result)[0];
    assert!(
        line.contains(": no nameserver, no search list, ndots 5"),
        "{line}"
    );
    result.resolv_conf.search = vec!["shop.svc.cluster.local".into(), "cluster.local".into()];
    let line = &dns_evidence(&result)[0];
    assert!(
        line.contains("search shop.svc.cluster.local cluster.local, ndots"),
        "{line}"
    );
}

#[test]
fn cluster_nxdomain_decides_even_when_the_bare_name_is_refused_upstream() {
    let mut ev = healthy();
    let server: SocketAddr = format!("{DNS_VIP}:53").parse().unwrap();
    let mut result = dns_result("paymnts.shop", DnsOutcome::Nxdomain);
    result.candidates.push(DnsCandidate {
        name: "paymnts.shop.".into(),
        server,
        outcome: DnsOutcome::Refused,
        rtt_us: 200,
        truncated: false,
    });
    result.answer = DnsAnswer {
        name: None,
        outcome: DnsOutcome::Refused,
    };
    let dns = dns_mut(&mut ev);
    dns.name = "paymnts.shop".into();
    dns.service_guess = Some(NamespacedName::new("shop", "paymnts"));
    dns.result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert!(matches!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::NoSuchService {
            outcome: DnsOutcome::Nxdomain,
            did_you_mean: Some(close),
            ..
        }) if close == "payments"
    ));
}

#[test]
fn a_port_number_served_on_udp_and_tcp_is_checked_on_tcp() {
    let mut svc = payments_service();
    svc.ports = ["UDP", "TCP"]
        .map(|protocol| ServicePortFacts {
            name: Some(protocol.to_lowercase()),
            port: 53,
            protocol: protocol.parse().unwrap(),
            target_port: PortRef::Number(53),
        })
        .to_vec();
    svc.requested = PortRef::Number(53);
    assert_eq!(svc.requested_port().map(|p| p.protocol.as_str()), Some("TCP"));
    svc.ports.remove(1);
    assert_eq!(svc.requested_port().map(|p| p.protocol.as_str()), Some("UDP"));
}

#[test]
fn a_port_that_is_not_probed_leaves_the_live_layers_undetermined_with_the_reason() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.tcp = Fact::Unknown(ToolFailure::NotProbed(
            "UDP port 53: netdiag probes TCP only".into(),
        ));
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert!(summary(&report, Layer::PodNetwork).contains("netdiag probes TCP only"));
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
            "kubectl -n ops get daemonsets"
        ]
    );
}

fn terminating(serving: bool) -> Conditions {
    Conditions {
        ready: false,
        serving,
        terminating: true,
    }
}

#[test]
fn only_serving_terminating_endpoints_carry_the_service_as_kube_proxy_falls_back_to_them() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.terminating = true;
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions = terminating(true);
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::ServingTerminating {
            serving: NonEmpty::from_vec(vec!["payments-0".into(), "payments-1".into()]).unwrap(),
            total: 2,
        })
    );
    assert!(summary(&report, Layer::Application).starts_with("2/2"));
}

#[test]
fn terminating_endpoints_that_no_longer_serve_fail_endpoints() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.terminating = true;
        p.ready = false;
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions = terminating(false);
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::AllTerminating {
            service: NamespacedName::new("shop", "payments"),
            selected: 2,
        })
    );
}

#[test]
fn ready_endpoints_are_used_and_serving_terminating_ones_are_not_probed_targets() {
    let mut ev = healthy();
    let list = endpoints_mut(&mut ev);
    list[1].conditions = terminating(true);
    list[1].tcp = refused();
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(finding(&ev, judge_endpoints), ready_of(&["payments-0"], 2));
}

#[test]
fn a_named_target_port_declared_only_by_a_native_sidecar_resolves() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.container_ports = vec![ServingPort {
            name: Some("http".into()),
            port: 8080,
            protocol: Protocol::Tcp,
            container: "proxy".into(),
            sidecar: true,
        }];
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NamedPortResolved {
            port: PORT_80,
            name: "http".into(),
            numbers: NonEmpty::new(8080),
            pods: 2,
        })
    );
    assert!(
        step(&report, Layer::Service)
            .evidence
            .iter()
            .any(|e| e.contains("native sidecar container proxy"))
    );
}

/// One of two endpoints refuses; whichever endpoint the single VIP connection reached, the
/// verdict is the same: the application of the refusing endpoint, with its share.
#[test]
fn one_refusing_endpoint_gives_the_same_verdict_whatever_the_vip_connection_reached() {
    let mut summaries = vec![];
    for vip in [connected(), refused()] {
        let mut ev = healthy();
        let bad = &mut endpoints_mut(&mut ev)[1];
        bad.tcp = refused();
        bad.listeners = Fact::Known(vec![]);
        ev.cluster_ip.as_mut().unwrap().tcp = vip;
        let report = judge(&ev, 0);
        assert_fails_at(&report, Layer::Application);
        assert_eq!(step(&report, Layer::ServiceProxy).status, Status::Pass);
        summaries.push(summary(&report, Layer::Application).to_string());
    }
    assert_eq!(summaries[0], summaries[1]);
    assert!(
        summaries[0].starts_with("1 of 2 endpoints refuses: shop/payments-1")
            && summaries[0].contains("about 1 in 2 new connections fail"),
        "{}",
        summaries[0]
    );
}

#[test]
fn a_vip_refused_while_no_endpoint_refuses_is_stale_proxy_rules() {
    let mut ev = healthy();
    ev.cluster_ip.as_mut().unwrap().tcp = refused();
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("while no endpoint refuses"));
}

#[test]
fn an_endpoint_no_pod_holds_that_does_not_answer_is_stale_and_names_its_slice() {
    let mut ev = healthy();
    service_mut(&mut ev).selector = None;
    let list = endpoints_mut(&mut ev);
    list[1].pod = None;
    list[1].ip = ip("10.244.9.9");
    list[1].slice = Some(NamespacedName::new("shop", "payments-manual"));
    list[1].tcp = timeout();
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::Stale {
            stale: NonEmpty::new(Listed {
                slice: Some(NamespacedName::new("shop", "payments-manual")),
                endpoint: "10.244.9.9:8080".into(),
            }),
            live: 2,
            selector: false,
        })
    );
    assert!(report.fix[0].contains("get endpointslice payments-manual"));
}

#[test]
fn an_address_no_pod_holds_that_answers_is_a_healthy_external_backend() {
    let mut ev = healthy();
    let list = endpoints_mut(&mut ev);
    list[1].pod = None;
    list[1].ip = ip("192.0.2.10");
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
}

#[test]
fn the_report_lists_every_endpoint_with_its_own_layer() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[0].tcp = refused();
    let report = judge(&ev, 0);
    let json = serde_json::to_value(&report).unwrap();
    let endpoints = json["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["status"], "fail");
    assert_eq!(endpoints[0]["failingLayer"], "application");
    assert_eq!(endpoints[0]["tcp"], "refused (RST)");
    assert_eq!(endpoints[1]["status"], "pass");
    assert!(endpoints[1].get("failingLayer").is_none());
    assert_eq!(endpoints[1]["node"], "node-b");
}

// ---------------------------------------------------------------- datapath witnesses

fn evidence_text(report: &Report, layer: Layer) -> String {
    step(report, layer)
        .evidence
        .iter()
        .map(|l| l.text.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

fn mtu(ip_: &str, node: &str, outcome: netdiag_proto::PathMtuOutcome) -> PathMtuWitness {
    PathMtuWitness {
        ip: ip(ip_),
        port: 8080,
        node: Some(node.into()),
        outcome: Fact::Known(outcome),
    }
}

fn measured(passed: u32, dropped: Option<u32>, learned: Option<u32>) -> netdiag_proto::PathMtuOutcome {
    netdiag_proto::PathMtuOutcome::Measured {
        interface_mtu: 1500,
        largest_passed_bytes: passed,
        smallest_dropped_bytes: dropped,
        learned_pmtu_bytes: learned,
    }
}

#[test]
fn an_mtu_black_hole_fails_pod_network_although_every_connection_succeeds() {
    let mut ev = healthy();
    ev.witnesses.path_mtu = vec![
        mtu("10.244.1.14", "node-a", measured(1500, None, None)),
        mtu("10.244.2.14", "node-b", measured(1200, Some(1210), None)),
    ];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        summary(&report, Layer::PodNetwork),
        "1 of 2 endpoints (shop/payments-1): packets > 1200 bytes are silently dropped (pod MTU 1500): an MTU \
         black hole between node-a and node-b — about 1 in 2 new connections hang once a large packet is sent"
    );
    assert!(evidence_text(&report, Layer::PodNetwork).contains("1210-byte ones never are"));
}

#[test]
fn an_mtu_black_hole_on_the_source_link_fails_each_endpoint_behind_it_and_names_every_node_pair() {
    let mut ev = healthy();
    let more = [
        pod("shop", "payments-2", "node-c", "10.244.3.14"),
        pod("shop", "payments-3", "node-c", "10.244.3.15"),
    ];
    endpoints_mut(&mut ev).extend(more.into_iter().map(endpoint));
    // Measured once per node (node-c's lowest address): the same path serves payments-3.
    ev.witnesses.path_mtu = vec![
        mtu("10.244.1.14", "node-a", measured(1500, None, None)),
        mtu("10.244.2.14", "node-b", measured(1200, Some(1210), None)),
        mtu("10.244.3.14", "node-c", measured(1200, Some(1210), None)),
    ];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(
        s.starts_with(
            "3 of 4 endpoints (shop/payments-1, shop/payments-2, shop/payments-3): packets > 1200 bytes"
        ),
        "{s}"
    );
    assert!(
        s.contains("an MTU black hole between node-a and node-b and between node-a and node-c"),
        "{s}"
    );
    assert!(s.contains("about 3 in 4 new connections hang"), "{s}");
    let statuses: Vec<(Status, Option<Layer>, bool)> = report
        .endpoints
        .iter()
        .map(|e| (e.status, e.failing_layer, e.path_mtu.is_some()))
        .collect();
    let behind = (Status::Fail, Some(Layer::PodNetwork), true);
    assert_eq!(statuses, [(Status::Pass, None, false), behind, behind, behind]);
    assert!(
        report.endpoints[3]
            .path_mtu
            .as_deref()
            .is_some_and(|m| m.contains("between node-a and node-c")),
        "{:?}",
        report.endpoints[3]
    );
}

#[test]
fn a_smaller_path_mtu_learned_from_icmp_is_no_black_hole() {
    let mut ev = healthy();
    ev.witnesses.path_mtu = vec![mtu("10.244.2.14", "node-b", measured(1500, None, Some(1450)))];
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert!(evidence_text(&report, Layer::PodNetwork).contains("learned from ICMP"));
}

#[test]
fn an_unmeasured_path_mtu_says_why_and_changes_no_verdict() {
    let mut ev = healthy();
    ev.witnesses.path_mtu = vec![PathMtuWitness {
        ip: ip("10.244.2.14"),
        port: 8080,
        node: Some("node-b".into()),
        outcome: Fact::Unknown(agent_missing("node-a")),
    }];
    ev.witnesses.captures = vec![capture("10.244.2.14", |c| {
        c.error = Some("the agent lacks CAP_NET_RAW".into())
    })];
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    let text = evidence_text(&report, Layer::PodNetwork);
    assert!(text.contains("path MTU to 10.244.2.14 not measured"), "{text}");
    assert!(text.contains("CAP_NET_RAW"), "{text}");
}

/// A capture at `ip_` that started at t=100 and ran its whole window, changed by `edit`; the TCP
/// probe's SYN left port 40000 at t=200.
fn capture(ip_: &str, edit: impl FnOnce(&mut netdiag_proto::CaptureResult)) -> CaptureWitness {
    let mut c = netdiag_proto::CaptureResult {
        peer: Some(ip("10.244.1.5")),
        port: 8080,
        interfaces: vec!["eth0".into()],
        started_unix_us: 100,
        duration_ms: 1150,
        stopped: "window".into(),
        flows: vec![],
        error: None,
    };
    edit(&mut c);
    CaptureWitness {
        ip: ip(ip_),
        probe_port: Some(40000),
        probe_started_unix_us: Some(200),
        probe_last_syn_unix_us: None,
        mtu_syn_unix_us: None,
        capture: Fact::Known(c),
    }
}

fn flow(syn_ack: bool) -> netdiag_proto::CapturedFlow {
    netdiag_proto::CapturedFlow {
        peer_port: 40000,
        syn_seen: true,
        syn_ack_sent: syn_ack,
        ..Default::default()
    }
}

fn pod_network_with_capture(witness: CaptureWitness) -> (String, String) {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].tcp = timeout();
    ev.witnesses.captures = vec![witness];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    (
        summary(&report, Layer::PodNetwork),
        evidence_text(&report, Layer::PodNetwork),
    )
}

#[test]
fn a_capture_that_saw_no_syn_says_it_never_reached_the_pod() {
    let (s, _) = pod_network_with_capture(capture("10.244.2.14", |_| {}));
    assert!(
        s.ends_with("packet witness: the SYN from checkout never reached payments-1's interface"),
        "{s}"
    );
}

#[test]
fn a_capture_started_after_the_syn_claims_nothing() {
    let (s, e) = pod_network_with_capture(capture("10.244.2.14", |c| c.started_unix_us = 300));
    assert!(
        !s.contains("packet witness") && !e.contains("never reached"),
        "{s}\n{e}"
    );
}

#[test]
fn a_capture_started_after_the_syn_but_before_a_later_beacon_says_it_never_reached_the_pod() {
    let mut late = capture("10.244.2.14", |c| c.started_unix_us = 300);
    late.probe_last_syn_unix_us = Some(900);
    let (s, _) = pod_network_with_capture(late);
    assert!(
        s.ends_with("packet witness: the SYN from checkout never reached payments-1's interface"),
        "{s}"
    );
}

#[test]
fn a_syn_that_arrived_unanswered_and_a_reply_that_never_came_back_are_told_apart() {
    let (s, _) = pod_network_with_capture(capture("10.244.2.14", |c| c.flows = vec![flow(false)]));
    assert!(
        s.contains("the SYN arrived at payments-1's interface and nothing answered it"),
        "{s}"
    );
    let (s, _) = pod_network_with_capture(capture("10.244.2.14", |c| c.flows = vec![flow(true)]));
    assert!(
        s.contains("a SYN-ACK left it, but the reply never came back to checkout"),
        "{s}"
    );
}

fn rules(found: bool, rejects: bool, endpoints: &[&str]) -> NodeDataplaneWitness {
    NodeDataplaneWitness {
        node: "node-a".into(),
        result: Fact::Known(netdiag_proto::NodeDataplaneResult {
            service_rules: Some(netdiag_proto::ServiceRules {
                source: "iptables".into(),
                found,
                rejects,
                endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
                error: None,
            }),
            conntrack: netdiag_proto::ConntrackFill {
                count: Some(950),
                max: Some(1000),
                error: None,
            },
        }),
    }
}

#[test]
fn a_vip_rule_to_an_address_that_is_no_endpoint_fails_service_proxy_even_when_the_vip_connects() {
    let mut ev = healthy();
    ev.witnesses.node_dataplane = Some(rules(
        true,
        false,
        &["10.244.1.14:8080", "10.244.2.14:8080", "10.244.2.4:8080"],
    ));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    let s = summary(&report, Layer::ServiceProxy);
    assert!(
        s.starts_with(
            "node-a translates 10.96.12.7:80/TCP to 10.244.2.4:8080 which is no longer an endpoint"
        ),
        "{s}"
    );
    assert!(evidence_text(&report, Layer::ServiceProxy).contains("nearly full"));
}

#[test]
fn a_missing_vip_rule_explains_a_vip_timeout() {
    let mut ev = healthy();
    ev.cluster_ip.as_mut().unwrap().tcp = timeout();
    ev.witnesses.node_dataplane = Some(rules(false, false, &[]));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    let s = summary(&report, Layer::ServiceProxy);
    assert!(
        s.ends_with("node-a has no rule for 10.96.12.7:80/TCP (2 ready endpoints in the slice)"),
        "{s}"
    );
}

#[test]
fn a_missing_vip_rule_never_fails_a_vip_that_connects() {
    // IPVS, nftables mode or an eBPF dataplane program the VIP outside iptables.
    let mut ev = healthy();
    ev.witnesses.node_dataplane = Some(rules(false, false, &[]));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
}

#[test]
fn unreadable_rules_fall_back_to_the_differential_and_say_why() {
    let mut ev = healthy();
    ev.cluster_ip.as_mut().unwrap().tcp = timeout();
    ev.witnesses.node_dataplane = Some(NodeDataplaneWitness {
        node: "node-a".into(),
        result: Fact::Known(netdiag_proto::NodeDataplaneResult {
            service_rules: Some(netdiag_proto::ServiceRules {
                error: Some("cannot run iptables-save".into()),
                ..Default::default()
            }),
            conntrack: Default::default(),
        }),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("rules are missing on node-a"));
    assert!(evidence_text(&report, Layer::ServiceProxy).contains("cannot run iptables-save"));
}

#[test]
fn passing_lists_are_shortened_and_say_how_many_more() {
    let names: Vec<String> = (0..90).map(|i| format!("payments-{i}")).collect();
    assert_eq!(
        describe::passing_names(&names, 5),
        "payments-0, payments-1, payments-2, payments-3, payments-4 and 85 more"
    );
    // Never "and 1 more": the one name fits as well.
    assert_eq!(describe::passing_names(&names[..6], 5), names[..6].join(", "));
    assert_eq!(describe::passing_names(&names[..2], 5), "payments-0, payments-1");
}

/// The per-family judgment of dual-stack targets (`check::family`), on this module's evidence.
#[path = "family_tests.rs"]
mod family;

#[path = "udp/tests.rs"]
mod udp_tests;
