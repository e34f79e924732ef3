//! The pure assembly: the plan's static facts, the agents' replies and NetworkPolicy's answers
//! become the [`Evidence`] the judge decides on. Each fact is built once, from its own probe's
//! result; a probe that was not run is an unknown fact saying why.

use std::collections::BTreeSet;
use std::net::IpAddr;

use netdiag_proto::{ListeningSocket, ProbeResult, TcpOutcome};

use super::evidence::*;
use super::plan::{
    CheckPlan, CheckRequest, DestinationPlan, DnsPlan, EndpointTarget, LiveProbe, NODE_WITNESS_PORT,
    ProbeKey, RunIn, live_targets, witness_nodes,
};
use super::probe::Replies;
use super::prose::NonEmpty;
use super::snapshot::Snapshot;
use crate::cluster::enforcers::Enforcer;
use crate::policy::admin::{DecidingTier, TierVerdict, TieredVerdict};
use crate::policy::{DirectionVerdict, Flow, Peer, PolicyIndex, Protocol};

/// Builds the evidence of one check.
pub fn assemble(
    request: &CheckRequest,
    plan: CheckPlan,
    replies: &Replies,
    policy: &PolicyEvaluation,
    agents: Option<AgentPods>,
    hints: ClusterHints,
) -> Evidence {
    let source = source(plan.source.clone(), &plan, replies);
    let dest = &plan.destination;
    let live: Vec<&EndpointTarget> = live_targets(dest);
    let endpoints = match (&dest.missing_pod, &dest.endpoints) {
        (Some(pod), _) => EndpointsFacts::TargetPodMissing {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        },
        (None, Fact::Unknown(failure)) => EndpointsFacts::Unknown(failure.clone()),
        (None, Fact::Known(list)) => EndpointsFacts::Known(
            list.iter()
                .map(|e| {
                    let probed = live.contains(&e);
                    endpoint(e, probed, dest, replies, policy, &request.from)
                })
                .collect(),
        ),
    };
    let cluster_ip = dest.cluster_ip.map(|(ip, port)| {
        let live = live_fact(replies, ProbeKey::ClusterIp, dest);
        ClusterIpFacts { ip, port, live }
    });
    let dns = plan
        .dns
        .as_ref()
        .map(|d| dns(d, &dest.expected_dns, replies, policy, &request.from));
    let node_witnesses = node_witnesses(&plan, &live, replies);
    let witnesses = datapath_witnesses(&plan, &live, replies);
    let secondary = secondary(&plan, replies);
    Evidence {
        from: request.from.clone(),
        to: request.to_text.clone(),
        destination: dest.destination,
        timeout_ms: request.timeout_ms(),
        source,
        dns,
        service: dest.service.clone(),
        endpoints,
        cluster_ip,
        agents,
        node_witnesses,
        witnesses,
        secondary,
        policy_enforcers: hints.policy_enforcers,
        source_zone: hints.source_zone,
        repeats: None,
    }
}

/// What the snapshot read besides the flow's objects, for the judgment's wording and routing.
pub struct ClusterHints {
    /// What enforces NetworkPolicy ([`Snapshot::enforcers`](super::snapshot::Snapshot::enforcers)).
    pub policy_enforcers: Option<Fact<Vec<Enforcer>>>,
    /// The source node's zone ([`Snapshot::source_zone`](super::snapshot::Snapshot::source_zone)).
    pub source_zone: Option<Fact<Option<String>>>,
}

/// The second family of a dual-stack target: present when the addresses the target stands for
/// (ClusterIPs, the addresses its name should resolve to, its endpoints) span both families.
fn secondary(plan: &CheckPlan, replies: &Replies) -> Option<SecondaryFamily> {
    let dest = &plan.destination;
    let endpoints = dest.endpoints.known().into_iter().flatten().map(|e| e.ip);
    let mut families: Vec<IpFamily> = Vec::new();
    let addresses = dest
        .cluster_ip
        .map(|(ip, _)| ip)
        .into_iter()
        .chain(dest.expected_dns.iter().copied())
        .chain(endpoints);
    for ip in addresses {
        if !families.contains(&IpFamily::of(ip)) {
            families.push(IpFamily::of(ip));
        }
    }
    let family = *families.get(1)?;
    let asked = |key: ProbeKey| plan.probes.iter().any(|p| p.key == key);
    Some(SecondaryFamily {
        family,
        cluster_ip: dest.secondary_cluster_ip.map(|(ip, port)| {
            let live = live_fact(replies, ProbeKey::ClusterIpSecondary, dest);
            ClusterIpFacts { ip, port, live }
        }),
        dns: asked(ProbeKey::ResolveSecondary).then(|| dns_result(replies, ProbeKey::ResolveSecondary)),
    })
}

