//! Starting the real components as background processes in the lab's namespaces: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler in the underlay namespace (where
//! the cluster's address 172.18.0.1 lives), kube-proxy and the kubelet's port-forward server in
//! each node's namespace, CoreDNS in its pod's. Every process runs inside a lab namespace, so
//! `down` stops it with the rest of the lab.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::os::unix::process::CommandExt as _;

use anyhow::{Context, Result};

use super::bins::Binaries;
use super::pki::Pki;
use crate::plan::{self, Plan};
use crate::scenario::{IpFamily, ProxyMode};

/// The API server's port on every address of the underlay namespace.
pub const APISERVER_PORT: u16 = 6443;
/// The kubelet API port on each node's address.
pub const KUBELET_PORT: u16 = 10250;
/// kube-proxy's health port on each node (`/healthz` answers 200 once it has synced).
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 10256;
/// CoreDNS's `ready` plugin, on the DNS pod's loopback.
pub const COREDNS_READY_PORT: u16 = 8181;
/// The ServiceAccount token issuer, as a kubeadm cluster names it.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The controllers the lab needs. Left out on purpose: node-lifecycle (no kubelet heartbeats
/// here: it would taint and evict every node) and node-ipam (the lab assigns pod CIDRs).
const CONTROLLERS: &str = "serviceaccount-controller,serviceaccount-token-controller,endpointslice-controller,\
endpointslice-mirroring-controller,namespace-controller,garbage-collector-controller,\
root-ca-certificate-publisher-controller,daemonset-controller";

/// Where the components' files live in the state dir.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }
}

/// Starts `program args` inside the named network namespace, its output in `log`.
pub fn spawn_in(netns: &str, program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(program)
        .args(args)
        .envs(no_proxy())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("failed to start {} in {netns}", program.display()))
}

