//! Why the tool could not look: a value the judge matches on (a forbidden read gets an
//! `auth can-i` fix, a missing agent a DaemonSet one), worded only when it is printed.

use std::fmt;

use super::error_chain;

/// A look that did not happen. Never a network failure: the judge reports it as UNDETERMINED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolFailure {
    /// RBAC denied an API read (`action` is what was attempted: `list pods in all namespaces`).
    Forbidden { action: String, message: String },
    /// The API server answered the read with another error status.
    ApiError {
        action: String,
        code: u16,
        message: String,
    },
    /// The API server could not be reached, or did not answer in time.
    ApiUnreachable { action: String, detail: String },
    /// No kubeconfig or client could be set up.
    Config { detail: String },
    /// No genuine agent runs on the node.
    AgentMissing {
        node: String,
        namespace: String,
        selector: String,
    },
    /// RBAC denied the port-forward to the agent pod.
    AgentForbidden { agent: String, detail: String },
    /// The agent was reached but could not run the probes, or its answer was unusable.
    Agent { detail: String },
    /// The check chose not to look, for the reason given (`UDP port 53: netdiag probes TCP only`).
    NotProbed(String),
}

impl ToolFailure {
    /// Classifies a failed API call; `action` names it (`list services in all namespaces`).
    pub fn from_kube(action: &str, err: &kube::Error) -> Self {
        let action = action.to_string();
        match err {
            kube::Error::Api(status) if status.code == 403 => ToolFailure::Forbidden {
                action,
                message: status.message.clone(),
            },
            kube::Error::Api(status) => ToolFailure::ApiError {
                action,
                code: status.code,
                message: status.message.clone(),
            },
            other => ToolFailure::ApiUnreachable {
                action,
                detail: error_chain(other),
            },
        }
    }

    /// Whether Kubernetes RBAC refused the look.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            ToolFailure::Forbidden { .. } | ToolFailure::AgentForbidden { .. }
        )
    }
}

impl std::error::Error for ToolFailure {}

impl fmt::Display for ToolFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolFailure::Forbidden { action, message } => write!(f, "forbidden to {action}: {message}"),
            ToolFailure::ApiError {
                action,
                code,
                message,
            } => write!(f, "failed to {action}: {message} ({code})"),
            ToolFailure::ApiUnreachable { action, detail } => write!(f, "failed to {action}: {detail}"),
            ToolFailure::Config { detail } | ToolFailure::Agent { detail } => f.write_str(detail),
            ToolFailure::AgentMissing {
                node,
                namespace,
                selector,
            } => write!(
                f,
                "no running netdiag agent on node {node} (no pod with {selector} in namespace {namespace})"
            ),
            ToolFailure::AgentForbidden { agent, detail } => {
                write!(f, "forbidden to port-forward to agent pod {agent}: {detail}")
            }
            ToolFailure::NotProbed(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_403_is_forbidden_and_names_the_read() {
        let failure = ToolFailure::from_kube(
            "list pods in all namespaces",
            &api_error(403, "pods is forbidden"),
        );
        assert!(failure.is_forbidden());
        assert_eq!(
            failure.to_string(),
            "forbidden to list pods in all namespaces: pods is forbidden"
        );
    }

    #[test]
    fn another_status_is_an_api_error_with_its_code() {
        let failure = ToolFailure::from_kube("list services in all namespaces", &api_error(500, "etcd down"));
        assert!(!failure.is_forbidden());
        assert_eq!(
            failure.to_string(),
            "failed to list services in all namespaces: etcd down (500)"
        );
    }
}
