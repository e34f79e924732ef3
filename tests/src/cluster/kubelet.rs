//! The lab's kubelet, the one part of the real cluster that is the lab's own (no container
//! runtime runs here): the Node's status, where each pod's network namespace is (for the
//! port-forward server), and the agents' pods run as their pod spec says — command, args and env
//! (downward API resolved), the projected ServiceAccount tokens and CA at their mount paths in a
//! private mount namespace, exactly the capabilities the securityContext grants (the rest dropped
//! from the bounding set) and no_new_privs when privilege escalation is not allowed.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde_json::{Value, json};

use super::api::{API_TIMEOUT, Cluster};
use super::components::{KUBELET_PORT, Layout, pods_dir};
use super::pki::Pki;
use crate::lab::Builder;
use crate::plan::{self, PodPlan, PodRole};
use crate::scenario::IpFamily;

/// The capabilities a container runtime grants when a securityContext drops none (containerd's
/// and CRI-O's default set).
const RUNTIME_DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// What the image's environment would give the container.
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A node's status as its kubelet reports it: the scenario's (addresses, Ready) plus the kubelet
/// port the API server dials for port-forward, and room for pods so the scheduler binds there.
pub fn node_status(node: &Value) -> Value {
    let mut status = node["status"].clone();
    let room = json!({"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    status["capacity"] = room.clone();
    status["allocatable"] = room;
    status["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": KUBELET_PORT}});
    status
}

/// The taint kube-apiserver's TaintNodesByCondition admission gives every new Node.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// A Ready node's taints (`node` as stored): all but the not-ready one, which the node-lifecycle
/// controller removes once the node reports Ready.
pub fn taints_once_ready(node: &Value) -> Vec<Value> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t["key"] != NOT_READY_TAINT)
        .cloned()
        .collect()
}

/// Tells the node's port-forward server where pod `namespace/name` lives.
pub fn register(at: &Layout, node: &str, namespace: &str, name: &str, netns: &str) -> Result<()> {
    let dir = pods_dir(at, node).join(namespace);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let path = crate::netns::named(netns);
    std::fs::write(dir.join(name), path.display().to_string())
        .with_context(|| format!("failed to register pod {namespace}/{name}"))
}

pub fn register_pod(at: &Layout, node: &str, pod: &PodPlan) -> Result<()> {
    register(at, node, &pod.spec.namespace, &pod.spec.name, &pod.netns)
}

/// An agent pod the DaemonSet controller made, running in its node's agent slot of the plan.
pub struct RunningAgent {
    /// Index of the node's agent pod in the plan (its namespace and addresses).
    pub slot: usize,
    pub name: String,
    pub child: Child,
}

/// Waits for the DaemonSet's pods (one bound to each node by the scheduler) and runs each.
pub(crate) async fn run_agents(
    b: &Builder<'_>,
    cluster: &mut Cluster,
    at: &Layout,
    pki: &Pki,
) -> Result<Vec<RunningAgent>> {
    let Some(agent_bin) = b.agent_bin else {
        return Ok(Vec::new());
    };
    let pods = agent_pods(b, cluster).await?;
    let mut running = Vec::new();
    for pod in pods {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let slot = b
            .plan
            .pods
            .iter()
            .position(|p| p.role == PodRole::Agent && b.plan.nodes[p.node].name == node)
            .ok_or_else(|| anyhow!("the DaemonSet put an agent on {node}, which the lab has no slot for"))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        register(at, &node, plan::AGENT_NAMESPACE, &name, &b.plan.pods[slot].netns)?;
        let child = start_agent(b, cluster, at, pki, &pod, slot, agent_bin).await?;
        running.push(RunningAgent { slot, name, child });
    }
    Ok(running)
}

