//! Executing a plan: the probes go to the agents through a narrow trait ([`AgentTransport`]),
//! one request per (node, pod namespace), all at once. The plugin's transport port-forwards
//! through the API server (`agent_client`); tests use a fake.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use futures::channel::oneshot;
use futures::future::{Either, join_all, select};
use netdiag_proto::{Probe, ProbeReport, ProbeRequest, ProbeResult, TcpOutcome, UdpOutcome};

use super::evidence::AgentPods;
use super::plan::{PlannedProbe, ProbeKey, RunIn, explains};
use crate::cluster::ToolFailure;

/// An agent's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    /// Which agent answered (`namespace/pod`, or the address it was reached at).
    pub agent: String,
    pub report: ProbeReport,
}

/// How the engine reaches the agent on a node.
pub trait AgentTransport: Sync {
    /// Runs `request` on the agent of `node`, within `deadline`.
    fn probe(
        &self,
        node: &str,
        request: &ProbeRequest,
        deadline: Duration,
    ) -> impl Future<Output = Result<AgentReply, ToolFailure>> + Send;

    /// Where agent pods are looked for, for the fix commands; `None` for a fixed address.
    fn location(&self) -> Option<AgentPods>;
}

/// What came back: each probe's result, and how each agent request went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replies {
    pub results: BTreeMap<ProbeKey, Result<ProbeResult, ToolFailure>>,
    /// By request (node, namespace): the agent that answered and the netns it probed from.
    pub agents: BTreeMap<(String, RunIn), Result<(String, String), ToolFailure>>,
}

impl Replies {
    pub fn result(&self, key: ProbeKey) -> Option<&Result<ProbeResult, ToolFailure>> {
        self.results.get(&key)
    }

    /// Whether the source probed `ip` and every connection to it was established (or, for UDP,
    /// every datagram answered).
    pub fn all_connected(&self, ip: IpAddr) -> bool {
        let mut to_ip = self.to(ip).peekable();
        to_ip.peek().is_some()
            && to_ip.all(|(_, result)| match result {
                Ok(ProbeResult::Tcp(t)) => t.outcome.is_connected(),
                Ok(ProbeResult::Udp(u)) => matches!(u.outcome, UdpOutcome::Answered { .. }),
                _ => false,
            })
    }

    /// Whether some TCP connection the source opened to `ip` waited out its timeout.
    pub fn lost(&self, ip: IpAddr) -> bool {
        self.to(ip).any(
            |(_, result)| matches!(result, Ok(ProbeResult::Tcp(t)) if matches!(t.outcome, TcpOutcome::Timeout { .. })),
        )
    }

    /// The results of the source's probes to `ip`, one per port (keys sort by address, then port).
    fn to(&self, ip: IpAddr) -> impl Iterator<Item = (&ProbeKey, &Result<ProbeResult, ToolFailure>)> {
        self.results
            .range(ProbeKey::Endpoint(ip, 0)..=ProbeKey::Endpoint(ip, u16::MAX))
    }

    /// One request's reply, spread over its probes.
    fn record(
        &mut self,
        at: (String, RunIn),
        group: &[&PlannedProbe],
        reply: Result<AgentReply, ToolFailure>,
    ) {
        for (i, p) in group.iter().enumerate() {
            let result = match &reply {
                Ok(r) => Ok(r.report.results[i].clone()),
                Err(failure) => Err(failure.clone()),
            };
            self.results.insert(p.key, result);
        }
        let agent = reply.map(|r| (r.agent, r.report.netns.path));
        self.agents.insert(at, agent);
    }

    pub fn extend(&mut self, other: Replies) {
        self.results.extend(other.results);
        self.agents.extend(other.agents);
    }
}

/// How long one agent request (port-forward, probes, answer) may take for a per-probe `timeout`;
/// every API response is bounded by it too.
pub fn agent_deadline(timeout: Duration) -> Duration {
    timeout * 4 + Duration::from_secs(5)
}

