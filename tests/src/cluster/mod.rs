//! The lab's real Kubernetes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//! kube-proxy and CoreDNS built from their upstream Go modules (`tests/cluster/`) and run as
//! processes in the lab's namespaces, with the lab's own kubelet (no container runtime runs here)
//! serving port-forward through the upstream streaming code.

pub mod api;
pub mod bins;
pub mod components;
pub mod kubelet;
pub mod pki;
pub mod pod_sync;
pub mod relay;
pub mod up;
