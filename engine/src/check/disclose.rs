//! What a report may tell a caller who may not read every namespace the check looked into (the
//! agents' in-cluster endpoint decides who may; the plugin's user reads the cluster themself).
//! Pure.
//!
//! [`foreign_namespaces`] lists the namespaces other than the source's whose objects the evidence
//! holds: the Service and its pods, the target pod, the destination's NetworkPolicies, the
//! namespaces a source or Service name was found in instead. [`withheld`] is the report reduced to
//! what names nothing of them: the verdict, each layer's status and a fixed sentence per layer —
//! no address, node, pod, socket, policy name or YAML. It builds the reduced report field by field
//! from enums, so a field added to [`Report`] later cannot pass through unseen.
//!
//! The cluster's own plumbing is not counted as foreign: the cluster DNS pods (every pod's
//! resolv.conf names the DNS Service) and the agents, nor cluster-scoped admin policies.

use std::collections::BTreeSet;

use super::evidence::{DnsFacts, EndpointsFacts, Evidence, PolicyCheck, ServiceFacts, SourceFacts};
use super::report::{FamilyReport, FixLine, Layer, Report, Status, Step};

/// The advice of a reduced report.
pub const WITHHELD_HINT: &str = "details of the destination are withheld: it is in a namespace other than the \
     source's where you may not list pods, services and networkpolicies; someone who may can run the \
     same check for the full report";

/// The namespaces other than the source's that the evidence names objects of.
pub fn foreign_namespaces(ev: &Evidence) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let SourceFacts::Missing { elsewhere, .. } = &ev.source {
        out.extend(elsewhere.iter().cloned());
    }
    if let Some(dns) = &ev.dns {
        dns_namespaces(dns, &mut out);
    }
    match &ev.service {
        ServiceFacts::Found(svc) => {
            out.insert(svc.namespace.clone());
            out.extend(svc.selected_pods.iter().map(|p| p.namespace.clone()));
        }
        ServiceFacts::Missing { namespace, .. } => {
            out.insert(namespace.clone());
        }
        ServiceFacts::NotApplicable | ServiceFacts::Unknown(_) => {}
    }
    match &ev.endpoints {
        EndpointsFacts::Known(endpoints) => {
            for e in endpoints {
                out.extend(e.pod.iter().map(|p| p.namespace.clone()));
                out.extend(e.slice.iter().map(|s| s.namespace.clone()));
                policy_namespaces(&e.policy, &mut out);
            }
        }
        EndpointsFacts::TargetPodMissing { namespace, .. } => {
            out.insert(namespace.clone());
        }
        EndpointsFacts::Unknown(_) => {}
    }
    out.remove(&ev.from.namespace);
    out
}

/// The namespaces a name's facts point into: the guessed Service's, and those holding a Service
/// of that name instead (the cluster DNS pods are not counted, see the module).
fn dns_namespaces(dns: &DnsFacts, out: &mut BTreeSet<String>) {
    out.extend(dns.service_guess.iter().map(|s| s.namespace.clone()));
    out.extend(dns.same_name_elsewhere.iter().map(|s| s.namespace.clone()));
}

/// The namespaces of the NetworkPolicies that decide a flow.
fn policy_namespaces(check: &PolicyCheck, out: &mut BTreeSet<String>) {
    if let PolicyCheck::Denied { egress, ingress } = check {
        for side in egress.iter().chain(ingress) {
            out.extend(
                side.policies
                    .iter()
                    .flat_map(|ps| ps.iter())
                    .map(|p| p.namespace.clone()),
            );
        }
    }
}

/// `report` reduced to its verdict, each layer's status and a sentence that names nothing.
pub fn withheld(report: &Report) -> Report {
    // Every field is named (no `..`): a new field must be decided here before it compiles.
    let mut out = Report {
        verdict: report.verdict,
        reachable: report.reachable,
        failing_layer: report.failing_layer,
        steps: report
            .steps
            .iter()
            .map(|s| Step {
                layer: s.layer,
                status: s.status,
                // A finding's code says what was found there: withheld with the sentence.
                summary: sentence(s.layer, s.status).into(),
                evidence: vec![],
            })
            .collect(),
        fix: vec![],
        commands: vec![],
        hints: vec![],
        network_policy: None,
        duration_ms: report.duration_ms,
        endpoints: vec![],
        families: report
            .families
            .iter()
            .map(|f| FamilyReport {
                family: f.family,
                verdict: f.verdict,
                failing_layer: f.failing_layer,
                summary: f
                    .failing_layer
                    .map(|layer| sentence(layer, Status::Fail).to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        withheld: true,
        repeat: None,
    };
    out.set_fix(vec![FixLine::Hint(WITHHELD_HINT.into())]);
    out
}

/// The one sentence a reduced report says of `layer` with `status`.
pub fn sentence(layer: Layer, status: Status) -> &'static str {
    match status {
        Status::Pass => "passed (details withheld)",
        Status::Skip => "not judged",
        Status::Undetermined => "could not be checked (details withheld)",
        Status::Fail => match layer {
            Layer::Source => "the source pod cannot send traffic yet (details withheld)",
            Layer::Dns => {
                "the target name does not resolve as expected from the source pod (details withheld)"
            }
            Layer::Service => "the Service does not serve the requested port as asked (details withheld)",
            Layer::Endpoints => "no ready endpoint backs the requested port (details withheld)",
            Layer::NetworkPolicy => "NetworkPolicy does not allow this flow (details withheld)",
            Layer::PodNetwork => {
                "the destination's pod addresses do not answer from the source pod (details withheld)"
            }
            Layer::ServiceProxy => {
                "the Service's virtual IP does not forward while its pods answer (details withheld)"
            }
            Layer::Application => "nothing accepts connections on the destination port (details withheld)",
        },
    }
}

#[cfg(test)]
#[path = "disclose_tests.rs"]
mod tests;
