//! Executing a plan: the probes go to the agents through a narrow trait ([`AgentTransport`]),
//! one request per (node, pod namespace), all at once. The plugin's transport port-forwards
//! through the API server (`agent_client`); tests use a fake.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::{AbortHandle, Abortable, join_all};
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
    let mut source = std::pin::pin!(ask_all(agents, &direct, deadline));
    let mut replies = match tokio::time::timeout(grace, source.as_mut()).await {
        Ok(mut replies) => {
            let late = needed_sockets(&replies, &speculative, &BTreeSet::new());
            replies.extend(ask_all(agents, &groups(late), deadline).await);
            replies
        }
        Err(_) => witnessed(agents, source, &speculative, deadline).await,
    };
    not_needed(&mut replies, &denied, "NetworkPolicy denies the connection");
    not_needed(
        &mut replies,
        &speculative,
        "every connection to the pod was established, or none was lost",
    );
    replies
}

/// The source's replies (`source`, still running) together with the destination nodes'
/// speculative requests, started now: each is awaited if it watches a lost connection's pod,
/// else dropped once the source answered; the sockets it would have read for a failed connection
/// are then asked on their own.
async fn witnessed<A: AgentTransport>(
    agents: &A,
    source: impl Future<Output = Replies>,
    speculative: &[&PlannedProbe],
    deadline: Duration,
) -> Replies {
    let started = groups(speculative.to_vec());
    let (handles, abortable): (Vec<_>, Vec<_>) = started
        .iter()
        .map(|(at, group)| {
            let (handle, registration) = AbortHandle::new_pair();
            (
                handle,
                Abortable::new(ask(agents, at, group, deadline), registration),
            )
        })
        .unzip();
    let decide = async {
        let mut replies = source.await;
        let mut kept = BTreeSet::new();
        for ((_, group), handle) in started.iter().zip(&handles) {
            if group.iter().any(|p| {
                matches!(p.probe, Probe::Capture(_)) && explains(p).is_some_and(|ip| replies.lost(ip))
            }) {
                kept.extend(group.iter().map(|p| p.key));
            } else {
                handle.abort();
            }
        }
        let late = needed_sockets(&replies, speculative, &kept);
        replies.extend(ask_all(agents, &groups(late), deadline).await);
        replies
    };
    let (mut replies, speculated) = futures::join!(decide, join_all(abortable));
    for ((at, group), reply) in started.iter().zip(speculated) {
        if let Ok(reply) = reply {
            replies.record(at.clone(), group, reply);
        }
    }
    replies
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

/// Every group's request at once, their replies spread over their probes.
async fn ask_all<A: AgentTransport>(agents: &A, groups: &[Group<'_>], deadline: Duration) -> Replies {
    let asked = join_all(groups.iter().map(|(at, g)| ask(agents, at, g, deadline))).await;
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
