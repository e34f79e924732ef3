//! The agent image, built by `deploy/build-image` (the release's recipe, cached by
//! `tests/scripts/agent-image`), run with runc under the securityContext `deploy/daemonset.yaml`
//! gives it: exactly its capabilities, no_new_privs, the node's PID namespace (hostPID), its volume
//! mounts, a read-only root filesystem, its args and env, all read from the manifest. In a lab
//! network of a node and two pods, the agent answers its exec probes, serves `/v1/info` on its
//! control port inside its pod, probes from another pod found by IP, and reads the node's Service
//! rules; `iptables-save` and `nft -j` work in it with those capabilities alone.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, require_root};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use netdiag_proto::{
    AgentInfo, NodeDataplaneProbe, Probe, ProbeReport, ProbeRequest, ProbeResult, ProbeSource, ServiceVip,
    TcpOutcome, TcpProbe, Transport,
};
use serde_json::{Value, json};

/// runc's state directory for the lab's containers (not the machine's default one).
const RUNC_ROOT: &str = "/run/netdiag-lab-runc";
/// The namespace the DaemonSet's pods live in (deploy/daemonset.yaml's `metadata.namespace`).
const NAMESPACE: &str = "netdiag";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tests/")
        .to_path_buf()
}

/// Runs a command that must succeed; returns its output.
#[track_caller]
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// The image `tests/scripts/agent-image` builds (once per source tree) as `DIR:TAG`.
fn agent_image() -> String {
    let script = repo().join("tests/scripts/agent-image");
    let out = run(Command::new(&script).stderr(Stdio::inherit()));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// The image's OCI config (`config.Entrypoint`, `config.Env`, ...), read from the layout.
fn image_config(image: &str) -> Value {
    let (dir, tag) = image.rsplit_once(':').expect("DIR:TAG");
    let read = |path: PathBuf| -> Value {
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .expect("json")
    };
    let blob = |digest: &Value| {
        let (algorithm, hex) = digest.as_str().and_then(|d| d.split_once(':')).expect("digest");
        read(Path::new(dir).join("blobs").join(algorithm).join(hex))
    };
    let index = read(Path::new(dir).join("index.json"));
    let manifest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {dir}"));
    blob(&blob(&manifest["digest"])["config"]["digest"])
}

/// The DaemonSet as deploy/daemonset.yaml gives it: its pod spec and its one container.
fn daemonset() -> (PodSpec, Container) {
    let text =
        std::fs::read_to_string(repo().join("deploy/daemonset.yaml")).expect("read deploy/daemonset.yaml");
    let ds: DaemonSet = serde_yaml_ng::from_str(&text).expect("deploy/daemonset.yaml is a DaemonSet");
    let spec = ds.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(spec.containers.len(), 1, "the agent pod has one container");
    let container = spec.containers[0].clone();
    (spec, container)
}

/// A capability's number (linux/capability.h), as /proc/PID/status counts them.
fn capability_bit(name: &str) -> u32 {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("unknown capability {name}")) as u32
}

/// A Kubernetes memory quantity in bytes (the forms a manifest of ours uses).
fn memory_bytes(quantity: &str) -> i64 {
    let (number, unit) = quantity.split_at(
        quantity
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(quantity.len()),
    );
    let number: i64 = number
        .parse()
        .unwrap_or_else(|_| panic!("memory quantity {quantity}"));
    number
        * match unit {
            "" => 1,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            other => panic!("memory unit {other} of {quantity}"),
        }
}