/// Sends every planned probe, grouped into one request per (node, namespace). The source's
/// requests go first. A destination node's probes are speculative (its pods' listening sockets
/// and captures, see [`explains`]) and only explain a connection that failed, so a healthy check
/// does not pay for them:
/// - a probe at a pod NetworkPolicy denies (`explained`) is never sent: the policy explains it;
/// - if the source answers within `grace`, the listening sockets of the pods whose connection
///   failed are asked afterwards (a capture would see nothing: no connection waited out its
///   timeout, which is longer than the grace);
/// - otherwise each destination node's request starts at `grace`, so that its captures watch
///   while the probes still send SYNs. Once the source answers it is awaited where a connection
///   to one of its pods was lost, and dropped elsewhere (the agent stops when its caller goes
///   away); the sockets of pods whose connection failed otherwise are then asked on their own.
///
/// Once the source has answered, every speculative request still running or sent then is given
/// [`witness_wait`]: an agent that has not answered by then is recorded as not answering, as one
/// that waits out `deadline` would be (a cut node's, whose port-forward hangs), without making
/// the check wait for it.
pub async fn execute<A: AgentTransport>(
    agents: &A,
    probes: &[PlannedProbe],
    deadline: Duration,
    explained: &BTreeSet<IpAddr>,
    grace: Duration,
) -> Replies {
    let (speculative, direct): (Vec<&PlannedProbe>, Vec<&PlannedProbe>) =
        probes.iter().partition(|p| explains(p).is_some());
    let (denied, speculative): (Vec<&PlannedProbe>, Vec<&PlannedProbe>) = speculative
        .into_iter()
        .partition(|p| explains(p).is_some_and(|ip| explained.contains(&ip)));
    let direct = groups(direct);
    let asked = Instant::now();
    let mut source = std::pin::pin!(ask_all(agents, &direct, deadline, None));
    let mut replies = match tokio::time::timeout(grace, source.as_mut()).await {
        Ok(mut replies) => {
            let until = Some(witness_wait(asked));
            let late = needed_sockets(&replies, &speculative, &BTreeSet::new());
            replies.extend(ask_all(agents, &groups(late), deadline, until).await);
            replies
        }
        Err(_) => witnessed(agents, source, asked, &speculative, deadline).await,
    };
    not_needed(&mut replies, &denied, "NetworkPolicy denies the connection");
    not_needed(
        &mut replies,
        &speculative,
        "every connection to the pod was established, or none was lost",
    );
    replies
}

/// The source's replies (`source`, asked at `asked` and still running) together with the
/// destination nodes' speculative requests, started now: each is awaited (for [`witness_wait`])
/// if it watches a lost connection's pod, else dropped once the source answered; the sockets it
/// would have read for a failed connection are then asked on their own.
async fn witnessed<A: AgentTransport>(
    agents: &A,
    source: impl Future<Output = Replies>,
    asked: Instant,
    speculative: &[&PlannedProbe],
    deadline: Duration,
) -> Replies {
    let started = groups(speculative.to_vec());
    let (decisions, witnesses): (Vec<_>, Vec<_>) = started
        .iter()
        .map(|(at, group)| {
            let (decision, decided) = oneshot::channel();
            (
                decision,
                witness(ask(agents, at, group, deadline), decided, &at.0),
            )
        })
        .unzip();
    let decide = async {
        let mut replies = source.await;
        let until = witness_wait(asked);
        let mut kept = BTreeSet::new();
        for ((_, group), decision) in started.iter().zip(decisions) {
            let watches_lost = group.iter().any(|p| {
                matches!(p.probe, Probe::Capture(_) | Probe::Egress(_))
                    && explains(p).is_some_and(|ip| replies.lost(ip))
            });
            if watches_lost {
                kept.extend(group.iter().map(|p| p.key));
            }
            // A witness that already answered no longer listens; its reply counts either way.
            let _ = decision.send(watches_lost.then_some(until));
        }
        let late = needed_sockets(&replies, speculative, &kept);
        replies.extend(ask_all(agents, &groups(late), deadline, Some(until)).await);
        replies
    };
    let (mut replies, speculated) = futures::join!(decide, join_all(witnesses));
    for ((at, group), reply) in started.iter().zip(speculated) {
        if let Some(reply) = reply {
            replies.record(at.clone(), group, reply);
        }
    }
    replies
}

/// One speculative request to the agent of `node`: its reply if it came before the source's
/// answer decided (`decided`), `None` if it was not needed; if it is needed until an instant, its
/// reply by then, or else the failure of an agent that did not answer.
async fn witness(
    reply: impl Future<Output = Result<AgentReply, ToolFailure>>,
    decided: oneshot::Receiver<Option<Instant>>,
    node: &str,
) -> Option<Result<AgentReply, ToolFailure>> {
    let since = Instant::now();
    let mut reply = std::pin::pin!(reply);
    let until = match select(reply.as_mut(), decided).await {
        Either::Left((reply, _)) => return Some(reply),
        Either::Right((decision, _)) => decision.ok().flatten()?,
    };
    Some(answered_by(reply, until, node, since).await)
}

