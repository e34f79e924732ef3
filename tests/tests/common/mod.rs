//! Helpers for the lab's fidelity tests: bring a scenario up with the real `netdiag-lab` binary
//! (without agents), tear it down on drop (also on panic), and talk from inside pod namespaces.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use netdiag_lab::state::LabInfo;

pub mod checklab;

pub const BIN: &str = env!("CARGO_BIN_EXE_netdiag-lab");

/// Fails the calling test unless it runs as root, saying so in one line: the lab makes network
/// namespaces, veth pairs and iptables rules, and a test that could not run must not pass.
#[track_caller]
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "needs root (network namespaces, veth, iptables): run as root, or run only the unit tests \
         with `cargo nextest run --workspace --lib --bins`"
    );
}

/// Real kubectl (`$NETDIAG_KUBECTL`, else where `tests/scripts/install-deps` puts it); fails the
/// calling test, saying how to get it, when it is missing.
#[track_caller]
pub fn kubectl() -> PathBuf {
    let kubectl = netdiag_lab::runner::kubectl_path();
    assert!(
        kubectl.is_file(),
        "needs real kubectl at {}: run tests/scripts/install-deps, or set NETDIAG_KUBECTL to it",
        kubectl.display()
    );
    kubectl
}

/// A fresh, unique temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "netdiag-lab-test-{tag}-{}",
            netdiag_lab::plan::random_prefix().expect("urandom")
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running lab; `down` runs when it is dropped.
pub struct Lab {
    /// Declared first, so `down` runs before the state dir is removed and the lock released.
    _down: DownOnDrop,
    pub dir: TempDir,
    pub info: LabInfo,
    /// Held while the lab is up (see [`shared_lab_lock`]); released after `down`.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// A shared lock on the lock file the end-to-end check tests hold exclusively while their lab (with
/// agents) is up. Every lab uses the same pod addresses, and an agent finds a pod's namespace by IP
/// across the whole machine, so no other lab may be up while a check runs; the lab's own tests,
/// which start no agents, may run together.
pub fn shared_lab_lock() -> nix::fcntl::Flock<std::fs::File> {
    let path = std::env::temp_dir().join("netdiag-check-scenarios.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open the lab lock file");
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared)
        .map_err(|(_, e)| e)
        .expect("lock")
}

/// `netdiag-lab up SCENARIO --state STATE --no-agents`, to run.
pub fn up_without_agents(scenario: &Path, state: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("up")
        .arg(scenario)
        .arg("--state")
        .arg(state)
        .arg("--no-agents");
    cmd
}

/// `up_without_agents` on the lab's API stand-in, whatever `NETDIAG_LAB_CONTROL_PLANE` says: for
/// the tests of the stand-in itself and of the lab's own mechanics.
pub fn up_stand_in_without_agents(scenario: &Path, state: &Path) -> Command {
    let mut cmd = up_without_agents(scenario, state);
    cmd.args(["--control-plane", "stand-in"]);
    cmd
}

pub fn lab_cmd(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run netdiag-lab")
}

impl Lab {
    pub fn up(tag: &str, scenario: &str) -> Lab {
        Self::up_with(tag, scenario, up_without_agents)
    }

    /// A lab on the API stand-in (see `up_stand_in_without_agents`).
    pub fn up_stand_in(tag: &str, scenario: &str) -> Lab {
        Self::up_with(tag, scenario, up_stand_in_without_agents)
    }

