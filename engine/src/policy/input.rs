//! Objects from text: a YAML or JSON stream of Namespaces, Pods, NetworkPolicies and the admin
//! policy kinds (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy), or `List`s
//! of them, as `kubectl get -A -o yaml namespaces,pods,networkpolicies` prints. Other kinds are skipped.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::admin::{AdminNetworkPolicy, AdminObjects, BaselineAdminNetworkPolicy, ClusterNetworkPolicy};

/// The objects the evaluator reads, with managedFields removed.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<NetworkPolicy>,
    /// ClusterNetworkPolicies, AdminNetworkPolicies and BaselineAdminNetworkPolicies.
    pub admin: AdminObjects,
    /// Kinds present in the input that the evaluator does not use, e.g. `Service`.
    pub skipped_kinds: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("document {document} is not valid YAML or JSON")]
    Syntax {
        document: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("document {document}: {what} is not a valid {kind}")]
    Object {
        document: usize,
        kind: String,
        what: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("document {document}: {what} has no kind")]
    NoKind { document: usize, what: String },
    #[error("document {document}: {kind} has no items list")]
    NoItems { document: usize, kind: String },
    #[error("the input holds no Kubernetes objects")]
    Empty,
}

/// Parse a YAML stream (`---`-separated) or JSON text. Document numbers in errors count from 1.
pub fn parse_objects(text: &str) -> Result<Objects, InputError> {
    let mut objects = Objects::default();
    let mut seen_any = false;
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = i + 1;
        let value = Value::deserialize(document).map_err(|source| InputError::Syntax {
            document: number,
            source,
        })?;
        if value.is_null() {
            continue;
        }
        seen_any = true;
        add_value(&mut objects, value, number, "the object")?;
    }
    if !seen_any {
        return Err(InputError::Empty);
    }
    Ok(objects)
}

fn add_value(objects: &mut Objects, mut value: Value, document: usize, what: &str) -> Result<(), InputError> {
    let kind = value.get("kind").and_then(Value::as_str).map(str::to_string);
    let what = describe(&value).unwrap_or_else(|| what.to_string());
    let Some(kind) = kind else {
        return Err(InputError::NoKind { document, what });
    };
    if kind == "List" || kind.ends_with("List") {
        let item_kind = kind
            .strip_suffix("List")
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        let api_version = value.get("apiVersion").cloned();
        let items = match value.get_mut("items") {
            Some(Value::Sequence(items)) => std::mem::take(items),
            // Go's nil slice: an empty list.
            Some(Value::Null) => Vec::new(),
            _ => return Err(InputError::NoItems { document, kind }),
        };
        for (i, mut item) in items.into_iter().enumerate() {
            // Typed lists (PodList, ...) from the API leave kind and apiVersion off their items.
            if let (Some(item_kind), Value::Mapping(map)) = (&item_kind, &mut item) {
                map.entry("kind".into())
                    .or_insert_with(|| item_kind.clone().into());
                if let Some(api_version) = &api_version {
                    map.entry("apiVersion".into())
                        .or_insert_with(|| api_version.clone());
                }
            }
            add_value(objects, item, document, &format!("{kind} item {i}"))?;
        }
        return Ok(());
    }
    let object_error = |source| InputError::Object {
        document,
        kind: kind.clone(),
        what: what.clone(),
        source,
    };
    match kind.as_str() {
        "Namespace" => {
            let mut namespace: Namespace = serde_yaml_ng::from_value(value).map_err(object_error)?;
            namespace.metadata.managed_fields = None;
            objects.namespaces.push(namespace);
        }
        "Pod" => {
            let mut pod: Pod = serde_yaml_ng::from_value(value).map_err(object_error)?;
            pod.metadata.managed_fields = None;
            objects.pods.push(pod);
        }
        "NetworkPolicy" => {
            let mut policy: NetworkPolicy = serde_yaml_ng::from_value(value).map_err(object_error)?;
            policy.metadata.managed_fields = None;
            objects.policies.push(policy);
        }
        "ClusterNetworkPolicy" => {
            let mut policy: ClusterNetworkPolicy = serde_yaml_ng::from_value(value).map_err(object_error)?;
            policy.metadata.managed_fields = None;
            objects.admin.cluster_network_policies.push(policy);
        }
        "AdminNetworkPolicy" => {
            let mut policy: AdminNetworkPolicy = serde_yaml_ng::from_value(value).map_err(object_error)?;
            policy.metadata.managed_fields = None;
            objects.admin.admin_network_policies.push(policy);
        }
        "BaselineAdminNetworkPolicy" => {
            let mut policy: BaselineAdminNetworkPolicy =
                serde_yaml_ng::from_value(value).map_err(object_error)?;
            policy.metadata.managed_fields = None;
            objects.admin.baseline_admin_network_policies.push(policy);
        }
        _ => {
            if !objects.skipped_kinds.contains(&kind) {
                objects.skipped_kinds.push(kind);
            }
        }
    }
    Ok(())
}

/// `Kind namespace/name` for messages, when the object has a name.
fn describe(value: &Value) -> Option<String> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("object");
    let metadata = value.get("metadata")?;
    let name = metadata.get("name").and_then(Value::as_str)?;
    Some(match metadata.get("namespace").and_then(Value::as_str) {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    })
}