/// The agent DaemonSet's pods once every node has one bound to it. Only the pods its controller
/// made from its current template (controlled by the DaemonSet of that uid, running as its
/// ServiceAccount, not being deleted): a scenario's
/// impostors carry the label too — the DaemonSet controller even adopts one that has no owner —
/// and a lab kubelet has no image to run them from.
async fn agent_pods(b: &Builder<'_>, cluster: &mut Cluster) -> Result<Vec<Pod>> {
    let like = json!({"apiVersion": "v1", "kind": "Pod"});
    let daemonsets = json!({"apiVersion": "apps/v1", "kind": "DaemonSet"});
    let label = "app.kubernetes.io/name=netdiag-agent";
    let deadline = Instant::now() + API_TIMEOUT;
    loop {
        crate::signals::check()?;
        let daemonset = cluster
            .list(&daemonsets, Some(plan::AGENT_NAMESPACE), label)
            .await?
            .into_iter()
            .next();
        let owner = daemonset.as_ref().and_then(|ds| ds.metadata.uid.clone());
        // The template generation the DaemonSet's pods are made from now: a pod of an earlier
        // one is being replaced, and a kubelet does not start a pod being deleted.
        let generation = daemonset
            .as_ref()
            .and_then(|ds| ds.metadata.generation)
            .map(|g| g.to_string());
        let pods: Vec<Pod> = cluster
            .list(&like, Some(plan::AGENT_NAMESPACE), label)
            .await?
            .into_iter()
            .filter_map(|p| {
                serde_json::to_value(p)
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok())
            })
            .filter(|p: &Pod| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && Some(&o.uid) == owner.as_ref())
                    && p.spec.as_ref().and_then(|s| s.service_account_name.as_deref())
                        == Some("netdiag-agent")
                    && p.metadata.deletion_timestamp.is_none()
                    && p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("pod-template-generation"))
                        == generation.as_ref()
            })
            .collect();
        let bound: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        if b.plan.nodes.iter().all(|n| bound.contains(&n.name)) {
            return Ok(pods
                .into_iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                .collect());
        }
        if Instant::now() > deadline {
            bail!(
                "the agent DaemonSet had pods bound on {} of {} nodes after {}s (kube-controller-manager \
                 and kube-scheduler logs in the state dir)",
                bound.len(),
                b.plan.nodes.len(),
                API_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes the agent's volumes, its start script, and starts it in its pod's namespace.
async fn start_agent(
    b: &Builder<'_>,
    cluster: &mut Cluster,
    at: &Layout,
    pki: &Pki,
    pod: &Pod,
    slot: usize,
    agent_bin: &Path,
) -> Result<Child> {
    let planned = &b.plan.pods[slot];
    let node = &b.plan.nodes[planned.node];
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod
        .spec
        .clone()
        .ok_or_else(|| anyhow!("agent pod {name} has no spec"))?;
    let container = spec
        .containers
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("agent pod {name} has no container"))?;
    let dir = at.path("kubelet").join(&node.name).join(&name);
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name);
        let Some(volume) = volume else {
            bail!(
                "agent pod {name} mounts volume {} that it does not declare",
                mount.name
            );
        };
        let source = dir.join("volumes").join(&mount.name);
        if materialize(cluster, pki, volume, &source, (&name, &uid)).await? {
            mounts.push((
                source,
                PathBuf::from(&mount.mount_path),
                mount.read_only == Some(true),
            ));
        }
    }
    let script = start_script(b, &container, pod, slot, agent_bin, &mounts)?;
    let script_path = dir.join("start.sh");
    std::fs::write(&script_path, script)
        .with_context(|| format!("failed to write {}", script_path.display()))?;
    let log = std::fs::File::create(
        b.state
            .path(&format!("logs/{}_{name}.log", plan::AGENT_NAMESPACE)),
    )?;
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &planned.netns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
        ])
        .arg(&script_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("failed to start agent pod {name}"))
}

use std::os::unix::process::CommandExt as _;