/// How long a speculative request is waited for once the source answered (now; it was asked at
/// `asked`): as long again as the source took, and at least [`WITNESS_WAIT_MIN`]. A capture that
/// is still worth waiting for watches a lost connection, so the source took at least the probe
/// timeout, the longest window a capture watches; reading sockets is quicker than any probe.
fn witness_wait(asked: Instant) -> Instant {
    let answered = Instant::now();
    answered + (answered - asked).max(WITNESS_WAIT_MIN)
}

/// See [`witness_wait`]: the least time an agent's port-forward and answer are given.
const WITNESS_WAIT_MIN: Duration = Duration::from_secs(1);

/// `reply` (a request to the agent of `node`, sent at `since`) if it comes by `until`, else the
/// failure of an agent that did not answer.
async fn answered_by(
    reply: impl Future<Output = Result<AgentReply, ToolFailure>>,
    until: Instant,
    node: &str,
    since: Instant,
) -> Result<AgentReply, ToolFailure> {
    match tokio::time::timeout_at(until, reply).await {
        Ok(reply) => reply,
        Err(_) => Err(ToolFailure::Agent {
            detail: format!(
                "the agent on node {node} did not answer within {} ms",
                since.elapsed().as_millis()
            ),
        }),
    }
}

/// The listening-socket probes of the pods whose connection failed, except those in `kept`.
fn needed_sockets<'a>(
    replies: &Replies,
    speculative: &[&'a PlannedProbe],
    kept: &BTreeSet<ProbeKey>,
) -> Vec<&'a PlannedProbe> {
    speculative
        .iter()
        .filter(|p| matches!(p.probe, Probe::PodListeners(_)) && !kept.contains(&p.key))
        .filter(|p| explains(p).is_some_and(|ip| !replies.all_connected(ip)))
        .copied()
        .collect()
}

/// Every group's request at once, their replies spread over their probes; each one not answered
/// by `until` (if given) is recorded as not answering.
async fn ask_all<A: AgentTransport>(
    agents: &A,
    groups: &[Group<'_>],
    deadline: Duration,
    until: Option<Instant>,
) -> Replies {
    let since = Instant::now();
    let asked = join_all(groups.iter().map(|(at, g)| async move {
        let reply = ask(agents, at, g, deadline);
        match until {
            Some(until) => answered_by(reply, until, &at.0, since).await,
            None => reply.await,
        }
    }))
    .await;
    let mut replies = Replies::default();
    for ((at, group), reply) in groups.iter().zip(asked) {
        replies.record(at.clone(), group, reply);
    }
    replies
}

/// Records the `probes` that got no result as not sent, because they were not needed (`why`).
fn not_needed(replies: &mut Replies, probes: &[&PlannedProbe], why: &str) {
    for p in probes {
        replies
            .results
            .entry(p.key)
            .or_insert_with(|| Err(ToolFailure::NotProbed(format!("not needed: {why}"))));
    }
}

type Group<'a> = ((String, RunIn), Vec<&'a PlannedProbe>);

/// The probes by where they run, one request each.
fn groups<'a>(probes: Vec<&'a PlannedProbe>) -> Vec<Group<'a>> {
    let mut groups: BTreeMap<(String, RunIn), Vec<&PlannedProbe>> = BTreeMap::new();
    for p in probes {
        groups.entry((p.node.clone(), p.run_in)).or_default().push(p);
    }
    groups.into_iter().collect()
}