/// The result of one resolution of the target name.
fn dns_result(replies: &Replies, key: ProbeKey) -> Fact<netdiag_proto::DnsResult> {
    match replies.result(key) {
        Some(Ok(ProbeResult::Dns(r))) => Fact::Known(r.clone()),
        Some(Ok(other)) => Fact::Unknown(unexpected(other, "dns")),
        Some(Err(failure)) => Fact::Unknown(failure.clone()),
        None => Fact::Unknown(not_run(key, None)),
    }
}

/// The datapath witnesses' results, for the probes the plan asked (none when it asked none).
fn datapath_witnesses(plan: &CheckPlan, live: &[&EndpointTarget], replies: &Replies) -> DatapathWitnesses {
    // Looked up for each endpoint: a set, not a walk of the plan's probes (hundreds of each).
    let planned: BTreeSet<ProbeKey> = plan.probes.iter().map(|p| p.key).collect();
    let asked = |key: ProbeKey| planned.contains(&key);
    let mut w = DatapathWitnesses {
        entry_from_node: entry_from_node(plan, replies),
        ..DatapathWitnesses::default()
    };
    for e in live {
        let Some(port) = e.port else { continue };
        if asked(ProbeKey::PathMtu(e.ip, port)) {
            w.path_mtu.push(PathMtuWitness {
                ip: e.ip,
                port,
                node: e.pod.as_ref().and_then(|p| p.node.clone()),
                outcome: match replies.result(ProbeKey::PathMtu(e.ip, port)) {
                    Some(Ok(ProbeResult::PathMtu(m))) => Fact::Known(m.outcome.clone()),
                    Some(Ok(other)) => Fact::Unknown(unexpected(other, "pathMtu")),
                    Some(Err(failure)) => Fact::Unknown(failure.clone()),
                    None => Fact::Unknown(not_run(ProbeKey::PathMtu(e.ip, port), None)),
                },
            });
        }
        if asked(ProbeKey::Capture(e.ip)) {
            let tcp = match replies.result(ProbeKey::Endpoint(e.ip, port)) {
                Some(Ok(ProbeResult::Tcp(t))) => Some(t),
                _ => None,
            };
            w.captures.push(CaptureWitness {
                ip: e.ip,
                probe_port: tcp.and_then(|t| t.local_port),
                probe_started_unix_us: tcp.and_then(|t| t.started_unix_us),
                probe_last_syn_unix_us: tcp.and_then(|t| t.last_syn_unix_us),
                mtu_syn_unix_us: match replies.result(ProbeKey::PathMtu(e.ip, port)) {
                    Some(Ok(ProbeResult::PathMtu(m))) => m.last_syn_unix_us,
                    _ => None,
                },
                capture: match replies.result(ProbeKey::Capture(e.ip)) {
                    Some(Ok(ProbeResult::Capture(c))) => Fact::Known(c.clone()),
                    Some(Ok(other)) => Fact::Unknown(unexpected(other, "capture")),
                    Some(Err(failure)) => Fact::Unknown(failure.clone()),
                    None => Fact::Unknown(not_run(ProbeKey::Capture(e.ip), None)),
                },
            });
        }
    }
    w.egress = egress_witnesses(plan, live, replies, &asked);
    if let (true, Some((node, _))) = (asked(ProbeKey::NodeDataplane), plan.probe_source()) {
        w.node_dataplane = Some(NodeDataplaneWitness {
            node: node.to_string(),
            result: match replies.result(ProbeKey::NodeDataplane) {
                Some(Ok(ProbeResult::NodeDataplane(d))) => Fact::Known(d.clone()),
                Some(Ok(other)) => Fact::Unknown(unexpected(other, "nodeDataplane")),
                Some(Err(failure)) => Fact::Unknown(failure.clone()),
                None => Fact::Unknown(not_run(ProbeKey::NodeDataplane, None)),
            },
        });
    }
    w
}

