//! What an endpoint caller may learn and from where they may probe, beyond the check grant
//! (`create checks.netdiag.io` in the source pod's namespace):
//!
//! - **Destination details.** A report names objects of namespaces other than the source's (the
//!   target pod, the Service's pods, their NetworkPolicies) only to a caller who may `list` pods,
//!   services and networkpolicies in each of them — one SubjectAccessReview per read, the same
//!   reads `kubectl get` needs. Otherwise the caller gets [`withheld`]: the verdict and each
//!   layer's status with a sentence, nothing named.
//! - **hostNetwork sources.** A pod with `hostNetwork: true` probes from its node's network
//!   namespace (the node's loopback, the node's address), so a check from one needs `create` on
//!   the subresource `checks/hostnetwork` besides `checks`. The check stops before any probe when
//!   the source turns out to be such a pod and the grant was not confirmed ([`Ran::HostNetworkSource`]).
//!
//! [`Shown`] is the only report the handlers can serialize (JSON and `/probe` alike), and only
//! [`disclose`] makes one. The API server is the only I/O, through [`Authorizer`].

use std::collections::BTreeSet;
use std::sync::Arc;

use netdiag_engine::Evidence;
use netdiag_engine::NamespacedName;
use netdiag_engine::Snapshot;
use netdiag_engine::report::Report;
use netdiag_engine::{foreign_namespaces, withheld};

use super::auth::{Access, Authorizer, Caller, Denial};

/// The reads (API group, resource) a caller needs in a namespace to see a report's details of it.
pub const DESTINATION_READS: [(&str, &str); 3] = [
    ("", "pods"),
    ("", "services"),
    ("networking.k8s.io", "networkpolicies"),
];

/// More foreign namespaces than this are withheld without asking: a name held by Services in
/// many namespaces must not cost the API server three reviews for each.
const MAX_NAMESPACES_ASKED: usize = 4;

/// The subresource of `checks.netdiag.io` that a check from a hostNetwork pod also needs.
pub const HOST_NETWORK_SUBRESOURCE: &str = "hostnetwork";

/// A finished check: its full report and the foreign namespaces it names.
#[derive(Debug)]
pub struct Checked {
    report: Arc<Report>,
    foreign: BTreeSet<String>,
}

impl Checked {
    pub fn new(report: Report, evidence: &Evidence) -> Self {
        Checked {
            report: Arc::new(report),
            foreign: foreign_namespaces(evidence),
        }
    }
}

/// What a check's run gave: a report, or a stop before probing from a hostNetwork source.
#[derive(Debug, Clone)]
pub enum Ran {
    Checked(Arc<Checked>),
    HostNetworkSource,
}

/// A report as its caller may see it.
#[derive(Debug, Clone)]
pub struct Shown(Arc<Report>);

impl Shown {
    pub fn report(&self) -> &Report {
        &self.0
    }
}

/// Whether the source of a check (`from`) is a hostNetwork pod, as the snapshot has it.
pub fn host_network_source(snap: &Snapshot, from: &NamespacedName) -> bool {
    snap.pods
        .known()
        .into_iter()
        .flatten()
        .filter(|p| from.is(*p))
        .any(|p| p.spec.as_ref().and_then(|s| s.host_network) == Some(true))
}

/// The grant a check from the hostNetwork pod `from` needs besides `checks`.
pub fn host_network_access(from: &NamespacedName) -> Access {
    Access {
        subresource: Some(HOST_NETWORK_SUBRESOURCE),
        ..Access::create("checks", Some(from.namespace.clone()), Some(from.name.clone()))
    }
}

/// The 403 of a hostNetwork source without its grant: what is missing, and why it is asked.
pub fn host_network_denial(denial: Denial, from: &NamespacedName) -> Denial {
    match denial {
        Denial::Forbidden(missing) => Denial::Forbidden(format!(
            "{missing}: the source pod {from} uses its node's network (hostNetwork), so a check \
             from it probes as the node and needs this grant besides checks.netdiag.io"
        )),
        other => other,
    }
}

/// The reviews that let `caller` see the details of `namespace`.
fn reads_in(namespace: &str) -> impl Iterator<Item = Access> + '_ {
    DESTINATION_READS
        .into_iter()
        .map(move |(group, resource)| Access {
            verb: "list",
            group,
            resource,
            subresource: None,
            namespace: Some(namespace.to_string()),
            name: None,
        })
}