/// One request: the group's probes, to the agent of the group's node, in its namespace.
async fn ask<A: AgentTransport>(
    agents: &A,
    at: &(String, RunIn),
    group: &[&PlannedProbe],
    deadline: Duration,
) -> Result<AgentReply, ToolFailure> {
    let request = ProbeRequest {
        source: at.1.source(),
        probes: group.iter().map(|p| p.probe.clone()).collect(),
    };
    let started = std::time::Instant::now();
    let reply = agents.probe(&at.0, &request, deadline).await;
    tracing::debug!(node = %at.0, netns = ?at.1, probes = request.probes.len(), ok = reply.is_ok(),
        ms = started.elapsed().as_millis() as u64, "agent request");
    reply.and_then(|reply| {
        if reply.report.results.len() == request.probes.len() {
            Ok(reply)
        } else {
            Err(ToolFailure::Agent {
                detail: format!(
                    "agent {} returned {} results for {} probes",
                    reply.agent,
                    reply.report.results.len(),
                    request.probes.len()
                ),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    //! The speculative witnesses against a fake transport, on tokio's paused clock: the source's
    //! connection to a pod on node-b fails, and node-b's agent is asked for a capture and the
    //! pod's listening sockets. On a cut node that agent never answers.

    use netdiag_proto::{
        AgentIdentity, CaptureProbe, CaptureResult, ListenersResult, PodListenersProbe, ProbeSource,
        ResolvedNetns, TcpProbe, TcpResult, UnreachableReason,
    };

    use super::*;

    const SOURCE: &str = "10.244.1.2";
    const DEST: &str = "10.244.2.2";
    const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
    const GRACE: Duration = Duration::from_millis(250);
    const DEADLINE: Duration = Duration::from_secs(3600);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn plan() -> Vec<PlannedProbe> {
        let at_b = |key, probe| PlannedProbe {
            key,
            node: "node-b".into(),
            run_in: RunIn::Node,
            probe,
        };
        vec![
            PlannedProbe {
                key: ProbeKey::Endpoint(ip(DEST), 8080),
                node: "node-a".into(),
                run_in: RunIn::Pod(ip(SOURCE)),
                probe: Probe::Tcp(TcpProbe {
                    ip: ip(DEST),
                    port: 8080,
                    timeout_ms: PROBE_TIMEOUT.as_millis() as u64,
                }),
            },
            at_b(
                ProbeKey::Capture(ip(DEST)),
                Probe::Capture(CaptureProbe {
                    pod_ip: Some(ip(DEST)),
                    peer: ip(SOURCE),
                    port: 8080,
                    duration_ms: (PROBE_TIMEOUT - GRACE).as_millis() as u64 + 10,
                    max_packets: 256,
                }),
            ),
            at_b(
                ProbeKey::Listeners(ip(DEST)),
                Probe::PodListeners(PodListenersProbe { pod_ip: ip(DEST) }),
            ),
        ]
    }

    /// The source answers `outcome` once the probe timeout has passed (a neighbour that failed
    /// before answers "unreachable" about as late). node-b's agent answers a capture when its
    /// window ends, sockets at once, or, cut off, never: like the plugin's transport, it then
    /// fails at the deadline.
    struct Agents {
        outcome: TcpOutcome,
        node_b_reachable: bool,
    }

    impl AgentTransport for Agents {
        async fn probe(
            &self,
            node: &str,
            request: &ProbeRequest,
            deadline: Duration,
        ) -> Result<AgentReply, ToolFailure> {
            if let ProbeSource::PodIp { .. } = request.source {
                tokio::time::sleep(PROBE_TIMEOUT).await;
            } else if !self.node_b_reachable {
                tokio::time::sleep(deadline).await;
                return Err(ToolFailure::Agent {
                    detail: format!("the transport gave up on {node} at its deadline"),
                });
            }
            let mut results = vec![];
            for probe in &request.probes {
                results.push(match probe {
                    Probe::Tcp(t) => ProbeResult::Tcp(TcpResult {
                        ip: t.ip,
                        port: t.port,
                        timeout_ms: t.timeout_ms,
                        outcome: self.outcome.clone(),
                        local_port: None,
                        started_unix_us: None,
                        last_syn_unix_us: None,
                    }),
                    Probe::Capture(c) => {
                        // The window, then the way back: later than the source's answer.
                        tokio::time::sleep(Duration::from_millis(c.duration_ms + 300)).await;
                        ProbeResult::Capture(CaptureResult {
                            peer: Some(c.peer),
                            port: c.port,
                            ..Default::default()
                        })
                    }
                    Probe::Egress(e) => {
                        tokio::time::sleep(Duration::from_millis(e.duration_ms + 300)).await;
                        ProbeResult::Egress(netdiag_proto::EgressResult {
                            ip: Some(e.ip),
                            port: e.port,
                            ..Default::default()
                        })
                    }
                    Probe::PodListeners(_) => ProbeResult::Listeners(ListenersResult {
                        sockets: vec![],
                        error: None,
                    }),
                    other => panic!("not planned here: {other:?}"),
                });
            }
            Ok(AgentReply {
                agent: format!("netdiag/agent-{node}"),
                report: ProbeReport {
                    agent: AgentIdentity {
                        node: node.into(),
                        version: "test".into(),
                        pod: None,
                    },
                    netns: ResolvedNetns::default(),
                    results,
                },
            })
        }

        fn location(&self) -> Option<AgentPods> {
            None
        }
    }

    fn lost() -> TcpOutcome {
        TcpOutcome::Timeout {
            after_ms: PROBE_TIMEOUT.as_millis() as u64,
        }
    }

    fn host_unreachable() -> TcpOutcome {
        TcpOutcome::Unreachable {
            reason: UnreachableReason::Host,
            detail: "icmp type 3 code 1".into(),
            rtt_us: 900_000,
        }
    }

    async fn run(outcome: TcpOutcome, node_b_reachable: bool) -> Replies {
        let agents = Agents {
            outcome,
            node_b_reachable,
        };
        execute(&agents, &plan(), DEADLINE, &BTreeSet::new(), GRACE).await
    }

    fn unanswered(replies: &Replies, key: ProbeKey) -> bool {
        matches!(
            replies.result(key),
            Some(Err(ToolFailure::Agent { detail }))
                if detail.starts_with("the agent on node node-b did not answer within ")
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_witnesses_of_a_lost_connection_that_answer_after_the_source_are_kept() {
        let replies = run(lost(), true).await;
        assert!(matches!(
            replies.result(ProbeKey::Capture(ip(DEST))),
            Some(Ok(ProbeResult::Capture(_)))
        ));
        assert!(matches!(
            replies.result(ProbeKey::Listeners(ip(DEST))),
            Some(Ok(ProbeResult::Listeners(_)))
        ));
    }

    /// An address outside the pods: the watch of the source node's own uplink.
    fn egress_plan(outside: &str) -> Vec<PlannedProbe> {
        let mut probes = plan();
        probes.truncate(1);
        probes[0].key = ProbeKey::Endpoint(ip(outside), 443);
        probes[0].probe = Probe::Tcp(TcpProbe {
            ip: ip(outside),
            port: 443,
            timeout_ms: PROBE_TIMEOUT.as_millis() as u64,
        });
        probes.push(PlannedProbe {
            key: ProbeKey::Egress(ip(outside)),
            node: "node-a".into(),
            run_in: RunIn::Node,
            probe: Probe::Egress(netdiag_proto::EgressProbe {
                pod_ip: ip(SOURCE),
                ip: ip(outside),
                port: 443,
                duration_ms: (PROBE_TIMEOUT - GRACE).as_millis() as u64 + 10,
                max_packets: 256,
            }),
        });
        probes
    }

    #[tokio::test(start_paused = true)]
    async fn the_uplink_watch_of_a_lost_connection_leaving_the_cluster_is_kept_and_else_not_needed() {
        let outside = "198.51.100.10";
        let agents = |outcome| Agents {
            outcome,
            node_b_reachable: true,
        };
        let no_policy = BTreeSet::new();
        let replies = execute(
            &agents(lost()),
            &egress_plan(outside),
            DEADLINE,
            &no_policy,
            GRACE,
        )
        .await;
        assert!(matches!(
            replies.result(ProbeKey::Egress(ip(outside))),
            Some(Ok(ProbeResult::Egress(_)))
        ));
        let replies = execute(
            &agents(TcpOutcome::Connected { rtt_us: 900 }),
            &egress_plan(outside),
            DEADLINE,
            &no_policy,
            GRACE,
        )
        .await;
        assert!(matches!(
            replies.result(ProbeKey::Egress(ip(outside))),
            Some(Err(ToolFailure::NotProbed(why))) if why.starts_with("not needed")
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_witnesses_of_a_lost_connection_on_a_cut_node_are_recorded_as_not_answering() {
        let replies = run(lost(), false).await;
        assert!(unanswered(&replies, ProbeKey::Capture(ip(DEST))), "{replies:?}");
        assert!(unanswered(&replies, ProbeKey::Listeners(ip(DEST))), "{replies:?}");
        assert!(matches!(
            replies.agents.get(&("node-b".to_string(), RunIn::Node)),
            Some(Err(ToolFailure::Agent { .. }))
        ));
        // The source's own answer is untouched.
        assert!(replies.lost(ip(DEST)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sockets_asked_after_an_unreachable_answer_are_read_when_the_node_answers() {
        let replies = run(host_unreachable(), true).await;
        assert!(matches!(
            replies.result(ProbeKey::Listeners(ip(DEST))),
            Some(Ok(ProbeResult::Listeners(_)))
        ));
        // Nothing was lost, so the capture was not needed.
        assert!(matches!(
            replies.result(ProbeKey::Capture(ip(DEST))),
            Some(Err(ToolFailure::NotProbed(why))) if why.starts_with("not needed")
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sockets_asked_after_an_unreachable_answer_on_a_cut_node_are_recorded_as_not_answering() {
        let replies = run(host_unreachable(), false).await;
        assert!(unanswered(&replies, ProbeKey::Listeners(ip(DEST))), "{replies:?}");
        assert!(matches!(
            replies.result(ProbeKey::Endpoint(ip(DEST), 8080)),
            Some(Ok(ProbeResult::Tcp(t))) if t.outcome == host_unreachable()
        ));
    }
}
