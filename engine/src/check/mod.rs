//! The check engine: walks the connectivity checklist from a pod to a target and names the
//! failing layer. One library for every front end (the kubectl plugin today, the agent's
//! in-cluster endpoint next): give it a Kubernetes client and an [`AgentTransport`].
//!
//! The stages, in order, each in its own module:
//! 1. [`snapshot`] reads what the flow depends on from the API server ([`reads`] decides
//!    which objects; the only API I/O);
//! 2. [`plan`] decides, purely, what the target is and which agent runs which probe;
//! 3. [`probe`] executes the plan behind the [`AgentTransport`] trait (the only agent I/O);
//! 4. [`assemble`] turns plan and replies into [`evidence::Evidence`], purely;
//! 5. [`judge`] turns the evidence into the [`report::Report`], purely, layer by layer
//!    ([`family`] judges each address family of a dual-stack target on its own and combines).
//!
//! `target` parses the flags, `workload` picks the pod behind `--from deploy/NAME`, `snippet`
//! writes the NetworkPolicy that admits a denied flow, and `cmd` is the plugin's front end.

pub mod assemble;
pub mod codes;
pub mod disclose;
pub mod evidence;
pub mod family;
pub mod judge;
pub mod plan;
pub mod probe;
pub mod prose;
pub mod reads;
pub mod repeat;
pub mod report;
pub mod snapshot;
pub mod snippet;
pub mod target;
pub mod workload;

use std::collections::BTreeSet;
use std::net::IpAddr;

use evidence::Evidence;
use netdiag_proto::{DnsOutcome, ProbeResult};
pub use plan::CheckRequest;
pub use probe::AgentTransport;
pub use report::Report;
use snapshot::Snapshot;

use plan::ProbeKey;
use probe::Replies;

/// The report of `evidence` collected from `snap`: the judge's verdict and, when policy is the
/// failing layer, the NetworkPolicy that admits the flow (every front end answers the same).
pub fn verdict(snap: &Snapshot, evidence: &Evidence, duration_ms: u64) -> Report {
    let mut report = family::judge(evidence, duration_ms);
    judge::intermittent::apply(&mut report, evidence);
    if report.failing_layer == Some(report::Layer::NetworkPolicy) {
        report.network_policy = snippet::suggest(snap.as_followed(), evidence);
    }
    report
}

/// Plans from `snap`, probes through `agents` (twice for a name the API ties to no Service:
/// once to resolve it, once to probe what it resolved to, with the objects of that address read
/// then), and assembles the evidence.
pub async fn collect<A: AgentTransport>(snap: &Snapshot, agents: &A, request: &CheckRequest) -> Evidence {
    let gathered = gather(snap, agents, request).await;
    gathered.assemble(snap, agents, request, None)
}

/// [`collect`], with the live probes (DNS as the pod and to each DNS pod, the ClusterIP, every
/// endpoint) sent again round after round as `repetition` says, each round with new connections
/// and fresh lookups. The steady checklist judges each probe's usual result; the evidence's
/// `repeats` tallies every attempt ([`repeat`]).
pub async fn collect_repeated<A: AgentTransport>(
    snap: &Snapshot,
    agents: &A,
    request: &CheckRequest,
    repetition: repeat::Repetition,
) -> Evidence {
    let started = tokio::time::Instant::now();
    let mut gathered = gather(snap, agents, request).await;
    let repeated: Vec<plan::PlannedProbe> = gathered
        .plan
        .probes
        .iter()
        .filter(|p| repeat::is_repeated(p.key))
        .cloned()
        .collect();
    let mut samples = repeat::Samples::default();
    samples.add(&gathered.replies);
    let deadline = probe::agent_deadline(request.timeout);
    let denied = denied_endpoints(&gathered.plan.destination, &gathered.policy, request);
    while !repeated.is_empty() && repetition.another(samples.rounds, started.elapsed()) {
        tokio::time::sleep(repetition.pause()).await;
        let round = probe::execute(agents, &repeated, deadline, &denied, request.witness_grace()).await;
        samples.add(&round);
    }
    gathered.replies.results.extend(samples.usual());
    let facts = samples.facts(|key| gathered.plan.probed(key));
    gathered.assemble(snap, agents, request, Some(facts))
}

/// What a check's first round gave: its plan (followed to the address a name resolved to), the
/// replies and the policy evaluation.
struct Gathered {
    plan: plan::CheckPlan,
    replies: Replies,
    policy: assemble::PolicyEvaluation,
}

impl Gathered {
    fn assemble<A: AgentTransport>(
        self,
        snap: &Snapshot,
        agents: &A,
        request: &CheckRequest,
        repeats: Option<repeat::RepeatFacts>,
    ) -> Evidence {
        let read = snap.as_followed();
        let hints = assemble::ClusterHints {
            policy_enforcers: read.enforcers.clone(),
            source_zone: read.source_zone.clone(),
        };
        let mut evidence = assemble::assemble(
            request,
            self.plan,
            &self.replies,
            &self.policy,
            agents.location(),
            hints,
        );
        evidence.repeats = repeats;
        evidence
    }
}

async fn gather<A: AgentTransport>(snap: &Snapshot, agents: &A, request: &CheckRequest) -> Gathered {
    let deadline = probe::agent_deadline(request.timeout);
    let mut plan = plan::plan(snap, request);
    let mut policy = assemble::PolicyEvaluation::new(snap, &plan.source);
    let denied = denied_endpoints(&plan.destination, &policy, request);
    let mut replies = probe::execute(agents, &plan.probes, deadline, &denied, request.witness_grace()).await;
    if plan.follow_dns
        && let Some(resolved) = first_resolved(&replies)
        && let Some(port) = plan::followed_port(&plan.destination, request)
        && let followed = snap.follow(request, resolved, port).await
        && let Some((destination, probes)) = plan::follow_resolved(followed, request, &plan, resolved)
    {
        // The objects of the address it resolved to are read now: policy is evaluated with them.
        policy = assemble::PolicyEvaluation::new(followed, &plan.source);
        let denied = denied_endpoints(&destination, &policy, request);
        let more = probe::execute(agents, &probes, deadline, &denied, request.witness_grace()).await;
        plan.destination = destination;
        plan.probes.extend(probes);
        replies.extend(more);
    }
    Gathered {
        plan,
        replies,
        policy,
    }
}

/// The destination addresses NetworkPolicy denies the source: a failed connection to one is
/// already explained, so the witnesses at its pod are not waited for.
fn denied_endpoints(
    dest: &plan::DestinationPlan,
    policy: &assemble::PolicyEvaluation,
    request: &CheckRequest,
) -> BTreeSet<IpAddr> {
    plan::live_targets(dest)
        .into_iter()
        .filter(|e| {
            matches!(
                policy.endpoint(&request.from, e, dest),
                evidence::PolicyCheck::Denied { .. }
            )
        })
        .map(|e| e.ip)
        .collect()
}

/// The first address the target name resolved to, as the pod's libc returned it.
fn first_resolved(replies: &Replies) -> Option<std::net::IpAddr> {
    match replies.result(ProbeKey::Resolve)? {
        Ok(ProbeResult::Dns(result)) => match &result.answer.outcome {
            DnsOutcome::Resolved { addresses, .. } => addresses.first().copied(),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
