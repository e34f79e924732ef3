//! The `source` layer: the client pod exists, runs, and its agent probed from its netns.

use super::*;
use crate::agent_identity::{AGENT_DAEMONSET, agent_install_command};

pub(super) fn judge_source(cx: &Context) -> Judgment {
    match &cx.source {
        SourceFacts::Unknown(reason) => {
            let fix = match reason {
                ToolFailure::Forbidden { .. } => reason
                    .can_i()
                    .unwrap_or_else(|| format!("kubectl auth can-i get pods -n {}", cx.from.namespace)),
                ToolFailure::Config { .. } => "kubectl config get-contexts".to_string(),
                _ => "kubectl cluster-info".to_string(),
            };
            undetermined(
                SourceFinding::Unreadable {
                    from: cx.from.clone(),
                    reason: reason.clone(),
                },
                vec![],
                vec![cmd(fix)],
            )
        }
        SourceFacts::Missing {
            namespace,
            name,
            elsewhere,
        } => {
            let mut evidence = vec![];
            if !elsewhere.is_empty() {
                evidence.push(format!(
                    "a pod named {name} exists in namespace(s): {}",
                    elsewhere.join(", ")
                ));
            }
            fail(
                SourceFinding::PodNotFound {
                    pod: NamespacedName::new(namespace.clone(), name.clone()),
                },
                evidence,
                vec![cmd(format!("kubectl get pods -n {namespace}"))],
            )
        }
        SourceFacts::Found { pod, agent } => {
            let key = pod.key();
            let describe = cmd(format!("kubectl -n {} describe pod {}", pod.namespace, pod.name));
            let (Some(node), Some(ip)) = (&pod.node, pod.ip) else {
                return fail(
                    SourceFinding::WithoutIp {
                        pod: key,
                        phase: pod.phase.clone(),
                    },
                    vec![format!(
                        "phase {}, node {}",
                        pod.phase,
                        pod.node.as_deref().unwrap_or("(unscheduled)")
                    )],
                    vec![describe],
                );
            };
            if pod.phase != "Running" {
                return fail(
                    SourceFinding::NotRunning {
                        pod: key,
                        phase: pod.phase.clone(),
                        node: node.clone(),
                    },
                    vec![format!("pod IP {ip}")],
                    vec![describe.clone()],
                );
            }
            match agent {
                AgentFacts::Answered { agent_pod, netns } => pass(
                    SourceFinding::Probed {
                        pod: key,
                        node: node.clone(),
                        ip,
                    },
                    vec![format!("agent {agent_pod} probed from {netns}")],
                ),
                AgentFacts::NotAsked => undetermined(
                    SourceFinding::AgentNotAsked {
                        pod: key,
                        node: node.clone(),
                    },
                    vec![],
                    agent_pods_fix(cx),
                ),
                AgentFacts::Failed(reason) => {
                    let fix = match (&cx.agents, reason) {
                        (Some(at), ToolFailure::AgentForbidden { .. }) => {
                            vec![cmd(format!(
                                "kubectl auth can-i get pods/portforward -n {}",
                                at.namespace
                            ))]
                        }
                        // Finding the agents lists their pods and reads their DaemonSet.
                        (Some(at), ToolFailure::Forbidden { .. }) => vec![
                            cmd(format!("kubectl auth can-i list pods -n {}", at.namespace)),
                            cmd(format!(
                                "kubectl auth can-i get daemonsets.apps/{AGENT_DAEMONSET} -n {}",
                                at.namespace
                            )),
                        ],
                        // Where the agents were looked for, then how to install them there.
                        (_, ToolFailure::AgentMissing { .. }) => {
                            let mut fix = agent_pods_fix(cx);
                            fix.push(cmd(agent_install_command()));
                            fix
                        }
                        _ => agent_pods_fix(cx),
                    };
                    undetermined(
                        SourceFinding::AgentUnavailable {
                            pod: key,
                            node: node.clone(),
                            reason: reason.clone(),
                        },
                        vec!["no probe ran, so no network layer can be judged".into()],
                        fix,
                    )
                }
            }
        }
    }
}

/// Commands that show the agents where the check looked for them.
pub(super) fn agent_pods_fix(cx: &Context) -> Vec<FixLine> {
    match &cx.agents {
        Some(AgentPods { namespace, selector }) => vec![
            cmd(format!("kubectl -n {namespace} get pods -l {selector} -o wide")),
            cmd(format!("kubectl -n {namespace} get daemonsets")),
        ],
        None => vec![],
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