/// Writes a volume's files under `to` as the kubelet would; `false` for a volume that is not
/// mounted (an optional Secret that does not exist, a hostPath at its own path).
async fn materialize(
    cluster: &Cluster,
    pki: &Pki,
    volume: &Volume,
    to: &Path,
    pod: (&str, &str),
) -> Result<bool> {
    if volume.host_path.is_some() {
        // The lab's pods see the host's filesystem: the path is already where it is mounted.
        return Ok(false);
    }
    if let Some(secret) = &volume.secret {
        if secret.optional == Some(true) {
            return Ok(false);
        }
        bail!(
            "volume {}: the lab's kubelet has no Secrets to mount",
            volume.name
        );
    }
    let Some(projected) = &volume.projected else {
        bail!(
            "volume {}: the lab's kubelet mounts only projected, optional Secret and hostPath volumes",
            volume.name
        );
    };
    std::fs::create_dir_all(to).with_context(|| format!("failed to create {}", to.display()))?;
    // A projected path is relative and stays inside the volume (the API server validates this;
    // the lab does not rely on it).
    let inside = |path: &str| -> Result<PathBuf> {
        let relative = Path::new(path);
        if path.is_empty()
            || relative.is_absolute()
            || relative
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            bail!(
                "volume {}: projected path {path:?} leaves the volume",
                volume.name
            );
        }
        Ok(to.join(relative))
    };
    for source in projected.sources.iter().flatten() {
        if let Some(sa) = &source.service_account_token {
            let audiences = sa.audience.clone().into_iter().collect();
            let token = cluster
                .token(
                    plan::AGENT_NAMESPACE,
                    "netdiag-agent",
                    audiences,
                    pod,
                    sa.expiration_seconds.unwrap_or(3607),
                )
                .await?;
            let path = inside(&sa.path)?;
            std::fs::write(&path, token).with_context(|| format!("failed to write {}", path.display()))?;
        }
        if let Some(cm) = &source.config_map {
            if cm.name != "kube-root-ca.crt" {
                bail!(
                    "volume {}: the lab's kubelet projects only the kube-root-ca.crt ConfigMap",
                    volume.name
                );
            }
            for item in cm.items.iter().flatten() {
                let path = inside(&item.path)?;
                std::fs::copy(pki.path("ca.crt"), &path)
                    .with_context(|| format!("failed to write {}", path.display()))?;
            }
        }
        for item in source.downward_api.iter().flat_map(|d| d.items.iter().flatten()) {
            let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.namespace") => plan::AGENT_NAMESPACE.to_string(),
                Some("metadata.name") => pod.0.to_string(),
                other => bail!(
                    "volume {}: downward API field {other:?} is not supported by the lab",
                    volume.name
                ),
            };
            let path = inside(&item.path)?;
            std::fs::write(&path, value).with_context(|| format!("failed to write {}", path.display()))?;
        }
    }
    Ok(true)
}

/// The shell script that becomes the agent's container: bind-mount its volumes (in the mount
/// namespace of its own it starts in; the mount points are made on the host, as a runtime makes
/// them in a container's root), then exec the command with the pod's environment, the
/// granted capabilities only, and no_new_privs unless escalation is allowed.
fn start_script(
    b: &Builder<'_>,
    container: &Container,
    pod: &Pod,
    slot: usize,
    agent_bin: &Path,
    mounts: &[(PathBuf, PathBuf, bool)],
) -> Result<String> {
    let mut out = String::from("set -e\n");
    for (source, target, read_only) in mounts {
        std::fs::create_dir_all(target)
            .with_context(|| format!("failed to create mount point {}", target.display()))?;
        let _ = writeln!(
            out,
            "mount --bind {} {}",
            quote(&source.display().to_string()),
            quote(&target.display().to_string())
        );
        if *read_only {
            let _ = writeln!(
                out,
                "mount -o remount,bind,ro {}",
                quote(&target.display().to_string())
            );
        }
    }
    let security = container.security_context.clone().unwrap_or_default();
    let caps = granted_caps(&security);
    let bounding: Vec<String> = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{}", c.to_lowercase())))
        .collect();
    let mut exec = vec![
        "setpriv".to_string(),
        format!("--bounding-set={}", bounding.join(",")),
        "--inh-caps=-all".into(),
    ];
    if security.allow_privilege_escalation == Some(false) {
        exec.push("--no-new-privs".into());
    }
    exec.extend(["--".into(), "env".into(), "-i".into()]);
    for (key, value) in environment(b, container, pod, slot)? {
        exec.push(format!("{key}={value}"));
    }
    // The image's entrypoint is the agent; a `command` replaces it.
    match &container.command {
        Some(cmd) if !cmd.is_empty() => exec.extend(cmd.iter().cloned()),
        _ => exec.push(agent_bin.display().to_string()),
    }
    exec.extend(container.args.iter().flatten().cloned());
    let _ = writeln!(
        out,
        "exec {}",
        exec.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
    );
    Ok(out)
}

