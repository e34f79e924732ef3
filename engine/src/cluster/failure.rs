//! Why the tool could not look: a value the judge matches on (a forbidden read gets an
//! `auth can-i` fix, a missing agent a DaemonSet one), worded only when it is printed.

use std::fmt;

use super::error_chain;

/// A look that did not happen. Never a network failure: the judge reports it as UNDETERMINED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolFailure {
    /// RBAC denied an API read (`action` is what was attempted: `list pods in all namespaces`;
    /// `access`, when known, the permission it needed).
    Forbidden {
        action: String,
        message: String,
        /// Boxed: most failures carry none, and a failure travels in every probe result.
        access: Option<Box<Access>>,
    },
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
                access: None,
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

    /// This failure, naming the permission it needed when RBAC refused it.
    pub fn needing(self, needed: Access) -> Self {
        match self {
            ToolFailure::Forbidden { action, message, .. } => ToolFailure::Forbidden {
                action,
                message,
                access: Some(Box::new(needed)),
            },
            other => other,
        }
    }

    /// The `kubectl auth can-i` line that shows the missing permission, when it is known.
    pub fn can_i(&self) -> Option<String> {
        match self {
            ToolFailure::Forbidden {
                access: Some(access), ..
            } => Some(access.can_i()),
            _ => None,
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

/// A permission an API read needs, as RBAC and `kubectl auth can-i` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `get` or `list`.
    pub verb: &'static str,
    /// The resource with its group when it has one (`endpointslices.discovery.k8s.io`).
    pub resource: &'static str,
    /// The object's name, for a `get`.
    pub name: Option<String>,
    /// The namespace; `None` for every namespace, or for a cluster-scoped resource.
    pub namespace: Option<String>,
    /// Whether the resource is cluster-scoped (no `--all-namespaces` to ask about).
    pub cluster_scoped: bool,
}

impl Access {
    /// `kubectl auth can-i list pods -n shop`, `… get namespaces/shop`, `… list pods -A`.
    pub fn can_i(&self) -> String {
        let object = match &self.name {
            Some(name) => format!("{}/{name}", self.resource),
            None => self.resource.to_string(),
        };
        let scope = match (&self.namespace, self.cluster_scoped) {
            (Some(namespace), _) => format!(" -n {namespace}"),
            (None, true) => String::new(),
            (None, false) => " --all-namespaces".to_string(),
        };
        format!("kubectl auth can-i {} {object}{scope}", self.verb)
    }
}

impl fmt::Display for ToolFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolFailure::Forbidden { action, message, .. } => write!(f, "forbidden to {action}: {message}"),
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
    fn a_forbidden_read_names_the_can_i_line_of_the_permission_it_needed() {
        let failure =
            ToolFailure::from_kube("get namespaces/shop", &api_error(403, "namespaces is forbidden"));
        assert_eq!(failure.can_i(), None);
        let failure = failure.needing(Access {
            verb: "get",
            resource: "namespaces",
            name: Some("shop".into()),
            namespace: None,
            cluster_scoped: true,
        });
        assert_eq!(
            failure.can_i().as_deref(),
            Some("kubectl auth can-i get namespaces/shop")
        );
        assert_eq!(
            failure.to_string(),
            "forbidden to get namespaces/shop: namespaces is forbidden"
        );
        let list = Access {
            verb: "list",
            resource: "endpointslices.discovery.k8s.io",
            name: None,
            namespace: Some("shop".into()),
            cluster_scoped: false,
        };
        assert_eq!(
            list.can_i(),
            "kubectl auth can-i list endpointslices.discovery.k8s.io -n shop"
        );
        let everywhere = Access {
            namespace: None,
            ..list
        };
        assert_eq!(
            everywhere.can_i(),
            "kubectl auth can-i list endpointslices.discovery.k8s.io --all-namespaces"
        );
        let unreachable = ToolFailure::ApiUnreachable {
            action: "get pods/a in namespace b".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(unreachable.needing(everywhere).can_i(), None);
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
