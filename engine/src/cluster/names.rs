//! `NAMESPACE/NAME` as a value: built once from an object or a flag, printed at the edge.

use std::fmt;

/// Points at a namespaced object by namespace and name; prints as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NamespacedName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The cluster DNS Service, `kube-system/kube-dns`, whatever serves it (CoreDNS, kube-dns).
    pub fn kube_dns() -> Self {
        NamespacedName::new("kube-system", "kube-dns")
    }

    /// The key of a namespaced object (empty parts when the object lacks them).
    pub fn of<K: kube::Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        NamespacedName::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// Whether `obj` is the object this key points at.
    pub fn is<K: kube::Resource>(&self, obj: &K) -> bool {
        let meta = obj.meta();
        meta.namespace.as_deref() == Some(self.namespace.as_str())
            && meta.name.as_deref() == Some(self.name.as_str())
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The name among `names` that `wanted` is most likely a typo of (a few edits away), for a
/// "did you mean" hint; `None` when none is close or `wanted` is among them.
pub fn closest<'a>(wanted: &str, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .filter(|n| n.as_str() != wanted)
        .map(|n| (strsim::levenshtein(wanted, n), n))
        .filter(|(d, n)| *d <= 2.max(wanted.len().min(n.len()) / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn a_key_prints_as_namespace_slash_name_and_matches_only_its_object() {
        let key = NamespacedName::new("shop", "payments-0");
        assert_eq!(key.to_string(), "shop/payments-0");
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("shop".into());
        pod.metadata.name = Some("payments-0".into());
        assert!(key.is(&pod));
        assert_eq!(NamespacedName::of(&pod), key);
        pod.metadata.namespace = Some("web".into());
        assert!(!key.is(&pod));
    }
}
