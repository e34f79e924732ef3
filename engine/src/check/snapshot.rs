//! What the API server returned for one check, read once: every later stage (planning, policy
//! evaluation, assembly) works from this value and never reads the cluster again.
//!
//! [`Snapshot::read`] is the only I/O here.

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::evidence::Fact;
use crate::cluster::{ToolFailure, list_all};
use crate::policy::admin::{AdminObjects, read_admin_objects};

/// The objects a check depends on, each kind listed once for the whole cluster.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pods: Fact<Vec<Pod>>,
    pub services: Fact<Vec<Service>>,
    pub slices: Fact<Vec<EndpointSlice>>,
    pub namespaces: Fact<Vec<Namespace>>,
    pub policies: Fact<Vec<NetworkPolicy>>,
    /// The cluster-wide admin policies (none when their CRDs are not installed).
    pub admin: Fact<AdminObjects>,
}

fn fact<T>(result: Result<T, ToolFailure>) -> Fact<T> {
    match result {
        Ok(value) => Fact::Known(value),
        Err(failure) => Fact::Unknown(failure),
    }
}

impl Snapshot {
    /// Lists the five kinds at once. A failed list is an unknown fact, never an error.
    pub async fn read(client: &kube::Client) -> Self {
        let (pods, services, slices, namespaces, policies, admin) = tokio::join!(
            list_all::<Pod>(client, "list pods in all namespaces"),
            list_all::<Service>(client, "list services in all namespaces"),
            list_all::<EndpointSlice>(client, "list endpointslices in all namespaces"),
            list_all::<Namespace>(client, "list namespaces"),
            list_all::<NetworkPolicy>(client, "list networkpolicies in all namespaces"),
            read_admin_objects(client),
        );
        let admin = admin.map_err(|err| err.source);
        Snapshot {
            pods: fact(pods),
            services: fact(services),
            slices: fact(slices),
            namespaces: fact(namespaces),
            policies: fact(policies),
            admin: fact(admin),
        }
    }

    /// Nothing could be read, for one reason (no kubeconfig, no client).
    pub fn unread(failure: ToolFailure) -> Self {
        Snapshot {
            pods: Fact::Unknown(failure.clone()),
            services: Fact::Unknown(failure.clone()),
            slices: Fact::Unknown(failure.clone()),
            namespaces: Fact::Unknown(failure.clone()),
            policies: Fact::Unknown(failure.clone()),
            admin: Fact::Unknown(failure),
        }
    }

    pub(crate) fn pods(&self) -> &[Pod] {
        self.pods.known().map(Vec::as_slice).unwrap_or_default()
    }

    pub(crate) fn services(&self) -> &[Service] {
        self.services.known().map(Vec::as_slice).unwrap_or_default()
    }
}
