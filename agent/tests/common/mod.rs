//! Helpers for the agent's integration tests: real network namespaces, veth pairs, iptables rules,
//! listener and DNS server processes, and the real `netdiag-agent` binary, all removed on drop
//! (also when a test panics). Names are unique per process so tests can run in parallel.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod endpoint;

pub const AGENT: &str = env!("CARGO_BIN_EXE_netdiag-agent");

/// Fails the calling test unless it runs as root, saying so in one line: a test that could not
/// run must not pass.
#[track_caller]
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces, veth, iptables): run as root, or run only the unit tests \
         with `cargo nextest run --workspace --lib --bins`"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `{prefix}{pid:x}{n}`, at most 15 bytes.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}x{n}", std::process::id());
    assert!(name.len() <= 15, "name {name} too long for an interface");
    name
}

/// A random byte, for addresses that must not collide with other tests' on the host.
pub fn random_byte() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(97);
    let mix = nanos ^ std::process::id().wrapping_mul(2654435761) ^ count;
    (mix % 250) as u8 + 2
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace (`ip netns add`), deleted with everything in it on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = unique("ndt");
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Appends an iptables rule in this namespace (it dies with the namespace).
    pub fn iptables(&self, rule: &str) {
        let mut args = vec!["iptables"];
        args.extend(rule.split_whitespace());
        self.exec(&args);
    }

    /// Starts a long-running process inside the namespace.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
        let proc = Proc { child };
        // `ip netns exec` enters the namespace after it starts: wait until the process lives there.
        let (theirs, ours) = (format!("/proc/{}/ns/net", proc.pid()), self.path());
        let inode = |p: &str| {
            std::fs::metadata(p)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok()
        };
        assert!(
            eventually(Duration::from_secs(10), || inode(&theirs) == inode(&ours)),
            "{args:?} never entered {}",
            self.name
        );
        proc
    }

    /// A TCP listener on `ip:port` in this namespace that accepts and closes connections.
    pub fn listen(&self, ip: &str, port: u16) -> Proc {
        const SCRIPT: &str = r#"
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"#;
        let mut proc = self.spawn(&["python3", "-c", SCRIPT, ip, &port.to_string()]);
        proc.wait_for_line("ready");
        proc
    }

    /// A DNS server on `ip:53` that answers every query with SERVFAIL.
    pub fn servfail_server(&self, ip: &str) -> Proc {
        const SCRIPT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    s.sendto(q[:2] + bytes([0x80 | (q[2] & 1), 0x82]) + q[4:6] + bytes(6) + q[12:], peer)
"#;
        let mut proc = self.spawn(&["python3", "-c", SCRIPT, ip]);
        proc.wait_for_line("ready");
        proc
    }

    /// Pids of the processes in this namespace.
    pub fn pids(&self) -> Vec<u32> {
        run("ip", &["netns", "pids", &self.name])
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// Connects two namespaces with a veth pair: `a_ip` and `b_ip` are `address/prefix`.
pub fn veth(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) {
    let (va, vb) = (unique("va"), unique("vb"));
    run(
        "ip",
        &[
            "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns", &b.name,
        ],
    );
    a.ip(&["addr", "add", a_ip, "dev", &va]);
    b.ip(&["addr", "add", b_ip, "dev", &vb]);
    a.ip(&["link", "set", &va, "up"]);
    b.ip(&["link", "set", &vb, "up"]);
}

/// Gives `pod` a calico-style routed interface: a veth whose pod end has `ip/32` and whose other end
/// lives in `node` with a /32 route to the pod, as a CNI plugin sets up a pod on its node.
pub fn routed_pod(pod: &Netns, ip: &str, node: &Netns) {
    let (inside, outside) = (unique("vp"), unique("vn"));
    run(
        "ip",
        &[
            "link", "add", &inside, "netns", &pod.name, "type", "veth", "peer", "name", &outside, "netns",
            &node.name,
        ],
    );
    pod.ip(&["addr", "add", &format!("{ip}/32"), "dev", &inside]);
    pod.ip(&["link", "set", &inside, "up"]);
    node.ip(&["link", "set", &outside, "up"]);
    node.ip(&["route", "add", &format!("{ip}/32"), "dev", &outside]);
}

/// The inode of a namespace file: what a report's `netns.inode` names.
pub fn inode(path: &str) -> u64 {
    std::fs::metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or_else(|e| panic!("cannot stat {path}: {e}"))
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout lines until one contains `needle`; returns every line read, that one last.
    pub fn wait_for_lines(&mut self, needle: &str) -> Vec<String> {
        let stdout = self.child.stdout.as_mut().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("reading child stdout");
            assert!(n > 0, "process ended before printing {needle:?}");
            let found = line.contains(needle);
            lines.push(line.trim().to_string());
            if found {
                return lines;
            }
        }
    }

    /// Reads stdout lines until one contains `needle`; returns that line.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let stdout = self.child.stdout.as_mut().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).expect("reading child stdout");
            if n == 0 {
                let mut err = String::new();
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("process ended before printing {needle:?}: {err}");
            }
            if line.contains(needle) {
                return line.trim().to_string();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `netdiag-agent serve` on a free loopback port, its node namespace being its own.
pub struct Agent {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Agent {
    pub fn start(extra: &[&str]) -> Agent {
        Agent::start_via(&[], extra)
    }

    /// Starts the agent through a wrapper command (e.g. `setpriv ...`), which must exec it.
    pub fn start_via(wrapper: &[&str], extra: &[&str]) -> Agent {
        Agent::start_logging(wrapper, extra, Stdio::inherit())
    }

    /// Starts the agent with its stderr (warnings and errors) going to `log`.
    pub fn start_logging(wrapper: &[&str], extra: &[&str], log: impl Into<Stdio>) -> Agent {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(AGENT);
                c
            }
            None => Command::new(AGENT),
        };
        command.args(["serve", "--listen", "127.0.0.1:0", "--node", "test-node"]);
        // The agent's own namespace is its node namespace unless the test names another.
        if !extra.contains(&"--node-netns") {
            command.args(["--node-netns", "/proc/self/ns/net"]);
        }
        // The tests name namespaces by path and process; the DaemonSet enables podIP and node only.
        if !extra.contains(&"--allow-sources") {
            command.args(["--allow-sources", "podIP,node,netns,pid"]);
        }
        let child = command
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start netdiag-agent");
        let mut proc = Proc { child };
        let line = proc.wait_for_line("listening on");
        let addr = line.rsplit(' ').next().unwrap().parse().expect("listen address");
        Agent { proc, addr }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// One HTTP/1.1 request; returns the status and the body.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connect to agent");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        // The server may answer (e.g. 413) before reading everything; a failed write is fine then.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no http response: {text:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        (status, body.to_string())
    }

    /// POSTs a probe request; returns the status and the parsed JSON body.
    pub fn probe(&self, request: &Value) -> (u16, Value) {
        let (status, body) = self.http("POST", "/v1/probe", request.to_string().as_bytes());
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not json ({e}): {body}"));
        (status, json)
    }

    /// POSTs a probe request that must succeed; returns the `results` array.
    pub fn results(&self, request: &Value) -> Vec<Value> {
        let (status, body) = self.probe(request);
        assert_eq!(status, 200, "{body}");
        body["results"].as_array().expect("results").clone()
    }
}

/// Polls `check` until it returns true or `limit` passes; returns the last result. Used to wait
/// for asynchronous cleanup, never to assert on timing.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