    fn up_with(tag: &str, scenario: &str, up: fn(&Path, &Path) -> Command) -> Lab {
        let lock = shared_lab_lock();
        let dir = TempDir::new(tag);
        let file = dir.0.join("scenario.yaml");
        std::fs::write(&file, scenario).expect("write scenario");
        let state = dir.0.join("state");
        // From here on every panic takes the lab down (locals drop in reverse order: before `dir`).
        let down = DownOnDrop(state.clone());
        let out = up(&file, &state).output().expect("run netdiag-lab up");
        if !out.status.success() {
            panic!("netdiag-lab up failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let info: LabInfo = serde_json::from_slice(&std::fs::read(state.join("lab.json")).expect("lab.json"))
            .expect("lab.json parses");
        Lab {
            _down: down,
            dir,
            info,
            _lock: lock,
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.state().join("kubeconfig")
    }

    pub fn netns(&self, pod: &str) -> String {
        let (ns, name) = pod.split_once('/').expect("namespace/name");
        self.info
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
            .unwrap_or_else(|| panic!("no pod {pod} in lab.json"))
            .netns
            .clone()
    }

    pub fn pod_ip(&self, pod: &str) -> String {
        let (ns, name) = pod.split_once('/').unwrap();
        self.info
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
            .unwrap()
            .ip
            .clone()
    }

    pub fn cluster_ip(&self, svc: &str) -> String {
        let (ns, name) = svc.split_once('/').unwrap();
        let s = self
            .info
            .services
            .iter()
            .find(|s| s.namespace == ns && s.name == name)
            .unwrap();
        s.cluster_ip.clone().expect("service has a clusterIP")
    }

    /// Runs a command inside the pod's network namespace (and its resolv.conf), like `kubectl exec`.
    pub fn exec(&self, pod: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns(pod)])
            .args(argv)
            .output()
            .expect("run ip netns exec")
    }

    /// A TCP connection from inside the pod's namespace, classified.
    pub fn tcp(&self, pod: &str, addr: &str) -> Tcp {
        tcp_in(&self.netns(pod), addr)
    }

    /// The network namespace of node `node`.
    pub fn node_netns(&self, node: &str) -> String {
        self.info
            .nodes
            .iter()
            .find(|n| n.name == node)
            .unwrap_or_else(|| panic!("no node {node} in lab.json"))
            .netns
            .clone()
    }
}

/// A TCP connection from inside the named network namespace, classified. A connect that gets no
/// answer within 1.5 s counts as timed out; once connected, the greeting may take its time (a
/// loaded machine), so no answer-time is asserted.
pub fn tcp_in(netns: &str, addr: &str) -> Tcp {
    let addr: SocketAddr = addr.parse().expect("socket address");
    let path = netdiag_lab::netns::named(netns);
    match netdiag_lab::netns::connect_tcp(&path, addr, Duration::from_millis(1500)) {
        Ok(stream) => {
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut line = String::new();
            BufReader::new(stream)
                .read_line(&mut line)
                .expect("read greeting");
            Tcp::Connected(line.trim().to_string())
        }
        Err(e) if e.kind() == ErrorKind::TimedOut => Tcp::TimedOut,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Tcp::Refused,
        Err(e) if e.kind() == ErrorKind::HostUnreachable => Tcp::Unreachable,
        Err(e) => Tcp::Other(e.to_string()),
    }
}

impl Lab {
    /// Sends one UDP datagram of `payload` bytes from inside the pod to a pod app's UDP echo; returns
    /// the answering pod, or `None` when no answer came within 3 s (generous for a loaded machine;
    /// a dropped datagram never answers). Linux sets the
    /// don't-fragment bit on it (path-MTU discovery, `ip_no_pmtu_disc=0`, asserted here).
    pub fn udp_df(&self, pod: &str, addr: &str, payload: usize) -> Option<String> {
        let path = netdiag_lab::netns::named(&self.netns(pod));
        let (socket, no_pmtu_disc) = netdiag_lab::netns::run_in(&path, || {
            let flag = std::fs::read_to_string("/proc/sys/net/ipv4/ip_no_pmtu_disc").expect("read sysctl");
            (std::net::UdpSocket::bind("0.0.0.0:0").expect("bind udp"), flag)
        })
        .expect("enter pod netns");
        assert_eq!(
            no_pmtu_disc.trim(),
            "0",
            "path-MTU discovery (DF on datagrams) must be on in pod {pod}"
        );
        socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        socket.send_to(&vec![b'x'; payload], addr).expect("send datagram");
        let mut buf = vec![0u8; 65536];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(text.lines().next().unwrap_or("").to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tcp {
    /// Connected; the pod app's greeting (`namespace/name`).
    Connected(String),
    Refused,
    TimedOut,
    Unreachable,
    Other(String),
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Names of the network namespaces that exist now.
pub fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes whose command line mentions `needle`.
pub fn live_processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .filter(|pid| netdiag_lab::lab::is_alive(*pid))
        .collect()
}

/// Inode numbers of the named network namespaces that exist now.
pub fn netns_inodes(names: &[String]) -> std::collections::BTreeSet<u64> {
    use std::os::unix::fs::MetadataExt;
    names
        .iter()
        .filter_map(|n| std::fs::metadata(netdiag_lab::netns::named(n)).ok())
        .map(|m| m.ino())
        .collect()
}

/// Live processes inside one of the network namespaces with these inode numbers (which outlive
/// their names while a process holds them).
pub fn live_processes_in(inodes: &std::collections::BTreeSet<u64>) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| inodes.contains(&m.ino()))
        })
        .filter(|pid| netdiag_lab::lab::is_alive(*pid))
        .collect()
}

/// Runs `netdiag-lab down` on the state dir when dropped, also on panic, for tests that run `up`
/// themselves. Declare it after the [`TempDir`] holding the state dir, so it drops first.
pub struct DownOnDrop(pub PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let out = lab_cmd(&["down", "--state", self.0.to_str().unwrap()]);
        if !out.status.success() {
            eprintln!(
                "netdiag-lab down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
