//! The lab kubelet's long-running part (`netdiag-lab kubelet`, started by `up` on the real
//! control plane once the lab is up): it polls the API server for the pods bound to the lab's
//! nodes and runs the ones that came after `up` — each in a network namespace of its own on its
//! node (veth, routed /32 as at `up`, a kubelet-style resolv.conf), running the pod app on its
//! containers' ports — and writes their status (Running, Ready, podIP). A pod deleted through the
//! API is stopped and its deletion confirmed, as a kubelet does once its containers are gone;
//! `up`'s own pods are stopped so too, except those a finalizer holds on purpose (a scenario's
//! terminating pods keep serving). IPv4 only; the agents' pods and hostNetwork pods are run only
//! at `up`, and the pods bound when it starts (`up`'s, and the scenario's raw objects, whose status
//! `up` wrote) are never run by it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::api::Cluster;
use super::components::{Layout, pods_dir};
use super::up::HOLD_FINALIZER;
use crate::state::{Journal, LabInfo, StateDir};

/// How often the API server is asked for the pods.
const POLL: Duration = Duration::from_millis(500);

/// How long a pod's process may take to listen.
const READY_WAIT: Duration = Duration::from_secs(10);

/// A pod this process runs.
struct Running {
    uid: String,
    node: String,
    netns: String,
    ip: Ipv4Addr,
    child: Child,
}

struct Kubelet {
    state: StateDir,
    at: Layout,
    info: LabInfo,
    /// `up`'s pods by `namespace/name`: their process ids, until they are stopped.
    up_pods: BTreeMap<String, u32>,
    running: BTreeMap<String, Running>,
    /// Namespaces made so far, for the next one's name.
    made: usize,
    /// The uids of pods that failed to start or that it does not run (not tried again; the
    /// reason is in the log).
    failed: BTreeSet<String>,
    /// The uids of the pods bound to the lab's nodes when it started: `up`'s, its own and the
    /// scenario's raw objects (e.g. a hostNetwork pod with a written status), which it never runs.
    before: Option<BTreeSet<String>>,
}

