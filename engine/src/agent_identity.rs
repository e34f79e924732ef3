//! Which pods are netdiag's genuine agents: the one rule the plugin and agent-to-agent calls share.
//!
//! A genuine agent is a Running pod in the agent namespace whose controller reference is the agent
//! DaemonSet itself — its uid is the uid of the DaemonSet read by name, so a pod with an invented
//! reference of the right kind and name is no agent — and that runs as the agent's ServiceAccount.
//! Anyone who can create a pod with the agent's label must not receive probe requests (nor, agent
//! to agent, a token). [`read_agent_daemonset`] is the only I/O here; the rule itself is pure.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::cluster::ToolFailure;

/// The DaemonSet that controls genuine agent pods, and the account they run as.
pub const AGENT_DAEMONSET: &str = "netdiag-agent";
pub const AGENT_SERVICE_ACCOUNT: &str = "netdiag-agent";

/// The command that installs the agents of this release without a checkout: kustomize's remote
/// form of `deploy/` at the release tag (`v` and the version), from the workspace's
/// `repository` and `version`, so the fix a check prints never names a path only a checkout has.
/// The README's install section and the krew caveats give the same command.
pub fn agent_install_command() -> String {
    let repository = env!("CARGO_PKG_REPOSITORY");
    let repository = repository.strip_prefix("https://").unwrap_or(repository);
    let version = env!("CARGO_PKG_VERSION");
    format!("kubectl apply -k '{repository}/deploy?ref=v{version}'")
}

/// The agent DaemonSet as the API server has it: what a genuine agent's controller reference
/// points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDaemonSet {
    pub namespace: String,
    /// `None` when the namespace holds no such DaemonSet: then no pod there is an agent.
    pub uid: Option<String>,
}

/// Reads the agent DaemonSet by name in `namespace` (`get daemonsets.apps`). A DaemonSet that
/// does not exist is a value (no agents); a read that failed otherwise is the tool failure every
/// agent lookup then reports (a 403 names the permission).
pub async fn read_agent_daemonset(
    client: &kube::Client,
    namespace: &str,
) -> Result<AgentDaemonSet, ToolFailure> {
    let action = format!("get daemonset {AGENT_DAEMONSET} in namespace {namespace}");
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let uid = match api.get(AGENT_DAEMONSET).await {
        Ok(daemonset) => daemonset.metadata.uid.filter(|uid| !uid.is_empty()),
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(err) => return Err(ToolFailure::from_kube(&action, &err)),
    };
    Ok(AgentDaemonSet {
        namespace: namespace.to_string(),
        uid,
    })
}

/// Why a pod that carries the agent's label is not taken as an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotGenuine {
    /// No controller reference names the agent DaemonSet.
    NotControlled,
    /// The controller reference names the agent DaemonSet but carries another uid: a forged
    /// reference, or a pod left by a deleted DaemonSet of the same name.
    ForeignOwner { uid: String },
    /// Its namespace holds no agent DaemonSet (or one without a uid) to be controlled by.
    NoDaemonSet { namespace: String },
    /// Controlled by the DaemonSet but running as another account.
    WrongAccount { account: Option<String> },
}

impl fmt::Display for NotGenuine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotGenuine::NotControlled => write!(f, "it is not controlled by DaemonSet {AGENT_DAEMONSET}"),
            NotGenuine::ForeignOwner { uid } => write!(
                f,
                "its controller reference names DaemonSet {AGENT_DAEMONSET} with uid {uid}, \
                 which is not the uid of that DaemonSet"
            ),
            NotGenuine::NoDaemonSet { namespace } => {
                write!(
                    f,
                    "there is no DaemonSet {AGENT_DAEMONSET} in namespace {namespace}"
                )
            }
            NotGenuine::WrongAccount { account } => write!(
                f,
                "it runs as service account {} instead of {AGENT_SERVICE_ACCOUNT}",
                account.as_deref().unwrap_or("default")
            ),
        }
    }
}