/// The watches of the source node's uplink, for the addresses outside the cluster's pods.
fn egress_witnesses(
    plan: &CheckPlan,
    live: &[&EndpointTarget],
    replies: &Replies,
    asked: &impl Fn(ProbeKey) -> bool,
) -> Vec<EgressWitness> {
    let Some((node, pod_ip)) = plan.probe_source() else {
        return vec![];
    };
    let mut out = vec![];
    for e in live {
        let Some(port) = e.port else { continue };
        if !asked(ProbeKey::Egress(e.ip)) {
            continue;
        }
        let tcp = match replies.result(ProbeKey::Endpoint(e.ip, port)) {
            Some(Ok(ProbeResult::Tcp(t))) => Some(t),
            _ => None,
        };
        out.push(EgressWitness {
            ip: e.ip,
            node: node.to_string(),
            pod_ip,
            probe_started_unix_us: tcp.and_then(|t| t.started_unix_us),
            probe_last_syn_unix_us: tcp.and_then(|t| t.last_syn_unix_us),
            watch: match replies.result(ProbeKey::Egress(e.ip)) {
                Some(Ok(ProbeResult::Egress(r))) => Fact::Known(r.clone()),
                Some(Ok(other)) => Fact::Unknown(unexpected(other, "egress")),
                Some(Err(failure)) => Fact::Unknown(failure.clone()),
                None => Fact::Unknown(not_run(ProbeKey::Egress(e.ip), None)),
            },
        });
    }
    out
}

fn node_witnesses(plan: &CheckPlan, live: &[&EndpointTarget], replies: &Replies) -> Vec<NodeWitness> {
    let Some((source_node, _)) = plan.probe_source() else {
        return vec![];
    };
    witness_nodes(live, source_node)
        .into_iter()
        .map(|(node, ip)| NodeWitness {
            node,
            ip,
            port: NODE_WITNESS_PORT,
            tcp: tcp_fact(replies, ProbeKey::NodeWitness(ip), None),
        })
        .collect()
}

/// The source facts with how asking its agent went.
fn source(mut source: SourceFacts, plan: &CheckPlan, replies: &Replies) -> SourceFacts {
    let at = plan
        .probe_source()
        .map(|(node, ip)| (node.to_string(), RunIn::Pod(ip)));
    if let SourceFacts::Found { agent, .. } = &mut source
        && let Some(reply) = at.and_then(|at| replies.agents.get(&at))
    {
        *agent = match reply {
            Ok((agent_pod, netns)) => AgentFacts::Answered {
                agent_pod: agent_pod.clone(),
                netns: netns.clone(),
            },
            Err(failure) => AgentFacts::Failed(failure.clone()),
        };
    }
    source
}

fn not_run(key: ProbeKey, not_probed: Option<&str>) -> ToolFailure {
    ToolFailure::NotProbed(match (key, not_probed) {
        (_, Some(why)) => why.to_string(),
        _ => "not probed".to_string(),
    })
}

/// The node port's connection from another node, when the plan asked for one.
fn entry_from_node(plan: &CheckPlan, replies: &Replies) -> Option<EntryFromNode> {
    let probe = plan.probes.iter().find(|p| p.key == ProbeKey::EntryFromNode)?;
    Some(EntryFromNode {
        node: probe.node.clone(),
        tcp: tcp_fact(replies, ProbeKey::EntryFromNode, None),
    })
}

fn tcp_fact(replies: &Replies, key: ProbeKey, not_probed: Option<&str>) -> Fact<TcpOutcome> {
    match replies.result(key) {
        Some(Ok(ProbeResult::Tcp(t))) => Fact::Known(t.outcome.clone()),
        Some(Ok(other)) => Fact::Unknown(unexpected(other, "tcp")),
        Some(Err(failure)) => Fact::Unknown(failure.clone()),
        None => Fact::Unknown(not_run(key, not_probed)),
    }
}

/// The live fact of a VIP or endpoint probe, of the kind the plan chose.
fn live_fact(replies: &Replies, key: ProbeKey, dest: &DestinationPlan) -> LiveFact {
    let not_probed = dest.not_probed.as_deref();
    match dest.live {
        LiveProbe::Tcp => LiveFact::Tcp(tcp_fact(replies, key, not_probed)),
        LiveProbe::Udp(_) => LiveFact::Udp(match replies.result(key) {
            Some(Ok(ProbeResult::Udp(u))) => Fact::Known(u.outcome.clone()),
            Some(Ok(other)) => Fact::Unknown(unexpected(other, "udp")),
            Some(Err(failure)) => Fact::Unknown(failure.clone()),
            None => Fact::Unknown(not_run(key, not_probed)),
        }),
    }
}

