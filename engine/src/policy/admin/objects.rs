//! The cluster-wide admin policy kinds as they come from the API or a file:
//! `ClusterNetworkPolicy` (`policy.networking.k8s.io/v1alpha2`) and the older
//! `AdminNetworkPolicy` / `BaselineAdminNetworkPolicy` (`v1alpha1`).
//!
//! k8s-openapi has no types for these CRDs, so they are plain serde structs with a
//! [`kube::Resource`] impl (cluster-scoped). Every field is optional and unknown fields are kept
//! where they change the meaning (an unknown peer type fails closed): validation happens once, in
//! `spec.rs`, so a malformed object becomes a finding instead of a parse error of the whole input.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// The API group of every admin policy kind.
pub const GROUP: &str = "policy.networking.k8s.io";

/// The spec shared by the three kinds; `tier` is `ClusterNetworkPolicy` only, `priority` is not
/// in `BaselineAdminNetworkPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPolicySpecFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<AdminSubject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<AdminRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<AdminRule>>,
}

/// Which pods a policy applies to: exactly one of `namespaces` or `pods`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminSubject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods selected by `podSelector` in the namespaces selected by `namespaceSelector`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// One ingress (`from`) or egress (`to`) rule. `protocols` is the v1alpha2 port match, `ports`
/// the v1alpha1 one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<AdminPeer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<AdminPeer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ProtocolMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortMatchV1Alpha1>>,
}

/// A rule peer: exactly one field. Fields this version does not know are kept in `other`, so the
/// rule can fail closed as the API asks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// v1alpha2 `protocols[]`: exactly one of `tcp`, `udp`, `sctp` or `destinationNamedPort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<DestinationPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<DestinationPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<DestinationPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

/// v1alpha2 `tcp`/`udp`/`sctp`: `destinationPort` with exactly one of `number` or `range`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<PortNumberOrRange>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortNumberOrRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
}

/// An inclusive port range; `protocol` is v1alpha1 only (defaults to TCP).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default)]
    pub start: i64,
    #[serde(default)]
    pub end: i64,
}

/// v1alpha1 `ports[]`: exactly one of `portNumber`, `namedPort` or `portRange`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMatchV1Alpha1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<PortNumberV1Alpha1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortNumberV1Alpha1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port: i64,
}

macro_rules! admin_kind {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $version:literal, $plural:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub api_version: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub kind: Option<String>,
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub spec: Option<AdminPolicySpecFields>,
        }

        impl $name {
            pub const KIND: &'static str = $kind;
            pub const VERSION: &'static str = $version;
            pub const PLURAL: &'static str = $plural;
        }

        impl kube::Resource for $name {
            type DynamicType = ();
            type Scope = kube::core::ClusterResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($version)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

admin_kind!(
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy: tier Admin or Baseline, priority 0-1000,
    /// actions Accept, Deny, Pass.
    ClusterNetworkPolicy,
    "ClusterNetworkPolicy",
    "v1alpha2",
    "clusternetworkpolicies"
);
admin_kind!(
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy: the admin tier, priority 0-1000,
    /// actions Allow, Deny, Pass.
    AdminNetworkPolicy,
    "AdminNetworkPolicy",
    "v1alpha1",
    "adminnetworkpolicies"
);
admin_kind!(
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy: the baseline tier, a singleton
    /// named `default`, actions Allow, Deny.
    BaselineAdminNetworkPolicy,
    "BaselineAdminNetworkPolicy",
    "v1alpha1",
    "baselineadminnetworkpolicies"
);

/// The admin policy objects of one input, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdminObjects {
    pub cluster_network_policies: Vec<ClusterNetworkPolicy>,
    pub admin_network_policies: Vec<AdminNetworkPolicy>,
    pub baseline_admin_network_policies: Vec<BaselineAdminNetworkPolicy>,
}

impl AdminObjects {
    pub fn is_empty(&self) -> bool {
        self.cluster_network_policies.is_empty()
            && self.admin_network_policies.is_empty()
            && self.baseline_admin_network_policies.is_empty()
    }
}