/// Why `pod` is not a genuine agent of `daemonset`, or `None` when it is one.
pub fn not_genuine(pod: &Pod, daemonset: &AgentDaemonSet) -> Option<NotGenuine> {
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .filter(|r| r.kind == "DaemonSet" && r.api_version.starts_with("apps/") && r.name == AGENT_DAEMONSET);
    let Some(owner) = controller else {
        return Some(NotGenuine::NotControlled);
    };
    match &daemonset.uid {
        None => {
            return Some(NotGenuine::NoDaemonSet {
                namespace: daemonset.namespace.clone(),
            });
        }
        Some(uid) if *uid != owner.uid => {
            return Some(NotGenuine::ForeignOwner {
                uid: owner.uid.clone(),
            });
        }
        Some(_) => {}
    }
    match pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()) {
        Some(AGENT_SERVICE_ACCOUNT) => None,
        other => Some(NotGenuine::WrongAccount {
            account: other.map(String::from),
        }),
    }
}

/// The genuine agent of each node among `pods`: Running, not being deleted, in the DaemonSet's
/// namespace, and not [`not_genuine`]. Other pods are skipped with a warning naming them. Of two
/// on one node the oldest is kept, as the DaemonSet controller keeps it (deleting the others):
/// a copy made later with the real uid never displaces the agent it copies.
pub fn genuine_agents<'a>(pods: &'a [Pod], daemonset: &AgentDaemonSet) -> BTreeMap<String, &'a Pod> {
    let namespace = daemonset.namespace.as_str();
    let mut by_node: BTreeMap<String, &'a Pod> = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let (Some(node), true, false) = (node, running, deleting) else {
            continue;
        };
        if pod.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        if let Some(why) = not_genuine(pod, daemonset) {
            tracing::warn!("skipping pod {namespace}/{name} on node {node} as a netdiag agent: {why}");
            continue;
        }
        match by_node.get(&node) {
            Some(kept) if age_key(kept) <= age_key(pod) => {
                tracing::warn!("skipping pod {namespace}/{name} on node {node}: an older agent runs there");
            }
            _ => {
                by_node.insert(node, pod);
            }
        }
    }
    by_node
}