fn listeners_fact(replies: &Replies, ip: IpAddr, node: Option<&str>) -> Fact<Vec<ListeningSocket>> {
    let key = ProbeKey::Listeners(ip);
    match replies.result(key) {
        Some(Ok(ProbeResult::Listeners(l))) => match &l.error {
            Some(err) => Fact::Unknown(ToolFailure::Agent {
                detail: format!(
                    "the agent on {} could not read the sockets: {err}",
                    node.unwrap_or("the node")
                ),
            }),
            None => Fact::Known(l.sockets.clone()),
        },
        Some(Ok(other)) => Fact::Unknown(unexpected(other, "listeners")),
        Some(Err(failure)) => Fact::Unknown(failure.clone()),
        None => Fact::Unknown(not_run(key, None)),
    }
}

fn unexpected(result: &ProbeResult, asked: &str) -> ToolFailure {
    let kind = match result {
        ProbeResult::Dns(_) => "dns",
        ProbeResult::Tcp(_) => "tcp",
        ProbeResult::Udp(_) => "udp",
        ProbeResult::Listeners(_) => "listeners",
        ProbeResult::Interfaces(_) => "interfaces",
        ProbeResult::PathMtu(_) => "pathMtu",
        ProbeResult::Capture(_) => "capture",
        ProbeResult::Egress(_) => "egress",
        ProbeResult::NodeDataplane(_) => "nodeDataplane",
    };
    ToolFailure::Agent {
        detail: format!("the agent answered a {kind} result to a {asked} probe"),
    }
}

fn endpoint(
    e: &EndpointTarget,
    probed: bool,
    dest: &DestinationPlan,
    replies: &Replies,
    policy: &PolicyEvaluation,
    from: &NamespacedName,
) -> EndpointFacts {
    let not_probed = dest.not_probed.as_deref();
    let (live, listeners) = match (probed, e.port) {
        (true, Some(port)) => (
            live_fact(replies, ProbeKey::Endpoint(e.ip, port), dest),
            listeners_fact(replies, e.ip, e.pod.as_ref().and_then(|p| p.node.as_deref())),
        ),
        _ => {
            let why = not_run(ProbeKey::Netns, not_probed);
            let live = match dest.live {
                LiveProbe::Tcp => LiveFact::Tcp(Fact::Unknown(why)),
                LiveProbe::Udp(_) => LiveFact::Udp(Fact::Unknown(why)),
            };
            (live, Fact::Unknown(not_run(ProbeKey::Netns, None)))
        }
    };
    let entered_policy = policy.entered_endpoint(from, e, dest);
    let policy = policy.endpoint(from, e, dest);
    EndpointFacts {
        ip: e.ip,
        port: e.port,
        pod: e.pod.clone(),
        slice: e.slice.clone(),
        conditions: e.conditions,
        topology: e.topology.clone(),
        live,
        listeners,
        policy,
        entered_policy,
    }
}

fn dns(
    plan: &DnsPlan,
    expected: &[IpAddr],
    replies: &Replies,
    policy: &PolicyEvaluation,
    from: &NamespacedName,
) -> DnsFacts {
    let result = dns_result(replies, ProbeKey::Resolve);
    let cluster_dns = match (&plan.dns_service_ip, &plan.servers) {
        (Fact::Unknown(failure), _) | (_, Fact::Unknown(failure)) => Fact::Unknown(failure.clone()),
        (Fact::Known(service_ip), Fact::Known(servers)) => Fact::Known(ClusterDnsFacts {
            service_ip: *service_ip,
            pods: servers
                .iter()
                .map(|s| DnsPodFacts {
                    pod: s.pod.clone(),
                    ip: s.ip,
                    ready: s.in_service,
                    direct: match replies.result(ProbeKey::DirectDns(s.ip)) {
                        Some(Ok(ProbeResult::Dns(r))) => Fact::Known(r.answer.outcome.clone()),
                        Some(Ok(other)) => Fact::Unknown(unexpected(other, "dns")),
                        Some(Err(failure)) => Fact::Unknown(failure.clone()),
                        None => Fact::Unknown(not_run(ProbeKey::DirectDns(s.ip), None)),
                    },
                    egress_policy: {
                        let to = match &s.pod {
                            Some(pod) => Peer::pod(pod.namespace.clone(), pod.name.clone()),
                            None => Peer::Ip(s.ip),
                        };
                        policy.check(from, to, s.ip, 53, Protocol::Udp)
                    },
                })
                .collect(),
        }),
    };
    DnsFacts {
        name: plan.name.clone(),
        result,
        expected: expected.to_vec(),
        service_guess: plan.service_guess.clone(),
        same_name_elsewhere: plan.same_name_elsewhere.clone(),
        names_in_namespace: plan.names_in_namespace.clone(),
        cluster_dns,
    }
}