/// The lab's addresses go direct: a proxy the caller's environment names is not reachable from
/// inside the lab's namespaces, and client-go would send the API server's traffic to it.
pub fn no_proxy() -> [(&'static str, &'static str); 2] {
    let direct = "127.0.0.1,localhost,172.18.0.0/16,10.96.0.0/16,10.244.0.0/16,fd00::/8";
    [("NO_PROXY", direct), ("no_proxy", direct)]
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The Service CIDRs of the cluster's families, primary first.
pub fn service_cidrs(plan: &Plan) -> String {
    plan.families
        .iter()
        .map(|f| match f {
            IpFamily::V4 => plan::SERVICE_CIDR,
            IpFamily::V6 => plan::SERVICE_CIDR6,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The cluster's pod CIDRs, primary first.
fn cluster_cidrs(plan: &Plan) -> String {
    plan.families
        .iter()
        .map(|f| match f {
            IpFamily::V4 => plan::POD_CIDR,
            IpFamily::V6 => plan::POD_CIDR6,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The underlay router's address of the cluster's primary family.
pub fn advertise_address(plan: &Plan) -> std::net::IpAddr {
    match plan.families.first() {
        Some(IpFamily::V6) => plan::UNDERLAY_ROUTER_IP6.into(),
        _ => plan::UNDERLAY_ROUTER_IP.into(),
    }
}

pub fn etcd(bins: &Binaries, plan: &Plan, at: &Layout) -> Result<Child> {
    let data = at.path("etcd");
    let args = [
        "etcd",
        "--name=lab",
        &format!("--data-dir={}", s(&data)),
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=lab=http://127.0.0.1:2380",
        // A lab's data lives as long as the lab: no fsync, small and compacted.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=268435456",
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ];
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    spawn_in(&plan.underlay_netns, &bins.kube, &args, &at.log("etcd"))
}

pub fn apiserver(bins: &Binaries, plan: &Plan, pki: &Pki, at: &Layout) -> Result<Child> {
    let p = |n: &str| s(&pki.path(n));
    let args = vec![
        "kube-apiserver".to_string(),
        "--etcd-servers=http://127.0.0.1:2379".into(),
        format!("--secure-port={APISERVER_PORT}"),
        // Both families (a dual-stack socket), for IPv6 clusters and the IPv4 relay alike.
        "--bind-address=::".into(),
        // The `kubernetes` Service's endpoint: of the primary Service family, as the API server
        // requires.
        format!("--advertise-address={}", advertise_address(plan)),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        format!("--service-cluster-ip-range={}", service_cidrs(plan)),
        format!("--token-auth-file={}", s(&at.path("tokens.csv"))),
        format!("--kubelet-client-certificate={}", p("kubelet-client.crt")),
        format!("--kubelet-client-key={}", p("kubelet-client.key")),
        format!("--kubelet-certificate-authority={}", p("ca.crt")),
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ];
    spawn_in(&plan.underlay_netns, &bins.kube, &args, &at.log("kube-apiserver"))
}

pub fn controller_manager(bins: &Binaries, plan: &Plan, pki: &Pki, at: &Layout) -> Result<Child> {
    let args = vec![
        "kube-controller-manager".to_string(),
        format!(
            "--kubeconfig={}",
            s(&at.path("kube-controller-manager.kubeconfig"))
        ),
        "--leader-elect=false".into(),
        format!("--controllers={CONTROLLERS}"),
        format!("--service-account-private-key-file={}", s(&pki.path("sa.key"))),
        format!("--root-ca-file={}", s(&pki.path("ca.crt"))),
        format!("--service-cluster-ip-range={}", service_cidrs(plan)),
        "--bind-address=127.0.0.1".into(),
        // The lab's changes are few and must show at once.
        "--endpointslice-updates-batch-period=0s".into(),
        "--v=1".into(),
    ];
    spawn_in(
        &plan.underlay_netns,
        &bins.kube,
        &args,
        &at.log("kube-controller-manager"),
    )
}

pub fn scheduler(bins: &Binaries, plan: &Plan, at: &Layout) -> Result<Child> {
    let args = vec![
        "kube-scheduler".to_string(),
        format!("--kubeconfig={}", s(&at.path("kube-scheduler.kubeconfig"))),
        format!(
            "--authentication-kubeconfig={}",
            s(&at.path("kube-scheduler.kubeconfig"))
        ),
        format!(
            "--authorization-kubeconfig={}",
            s(&at.path("kube-scheduler.kubeconfig"))
        ),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--v=1".into(),
    ];
    spawn_in(&plan.underlay_netns, &bins.kube, &args, &at.log("kube-scheduler"))
}

/// kube-proxy for node `i` in its namespace, in `mode`; its configuration file is kept in the
/// state dir. Conntrack sysctls are left alone (they are global), as kind does.
pub fn kube_proxy(bins: &Binaries, plan: &Plan, i: usize, mode: ProxyMode, at: &Layout) -> Result<Child> {
    let node = &plan.nodes[i];
    let config = at.path(&format!("kube-proxy-{}.yaml", node.name));
    let mut text = String::new();
    let _ = write!(
        text,
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
         clientConnection:\n  kubeconfig: {kubeconfig}\nhostnameOverride: {name}\nmode: {mode}\n\
         clusterCIDR: {cidrs}\ndetectLocalMode: ClusterCIDR\nmetricsBindAddress: 127.0.0.1:10249\n\
         healthzBindAddress: 0.0.0.0:{KUBE_PROXY_HEALTHZ_PORT}\n\
         conntrack:\n  maxPerCore: 0\n  min: 0\n  tcpEstablishedTimeout: 0s\n  tcpCloseWaitTimeout: 0s\n\
         iptables:\n  minSyncPeriod: 0s\n  syncPeriod: 30s\nnftables:\n  minSyncPeriod: 0s\n  syncPeriod: 30s\n",
        kubeconfig = s(&at.path("kube-proxy.kubeconfig")),
        name = node.name,
        mode = mode.as_str(),
        cidrs = cluster_cidrs(plan),
    );
    std::fs::write(&config, text).with_context(|| format!("failed to write {}", config.display()))?;
    let args = vec![
        "kube-proxy".to_string(),
        format!("--config={}", s(&config)),
        "--v=1".into(),
    ];
    spawn_in(
        &node.netns,
        &bins.kube,
        &args,
        &at.log(&format!("kube-proxy-{}", node.name)),
    )
}

/// The kubelet's port-forward server for node `i`, on the node's addresses.
pub fn kubelet_streaming(bins: &Binaries, plan: &Plan, i: usize, pki: &Pki, at: &Layout) -> Result<Child> {
    let node = &plan.nodes[i];
    let args = vec![
        "lab-kubelet".to_string(),
        // Every address of the node (the API server dials the primary family's InternalIP).
        format!("--listen=[::]:{KUBELET_PORT}"),
        format!(
            "--tls-cert-file={}",
            s(&pki.path(&format!("kubelet-{}.crt", node.name)))
        ),
        format!(
            "--tls-private-key-file={}",
            s(&pki.path(&format!("kubelet-{}.key", node.name)))
        ),
        format!("--client-ca-file={}", s(&pki.path("ca.crt"))),
        format!("--pods-dir={}", s(&pods_dir(at, &node.name))),
    ];
    spawn_in(
        &node.netns,
        &bins.kube,
        &args,
        &at.log(&format!("kubelet-{}", node.name)),
    )
}

/// Where a node's kubelet finds its running pods: `DIR/NAMESPACE/NAME` holds the pod's network
/// namespace path.
pub fn pods_dir(at: &Layout, node: &str) -> PathBuf {
    at.path("kubelet").join(node).join("pods")
}

/// CoreDNS in its pod's namespace, serving the cluster domain from the API with the
/// `kubernetes` plugin. Without an outside network the lab has no upstream: a name outside the
/// zones it serves is REFUSED, CoreDNS's own answer for a zone it has no server block for.
pub fn coredns(bins: &Binaries, plan: &Plan, at: &Layout) -> Result<Child> {
    let corefile = at.path("Corefile");
    let text = format!(
        "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{\n    errors\n    ready 127.0.0.1:{COREDNS_READY_PORT}\n    \
         kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        kubeconfig {kubeconfig} netdiag-lab\n        \
         pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 5\n    }}\n    cache 5\n}}\n",
        kubeconfig = s(&at.path("coredns.kubeconfig")),
    );
    // With an outside network, every other name goes to its DNS server, as `forward . /etc/resolv.conf`
    // sends it to the node's.
    let text = match crate::outside::upstream_dns(plan) {
        Some(upstream) => format!("{text}.:53 {{\n    errors\n    forward . {upstream}\n    cache 5\n}}\n"),
        None => text,
    };
    std::fs::write(&corefile, text).with_context(|| format!("failed to write {}", corefile.display()))?;
    let args = vec!["-conf".to_string(), s(&corefile)];
    spawn_in(&plan.dns_pod().netns, &bins.coredns, &args, &at.log("coredns"))
}

/// A component that exited, named with its log, or `Ok` while all run.
pub fn check_running(components: &mut [(&'static str, Child)], at: &Layout) -> Result<()> {
    for (name, child) in components.iter_mut() {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{name} exited ({status}); its log: {}", at.log(name).display());
        }
    }
    Ok(())
}