/// Oldest first: creation time (a pod without one last), then name.
fn age_key(
    pod: &Pod,
) -> (
    bool,
    Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    &str,
) {
    let created = pod.metadata.creation_timestamp.as_ref();
    (
        created.is_none(),
        created,
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_UID: &str = "3f1c-real";

    #[test]
    fn the_install_command_is_the_remote_kustomization_at_this_release_tag() {
        let command = agent_install_command();
        assert_eq!(
            command,
            format!(
                "kubectl apply -k 'github.com/netdiag/netdiag/deploy?ref=v{}'",
                env!("CARGO_PKG_VERSION")
            )
        );
        // The READMEs give the same command, so a release that bumps the version updates them.
        for readme in ["../README.md", "../deploy/README.md"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(readme);
            let text = std::fs::read_to_string(&path).unwrap().replace("\n", " ");
            let remote = command.trim_start_matches("kubectl apply -k ");
            assert!(text.contains(remote), "{readme} does not give {command}");
        }
    }

    fn daemonset() -> AgentDaemonSet {
        AgentDaemonSet {
            namespace: "netdiag".into(),
            uid: Some(REAL_UID.into()),
        }
    }

    /// An agent-labelled pod on node-a, controlled by `owner` (kind, name, uid).
    fn mk_pod(name: &str, owner: Option<(&str, &str, &str)>, account: Option<&str>) -> Pod {
        let owners = owner.map(|(kind, name, uid)| {
            vec![
                serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "name": name,
                                    "uid": uid, "controller": true}),
            ]
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "netdiag", "ownerReferences": owners},
            "spec": {"containers": [], "serviceAccountName": account, "nodeName": "node-a"},
            "status": {"phase": "Running"}
        }))
        .expect("a valid pod")
    }

    fn genuine(name: &str) -> Pod {
        mk_pod(
            name,
            Some(("DaemonSet", AGENT_DAEMONSET, REAL_UID)),
            Some(AGENT_SERVICE_ACCOUNT),
        )
    }

    #[test]
    fn a_pod_the_real_daemonset_controls_running_as_its_account_is_an_agent() {
        assert_eq!(not_genuine(&genuine("a"), &daemonset()), None);
    }

    #[test]
    fn a_forged_owner_reference_with_another_uid_is_no_agent() {
        let forged = mk_pod(
            "impostor",
            Some(("DaemonSet", AGENT_DAEMONSET, "invented")),
            Some(AGENT_SERVICE_ACCOUNT),
        );
        assert_eq!(
            not_genuine(&forged, &daemonset()),
            Some(NotGenuine::ForeignOwner {
                uid: "invented".into()
            })
        );
    }

    #[test]
    fn other_owners_and_other_accounts_are_no_agents() {
        let ds = daemonset();
        let unowned = mk_pod("x", None, Some(AGENT_SERVICE_ACCOUNT));
        assert_eq!(not_genuine(&unowned, &ds), Some(NotGenuine::NotControlled));
        for (kind, name) in [("ReplicaSet", AGENT_DAEMONSET), ("DaemonSet", "other")] {
            let pod = mk_pod("x", Some((kind, name, REAL_UID)), Some(AGENT_SERVICE_ACCOUNT));
            assert_eq!(
                not_genuine(&pod, &ds),
                Some(NotGenuine::NotControlled),
                "{kind}/{name}"
            );
        }
        let default_account = mk_pod("x", Some(("DaemonSet", AGENT_DAEMONSET, REAL_UID)), None);
        let why = not_genuine(&default_account, &ds).expect("not genuine");
        assert_eq!(why, NotGenuine::WrongAccount { account: None });
        assert!(why.to_string().contains("service account default"), "{why}");
    }

    #[test]
    fn an_impostor_on_a_node_leaves_the_genuine_agent_as_that_nodes_agent() {
        let pods = [
            mk_pod(
                "aaa-impostor",
                Some(("DaemonSet", AGENT_DAEMONSET, "invented")),
                Some(AGENT_SERVICE_ACCOUNT),
            ),
            genuine("netdiag-agent-x"),
        ];
        let agents = genuine_agents(&pods, &daemonset());
        let names: Vec<_> = agents
            .iter()
            .map(|(node, pod)| (node.as_str(), pod.metadata.name.as_deref()))
            .collect();
        assert_eq!(names, [("node-a", Some("netdiag-agent-x"))]);
        let other_namespace = AgentDaemonSet {
            namespace: "elsewhere".into(),
            uid: Some(REAL_UID.into()),
        };
        assert!(genuine_agents(&pods, &other_namespace).is_empty());
    }

    #[test]
    fn of_two_genuine_pods_on_a_node_the_oldest_is_the_agent() {
        let created = |name: &str, at: &str| {
            let mut pod = genuine(name);
            pod.metadata.creation_timestamp =
                Some(serde_json::from_value(serde_json::json!(at)).expect("a time"));
            pod
        };
        let pods = [
            created("aaa-copy", "2026-12-06T02:00:00Z"),
            created("netdiag-agent-x", "2026-12-01T00:00:00Z"),
            created("zzz-copy", "2026-12-06T03:00:00Z"),
        ];
        let agents = genuine_agents(&pods, &daemonset());
        assert_eq!(agents["node-a"].metadata.name.as_deref(), Some("netdiag-agent-x"));
    }

    #[test]
    fn without_the_daemonset_no_pod_is_an_agent() {
        let none = AgentDaemonSet {
            namespace: "netdiag".into(),
            uid: None,
        };
        assert_eq!(
            not_genuine(&genuine("a"), &none),
            Some(NotGenuine::NoDaemonSet {
                namespace: "netdiag".into()
            })
        );
        let unowned = mk_pod("x", None, Some(AGENT_SERVICE_ACCOUNT));
        assert_eq!(not_genuine(&unowned, &none), Some(NotGenuine::NotControlled));
    }
}
