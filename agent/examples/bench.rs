//! Benchmark of the agent (root only; creates and removes its own network namespaces):
//!
//! - TCP probe throughput from 10 pod-like namespaces to a listener in each;
//! - DNS probe latency against dnsmasq in its own namespace, as the "pod" resolves;
//! - `podIP` lookup latency (a listeners probe located by pod IP, against the same by netns path, and
//!   a miss that examines every namespace);
//! - agent RSS idle and while serving 200 concurrent requests.
//!
//! Run: `cargo build --release -p netdiag-agent --bins --examples && target/release/examples/bench`
//! (it starts `netdiag-agent` from the same target directory).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

const NAMESPACES: usize = 10;
const PROBES_PER_REQUEST: usize = 50;
const THROUGHPUT_SECONDS: u64 = 5;
const DNS_QUERIES: usize = 300;
const CONCURRENT_REQUESTS: usize = 200;
const LOOKUPS: usize = 300;

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
    fn new(i: usize) -> anyhow::Result<Netns> {
        let name = format!("ndb{}x{i}", std::process::id());
        sh("ip", &["netns", "add", &name])?;
        sh("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        Ok(Netns(name))
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
    fn spawn(&self, args: &[&str]) -> anyhow::Result<Child> {
        Ok(Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(pids) = sh("ip", &["netns", "pids", &self.0]) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_line(child: &mut Child, needle: &str) -> anyhow::Result<String> {
    let mut reader = BufReader::new(child.stdout.as_mut().context("no stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("process ended before printing {needle:?}");
        }
        if line.contains(needle) {
            return Ok(line.trim().to_string());
        }
    }
}

fn listener(ns: &Netns, port: u16) -> anyhow::Result<Killed> {
    const SCRIPT: &str = "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen(4096)\nprint('ready',flush=True)\nwhile True:\n    c,_=s.accept()\n    c.close()\n";
    let mut child = ns.spawn(&["python3", "-c", SCRIPT, &port.to_string()])?;
    wait_line(&mut child, "ready")?;
    Ok(Killed(child))
}

fn post(addr: SocketAddr, body: &Value) -> anyhow::Result<Value> {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "POST /v1/probe HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no http response")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "agent answered {head}: {body}");
    Ok(serde_json::from_str(body)?)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Distinct network namespaces reachable through `/proc/*/ns/net` and `/run/netns`.
fn count_namespaces() -> usize {
    let mut inodes = std::collections::BTreeSet::new();
    let paths = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("ns/net"))
        .chain(
            std::fs::read_dir("/run/netns")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
    for path in paths {
        if let Ok(meta) = std::fs::metadata(path) {
            inodes.insert(std::os::unix::fs::MetadataExt::ino(&meta));
        }
    }
    inodes.len()
}

fn main() -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the benchmark needs root (network namespaces)"
    );
    let agent_bin = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("netdiag-agent"))
        .context("cannot locate the target directory")?;
    ensure!(
        agent_bin.exists(),
        "{} is missing: build it with cargo build --release -p netdiag-agent --bins",
        agent_bin.display()
    );

    let mut agent = Command::new(&agent_bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--node",
            "bench",
            "--node-netns",
            "/proc/self/ns/net",
        ])
        .args(["--max-concurrent", "512", "--allow-sources", "podIP,node,netns"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let line = wait_line(&mut agent, "listening on")?;
    let agent_pid = agent.id();
    let _agent = Killed(agent);
    let addr: SocketAddr = line.rsplit(' ').next().unwrap_or_default().parse()?;

    // --- idle RSS
    std::thread::sleep(Duration::from_millis(300));
    let idle_kib = rss_kib(agent_pid, "VmRSS:");

    // --- TCP throughput
    let namespaces: Vec<Netns> = (0..NAMESPACES).map(Netns::new).collect::<Result<_, _>>()?;
    let _listeners: Vec<Killed> = namespaces
        .iter()
        .map(|ns| listener(ns, 18200))
        .collect::<Result<_, _>>()?;
    let probes: Vec<Value> = (0..PROBES_PER_REQUEST)
        .map(|_| json!({"kind": "tcp", "ip": "127.0.0.1", "port": 18200}))
        .collect();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = namespaces
        .iter()
        .map(|ns| {
            let (done, stop) = (done.clone(), stop.clone());
            let body = json!({"source": {"kind": "netns", "path": ns.path()}, "probes": probes});
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    let report = post(addr, &body)?;
                    let results = report["results"].as_array().context("no results")?;
                    ensure!(
                        results.iter().all(|r| r["outcome"]["kind"] == "connected"),
                        "a probe failed: {report}"
                    );
                    done.fetch_add(results.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(THROUGHPUT_SECONDS));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker thread")?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tcp_per_s = done.load(Ordering::Relaxed) as f64 / elapsed;

    // --- pod IP lookup latency: each namespace gets its own address on lo, so each lookup finds one
    // unattached holder; the agent re-checks its cached holder and any namespace new since.
    for (i, ns) in namespaces.iter().enumerate() {
        sh(
            "ip",
            &[
                "-n",
                &ns.0,
                "addr",
                "add",
                &format!("10.214.0.{}/32", i + 1),
                "dev",
                "lo",
            ],
        )?;
    }
    let machine_namespaces = count_namespaces();
    let mut by_ip_us = Vec::new();
    let mut by_path_us = Vec::new();
    for round in 0..LOOKUPS {
        let i = round % NAMESPACES;
        let by_ip = json!({"source": {"kind": "podIP", "ip": format!("10.214.0.{}", i + 1)},
            "probes": [{"kind": "listeners"}]});
        let by_path = json!({"source": {"kind": "netns", "path": namespaces[i].path()},
            "probes": [{"kind": "listeners"}]});
        for (body, times) in [(&by_ip, &mut by_ip_us), (&by_path, &mut by_path_us)] {
            let start = Instant::now();
            let report = post(addr, body)?;
            times.push(start.elapsed().as_micros() as u64);
            ensure!(report["results"][0]["error"].is_null(), "lookup failed: {report}");
        }
    }
    by_ip_us.sort_unstable();
    by_path_us.sort_unstable();
    // A miss examines every namespace on the machine before answering 404.
    let mut miss_us = Vec::new();
    let missing = json!({"source": {"kind": "podIP", "ip": "10.214.1.1"}, "probes": [{"kind": "listeners"}]});
    for _ in 0..LOOKUPS / 3 {
        let start = Instant::now();
        let answer = post(addr, &missing);
        miss_us.push(start.elapsed().as_micros() as u64);
        ensure!(
            answer.as_ref().is_err_and(|e| e.to_string().contains("404")),
            "a lookup of an absent pod IP did not answer 404: {answer:?}"
        );
    }
    miss_us.sort_unstable();

    // --- DNS latency
    let (dns, pod) = (Netns::new(100)?, Netns::new(101)?);
    let (va, vb) = (
        format!("bva{}", std::process::id()),
        format!("bvb{}", std::process::id()),
    );
    sh(
        "ip",
        &[
            "link", "add", &va, "netns", &pod.0, "type", "veth", "peer", "name", &vb, "netns", &dns.0,
        ],
    )?;
    sh("ip", &["-n", &pod.0, "addr", "add", "10.213.0.1/24", "dev", &va])?;
    sh("ip", &["-n", &dns.0, "addr", "add", "10.213.0.53/24", "dev", &vb])?;
    sh("ip", &["-n", &pod.0, "link", "set", &va, "up"])?;
    sh("ip", &["-n", &dns.0, "link", "set", &vb, "up"])?;
    let mut dnsmasq = dns.spawn(&[
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=10.213.0.53",
        "--pid-file=",
        "--user=root",
        "--local=/cluster.local/",
        "--host-record=web.svc.cluster.local,10.96.0.7",
    ])?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(dnsmasq.try_wait()?.is_none(), "dnsmasq did not start");
    let _dnsmasq = Killed(dnsmasq);
    let dir = format!("/etc/netns/{}", pod.0);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        format!("{dir}/resolv.conf"),
        "nameserver 10.213.0.53\nsearch a.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    )?;
    let sleeper = Killed(pod.spawn(&["sleep", "600"])?);
    // `ip netns exec` enters the namespace before it bind-mounts resolv.conf: wait for the mount.
    let seen = format!("/proc/{}/root/etc/resolv.conf", sleeper.0.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&seen).is_ok_and(|c| c.contains("10.213.0.53")) {
        ensure!(
            Instant::now() < deadline,
            "{seen} never showed the pod's resolv.conf"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut query_us = Vec::new();
    let mut request_us = Vec::new();
    let body = json!({"source": {"kind": "netns", "path": pod.path()},
        "probes": [{"kind": "dns", "name": "web", "timeoutMs": 2000}]});
    for _ in 0..DNS_QUERIES {
        let start = Instant::now();
        let report = post(addr, &body)?;
        request_us.push(start.elapsed().as_micros() as u64);
        let result = &report["results"][0];
        ensure!(
            result["answer"]["outcome"]["kind"] == "resolved",
            "dns probe failed: {result}"
        );
        for c in result["candidates"].as_array().context("no candidates")? {
            query_us.push(c["rttUs"].as_u64().unwrap_or(0));
        }
    }
    query_us.sort_unstable();
    request_us.sort_unstable();

    // --- RSS serving 200 concurrent requests (each held open for 1 s by a SYN that
    // loops back through lo to an address nobody owns and is dropped)
    let held = json!({"source": {"kind": "netns", "path": namespaces[0].path()},
        "probes": [{"kind": "tcp", "ip": "10.255.255.1", "port": 9, "timeoutMs": 1000}]});
    sh(
        "ip",
        &[
            "-n",
            &namespaces[0].0,
            "route",
            "add",
            "10.255.255.0/24",
            "dev",
            "lo",
        ],
    )?;
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(agent_pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let clients: Vec<_> = (0..CONCURRENT_REQUESTS)
        .map(|_| {
            let held = held.clone();
            std::thread::spawn(move || post(addr, &held))
        })
        .collect();
    let mut concurrent_ok = 0;
    for c in clients {
        if c.join().expect("client thread").is_ok() {
            concurrent_ok += 1;
        }
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");

    println!(
        "netdiag-agent benchmark ({} cpus)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "tcp probes:   {tcp_per_s:.0} probes/s ({NAMESPACES} namespaces, {PROBES_PER_REQUEST} probes per request, {THROUGHPUT_SECONDS} s)"
    );
    println!(
        "dns probes:   query rtt p50 {} us, p99 {} us; request p50 {} us, p99 {} us ({DNS_QUERIES} probes, 2 candidates each)",
        percentile(&query_us, 0.5),
        percentile(&query_us, 0.99),
        percentile(&request_us, 0.5),
        percentile(&request_us, 0.99)
    );
    println!(
        "pod ip lookup: listeners by podIP p50 {} us, p99 {} us; by netns path p50 {} us, p99 {} us \
         ({LOOKUPS} each, {machine_namespaces} network namespaces on the machine)",
        percentile(&by_ip_us, 0.5),
        percentile(&by_ip_us, 0.99),
        percentile(&by_path_us, 0.5),
        percentile(&by_path_us, 0.99)
    );
    println!(
        "pod ip miss:  404 after examining every namespace p50 {} us, p99 {} us ({} lookups)",
        percentile(&miss_us, 0.5),
        percentile(&miss_us, 0.99),
        miss_us.len()
    );
    println!("rss idle:     {:.1} MiB", idle_kib as f64 / 1024.0);
    println!(
        "rss serving {CONCURRENT_REQUESTS} concurrent requests: peak {:.1} MiB ({concurrent_ok} answered 200)",
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    Ok(())
}