/// NetworkPolicy over the snapshot, evaluated only when the source pod was found; each flow is
/// decided for the family of the address its packets go to (an ipBlock admits only its own
/// family's addresses). Built once per check: the engine asks it before probing too (a denied
/// flow needs no witness to explain it).
pub enum PolicyEvaluation {
    /// The index, and the source pod (whose node rewrites a LoadBalancer connection).
    Index(Box<PolicyIndex>, Box<PodFacts>),
    Unavailable(ToolFailure),
    NoSource,
}

impl PolicyEvaluation {
    pub fn new(snap: &Snapshot, source: &SourceFacts) -> Self {
        let SourceFacts::Found { pod: source, .. } = source else {
            return PolicyEvaluation::NoSource;
        };
        let objects = (&snap.namespaces, &snap.pods, &snap.policies, &snap.admin);
        match objects {
            (Fact::Known(ns), Fact::Known(pods), Fact::Known(pols), Fact::Known(admin)) => {
                PolicyEvaluation::Index(
                    Box::new(PolicyIndex::with_admin(ns, pods, pols, admin)),
                    Box::new(source.clone()),
                )
            }
            (Fact::Unknown(f), ..)
            | (_, Fact::Unknown(f), ..)
            | (.., Fact::Unknown(f), _)
            | (.., Fact::Unknown(f)) => PolicyEvaluation::Unavailable(f.clone()),
        }
    }

    /// The flow from `from` to endpoint `e` of `dest` on its port over the live probes'
    /// protocol, pod to pod: what the probe of the endpoint's own address meets.
    pub fn endpoint(&self, from: &NamespacedName, e: &EndpointTarget, dest: &DestinationPlan) -> PolicyCheck {
        match endpoint_peer(e) {
            Ok((peer, port)) => self.check(from, peer, e.ip, port, dest.protocol()),
            Err(unevaluated) => unevaluated,
        }
    }

    /// The same flow entered by the node port or LoadBalancer address of `dest`, with the
    /// addresses each end's policies see there; `None` for a check by the ClusterIP or of a pod.
    pub fn entered_endpoint(
        &self,
        from: &NamespacedName,
        e: &EndpointTarget,
        dest: &DestinationPlan,
    ) -> Option<PolicyCheck> {
        let path = match (self, &dest.service) {
            (PolicyEvaluation::Index(_, source), ServiceFacts::Found(svc)) if svc.entry.is_some() => {
                EnteredPath::of(svc, source)
            }
            _ => return None,
        };
        Some(match endpoint_peer(e) {
            Ok((peer, port)) => self.entered(from, (peer, e), port, dest.protocol(), &path),
            Err(unevaluated) => unevaluated,
        })
    }

    /// A flow that entered by a node port or a LoadBalancer address: the source's egress to
    /// where the packet goes from its node, the endpoint's ingress from who the packet comes
    /// from once kube-proxy masquerades it.
    fn entered(
        &self,
        from: &NamespacedName,
        (to, e): (Peer, &EndpointTarget),
        port: u16,
        protocol: Protocol,
        path: &EnteredPath,
    ) -> PolicyCheck {
        let source = Peer::pod(from.namespace.clone(), from.name.clone());
        let egress = match path.egress_to {
            Some((ip, node_port)) => self.verdict(source.clone(), Peer::Ip(ip), ip, node_port, protocol),
            None => self.verdict(source.clone(), to.clone(), e.ip, port, protocol),
        };
        let ingress = match &path.masqueraded_by {
            Some((node, _)) if e.pod.as_ref().and_then(|p| p.node.as_ref()) == Some(node) => Ok(None),
            Some((_, address)) => self
                .verdict(Peer::Ip(*address), to, e.ip, port, protocol)
                .map(Some),
            None => self.verdict(source, to, e.ip, port, protocol).map(Some),
        };
        let (egress, ingress) = match (egress, ingress) {
            (Ok(egress), Ok(ingress)) => (egress, ingress),
            (Err(unevaluated), _) | (_, Err(unevaluated)) => return unevaluated,
        };
        if egress.egress.allowed && ingress.as_ref().is_none_or(|v| v.ingress.allowed) {
            let ingress = match (&ingress, &path.masqueraded_by) {
                (Some(v), _) => v.explain(),
                (None, Some((node, _))) => {
                    format!("ingress from its own node {node}, which NetworkPolicy never blocks")
                }
                (None, None) => String::new(),
            };
            return PolicyCheck::Allowed {
                detail: format!("{}; {ingress}", egress.explain()),
            };
        }
        let sides = |v: &TieredVerdict| match denied(v) {
            PolicyCheck::Denied { egress, ingress } => (egress, ingress),
            _ => (None, None),
        };
        PolicyCheck::Denied {
            egress: sides(&egress).0,
            ingress: ingress.as_ref().and_then(|v| sides(v).1),
        }
    }

