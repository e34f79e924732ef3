//! The minimal NetworkPolicy that admits a flow the policies deny, verified by re-running the
//! evaluator over the cluster's objects with it added (pure: works from the [`Snapshot`] and the
//! [`Evidence`] of one check).
//!
//! For a denied ingress it writes a policy in the destination's namespace selecting the
//! destination pods by their `app` label (else all their labels) and admitting the source pods
//! (by label, in their namespace) on the one port; for a denied egress, a policy selecting the
//! source pods admitting the destination; for blocked DNS, egress to the DNS pods on 53/UDP and
//! 53/TCP. An Admin-tier deny cannot be overridden by any NetworkPolicy: then there is none.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use netdiag_proto::{DnsOutcome, TcpOutcome, UdpOutcome};
use serde_json::{Value, json};

use super::evidence::{DeniedSide, EndpointsFacts, Evidence, Fact, LiveFact, PolicyCheck};
use super::report::PolicySuggestion;
use super::snapshot::Snapshot;
use crate::policy::{Flow, Peer, PolicyIndex, Protocol};

/// A denied side of one flow: who is selected, the peer to admit, and on which port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Admission {
    /// Namespace of the new policy (the selected pods' namespace).
    namespace: String,
    /// Labels of the pods the policy selects.
    subject: BTreeMap<String, String>,
    ingress: bool,
    peer: PeerSel,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PeerSel {
    Pods {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    Ip(IpAddr),
}

/// The labels a selector names a pod by: `app` or `app.kubernetes.io/name` when it has one,
/// else all its labels (`None` when it has none).
fn selector_labels(pod: &Pod) -> Option<BTreeMap<String, String>> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    for key in ["app", "app.kubernetes.io/name"] {
        if let Some(value) = labels.get(key) {
            return Some(BTreeMap::from([(key.to_string(), value.clone())]));
        }
    }
    (!labels.is_empty()).then_some(labels)
}

fn find_pod<'a>(pods: &'a [Pod], peer: &Peer) -> Option<&'a Pod> {
    let Peer::Pod { namespace, name } = peer else {
        return None;
    };
    pods.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(name)
    })
}

/// The flows the check found denied and not connected: source → each endpoint, and source →
/// each DNS pod when the name did not resolve.
fn denied_flows(ev: &Evidence) -> Vec<(Flow, PolicyCheck)> {
    let from = Peer::pod(ev.from.namespace.clone(), ev.from.name.clone());
    let mut flows = Vec::new();
    if let EndpointsFacts::Known(endpoints) = &ev.endpoints {
        for e in endpoints {
            let (Some(port), PolicyCheck::Denied { .. }) = (e.port, &e.policy) else {
                continue;
            };
            // Probed and not connected (not answered, for UDP): a not-ready endpoint is never
            // probed or blamed.
            let failed = match &e.live {
                LiveFact::Udp(Fact::Known(o)) => !matches!(o, UdpOutcome::Answered { .. }),
                LiveFact::Tcp(Fact::Known(o)) => !matches!(o, TcpOutcome::Connected { .. }),
                LiveFact::Udp(Fact::Unknown(_)) | LiveFact::Tcp(Fact::Unknown(_)) => false,
            };
            if !failed {
                continue;
            }
            let to = match &e.pod {
                Some(pod) => Peer::pod(pod.namespace.clone(), pod.name.clone()),
                None => Peer::Ip(e.ip),
            };
            let protocol = denied_protocol(&e.policy);
            flows.push((flow(&from, to, port, protocol), e.policy.clone()));
        }
    }
    let unresolved = ev.dns.as_ref().is_some_and(
        |d| !matches!(&d.result, Fact::Known(r) if matches!(r.answer.outcome, DnsOutcome::Resolved { .. })),
    );
    if unresolved && let Some(cluster) = ev.dns.as_ref().and_then(|d| d.cluster_dns.known()) {
        for pod in cluster.pods.iter().filter(|p| p.ready) {
            if !matches!(pod.egress_policy, PolicyCheck::Denied { .. }) {
                continue;
            }
            let to = match &pod.pod {
                Some(p) => Peer::pod(p.namespace.clone(), p.name.clone()),
                None => Peer::Ip(pod.ip),
            };
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                flows.push((flow(&from, to.clone(), 53, protocol), pod.egress_policy.clone()));
            }
        }
    }
    flows
}

fn denied_protocol(check: &PolicyCheck) -> Protocol {
    match check {
        PolicyCheck::Denied { egress, ingress } => egress
            .as_ref()
            .or(ingress.as_ref())
            .map(|s| s.protocol)
            .unwrap_or_default(),
        _ => Protocol::Tcp,
    }
}

fn flow(from: &Peer, to: Peer, port: u16, protocol: Protocol) -> Flow {
    Flow {
        from: from.clone(),
        to,
        port,
        protocol,
    }
}

