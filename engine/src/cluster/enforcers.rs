//! What enforces NetworkPolicy in a cluster. No API says whether NetworkPolicy is enforced at
//! all (kubernetes/enhancements#2137): the API server stores policies whatever the CNI does with
//! them. The agents that enforce them run as DaemonSets with well-known names and images, so they
//! are recognised from the cluster's DaemonSets. Pure.

use std::fmt;

use k8s_openapi::api::apps::v1::DaemonSet;

use super::NamespacedName;

/// A known NetworkPolicy enforcer: its name, and how its DaemonSet is recognised (by the
/// DaemonSet's name, or a container's name or image).
struct Known {
    name: &'static str,
    daemonsets: &'static [&'static str],
    containers: &'static [&'static str],
    images: &'static [&'static str],
}

const KNOWN: &[Known] = &[
    Known {
        name: "Calico",
        daemonsets: &["calico-node", "canal"],
        containers: &["calico-node"],
        images: &["calico/node"],
    },
    Known {
        // GKE Dataplane V2 runs Cilium as `anetd`.
        name: "Cilium",
        daemonsets: &["cilium", "anetd"],
        containers: &["cilium-agent"],
        images: &["cilium/cilium"],
    },
    Known {
        name: "Antrea",
        daemonsets: &["antrea-agent"],
        containers: &["antrea-agent"],
        images: &["antrea/antrea-agent", "antrea/antrea-ubuntu"],
    },
    Known {
        name: "kube-router",
        daemonsets: &["kube-router"],
        containers: &["kube-router"],
        images: &["kube-router"],
    },
    Known {
        name: "kube-network-policies",
        daemonsets: &["kube-network-policies"],
        containers: &["kube-network-policies"],
        images: &["kube-network-policies"],
    },
    Known {
        // A container of the VPC CNI's `aws-node`, enforcing when its flag enables it.
        name: "the AWS VPC CNI's network policy agent",
        daemonsets: &[],
        containers: &["aws-network-policy-agent"],
        images: &["aws-network-policy-agent"],
    },
    Known {
        name: "Azure Network Policy Manager",
        daemonsets: &["azure-npm", "azure-npm-win"],
        containers: &["azure-npm"],
        images: &["azure-npm"],
    },
    Known {
        name: "Weave Net",
        daemonsets: &["weave-net"],
        containers: &["weave-npc"],
        images: &["weave-npc"],
    },
];

/// A DaemonSet recognised as a NetworkPolicy enforcer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforcer {
    /// What it is (`Calico`).
    pub name: &'static str,
    pub daemonset: NamespacedName,
    /// Its pods that are ready, of those it should run (`status.numberReady`/`desiredNumberScheduled`).
    pub ready: i32,
    pub desired: i32,
}

impl fmt::Display for Enforcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (DaemonSet {}, {}/{} pods ready)",
            self.name, self.daemonset, self.ready, self.desired
        )
    }
}

fn is_known(known: &Known, ds: &DaemonSet) -> bool {
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let containers = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default();
    known.daemonsets.contains(&name)
        || containers.iter().any(|c| {
            known.containers.contains(&c.name.as_str())
                || c.image
                    .as_deref()
                    .is_some_and(|image| known.images.iter().any(|i| image.contains(i)))
        })
}

/// The enforcers among `daemonsets`, in their order (namespace, name).
pub fn recognise(daemonsets: &[DaemonSet]) -> Vec<Enforcer> {
    daemonsets
        .iter()
        .filter_map(|ds| {
            let known = KNOWN.iter().find(|k| is_known(k, ds))?;
            let status = ds.status.as_ref();
            Some(Enforcer {
                name: known.name,
                daemonset: NamespacedName::of(ds),
                ready: status.map(|s| s.number_ready).unwrap_or_default(),
                desired: status.map(|s| s.desired_number_scheduled).unwrap_or_default(),
            })
        })
        .collect()
}

/// Every enforcer this module knows, for "none of …" sentences.
pub fn known_names() -> Vec<&'static str> {
    KNOWN.iter().map(|k| k.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn daemonset(namespace: &str, name: &str, containers: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"selector": {}, "template": {"spec": {"containers": containers}}},
            "status": {"numberReady": 2, "desiredNumberScheduled": 3,
                       "currentNumberScheduled": 3, "numberMisscheduled": 0}
        }))
        .unwrap()
    }

    #[test]
    fn enforcers_are_recognised_by_daemonset_container_or_image() {
        let found = recognise(&[
            daemonset(
                "calico-system",
                "calico-node",
                json!([{"name": "x", "image": "x"}]),
            ),
            daemonset(
                "kube-system",
                "kube-proxy",
                json!([{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.34.0"}]),
            ),
            daemonset(
                "kube-system",
                "aws-node",
                json!([
                    {"name": "aws-node", "image": "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.0"},
                    {"name": "aws-network-policy-agent", "image": "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon/aws-network-policy-agent:v1.1.5"}
                ]),
            ),
            daemonset(
                "net",
                "agent",
                json!([{"name": "agent", "image": "quay.io/cilium/cilium:v1.18.0"}]),
            ),
        ]);
        let names: Vec<(&str, String)> = found.iter().map(|e| (e.name, e.daemonset.to_string())).collect();
        assert_eq!(
            names,
            [
                ("Calico", "calico-system/calico-node".to_string()),
                (
                    "the AWS VPC CNI's network policy agent",
                    "kube-system/aws-node".to_string()
                ),
                ("Cilium", "net/agent".to_string()),
            ]
        );
        assert_eq!(
            found[0].to_string(),
            "Calico (DaemonSet calico-system/calico-node, 2/3 pods ready)"
        );
    }

    #[test]
    fn a_cluster_of_kube_proxy_and_flannel_has_no_enforcer() {
        let found = recognise(&[
            daemonset(
                "kube-system",
                "kube-proxy",
                json!([{"name": "kube-proxy", "image": "kube-proxy"}]),
            ),
            daemonset(
                "kube-flannel",
                "kube-flannel-ds",
                json!([{"name": "kube-flannel", "image": "flannel/flannel:v0.26"}]),
            ),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }
}
