//! Hostile-load benchmark (root only): the agent in a 128 MiB memory cgroup, as the DaemonSet
//! limits it, against at the same time
//!
//! - 10,000 slowloris connections (a request line and one header, then silence), and
//! - 100 concurrent requests of 1,024 TCP probes each to a port whose SYNs are dropped,
//!
//! while `/healthz` is asked every 50 ms. Prints the agent's RSS at baseline, at peak and a minute
//! after the flood, the slowest `/healthz` answer and how many failed, the requests' statuses,
//! whether the cgroup saw an OOM kill, and whether the agent is still alive.
//!
//! Run: `cargo build --release -p netdiag-agent --bins --examples && target/release/examples/flood`
//! (it starts `netdiag-agent` from the same target directory). Creates and removes its own network
//! namespaces and cgroup; traffic stays on loopback and inside those namespaces.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

const SLOWLORIS: usize = 10_000;
const REQUESTS: usize = 100;
const PROBES: usize = 1024;
const MEMORY_LIMIT: u64 = 128 * 1024 * 1024;
const SETTLE_SECS: u64 = 60;

fn sh(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {cmd}"))?;
    ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> anyhow::Result<Netns> {
        let name = format!("ndf{}{tag}", std::process::id());
        sh("ip", &["netns", "add", &name])?;
        sh("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        Ok(Netns(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A memory cgroup limited to [`MEMORY_LIMIT`] (cgroup v2, or the v1 memory controller).
struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    fn new() -> anyhow::Result<Cgroup> {
        let name = format!("netdiag-flood-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let dir = if v2 {
            PathBuf::from("/sys/fs/cgroup").join(&name)
        } else {
            PathBuf::from("/sys/fs/cgroup/memory").join(&name)
        };
        std::fs::create_dir(&dir).with_context(|| format!("cannot create cgroup {}", dir.display()))?;
        let cgroup = Cgroup { dir, v2 };
        let limit = MEMORY_LIMIT.to_string();
        if v2 {
            std::fs::write(cgroup.dir.join("memory.max"), &limit)?;
            let _ = std::fs::write(cgroup.dir.join("memory.swap.max"), "0");
        } else {
            std::fs::write(cgroup.dir.join("memory.limit_in_bytes"), &limit)?;
            let _ = std::fs::write(cgroup.dir.join("memory.memsw.limit_in_bytes"), &limit);
        }
        Ok(cgroup)
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill ")
        } else {
            ("memory.oom_control", "oom_kill ")
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The agent was killed and reaped before: the cgroup is empty.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The agent's mappings with the most resident memory (diagnosis, with FLOOD_SMAPS set).
fn print_largest_mappings(pid: u32) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut regions: Vec<(u64, String)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            let kib = kib
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            regions.push((kib, current.clone()));
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            current = line.to_string();
        }
    }
    regions.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
    println!("{} mappings; largest resident:", regions.len());
    for (kib, region) in regions.iter().take(8) {
        println!("  {kib:>7} KiB  {region}");
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// One HTTP request with `Connection: close`; the status, or an error.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str, timeout: Duration) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    Ok(status)
}

/// What the `/healthz` monitor saw.
struct Health {
    asked: usize,
    failed: usize,
    /// Why the first few failed.
    failures: Vec<String>,
    /// Answer times (µs) of the successful asks, sorted.
    took_us: Vec<u64>,
}

/// Asks `/healthz` every 50 ms until `stop`.
fn health_monitor(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Health> {
    std::thread::spawn(move || {
        let mut health = Health {
            asked: 0,
            failed: 0,
            failures: Vec::new(),
            took_us: Vec::new(),
        };
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let answer = request(addr, "GET", "/healthz", "", Duration::from_secs(2));
            health.asked += 1;
            match answer {
                Ok(200) => health.took_us.push(start.elapsed().as_micros() as u64),
                other => {
                    health.failed += 1;
                    if health.failures.len() < 5 {
                        health
                            .failures
                            .push(format!("{other:?} after {:?}", start.elapsed()));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        health.took_us.sort_unstable();
        health
    })
}

fn start_agent(bin: &Path, cgroup: &Cgroup) -> anyhow::Result<(Killed, SocketAddr)> {
    // The shell joins the cgroup, then becomes the agent: every allocation is accounted there.
    let script = format!("echo $$ > {} && exec \"$0\" \"$@\"", cgroup.procs().display());
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .arg(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--node",
            "flood",
            "--node-netns",
            "/proc/self/ns/net",
        ])
        .args(["--allow-sources", "podIP,node,netns"])
        .args(
            std::env::var("FLOOD_AGENT_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut reader = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("no address in {line:?}"))?;
    Ok((Killed(child), addr))
}

fn main() -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the benchmark needs root (namespaces, cgroups)"
    );
    let bin = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("netdiag-agent"))
        .context("cannot locate the target directory")?;
    ensure!(
        bin.exists(),
        "{} is missing: cargo build --release -p netdiag-agent --bins",
        bin.display()
    );
    // The client side holds 10,000 connections.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    if hard < (SLOWLORIS as u64 + 512) {
        bail!("the open-files limit {hard} is too small for {SLOWLORIS} connections");
    }

    let (client, server) = (Netns::new("c")?, Netns::new("s")?);
    let (va, vb) = (
        format!("vfa{}", std::process::id()),
        format!("vfb{}", std::process::id()),
    );
    sh(
        "ip",
        &[
            "link", "add", &va, "netns", &client.0, "type", "veth", "peer", "name", &vb, "netns", &server.0,
        ],
    )?;
    sh(
        "ip",
        &["-n", &client.0, "addr", "add", "10.231.7.1/24", "dev", &va],
    )?;
    sh(
        "ip",
        &["-n", &server.0, "addr", "add", "10.231.7.2/24", "dev", &vb],
    )?;
    sh("ip", &["-n", &client.0, "link", "set", &va, "up"])?;
    sh("ip", &["-n", &server.0, "link", "set", &vb, "up"])?;
    sh(
        "ip",
        &[
            "netns", "exec", &server.0, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP",
        ],
    )?;

    let cgroup = Cgroup::new()?;
    let (agent, addr) = start_agent(&bin, &cgroup)?;
    let pid = agent.0.id();
    let probes: Vec<Value> = (0..PROBES)
        .map(|_| json!({"kind": "tcp", "ip": "10.231.7.2", "port": 9, "timeoutMs": 1000}))
        .collect();
    let flood_body =
        json!({"source": {"kind": "netns", "path": format!("/run/netns/{}", client.0)}, "probes": probes})
            .to_string();
    let warm = json!({"source": {"kind": "node"}, "probes": [{"kind": "listeners"}]}).to_string();
    for _ in 0..20 {
        request(addr, "POST", "/v1/probe", &warm, Duration::from_secs(5))?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let baseline = rss_kib(pid);
    println!("baseline RSS: {:.1} MiB", baseline as f64 / 1024.0);

    let stop = Arc::new(AtomicBool::new(false));
    let health = health_monitor(addr, stop.clone());
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let start = Instant::now();
    let slowloris = std::thread::spawn(move || {
        let mut held = Vec::with_capacity(SLOWLORIS);
        let mut refused = 0;
        for _ in 0..SLOWLORIS {
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    let _ = s.write_all(b"POST /v1/probe HTTP/1.1\r\nHost: a\r\n");
                    held.push(s);
                }
                Err(_) => refused += 1,
            }
        }
        (held, refused)
    });
    let flood: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let body = flood_body.clone();
            std::thread::spawn(move || request(addr, "POST", "/v1/probe", &body, Duration::from_secs(60)))
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for t in flood {
        let key = match t.join().expect("flood thread") {
            Ok(status) => status.to_string(),
            Err(err) => format!("error: {err}"),
        };
        *statuses.entry(key).or_default() += 1;
    }
    let (held, refused) = slowloris.join().expect("slowloris thread");
    println!(
        "flood done in {:.1} s: statuses {statuses:?}; slowloris connections opened {}, refused {refused}",
        start.elapsed().as_secs_f64(),
        held.len()
    );
    // Keep the slowloris sockets until the agent closed them all (header timeout), then let go.
    std::thread::sleep(Duration::from_secs(10));
    drop(held);
    let peak_kib = peak.load(Ordering::Relaxed);
    println!("peak RSS: {:.1} MiB", peak_kib as f64 / 1024.0);
    let settle = std::env::var("FLOOD_SETTLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SETTLE_SECS);
    std::thread::sleep(Duration::from_secs(settle));
    stop.store(true, Ordering::Relaxed);
    let health = health.join().expect("health thread");
    let _ = sampler.join();
    let after = rss_kib(pid);
    println!(
        "RSS {} s after the flood: {:.1} MiB ({:+.1} MiB from baseline)",
        settle,
        after as f64 / 1024.0,
        (after as f64 - baseline as f64) / 1024.0
    );
    let at = |p: f64| {
        let last = health.took_us.len().max(1) - 1;
        health
            .took_us
            .get((last as f64 * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let slow = health.took_us.iter().filter(|t| **t > 100_000).count();
    println!(
        "/healthz: {} asked, {} failed, {slow} slower than 100 ms; p50 {:.1} ms, p99 {:.1} ms, slowest {:.1} ms",
        health.asked,
        health.failed,
        at(0.5),
        at(0.99),
        at(1.0)
    );
    if !health.failures.is_empty() {
        println!("/healthz failures: {:?}", health.failures);
    }
    if std::env::var_os("FLOOD_SMAPS").is_some() {
        print_largest_mappings(pid);
    }
    println!(
        "agent alive: {}; OOM kills in its cgroup: {}",
        alive(pid),
        cgroup.oom_kills()
    );
    drop(agent);
    drop(cgroup);
    Ok(())
}