/// The admissions one denied flow needs, or `None` when no NetworkPolicy can admit it (an
/// Admin-tier deny, a pod without labels to select).
fn admissions(pods: &[Pod], flow: &Flow, check: &PolicyCheck) -> Option<Vec<Admission>> {
    let PolicyCheck::Denied { egress, ingress } = check else {
        return Some(vec![]);
    };
    let sides: [(&Option<Box<DeniedSide>>, bool); 2] = [(ingress, true), (egress, false)];
    let mut out = Vec::new();
    for (side, is_ingress) in sides {
        let Some(side) = side else { continue };
        if side.needs_cluster_admin() {
            return None;
        }
        let (subject, peer) = if is_ingress {
            (&flow.to, &flow.from)
        } else {
            (&flow.from, &flow.to)
        };
        let subject_pod = find_pod(pods, subject)?;
        let peer = match find_pod(pods, peer) {
            Some(pod) => PeerSel::Pods {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                labels: selector_labels(pod)?,
            },
            None => match peer {
                Peer::Ip(ip) => PeerSel::Ip(*ip),
                Peer::Pod { .. } => return None,
            },
        };
        out.push(Admission {
            namespace: subject_pod.metadata.namespace.clone().unwrap_or_default(),
            subject: selector_labels(subject_pod)?,
            ingress: is_ingress,
            peer,
        });
    }
    Some(out)
}

fn peer_json(peer: &PeerSel) -> Value {
    match peer {
        PeerSel::Pods { namespace, labels } => json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "podSelector": {"matchLabels": labels},
        }),
        PeerSel::Ip(IpAddr::V4(ip)) => json!({"ipBlock": {"cidr": format!("{ip}/32")}}),
        PeerSel::Ip(IpAddr::V6(ip)) => json!({"ipBlock": {"cidr": format!("{ip}/128")}}),
    }
}

/// A DNS-1123 name for the policy: `allow-<from>-to-<to>`, at most 63 characters.
fn policy_name(admission: &Admission) -> String {
    let short = |labels: &BTreeMap<String, String>| labels.values().next().cloned().unwrap_or_default();
    let (from, to) = match (&admission.peer, admission.ingress) {
        (PeerSel::Pods { labels, .. }, true) => (short(labels), short(&admission.subject)),
        (PeerSel::Ip(ip), true) => (ip.to_string(), short(&admission.subject)),
        (PeerSel::Pods { labels, .. }, false) => (short(&admission.subject), short(labels)),
        (PeerSel::Ip(ip), false) => (short(&admission.subject), ip.to_string()),
    };
    let raw = format!(
        "allow-{from}-to-{to}-{}",
        if admission.ingress { "ingress" } else { "egress" }
    );
    let mut name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(63);
    name.trim_matches('-').to_string()
}

/// One policy per (subject, direction, peer), its ports the union of the denied flows' ports.
fn policies(admissions: &BTreeMap<Admission, Vec<(u16, Protocol)>>) -> Vec<Value> {
    admissions
        .iter()
        .map(|(a, ports)| {
            let ports: Vec<Value> = ports
                .iter()
                .map(|(port, protocol)| json!({"port": port, "protocol": protocol.as_str()}))
                .collect();
            let (direction, rule) = if a.ingress {
                ("Ingress", json!({"from": [peer_json(&a.peer)], "ports": ports}))
            } else {
                ("Egress", json!({"to": [peer_json(&a.peer)], "ports": ports}))
            };
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": policy_name(a), "namespace": a.namespace},
                "spec": {
                    "podSelector": {"matchLabels": a.subject},
                    "policyTypes": [direction],
                    direction.to_lowercase(): [rule],
                },
            })
        })
        .collect()
}

/// The NetworkPolicy that admits the check's denied flows, verified with the evaluator; `None`
/// when nothing is denied, the objects are unknown, or no NetworkPolicy can admit the flow.
pub fn suggest(snap: &Snapshot, ev: &Evidence) -> Option<PolicySuggestion> {
    let (Fact::Known(namespaces), Fact::Known(pods), Fact::Known(existing), Fact::Known(admin)) =
        (&snap.namespaces, &snap.pods, &snap.policies, &snap.admin)
    else {
        return None;
    };
    let flows = denied_flows(ev);
    if flows.is_empty() {
        return None;
    }
    let mut needed: BTreeMap<Admission, Vec<(u16, Protocol)>> = BTreeMap::new();
    for (flow, check) in &flows {
        for admission in admissions(pods, flow, check)? {
            let ports = needed.entry(admission).or_default();
            if !ports.contains(&(flow.port, flow.protocol)) {
                ports.push((flow.port, flow.protocol));
            }
        }
    }
    let documents = policies(&needed);
    let added: Vec<NetworkPolicy> = documents
        .iter()
        .map(|d| serde_json::from_value(d.clone()).expect("a built NetworkPolicy deserializes"))
        .collect();
    let mut all = existing.clone();
    all.extend(added);
    let index = PolicyIndex::with_admin(namespaces, pods, &all, admin);
    let verified = flows
        .iter()
        .all(|(flow, _)| index.evaluate_tiers(flow).is_ok_and(|v| v.allowed));
    let yaml = documents
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("a JSON value serializes to YAML"))
        .collect::<Vec<_>>()
        .join("---\n");
    let mut admits: Vec<String> = flows
        .iter()
        .map(|(f, _)| format!("{} → {}:{}/{}", f.from, f.to, f.port, f.protocol))
        .collect();
    admits.dedup();
    Some(PolicySuggestion {
        yaml,
        admits,
        verified,
    })
}

#[cfg(test)]
#[path = "snippet_tests.rs"]
mod tests;