/// Runs the kubelet of the lab in `dir` until it is killed (by `down`).
pub fn serve(dir: &Path) -> Result<()> {
    let state = StateDir::open(dir)?;
    let info: LabInfo = serde_json::from_str(
        &std::fs::read_to_string(state.path("lab.json")).context("failed to read the lab's lab.json")?,
    )
    .context("lab.json does not parse")?;
    let up_pods = info
        .pods
        .iter()
        .map(|p| (format!("{}/{}", p.namespace, p.name), p.pid))
        .collect();
    let mut kubelet = Kubelet {
        at: Layout {
            dir: state.dir.clone(),
        },
        state,
        info,
        up_pods,
        running: BTreeMap::new(),
        made: 0,
        failed: BTreeSet::new(),
        before: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the kubelet's async runtime")?;
    runtime.block_on(async {
        let mut cluster = Cluster::connect(&kubelet.state.path("admin.kubeconfig")).await?;
        loop {
            if let Err(e) = kubelet.sync(&mut cluster).await {
                eprintln!("kubelet: {e:#}");
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

impl Kubelet {
    /// One pass: start the pods that are new, stop those deleted.
    async fn sync(&mut self, cluster: &mut Cluster) -> Result<()> {
        let like = json!({"apiVersion": "v1", "kind": "Pod"});
        let nodes: BTreeSet<&str> = self.info.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut pods: BTreeMap<String, Value> = BTreeMap::new();
        for pod in cluster.list(&like, None, "").await? {
            let mut pod = serde_json::to_value(pod)?;
            // A list's items carry no kind of their own.
            pod["apiVersion"] = json!("v1");
            pod["kind"] = json!("Pod");
            let bound = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| nodes.contains(n));
            if bound {
                pods.insert(super::api::describe(&pod), pod);
            }
        }
        let before = self
            .before
            .get_or_insert_with(|| pods.values().map(uid).collect());
        pods.retain(|key, p| !before.contains(&uid(p)) || self.up_pods.contains_key(key));
        // Deleted: gone from the API, replaced by a pod of the same name, or being deleted.
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(key, r)| {
                pods.get(*key)
                    .is_none_or(|p| uid(p) != r.uid || p.pointer("/metadata/deletionTimestamp").is_some())
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.stop(cluster, &key, pods.get(&key)).await?;
        }
        let up_gone: Vec<String> = self
            .up_pods
            .keys()
            .filter(|key| match pods.get(*key) {
                None => true,
                Some(p) => p.pointer("/metadata/deletionTimestamp").is_some() && !held(p),
            })
            .cloned()
            .collect();
        for key in up_gone {
            if let Some(pid) = self.up_pods.remove(&key) {
                kill_group(pid);
            }
            if let Some(pod) = pods.get(&key) {
                cluster.delete(pod, 0).await?;
            }
        }
        for (key, pod) in &pods {
            let new = !self.running.contains_key(key)
                && !self
                    .info
                    .pods
                    .iter()
                    .any(|p| format!("{}/{}", p.namespace, p.name) == *key)
                && pod.pointer("/metadata/deletionTimestamp").is_none()
                && !self.failed.contains(&uid(pod));
            if !new {
                continue;
            }
            if is_agent(pod) {
                eprintln!("kubelet: not running {key}: the lab runs the agents' pods only at up");
                self.failed.insert(uid(pod));
                continue;
            }
            if pod.pointer("/spec/hostNetwork") == Some(&json!(true)) {
                eprintln!("kubelet: not running {key}: the lab runs no hostNetwork pods after up");
                self.failed.insert(uid(pod));
                continue;
            }
            if let Err(e) = self.start(cluster, key, pod).await {
                eprintln!("kubelet: failed to run pod {key}: {e:#}");
                self.failed.insert(uid(pod));
                if let Some(netns) = self.running.get(key).map(|r| r.netns.clone()) {
                    eprintln!("kubelet: pod {key} keeps running in {netns} without its status");
                }
            }
        }
        Ok(())
    }

    /// Makes the pod's namespace on its node, runs the pod app there and reports it Running.
    async fn start(&mut self, cluster: &mut Cluster, key: &str, pod: &Value) -> Result<()> {
        let node_name = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let node = self
            .info
            .nodes
            .iter()
            .find(|n| n.name == node_name)
            .ok_or_else(|| anyhow!("no lab node {node_name}"))?
            .clone();
        let ip = self.free_ip(&node.pod_cidr)?;
        let n = self.made;
        self.made += 1;
        let netns = format!("{}-k{n}", self.info.prefix);
        let host_if = format!("calik{n}");
        // Journaled before it exists, so that `down` removes it whatever happens next.
        let mut journal: Journal = self
            .state
            .read_journal()?
            .ok_or_else(|| anyhow!("the lab has no journal"))?;
        journal.netns.push(netns.clone());
        self.state.write_json("journal.json", &journal)?;
        let namespace = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.network(&netns, &host_if, &node.netns, ip)?;
        let etc = Path::new("/etc/netns").join(&netns);
        std::fs::create_dir_all(&etc).with_context(|| format!("failed to create {}", etc.display()))?;
        let dns: IpAddr = self
            .info
            .dns
            .cluster_ip
            .parse()
            .context("lab.json: the DNS ClusterIP")?;
        std::fs::write(
            etc.join("resolv.conf"),
            crate::plan::resolv_conf_via(namespace, dns),
        )?;
        super::kubelet::register(&self.at, &node.name, namespace, name, &netns)?;

        let ready = self.state.path(&format!("ready/k{n}"));
        let me = std::env::current_exe().context("failed to find the lab's own executable")?;
        let mut argv: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            netns.clone(),
            path_str(&me)?,
            "pod-app".into(),
            "--pod".into(),
            key.to_string(),
            "--ready-file".into(),
            path_str(&ready)?,
        ];
        for (port, protocol) in container_ports(pod) {
            argv.extend(["--listen".into(), format!("{protocol}:0.0.0.0:{port}")]);
        }
        let log = std::fs::File::create(self.state.path(&format!("logs/{namespace}_{name}.log")))?;
        let mut child = Command::new("ip")
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to start the process of pod {key}"))?;
        let deadline = Instant::now() + READY_WAIT;
        while !ready.exists() {
            if let Some(status) = child.try_wait()? {
                bail!("the process of pod {key} exited early ({status})");
            }
            if Instant::now() > deadline {
                bail!(
                    "the process of pod {key} did not listen within {}s",
                    READY_WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.running.insert(
            key.to_string(),
            Running {
                uid: uid(pod),
                node: node.name.clone(),
                netns,
                ip,
                child,
            },
        );
        cluster
            .write_status(pod, &running_status(pod, ip, &node.ip))
            .await?;
        eprintln!("kubelet: pod {key} runs on {} at {ip}", node.name);
        Ok(())
    }

    /// The next address of the node's pod CIDR that no pod of the lab holds.
    fn free_ip(&self, cidr: &str) -> Result<Ipv4Addr> {
        let (base, len) = cidr
            .split_once('/')
            .and_then(|(a, l)| Some((a.parse::<Ipv4Addr>().ok()?, l.parse::<u32>().ok()?)))
            .filter(|(_, l)| (1..=30).contains(l))
            .ok_or_else(|| anyhow!("pod CIDR {cidr} is not an IPv4 network"))?;
        let first = u32::from(base) & (u32::MAX << (32 - len));
        let last = first | (u32::MAX >> len);
        let taken: BTreeSet<Ipv4Addr> = self
            .info
            .pods
            .iter()
            .filter_map(|p| p.ip.parse().ok())
            .chain(self.running.values().map(|r| r.ip))
            .collect();
        // .1 is left out as `up` leaves it; the broadcast address too.
        (first + 2..last)
            .map(Ipv4Addr::from)
            .find(|ip| !taken.contains(ip))
            .ok_or_else(|| anyhow!("no free address in {cidr}"))
    }

    /// The pod's links, address and routes, as `up` makes them.
    fn network(&self, netns: &str, host_if: &str, node_netns: &str, ip: Ipv4Addr) -> Result<()> {
        ip_cmd(&["netns", "add", netns])?;
        crate::netns::sysctl(&crate::netns::named(netns), &[("net.ipv4.icmp_ratelimit", "0")])?;
        ip_cmd(&[
            "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", host_if, "netns",
            node_netns,
        ])?;
        crate::netns::sysctl(
            &crate::netns::named(node_netns),
            &[(&format!("net.ipv4.neigh.{host_if}.proxy_delay"), "0")],
        )?;
        ip_cmd(&["-n", node_netns, "link", "set", host_if, "up"])?;
        ip_cmd(&[
            "-n",
            node_netns,
            "route",
            "add",
            &format!("{ip}/32"),
            "dev",
            host_if,
        ])?;
        let gw = crate::plan::POD_GATEWAY_IP.to_string();
        ip_cmd(&["-n", netns, "link", "set", "lo", "up"])?;
        ip_cmd(&["-n", netns, "addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
        ip_cmd(&["-n", netns, "link", "set", "eth0", "up"])?;
        ip_cmd(&["-n", netns, "route", "add", &gw, "dev", "eth0", "scope", "link"])?;
        ip_cmd(&["-n", netns, "route", "add", "default", "via", &gw, "dev", "eth0"])?;
        Ok(())
    }

    /// Stops pod `key` (its process, namespace, resolv.conf, port-forward entry) and, if the API
    /// still holds it being deleted, confirms the deletion.
    async fn stop(&mut self, cluster: &mut Cluster, key: &str, pod: Option<&Value>) -> Result<()> {
        let Some(mut r) = self.running.remove(key) else {
            return Ok(());
        };
        kill_group(r.child.id());
        let _ = r.child.wait();
        ip_cmd(&["netns", "del", &r.netns])?;
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&r.netns));
        if let Some((namespace, name)) = key.split_once('/') {
            let _ = std::fs::remove_file(pods_dir(&self.at, &r.node).join(namespace).join(name));
        }
        if let Some(pod) = pod.filter(|p| uid(p) == r.uid && !held(p)) {
            cluster.delete(pod, 0).await?;
        }
        eprintln!("kubelet: pod {key} stopped");
        Ok(())
    }
}

fn uid(pod: &Value) -> String {
    pod.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Whether the lab's own finalizer holds the pod (a scenario's terminating pod).
fn held(pod: &Value) -> bool {
    pod.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|f| f == HOLD_FINALIZER))
}

/// A pod of the agent DaemonSet (in the agent namespace, with its label).
fn is_agent(pod: &Value) -> bool {
    pod.pointer("/metadata/namespace").and_then(Value::as_str) == Some(crate::plan::AGENT_NAMESPACE)
        && pod
            .pointer("/metadata/labels/app.kubernetes.io~1name")
            .and_then(Value::as_str)
            == Some("netdiag-agent")
}

/// Every container port as (port, `tcp`|`udp`).
fn container_ports(pod: &Value) -> Vec<(u64, &'static str)> {
    let mut out = Vec::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for p in c["ports"].as_array().into_iter().flatten() {
            let Some(port) = p["containerPort"].as_u64() else {
                continue;
            };
            let protocol = match p["protocol"].as_str() {
                Some("UDP") => "udp",
                _ => "tcp",
            };
            out.push((port, protocol));
        }
    }
    out
}

/// Running and Ready with its address, as a kubelet reports a pod whose containers started.
fn running_status(pod: &Value, ip: Ipv4Addr, host_ip: &str) -> Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c["name"], "ready": true, "started": true, "restartCount": 0,
                "image": c["image"], "imageID": "",
                "state": {"running": {"startedAt": now}}
            })
        })
        .collect();
    json!({
        "phase": "Running",
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": now,
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                       condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
        "containerStatuses": containers,
    })
}

fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Kills a pod's process group (`ip netns exec` and what it runs).
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(String::from)
        .ok_or_else(|| anyhow!("path {} is not UTF-8", p.display()))
}