/// The container's environment: its `env` with the downward API resolved, the Service variables
/// the kubelet adds for `kubernetes.default`, the image's PATH, and where the lab's node
/// namespace is (a lab node is a network namespace, not the host's, so `/proc/1/ns/net` is not it).
fn environment(
    b: &Builder<'_>,
    container: &Container,
    pod: &Pod,
    slot: usize,
) -> Result<Vec<(String, String)>> {
    let planned = &b.plan.pods[slot];
    let node = &b.plan.nodes[planned.node];
    let primary_ip = planned
        .addrs()
        .first()
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let api_vip = match b.plan.families.first() {
        Some(IpFamily::V6) => "fd00:10:96::1",
        _ => "10.96.0.1",
    };
    let mut env = vec![
        ("PATH".to_string(), IMAGE_PATH.to_string()),
        ("KUBERNETES_SERVICE_HOST".into(), api_vip.into()),
        ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into()),
        (
            "NETDIAG_NODE_NETNS".into(),
            crate::netns::named(&node.netns).display().to_string(),
        ),
    ];
    for var in container.env.iter().flatten() {
        let value = match (
            &var.value,
            var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(field)) => match field.field_path.as_str() {
                "spec.nodeName" => node.name.clone(),
                "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                "metadata.namespace" => pod.metadata.namespace.clone().unwrap_or_default(),
                "status.podIP" => primary_ip.clone(),
                other => bail!(
                    "env {}: downward API field {other} is not supported by the lab",
                    var.name
                ),
            },
            (None, None) => bail!(
                "env {}: only values and fieldRefs are supported by the lab",
                var.name
            ),
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// The bounding set a securityContext leaves: the runtime's default set, or none after
/// `drop: [ALL]`, minus what it drops, plus what it adds.
pub fn granted_caps(security: &k8s_openapi::api::core::v1::SecurityContext) -> BTreeSet<String> {
    let caps = security.capabilities.clone().unwrap_or_default();
    let drop: BTreeSet<String> = caps.drop.iter().flatten().map(|c| normalize_cap(c)).collect();
    let mut granted: BTreeSet<String> = if drop.contains("ALL") {
        BTreeSet::new()
    } else {
        RUNTIME_DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    granted.extend(caps.add.iter().flatten().map(|c| normalize_cap(c)));
    granted
}

/// `SYS_ADMIN` and `CAP_SYS_ADMIN` are the same capability to a runtime.
fn normalize_cap(c: &str) -> String {
    c.trim_start_matches("CAP_").to_uppercase()
}

/// A word for `/bin/sh`, single-quoted.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Reports each running agent pod Running and Ready with its addresses, as its kubelet would.
pub(crate) async fn report_agents(
    b: &Builder<'_>,
    cluster: &mut Cluster,
    agents: &[(usize, String)],
) -> Result<()> {
    for (slot, name) in agents {
        let planned = &b.plan.pods[*slot];
        let node = &b.plan.nodes[planned.node];
        let ips: Vec<Value> = planned
            .addrs()
            .iter()
            .map(|ip| json!({"ip": ip.to_string()}))
            .collect();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
        let status = json!({
            "phase": "Running",
            "podIP": planned.addrs().first().map(|ip| ip.to_string()),
            "podIPs": ips,
            "hostIP": node.ip.to_string(),
            "hostIPs": [{"ip": node.ip.to_string()}],
            "startTime": now,
            "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                           condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
            "containerStatuses": [{
                "name": "agent", "ready": true, "started": true, "restartCount": 0,
                "image": "ghcr.io/netdiag/netdiag-agent:0.1.0", "imageID": "",
                "state": {"running": {"startedAt": now}}
            }],
        });
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"namespace": plan::AGENT_NAMESPACE, "name": name}});
        cluster.write_status(&obj, &status).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};

    #[test]
    fn a_ready_node_keeps_every_taint_but_not_ready() {
        let node = json!({"spec": {"taints": [
            {"key": NOT_READY_TAINT, "effect": "NoSchedule"},
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
        assert_eq!(
            taints_once_ready(&node),
            [json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})]
        );
        assert!(taints_once_ready(&json!({"spec": {}})).is_empty());
    }

    fn ctx(add: &[&str], drop: &[&str]) -> SecurityContext {
        SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(add.iter().map(|s| s.to_string()).collect()),
                drop: Some(drop.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn drop_all_leaves_only_the_added_capabilities() {
        let caps = granted_caps(&ctx(&["SYS_ADMIN", "CAP_NET_RAW"], &["ALL"]));
        assert_eq!(caps.into_iter().collect::<Vec<_>>(), ["NET_RAW", "SYS_ADMIN"]);
    }

    #[test]
    fn without_drop_all_the_runtime_default_set_applies_minus_drops() {
        let caps = granted_caps(&ctx(&["NET_ADMIN"], &["NET_RAW"]));
        assert!(caps.contains("NET_ADMIN") && caps.contains("CHOWN"));
        assert!(!caps.contains("NET_RAW"));
        assert!(!caps.contains("SYS_ADMIN"));
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
    }
}