/// A named network namespace, removed with what runs in it on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        netdiag_lab::netns::named(&self.0)
    }

    fn exec(&self, argv: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.0]).args(argv))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse() {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Gives `pod` the address `addr/32` on a veth whose other end is in `node`, with the node's route
/// to it, as a CNI plugin plugs a pod into its node.
fn plug(pod: &Netns, addr: IpAddr, node: &Netns, link: &str) {
    let (inside, outside) = (format!("{link}p"), format!("{link}n"));
    ip(&[
        "link", "add", &inside, "netns", &pod.0, "type", "veth", "peer", "name", &outside, "netns", &node.0,
    ]);
    ip(&["-n", &pod.0, "addr", "add", &format!("{addr}/32"), "dev", &inside]);
    ip(&["-n", &pod.0, "link", "set", &inside, "up"]);
    ip(&["-n", &node.0, "link", "set", &outside, "up"]);
    ip(&[
        "-n",
        &node.0,
        "route",
        "add",
        &format!("{addr}/32"),
        "dev",
        &outside,
    ]);
}

/// A process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP listener on `127.0.0.1:port` inside `netns` that accepts and closes connections.
fn listen(netns: &Netns, port: u16) -> Proc {
    const SCRIPT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"#;
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns.0,
            "python3",
            "-c",
            SCRIPT,
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the listener");
    let mut proc = Proc(child);
    let mut line = String::new();
    BufReader::new(proc.0.stdout.as_mut().expect("piped"))
        .read_line(&mut line)
        .expect("read the listener's first line");
    assert_eq!(line.trim(), "ready", "the listener did not start");
    proc
}

/// A container run by runc (`runc run -d`), deleted on drop.
struct Runc {
    id: String,
}

impl Runc {
    fn command(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.args(["--root", RUNC_ROOT]);
        cmd
    }

    /// `runc exec` with the container's process settings (capabilities, no_new_privs, user, env).
    fn exec(&self, argv: &[String]) -> Output {
        self.command()
            .arg("exec")
            .arg(&self.id)
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run runc exec")
    }

    fn pid(&self) -> u32 {
        let out = run(self.command().args(["state", &self.id]));
        let state: Value = serde_json::from_slice(&out.stdout).expect("runc state is json");
        assert_eq!(state["status"], "running", "{state}");
        state["pid"].as_u64().expect("pid") as u32
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .status();
    }
}

/// One HTTP/1.1 request to `addr`, made from inside the namespace at `netns`.
fn http(netns: &Path, addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = netdiag_lab::netns::connect_tcp(netns, addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to the agent at {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no http response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// One line of /proc/PID/status, e.g. `CapEff`.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn inode(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path.as_ref())
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.as_ref().display()))
        .ino()
}

#[test]
fn the_agent_image_runs_under_the_daemonsets_security_context() {
    require_root();
    // runc's container inherits runc's stdio only; nothing else this test process holds.
    netdiag_lab::signals::no_inherited_fds_for_children();
    let image = agent_image();
    // No lab lock: that lock keeps labs, which all use the same pod addresses, apart from the check
    // tests' agents, which find pods by IP machine-wide. This network's addresses are its own.
    let (spec, container) = daemonset();

    // The lab: a node, the agent's pod and another pod on it, at addresses no scenario uses.
    let tag = format!("{:x}", std::process::id());
    let octet = std::process::id() % 250 + 2;
    let (agent_ip, pod_ip): (IpAddr, IpAddr) = (
        format!("172.26.{octet}.2").parse().unwrap(),
        format!("172.26.{octet}.3").parse().unwrap(),
    );
    let node = Netns::new(format!("ndimg-{tag}-node"));
    let agent_pod = Netns::new(format!("ndimg-{tag}-agent"));
    let pod = Netns::new(format!("ndimg-{tag}-pod"));
    plug(&agent_pod, agent_ip, &node, &format!("ndi{tag}a"));
    plug(&pod, pod_ip, &node, &format!("ndi{tag}b"));
    let _listener = listen(&pod, 18080);
    // kube-proxy's iptables mode for the Service 10.97.OCTET.1:80/TCP with the pod as its endpoint.
    let vip: IpAddr = format!("10.97.{octet}.1").parse().unwrap();
    for rule in [
        "-t nat -N KUBE-SERVICES".to_string(),
        "-t nat -N KUBE-SVC-NDIMG".to_string(),
        "-t nat -N KUBE-SEP-NDIMG".to_string(),
        format!("-t nat -A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-NDIMG"),
        "-t nat -A KUBE-SVC-NDIMG -j KUBE-SEP-NDIMG".to_string(),
        format!("-t nat -A KUBE-SEP-NDIMG -p tcp -m tcp -j DNAT --to-destination {pod_ip}:8080"),
    ] {
        let mut argv = vec!["iptables"];
        argv.extend(rule.split_whitespace());
        node.exec(&argv);
    }
    // Something of the agent pod's own for the container's iptables-save and nft to list.
    agent_pod.exec(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT",
    ]);
    agent_pod.exec(&["nft", "add", "table", "inet", "ndimg_witness"]);

    // The bundle: the image unpacked, its runtime config made what the DaemonSet asks for.
    let dir = TempDir::new("agent-image");
    let bundle = dir.0.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let config_path = bundle.join("config.json");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("read config.json")).expect("config.json");
    let image_config = image_config(&image);
    let pod_name = format!("netdiag-agent-{tag}");
    let node_name = format!("ndimg-{tag}");

    // Args: the image's entrypoint, the DaemonSet's args (which replace the image's command).
    assert!(container.command.is_none(), "the DaemonSet gives args only");
    let mut args: Vec<String> = image_config["config"]["Entrypoint"]
        .as_array()
        .expect("the image has an entrypoint")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect();
    let ds_args = container.args.clone().expect("the DaemonSet gives args");
    args.extend(ds_args.iter().cloned());
    let listen: SocketAddr = ds_args
        .iter()
        .skip_while(|a| *a != "--listen")
        .nth(1)
        .expect("the DaemonSet's args give --listen")
        .parse()
        .expect("--listen is an address");

    // Env: the image's, then the DaemonSet's with its field references filled in as the kubelet
    // would. Not the in-cluster endpoint's listener: it needs an API server, which this lab has
    // not (tests/tests/endpoint.rs runs the endpoint). The node's namespace is the lab node's, as
    // the lab runs every agent (on a real node it is /proc/1/ns/net, the default).
    let mut env: Vec<String> = image_config["config"]["Env"]
        .as_array()
        .expect("the image sets env")
        .iter()
        .map(|e| e.as_str().expect("string").to_string())
        .collect();
    for var in container.env.iter().flatten() {
        if var.name == "NETDIAG_ENDPOINT_LISTEN" {
            continue;
        }
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().expect("a fieldRef").field_path.as_str() {
                "spec.nodeName" => node_name.clone(),
                "metadata.name" => pod_name.clone(),
                "metadata.namespace" => NAMESPACE.to_string(),
                "status.podIP" => agent_ip.to_string(),
                other => panic!("env {}: field {other} is not filled in by this test", var.name),
            },
            (None, None) => String::new(),
        };
        env.push(format!("{}={value}", var.name));
    }
    let node_netns = node.path().display().to_string();
    env.push(format!("NETDIAG_NODE_NETNS={node_netns}"));

    // The securityContext.
    let security = container.security_context.clone().expect("a securityContext");
    let capabilities = security.capabilities.clone().expect("capabilities");
    assert_eq!(
        capabilities.drop.as_deref(),
        Some(&["ALL".to_string()][..]),
        "the DaemonSet drops every capability before adding its own"
    );
    let added: Vec<String> = capabilities.add.clone().expect("added capabilities");
    let granted: Vec<String> = added.iter().map(|c| format!("CAP_{c}")).collect();
    let process = &mut config["process"];
    process["args"] = json!(args);
    process["env"] = json!(env);
    process["terminal"] = json!(false);
    process["user"] = json!({"uid": security.run_as_user.unwrap_or(0), "gid": 0});
    process["capabilities"] = json!({
        "bounding": granted, "effective": granted, "permitted": granted, "inheritable": [], "ambient": [],
    });
    process["noNewPrivileges"] = json!(!security.allow_privilege_escalation.unwrap_or(true));
    config["root"]["readonly"] = json!(security.read_only_root_filesystem == Some(true));
    config["hostname"] = json!(pod_name);

    // Namespaces: the pod's network namespace; the node's PID namespace with hostPID.
    assert_ne!(
        spec.host_network,
        Some(true),
        "the agent keeps its own pod network"
    );
    let host_pid = spec.host_pid == Some(true);
    let namespaces = config["linux"]["namespaces"].as_array_mut().expect("namespaces");
    namespaces.retain(|ns| !(host_pid && ns["type"] == "pid"));
    for ns in namespaces.iter_mut().filter(|ns| ns["type"] == "network") {
        ns["path"] = json!(agent_pod.path());
    }
    if let Some(memory) = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
    {
        config["linux"]["resources"]["memory"] = json!({"limit": memory_bytes(&memory.0)});
    }

    // Mounts: a hostPath as itself, with its propagation; the projected token volumes and the
    // optional TLS Secret as empty directories (no API server here, and the agent reads them only
    // for the endpoint).
    let mounts = config["mounts"].as_array_mut().expect("mounts");
    let mut slave = false;
    for mount in container.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("volume {} is not declared", mount.name));
        let source = match &volume.host_path {
            Some(host) => {
                if host.type_.as_deref() == Some("DirectoryOrCreate") {
                    std::fs::create_dir_all(&host.path).expect("create the hostPath");
                }
                PathBuf::from(&host.path)
            }
            None => {
                let source = dir.0.join("volumes").join(&volume.name);
                std::fs::create_dir_all(&source).expect("create the volume");
                source
            }
        };
        let propagation = match mount.mount_propagation.as_deref() {
            Some("HostToContainer") => "rslave",
            Some("Bidirectional") => "rshared",
            None | Some("None") => "rprivate",
            Some(other) => panic!("mountPropagation {other}"),
        };
        slave |= propagation == "rslave";
        let access = if mount.read_only == Some(true) { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": mount.mount_path,
            "type": "bind",
            "source": source,
            "options": ["rbind", access, propagation],
        }));
    }
    if slave {
        config["linux"]["rootfsPropagation"] = json!("rslave");
    }
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).expect("write config.json");

    let log_path = dir.0.join("agent.log");
    let log = std::fs::File::create(&log_path).expect("create the agent's log");
    let runc = Runc {
        id: format!("ndimg-{tag}"),
    };
    let started = runc
        .command()
        .args(["run", "--detach", "--bundle"])
        .arg(&bundle)
        .arg(&runc.id)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("run runc");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(started.success(), "runc run failed: {}", log());

    // The container's process holds exactly the DaemonSet's capabilities, no_new_privs, the node's
    // PID namespace and the agent pod's network namespace.
    let pid = runc.pid();
    let mask: u64 = added.iter().map(|c| 1u64 << capability_bit(c)).sum();
    let mask = format!("{mask:016x}");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(pid, set), mask, "{set} of the agent ({added:?})");
    }
    assert_eq!(status_field(pid, "CapInh"), format!("{:016x}", 0), "CapInh");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(
        inode(format!("/proc/{pid}/ns/pid")),
        inode("/proc/self/ns/pid"),
        "hostPID: the node's PID namespace"
    );
    assert_eq!(inode(format!("/proc/{pid}/ns/net")), inode(agent_pod.path()));
    assert!(
        std::fs::write(format!("/proc/{pid}/root/netdiag-write-test"), b"x").is_err(),
        "the root filesystem is read-only"
    );

    // The exec probes: readiness once the agent is up (polled; no time asserted), then liveness.
    let probe_command = |probe: &Option<k8s_openapi::api::core::v1::Probe>| -> Vec<String> {
        probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .expect("an exec probe")
    };
    let readiness = probe_command(&container.readiness_probe);
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let out = runc.exec(&readiness);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        ready.status.success(),
        "readiness probe {readiness:?} failed: {}{}\nagent log:\n{}",
        String::from_utf8_lossy(&ready.stdout),
        String::from_utf8_lossy(&ready.stderr),
        log()
    );
    let liveness = probe_command(&container.liveness_probe);
    let live = runc.exec(&liveness);
    assert!(
        live.status.success(),
        "liveness probe {liveness:?} failed: {}",
        String::from_utf8_lossy(&live.stderr)
    );

    // /v1/info on the control port, from inside the agent's pod.
    let (status, body) = http(&agent_pod.path(), listen, "GET", "/v1/info", "");
    assert_eq!(status, 200, "{body}");
    let info: AgentInfo = serde_json::from_str(&body).expect("AgentInfo");
    assert_eq!(info.agent.node, node_name);
    assert_eq!(info.agent.pod, Some(format!("{NAMESPACE}/{pod_name}")));
    assert_eq!(info.node_netns, node_netns);
    let caps = &info.capabilities;
    assert!(
        caps.setns && caps.net_raw && caps.ptrace && caps.net_admin,
        "{caps:?}"
    );

    // A probe from the other pod, named by its IP: the connection to its own listener proves the
    // agent found the pod (hostPID, /run/netns) and entered it (SYS_ADMIN).
    let request = ProbeRequest {
        source: ProbeSource::PodIp { ip: pod_ip },
        probes: vec![Probe::Tcp(TcpProbe {
            ip: "127.0.0.1".parse().unwrap(),
            port: 18080,
            timeout_ms: 10_000,
        })],
    };
    let (status, body) = http(
        &agent_pod.path(),
        listen,
        "POST",
        "/v1/probe",
        &serde_json::to_string(&request).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let report: ProbeReport = serde_json::from_str(&body).expect("ProbeReport");
    assert_eq!(report.netns.inode, inode(pod.path()), "{body}");
    match &report.results[..] {
        [ProbeResult::Tcp(tcp)] => assert!(matches!(tcp.outcome, TcpOutcome::Connected { .. }), "{body}"),
        other => panic!("one tcp result expected: {other:?}"),
    }

    // The node's Service rules, read with the image's iptables-save in the node's namespace.
    let request = ProbeRequest {
        source: ProbeSource::Node,
        probes: vec![Probe::NodeDataplane(NodeDataplaneProbe {
            service: Some(ServiceVip {
                ip: vip,
                port: 80,
                protocol: Transport::Tcp,
            }),
        })],
    };
    let (status, body) = http(
        &agent_pod.path(),
        listen,
        "POST",
        "/v1/probe",
        &serde_json::to_string(&request).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let report: ProbeReport = serde_json::from_str(&body).expect("ProbeReport");
    assert_eq!(report.netns.inode, inode(node.path()), "{body}");
    let rules = match &report.results[..] {
        [ProbeResult::NodeDataplane(result)] => result.service_rules.clone().expect("service rules"),
        other => panic!("one nodeDataplane result expected: {other:?}"),
    };
    assert_eq!(rules.error, None, "{body}");
    assert_eq!(rules.source, "iptables", "{body}");
    assert!(rules.found, "{body}");
    assert_eq!(rules.endpoints, vec![SocketAddr::new(pod_ip, 8080)], "{body}");

    // The image's iptables-save and nft (with JSON output) in the container, with its capabilities.
    let saved = runc.exec(&["iptables-save".to_string()]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    assert!(
        String::from_utf8_lossy(&saved.stdout).contains("-A INPUT -p tcp -m tcp --dport 9 -j ACCEPT"),
        "{}",
        String::from_utf8_lossy(&saved.stdout)
    );
    let listed = runc.exec(&["nft", "-j", "list", "ruleset"].map(String::from));
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let ruleset: Value = serde_json::from_slice(&listed.stdout).expect("nft -j prints JSON");
    let tables: Vec<&str> = ruleset["nftables"]
        .as_array()
        .expect("nftables")
        .iter()
        .filter_map(|item| item["table"]["name"].as_str())
        .collect();
    assert!(tables.contains(&"ndimg_witness"), "{ruleset}");
}
