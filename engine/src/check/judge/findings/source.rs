//! The `source` layer's findings and their wording.

use std::fmt;
use std::net::IpAddr;

use crate::check::report::Code;
use crate::cluster::{NamespacedName, ToolFailure};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SourceFinding {
    Unreadable {
        from: NamespacedName,
        reason: ToolFailure,
    },
    PodNotFound {
        pod: NamespacedName,
    },
    WithoutIp {
        pod: NamespacedName,
        phase: String,
    },
    NotRunning {
        pod: NamespacedName,
        phase: String,
        node: String,
    },
    Probed {
        pod: NamespacedName,
        node: String,
        ip: IpAddr,
    },
    AgentNotAsked {
        pod: NamespacedName,
        node: String,
    },
    AgentUnavailable {
        pod: NamespacedName,
        node: String,
        reason: ToolFailure,
    },
}

impl SourceFinding {
    pub fn code(&self) -> Code {
        match self {
            SourceFinding::Unreadable { .. } => Code::SourceUnreadable,
            SourceFinding::PodNotFound { .. } => Code::SourcePodNotFound,
            SourceFinding::WithoutIp { .. } => Code::SourcePodWithoutIp,
            SourceFinding::NotRunning { .. } => Code::SourcePodNotRunning,
            SourceFinding::Probed { .. } => Code::SourceProbed,
            SourceFinding::AgentNotAsked { .. } => Code::SourceAgentNotAsked,
            SourceFinding::AgentUnavailable { .. } => Code::SourceAgentUnavailable,
        }
    }
}

impl fmt::Display for SourceFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceFinding::Unreadable { from, reason } => {
                write!(f, "could not read the source pod {from}: {reason}")
            }
            SourceFinding::PodNotFound { pod } => write!(f, "pod {pod} not found"),
            SourceFinding::WithoutIp { pod, phase } => {
                write!(f, "{pod} is {phase} without an IP; it cannot send traffic yet")
            }
            SourceFinding::NotRunning { pod, phase, node } => {
                write!(f, "{pod} is {phase} on {node}, not Running")
            }
            SourceFinding::Probed { pod, node, ip } => write!(
                f,
                "{pod} Running on {node} ({ip}), netns found by the agent on {node}"
            ),
            SourceFinding::AgentNotAsked { pod, node } => {
                write!(f, "{pod} Running on {node} but its agent was not asked")
            }
            SourceFinding::AgentUnavailable { pod, node, reason } => {
                write!(f, "cannot probe as {pod} on {node}: {reason}")
            }
        }
    }
}
