//! `--from deploy/NAME` (and `sts/`, `ds/`, `rs/`) and `-l SELECTOR`: which pod the check runs
//! as. [`pick`] is pure; [`resolve`] reads the workload and its pods (the only I/O here).
//!
//! The rule, said to the user when it applies: among the matching pods that are not being
//! deleted, the first by name that is Running and Ready; when none is ready, the first by name
//! (the `source` layer then says why it cannot send traffic).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::ListParams;
use kube::core::Selector;

use super::target::{SourceKind, SourceRef};
use crate::cluster::NamespacedName;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("failed to get {kind}/{name} in namespace {namespace}: {source}")]
    Get {
        kind: &'static str,
        name: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what} has no usable label selector")]
    NoSelector { what: String },
    #[error("failed to list pods in namespace {namespace} with selector {selector}: {source}")]
    List {
        namespace: String,
        selector: String,
        #[source]
        source: kube::Error,
    },
    #[error("no pods found for {what} in namespace {namespace}")]
    NoPods { what: String, namespace: String },
}

/// The pod a check runs as, and how it was chosen (`None` when `--from` named the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub pod: NamespacedName,
    pub note: Option<String>,
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod to run as among `pods` (see the module rule), with kubectl's note
/// `Found 3 pods, using pod/checkout-0 (ready, first by name)`.
pub fn pick(pods: &[Pod], what: &str) -> Option<(String, String)> {
    let mut live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && p.metadata.name.is_some())
        .collect();
    live.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let ready = live.iter().filter(|p| is_ready(p)).count();
    let (chosen, why) = match live.iter().find(|p| is_ready(p)) {
        Some(pod) => (pod, format!("{ready} ready; the first ready by name")),
        None => (live.first()?, "none ready; the first by name".to_string()),
    };
    let name = chosen.metadata.name.clone()?;
    let note = format!("Found {} pods for {what}, using pod/{name} ({why})", live.len());
    Some((name, note))
}

async fn workload_selector<K>(
    client: &kube::Client,
    source: &SourceRef,
    namespace: &str,
) -> Result<LabelSelector, WorkloadError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + WithSelector,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let object = api
        .get(&source.name)
        .await
        .map_err(|source_err| WorkloadError::Get {
            kind: source.kind.as_str(),
            name: source.name.clone(),
            namespace: namespace.to_string(),
            source: source_err,
        })?;
    object.selector().ok_or_else(|| WorkloadError::NoSelector {
        what: format!("{}/{}", source.kind.as_str(), source.name),
    })
}

/// Workloads that select their pods with a label selector.
pub trait WithSelector {
    fn selector(&self) -> Option<LabelSelector>;
}

macro_rules! with_selector {
    ($($kind:ty),*) => {$(
        impl WithSelector for $kind {
            fn selector(&self) -> Option<LabelSelector> {
                self.spec.as_ref().map(|s| s.selector.clone())
            }
        }
    )*};
}
with_selector!(Deployment, StatefulSet, DaemonSet, ReplicaSet);

/// The pod `--from`/`-l` designate, in `namespace` unless `--from` names one.
pub async fn resolve(
    client: &kube::Client,
    source: Option<&SourceRef>,
    selector: Option<&str>,
    namespace: &str,
) -> Result<Picked, WorkloadError> {
    let namespace = source.and_then(|s| s.namespace.as_deref()).unwrap_or(namespace);
    let (labels, what) = match (source, selector) {
        (Some(s), _) if s.kind == SourceKind::Pod => {
            return Ok(Picked {
                pod: NamespacedName::new(namespace, s.name.clone()),
                note: None,
            });
        }
        (Some(s), _) => {
            let label_selector = match s.kind {
                SourceKind::Deployment => workload_selector::<Deployment>(client, s, namespace).await?,
                SourceKind::StatefulSet => workload_selector::<StatefulSet>(client, s, namespace).await?,
                SourceKind::DaemonSet => workload_selector::<DaemonSet>(client, s, namespace).await?,
                SourceKind::ReplicaSet | SourceKind::Pod => {
                    workload_selector::<ReplicaSet>(client, s, namespace).await?
                }
            };
            let what = format!("{}/{}", s.kind.as_str(), s.name);
            let selector = Selector::try_from(label_selector)
                .map_err(|_| WorkloadError::NoSelector { what: what.clone() })?;
            (selector.to_string(), what)
        }
        (None, Some(selector)) => (selector.to_string(), format!("selector {selector}")),
        (None, None) => unreachable!("clap requires --from or -l"),
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // Page by page, as every list: a workload may have thousands of pods.
    let mut pods = Vec::new();
    let mut params = ListParams::default()
        .labels(&labels)
        .limit(crate::cluster::PAGE_SIZE);
    loop {
        let page = api.list(&params).await.map_err(|source| WorkloadError::List {
            namespace: namespace.to_string(),
            selector: labels.clone(),
            source,
        })?;
        pods.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let (name, note) = pick(&pods, &what).ok_or_else(|| WorkloadError::NoPods {
        what,
        namespace: namespace.to_string(),
    })?;
    Ok(Picked {
        pod: NamespacedName::new(namespace, name),
        note: Some(note),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, ready: bool, deleting: bool) -> Pod {
        let mut meta = json!({"name": name, "namespace": "shop"});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({"metadata": meta, "status": {"phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
        .unwrap()
    }

    #[test]
    fn the_first_ready_pod_by_name_is_picked_whatever_the_list_order() {
        let pods = [
            pod("checkout-c", "Running", true, false),
            pod("checkout-a", "Pending", false, false),
            pod("checkout-b", "Running", true, false),
            pod("checkout-0", "Running", true, true),
        ];
        let (name, note) = pick(&pods, "deployment/checkout").unwrap();
        assert_eq!(name, "checkout-b");
        assert_eq!(
            note,
            "Found 3 pods for deployment/checkout, using pod/checkout-b (2 ready; the first ready by name)"
        );
    }

    #[test]
    fn without_a_ready_pod_the_first_by_name_is_picked_and_said() {
        let pods = [
            pod("b", "Pending", false, false),
            pod("a", "Pending", false, false),
        ];
        let (name, note) = pick(&pods, "selector app=x").unwrap();
        assert_eq!(name, "a");
        assert!(note.contains("none ready"), "{note}");
        assert_eq!(pick(&[], "selector app=x"), None);
    }
}
