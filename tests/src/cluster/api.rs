//! Talking to the lab's real API server as its administrator: waiting for it, creating the
//! scenario's objects (any kind, through discovery), writing the status a kubelet would write,
//! and minting ServiceAccount tokens.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Config};
use serde_json::Value;

/// How long the lab waits for the API server, a controller's objects or a component.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub client: Client,
    kinds: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
}

/// Metadata the API server sets: a scenario's objects may carry them for the stand-in.
const SERVER_FIELDS: [&str; 5] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

impl Cluster {
    pub async fn connect(kubeconfig: &Path) -> Result<Cluster> {
        let file = kube::config::Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("failed to read {}", kubeconfig.display()))?;
        let config = Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .context("bad lab kubeconfig")?;
        Ok(Cluster {
            client: Client::try_from(config).context("failed to build the lab's API client")?,
            kinds: HashMap::new(),
        })
    }

    /// Waits until the API server answers and the ServiceAccount controller has given `default`
    /// its account (pods cannot be created before).
    pub async fn wait_ready(&self, deadline: Instant) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "default");
        loop {
            let last = match namespaces.get("default").await {
                Ok(_) => match accounts.get("default").await {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("no default ServiceAccount yet ({e})"),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "the API server was not ready within {}s: {last}",
                    API_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The API resource of an object's apiVersion and kind, found by discovery once per kind.
    async fn resource(&mut self, obj: &Value) -> Result<(ApiResource, ApiCapabilities)> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let key = (api_version.clone(), kind.clone());
        if let Some(found) = self.kinds.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let found = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .with_context(|| format!("the API server does not serve {api_version} {kind}"))?;
        self.kinds.insert(key, found.clone());
        Ok(found)
    }

    async fn api_for(&mut self, obj: &Value) -> Result<Api<DynamicObject>> {
        let (ar, caps) = self.resource(obj).await?;
        Ok(match caps.scope {
            Scope::Namespaced => {
                let ns = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Creates `obj` without its status and server-set metadata; an object that already exists
    /// (the API server's own namespaces) is left as it is. Retries while the namespace's default
    /// ServiceAccount is still being made. Returns what the server stored.
    pub async fn create(&mut self, obj: &Value) -> Result<DynamicObject> {
        let mut body = obj.clone();
        if let Some(map) = body.as_object_mut() {
            map.remove("status");
        }
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_FIELDS {
                meta.remove(field);
            }
        }
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let what = format!(
            "{} {}",
            body["kind"].as_str().unwrap_or("object"),
            describe(&body)
        );
        let typed: DynamicObject =
            serde_json::from_value(body).with_context(|| format!("{what} is not a Kubernetes object"))?;
        let api = self.api_for(obj).await?;
        let deadline = Instant::now() + API_TIMEOUT;
        loop {
            match api.create(&PostParams::default(), &typed).await {
                Ok(made) => return Ok(made),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return api
                        .get(&name)
                        .await
                        .with_context(|| format!("failed to read {what}"));
                }
                Err(kube::Error::Api(s))
                    if s.message.contains("serviceaccount") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(anyhow!(e).context(format!("failed to create {what}"))),
            }
        }
    }

    /// Writes `status` through the object's status subresource, as its kubelet would.
    pub async fn write_status(&mut self, obj: &Value, status: &Value) -> Result<()> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api = self.api_for(obj).await?;
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .with_context(|| format!("failed to write the status of {} {}", obj["kind"], describe(obj)))?;
        Ok(())
    }

    /// Merge-patches `obj` (e.g. its labels), as a user's `kubectl patch --type merge` does.
    pub async fn patch(&mut self, obj: &Value, patch: &Value) -> Result<()> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api = self.api_for(obj).await?;
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("failed to patch {}", describe(obj)))?;
        Ok(())
    }

    /// Deletes `obj` with the given grace period (a pod held by a finalizer stays, terminating).
    pub async fn delete(&mut self, obj: &Value, grace_seconds: u32) -> Result<()> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api = self.api_for(obj).await?;
        let params = kube::api::DeleteParams {
            grace_period_seconds: Some(grace_seconds),
            ..Default::default()
        };
        api.delete(name, &params)
            .await
            .with_context(|| format!("failed to delete {}", describe(obj)))?;
        Ok(())
    }

    /// Lists objects of the kind of `like` in `namespace` (all when `None`) matching `labels`.
    pub async fn list(
        &mut self,
        like: &Value,
        namespace: Option<&str>,
        labels: &str,
    ) -> Result<Vec<DynamicObject>> {
        let (ar, _) = self.resource(like).await?;
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        Ok(api
            .list(&ListParams::default().labels(labels))
            .await
            .with_context(|| format!("failed to list {}", ar.plural))?
            .items)
    }

    /// A token of ServiceAccount `namespace/name` for `audiences` (the API server's own when
    /// empty), bound to the pod `pod` (name, uid), as the kubelet asks for a projected volume.
    pub async fn token(
        &self,
        namespace: &str,
        name: &str,
        audiences: Vec<String>,
        pod: (&str, &str),
        expiration_seconds: i64,
    ) -> Result<String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences,
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.0.into()),
                    uid: Some(pod.1.into()),
                }),
            },
            ..Default::default()
        };
        let made = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("failed to request a token for ServiceAccount {namespace}/{name}"))?;
        made.status
            .map(|s| s.token)
            .ok_or_else(|| anyhow!("the token request for {namespace}/{name} came back without a token"))
    }
}

/// `namespace/name` or `name` of an object, for messages.
pub fn describe(obj: &Value) -> String {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}