    /// The verdict on the flow to `to`, whose address is `to_ip` (its family decides the index).
    fn check(
        &self,
        from: &NamespacedName,
        to: Peer,
        to_ip: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> PolicyCheck {
        let source = Peer::pod(from.namespace.clone(), from.name.clone());
        match self.verdict(source, to, to_ip, port, protocol) {
            Ok(verdict) if verdict.allowed => PolicyCheck::Allowed {
                detail: verdict.explain(),
            },
            Ok(verdict) => denied(&verdict),
            Err(unevaluated) => unevaluated,
        }
    }

    /// The tiers' verdict on one flow, or why there is none.
    fn verdict(
        &self,
        from: Peer,
        to: Peer,
        to_ip: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> Result<TieredVerdict, PolicyCheck> {
        let index = match self {
            PolicyEvaluation::Index(index, _) => index,
            PolicyEvaluation::Unavailable(failure) => return Err(PolicyCheck::NotEvaluated(failure.clone())),
            PolicyEvaluation::NoSource => {
                return Err(PolicyCheck::NotEvaluated(ToolFailure::NotProbed(
                    "not probed".into(),
                )));
            }
        };
        let flow = Flow {
            from,
            to,
            port,
            protocol,
        };
        index
            .evaluate_tiers_in(&flow, Some(IpFamily::of(to_ip)))
            .map_err(|err| PolicyCheck::NotEvaluated(ToolFailure::NotProbed(err.to_string())))
    }
}

/// An endpoint as a policy peer, and its port; why it cannot be evaluated without one.
fn endpoint_peer(e: &EndpointTarget) -> Result<(Peer, u16), PolicyCheck> {
    let peer = match &e.pod {
        Some(p) => Peer::pod(p.namespace.clone(), p.name.clone()),
        None => Peer::Ip(e.ip),
    };
    match e.port {
        Some(port) => Ok((peer, port)),
        None => Err(PolicyCheck::NotEvaluated(ToolFailure::NotProbed(
            "the destination port did not resolve".into(),
        ))),
    }
}

/// The denying sides of a flow: the admin rule that decided, or the NetworkPolicies that
/// isolate the pod with no rule allowing the flow.
pub fn denied(v: &TieredVerdict) -> PolicyCheck {
    let np = &v.network_policy;
    let side = |tier: &TierVerdict, d: &DirectionVerdict, subject: &Peer, other: FlowEnd| {
        (!tier.allowed).then(|| {
            let isolating = NonEmpty::from_vec(d.isolating_policies.clone());
            let cause = match (&tier.rule, tier.decided_by, &isolating) {
                (Some(rule), DecidingTier::Admin, _) => DenialCause::AdminTier(rule.clone()),
                (Some(rule), _, _) => DenialCause::BaselineTier(rule.clone()),
                (None, _, Some(by)) => DenialCause::Isolated(by.clone()),
                (None, _, None) => DenialCause::Unnamed,
            };
            Box::new(DeniedSide {
                subject: subject.clone(),
                other,
                cause,
                policies: match tier.decided_by {
                    DecidingTier::Admin => None,
                    _ => isolating,
                },
                port: np.port,
                protocol: np.protocol,
                excepted_by: d.excepted_by.first().cloned(),
            })
        })
    };
    PolicyCheck::Denied {
        egress: side(&v.egress, &np.egress, &np.from, FlowEnd::To(np.to.clone())),
        ingress: side(&v.ingress, &np.ingress, &np.to, FlowEnd::From(np.from.clone())),
    }
}
