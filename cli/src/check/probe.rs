//! Executing a plan: the probes go to the agents through a narrow trait ([`AgentTransport`]),
//! one request per (node, pod namespace), all at once. The plugin's transport port-forwards
//! through the API server (`agent_client`); tests use a fake.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use netdiag_proto::{ProbeReport, ProbeRequest, ProbeResult};

use super::evidence::AgentPods;
use super::plan::{PlannedProbe, ProbeKey, RunIn};
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

/// The transport when there is no way to reach agents (no client could be built): every
/// request fails with the reason.
pub struct NoAgents(pub ToolFailure);

impl AgentTransport for NoAgents {
    async fn probe(&self, _: &str, _: &ProbeRequest, _: Duration) -> Result<AgentReply, ToolFailure> {
        Err(self.0.clone())
    }

    fn location(&self) -> Option<AgentPods> {
        None
    }
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

/// Sends every planned probe, grouped into one request per (node, namespace), concurrently: the
/// source pod's probes in one, and each destination node's in one.
pub async fn execute<A: AgentTransport>(agents: &A, probes: &[PlannedProbe], deadline: Duration) -> Replies {
    let mut groups: BTreeMap<(String, RunIn), Vec<&PlannedProbe>> = BTreeMap::new();
    for p in probes {
        groups.entry((p.node.clone(), p.run_in)).or_default().push(p);
    }
    let asks = groups.into_iter().map(|(at, group)| async move {
        let request = ProbeRequest {
            source: at.1.source(),
            probes: group.iter().map(|p| p.probe.clone()).collect(),
        };
        let reply = agents.probe(&at.0, &request, deadline).await.and_then(|reply| {
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
        });
        (at, group, reply)
    });
    let mut replies = Replies::default();
    for (at, group, reply) in join_all(asks).await {
        for (i, p) in group.iter().enumerate() {
            let result = match &reply {
                Ok(r) => Ok(r.report.results[i].clone()),
                Err(failure) => Err(failure.clone()),
            };
            replies.results.insert(p.key, result);
        }
        let agent = reply.map(|r| (r.agent, r.report.netns.path));
        replies.agents.insert(at, agent);
    }
    replies
}
