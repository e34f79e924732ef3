//! One reading of the cluster, shared by every command: the API reads ([`list_all`]), the one
//! rule per object kind (a Pod's serving ports in [`pods`], EndpointSlice readiness as kube-proxy
//! applies it in [`endpoints`]), typed object keys, and the tool failures that stop a look.
//!
//! Only [`list_all`], [`list_paged`] and [`get_optional`] do I/O; everything else turns objects into plain values.

pub mod endpoints;
pub mod enforcers;
mod failure;
mod names;
pub mod pods;
mod protocol;

use std::fmt;

use kube::api::{Api, ListParams};

pub use failure::{Access, ToolFailure};
pub use names::{NamespacedName, closest};
pub use protocol::Protocol;

/// The cluster's DNS domain (kubelet `--cluster-domain`), as nearly every cluster sets it.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// A port given by number or by name (`80`, `http`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

/// Objects a list asks the API server for per page (kubectl's default chunk size): a list of a
/// large namespace or cluster never arrives as one response.
pub const PAGE_SIZE: u32 = 500;

/// Every object of kind `K` in the cluster, page by page, without managedFields (nothing here
/// reads them). `action` names the read in the failure (`list pods in all namespaces`).
pub async fn list_all<K>(client: &kube::Client, action: &str) -> Result<Vec<K>, ToolFailure>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
    K::DynamicType: Default,
{
    list_paged(&Api::<K>::all(client.clone()), &ListParams::default(), action).await
}

/// Every object `api` lists with `params` (its selectors), asked [`PAGE_SIZE`] at a time and
/// followed by `continue` until the API server says there is no more; managedFields dropped
/// from each page as it arrives.
pub async fn list_paged<K>(api: &Api<K>, params: &ListParams, action: &str) -> Result<Vec<K>, ToolFailure>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_params = params.clone().limit(PAGE_SIZE);
        if let Some(token) = &token {
            page_params = page_params.continue_token(token);
        }
        let page = api
            .list(&page_params)
            .await
            .map_err(|err| ToolFailure::from_kube(action, &err))?;
        for mut item in page.items {
            item.meta_mut().managed_fields = None;
            items.push(item);
        }
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(items),
        }
    }
}

/// The object `name` of `api`, `None` when the API server has none (404).
pub async fn get_optional<K>(api: &Api<K>, name: &str, action: &str) -> Result<Option<K>, ToolFailure>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    let found = api
        .get_opt(name)
        .await
        .map_err(|err| ToolFailure::from_kube(action, &err))?;
    Ok(found.map(|mut item| {
        item.meta_mut().managed_fields = None;
        item
    }))
}

/// A list that failed, naming the resource it was of.
#[derive(Debug, thiserror::Error)]
#[error("failed to list {what} from the cluster")]
pub struct ListFailure {
    pub what: &'static str,
    #[source]
    pub source: ToolFailure,
}

/// An error and its sources as one line (`outer: inner: root`). A source whose text the line
/// already ends with is left out: wrappers that repeat their source's message read once.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layered {
        text: &'static str,
        #[source]
        source: Option<Box<Layered>>,
    }

    fn chain(texts: &[&'static str]) -> Layered {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layered {
                    text,
                    source: source.map(Box::new),
                })
            })
            .unwrap()
    }

    #[test]
    fn error_chain_joins_sources_and_reads_a_repeated_message_once() {
        let err = chain(&[
            "failed to list pods",
            "client error (Connect)",
            "client error (Connect)",
            "connection refused",
        ]);
        assert_eq!(
            super::error_chain(&err),
            "failed to list pods: client error (Connect): connection refused"
        );
    }
}
