//! Reading the admin policies from the cluster: the one reader of these kinds for every consumer
//! (the check's snapshot and the `policy` command).

use super::objects::{AdminNetworkPolicy, AdminObjects, BaselineAdminNetworkPolicy, ClusterNetworkPolicy};
use crate::cluster::{Access, ListFailure, ToolFailure, list_all};

/// Every ClusterNetworkPolicy, AdminNetworkPolicy and BaselineAdminNetworkPolicy in the cluster,
/// without managedFields. A kind whose CRD is not installed (404) has none; other errors (403, a
/// timeout) are errors naming the resource.
pub async fn read_admin_objects(client: &kube::Client) -> Result<AdminObjects, ListFailure> {
    // All three at once, but a failure is taken in this order, not the order they fail in:
    // the one a check reports is the same on every run.
    let (cluster_network_policies, admin_network_policies, baseline_admin_network_policies) = futures::join!(
        list_optional::<ClusterNetworkPolicy>(
            client,
            "clusternetworkpolicies",
            "clusternetworkpolicies.policy.networking.k8s.io",
        ),
        list_optional::<AdminNetworkPolicy>(
            client,
            "adminnetworkpolicies",
            "adminnetworkpolicies.policy.networking.k8s.io",
        ),
        list_optional::<BaselineAdminNetworkPolicy>(
            client,
            "baselineadminnetworkpolicies",
            "baselineadminnetworkpolicies.policy.networking.k8s.io",
        ),
    );
    Ok(AdminObjects {
        cluster_network_policies: cluster_network_policies?,
        admin_network_policies: admin_network_policies?,
        baseline_admin_network_policies: baseline_admin_network_policies?,
    })
}

/// Every object of a CRD kind; a 404 (the CRD is not installed) means there are none. A 403
/// names the permission (`resource`, with its group) it needed.
async fn list_optional<K>(
    client: &kube::Client,
    what: &'static str,
    resource: &'static str,
) -> Result<Vec<K>, ListFailure>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match list_all::<K>(client, &format!("list {what}")).await {
        Ok(items) => Ok(items),
        Err(ToolFailure::ApiError { code: 404, .. }) => Ok(Vec::new()),
        Err(source) => Err(ListFailure {
            what,
            source: source.needing(Access {
                verb: "list",
                resource,
                name: None,
                namespace: None,
                cluster_scoped: true,
            }),
        }),
    }
}