/// `checked`'s report as `caller` may see it: whole when they may read every foreign namespace it
/// names, else [`withheld`]. A review the API server cannot answer withholds too.
pub async fn disclose(auth: &Authorizer, caller: &Caller, checked: &Checked) -> Shown {
    if may_read_all(auth, caller, &checked.foreign).await {
        Shown(checked.report.clone())
    } else {
        Shown(Arc::new(withheld(&checked.report)))
    }
}

async fn may_read_all(auth: &Authorizer, caller: &Caller, namespaces: &BTreeSet<String>) -> bool {
    if namespaces.len() > MAX_NAMESPACES_ASKED {
        return false;
    }
    for namespace in namespaces {
        let reviews = reads_in(namespace).map(|access| async move { auth.authorize(caller, &access).await });
        for answer in futures::future::join_all(reviews).await {
            if let Err(denial) = answer {
                tracing::debug!(caller = %caller.user, "withholding the details of namespace {namespace}: {denial:?}");
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag_engine::Fact;

    fn snapshot(host_network: bool) -> Snapshot {
        let pod = serde_json::json!({
            "metadata": {"namespace": "shop", "name": "node-exporter"},
            "spec": {"containers": [], "hostNetwork": host_network}
        });
        let mut snap = Snapshot::unread(netdiag_engine::ToolFailure::NotProbed("test".into()));
        snap.pods = Fact::Known(vec![serde_json::from_value(pod).expect("a pod")]);
        snap
    }

    #[test]
    fn only_a_hostnetwork_pod_named_as_the_source_is_a_hostnetwork_source() {
        let from = NamespacedName::new("shop", "node-exporter");
        assert!(host_network_source(&snapshot(true), &from));
        assert!(!host_network_source(&snapshot(false), &from));
        assert!(!host_network_source(
            &snapshot(true),
            &NamespacedName::new("web", "node-exporter")
        ));
        let unread = Snapshot::unread(netdiag_engine::ToolFailure::NotProbed("test".into()));
        assert!(!host_network_source(&unread, &from), "no pod, no probe from it");
    }

    #[test]
    fn a_hostnetwork_source_needs_the_checks_hostnetwork_subresource_and_the_403_says_why() {
        let from = NamespacedName::new("shop", "node-exporter");
        let access = host_network_access(&from);
        assert_eq!(
            (access.verb, access.group, access.resource, access.subresource),
            ("create", "netdiag.io", "checks", Some("hostnetwork"))
        );
        let caller = Caller {
            user: "ci".into(),
            uid: None,
            groups: vec![],
            extra: Default::default(),
        };
        let Denial::Forbidden(message) =
            host_network_denial(Denial::Forbidden(access.missing(&caller)), &from)
        else {
            panic!("still forbidden")
        };
        assert!(
            message.starts_with(
                "user ci cannot create checks/hostnetwork.netdiag.io in namespace shop (name node-exporter): \
                 the source pod shop/node-exporter uses its node's network"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_details_of_a_namespace_need_list_on_pods_services_and_networkpolicies_there() {
        let asked: Vec<_> = reads_in("admin")
            .map(|a| (a.verb, a.group, a.resource, a.namespace))
            .collect();
        let admin = Some("admin".to_string());
        assert_eq!(
            asked,
            [
                ("list", "", "pods", admin.clone()),
                ("list", "", "services", admin.clone()),
                ("list", "networking.k8s.io", "networkpolicies", admin),
            ]
        );
    }

    #[tokio::test]
    async fn without_an_api_server_a_foreign_namespace_is_withheld_and_none_shows_all() {
        let limits = super::super::auth::AuthLimits {
            max_token_bytes: 4096,
            reviews_in_flight: 4,
            token_reviews_per_source_per_minute: 60,
        };
        let auth = Authorizer::new(
            Err("no client".into()),
            vec![],
            std::time::Duration::from_secs(1),
            &limits,
        );
        let caller = Caller {
            user: "ci".into(),
            uid: None,
            groups: vec![],
            extra: Default::default(),
        };
        assert!(may_read_all(&auth, &caller, &BTreeSet::new()).await);
        let admin = BTreeSet::from(["admin".to_string()]);
        assert!(!may_read_all(&auth, &caller, &admin).await);
        let many = (0..=MAX_NAMESPACES_ASKED).map(|i| format!("ns{i}")).collect();
        assert!(!may_read_all(&auth, &caller, &many).await);
    }
}
