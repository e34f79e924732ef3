//! The HTTP API and the one-shot mode of the real binary: error answers, limits, metrics, pod-IP
//! location.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{AGENT, Agent, Netns, random_byte, require_root};
use serde_json::{Value, json};

fn one_shot(input: &str) -> (i32, String, String) {
    let mut child = Command::new(AGENT)
        .args([
            "probe",
            "-",
            "--node",
            "test-node",
            "--node-netns",
            "/proc/self/ns/net",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netdiag-agent probe");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_bodies_unknown_kinds_and_port_zero_are_bad_requests() {
    require_root();
    let agent = Agent::start(&[]);
    let (status, body) = agent.http("POST", "/v1/probe", b"{not json");
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "badRequest");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid probe request"),
        "{error}"
    );

    let (status, error) = agent.probe(&json!({"source": {"kind": "node"}, "probes": [{"kind": "sctp"}]}));
    assert_eq!(status, 400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant `sctp`"),
        "{error}"
    );

    let (status, error) = agent.probe(&json!({"source": {"kind": "node"},
        "probes": [{"kind": "tcp", "ip": "127.0.0.1", "port": 0}]}));
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"code": "badRequest", "message": "probes[0]: tcp port 0 is not a valid port"})
    );
}

#[test]
fn a_namespace_file_of_another_kind_is_rejected_like_any_other_path() {
    require_root();
    let agent = Agent::start(&["--netns-roots", "/proc/*/ns/*"]);
    // A namespace file, inside the (widened) roots, but of another kind.
    let path = format!("/proc/{}/ns/uts", std::process::id());
    let (status, error) = agent.probe(&json!({"source": {"kind": "netns", "path": path},
        "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 404, "{error}");
    let message = format!("{path:?} is not a network namespace this agent may enter (allowed: /proc/*/ns/*)");
    assert_eq!(error, json!({"code": "netnsRejected", "message": message}));
}

#[test]
fn oversize_bodies_are_refused_with_413() {
    require_root();
    let agent = Agent::start(&["--max-body-bytes", "1024"]);
    let probes: Vec<Value> = (0..100).map(|_| json!({"kind": "listeners"})).collect();
    let big = json!({"source": {"kind": "node"}, "probes": probes}).to_string();
    assert!(big.len() > 1024);
    let (status, body) = agent.http("POST", "/v1/probe", big.as_bytes());
    assert_eq!(status, 413, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "tooLarge");
}

#[test]
fn unknown_pod_ip_is_a_404_naming_the_address_in_server_and_one_shot_mode() {
    require_root();
    let ip = format!("198.51.{}.{}", random_byte(), random_byte());
    let request = json!({"source": {"kind": "podIP", "ip": ip}, "probes": [{"kind": "listeners"}]});
    let agent = Agent::start(&[]);
    let (status, error) = agent.probe(&request);
    assert_eq!(status, 404);
    let message = format!("no network namespace on this node has {ip}");
    assert_eq!(error, json!({"code": "namespaceNotFound", "message": message}));

    let (code, stdout, stderr) = one_shot(&request.to_string());
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert!(stderr.contains(&message), "{stderr}");

    let (code, _, stderr) = one_shot(
        "{\"source\": {\"kind\": \"node\"}, \"probes\": [{\"kind\": \"tcp\", \"ip\": \"127.0.0.1\", \"port\": 0}]}",
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("probes[0]: tcp port 0 is not a valid port"),
        "{stderr}"
    );
}

#[test]
fn pod_ip_source_finds_the_namespace_holding_the_address() {
    require_root();
    let pod = Netns::new();
    let ip = format!("172.31.{}.{}", random_byte(), random_byte());
    pod.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    let process = pod.spawn(&["sleep", "600"]);
    let agent = Agent::start(&[]);
    let (status, report) =
        agent.probe(&json!({"source": {"kind": "podIP", "ip": ip}, "probes": [{"kind": "interfaces"}]}));
    assert_eq!(status, 200, "{report}");
    let inode = std::fs::metadata(pod.path())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_eq!(report["netns"]["inode"], inode);
    assert_eq!(report["netns"]["pid"], process.pid());
    let lo = &report["results"][0]["interfaces"][0];
    assert_eq!(lo["name"], "lo");
    assert!(
        lo["addresses"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{ip}/32"))),
        "{report}"
    );

    // A second lookup is served from the inode cache and finds the same namespace.
    let (status, again) =
        agent.probe(&json!({"source": {"kind": "podIP", "ip": ip}, "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 200);
    assert_eq!(again["netns"]["inode"], inode);
}

#[test]
fn a_pod_ip_that_moved_to_another_namespace_is_found_in_its_new_namespace() {
    require_root();
    let (old, new) = (Netns::new(), Netns::new());
    let ip = format!("172.30.{}.{}", random_byte(), random_byte());
    let cidr = format!("{ip}/32");
    let inode = |ns: &Netns| {
        std::fs::metadata(ns.path())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    };
    let request = json!({"source": {"kind": "podIP", "ip": ip}, "probes": [{"kind": "listeners"}]});
    old.ip(&["addr", "add", &cidr, "dev", "lo"]);
    let agent = Agent::start(&[]);
    let (status, report) = agent.probe(&request);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["netns"]["inode"], inode(&old));

    // The old pod is gone from that address and a new pod has it: the cached answer is stale.
    old.ip(&["addr", "del", &cidr, "dev", "lo"]);
    new.ip(&["addr", "add", &cidr, "dev", "lo"]);
    let (status, report) = agent.probe(&request);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["netns"]["inode"], inode(&new));

    new.ip(&["addr", "del", &cidr, "dev", "lo"]);
    let (status, error) = agent.probe(&request);
    assert_eq!(status, 404, "{error}");
}

#[test]
fn one_shot_mode_prints_the_report_of_the_same_engine() {
    require_root();
    let ns = Netns::new();
    let _listener = ns.listen("127.0.0.1", 18090);
    let request = json!({"source": {"kind": "netns", "path": ns.path()},
        "probes": [{"kind": "tcp", "ip": "127.0.0.1", "port": 18090, "timeoutMs": 10000}]});
    let (code, stdout, stderr) = one_shot(&request.to_string());
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["agent"]["node"], "test-node");
    assert_eq!(report["netns"]["path"], ns.path());
    assert_eq!(report["results"][0]["outcome"]["kind"], "connected");
}

#[test]
fn metrics_count_the_probes_that_ran_by_kind_and_outcome() {
    require_root();
    let ns = Netns::new();
    let agent = Agent::start(&[]);
    let tcp = json!({"kind": "tcp", "ip": "127.0.0.1", "port": 1, "timeoutMs": 10000});
    agent.results(&json!({"source": {"kind": "netns", "path": ns.path()}, "probes": [tcp, tcp, tcp, {"kind": "listeners"}]}));
    let (status, text) = agent.http("GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"netdiag_agent_probes_total{kind="tcp",outcome="refused"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"netdiag_agent_probes_total{kind="listeners",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"netdiag_agent_probe_duration_seconds_count{kind="tcp"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"netdiag_agent_requests_total{code="200"} 1"#),
        "{text}"
    );
}

#[test]
fn info_health_and_readiness_answer() {
    require_root();
    let agent = Agent::start(&["--pod", "netdiag/agent-x"]);
    let (status, body) = agent.http("GET", "/v1/info", b"");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["agent"]["node"], "test-node");
    assert_eq!(info["agent"]["pod"], "netdiag/agent-x");
    assert_eq!(info["apiVersion"], "v1");
    assert_eq!(info["capabilities"]["setns"], true);
    assert_eq!(info["nodeNetns"], "/proc/self/ns/net");
    assert_eq!(agent.http("GET", "/healthz", b"").0, 200);
    let url = format!("http://{}/readyz", agent.addr);
    let ok = Command::new(AGENT)
        .args(["healthcheck", "--url", &url])
        .status()
        .unwrap();
    assert!(ok.success());
    let down = Command::new(AGENT)
        .args(["healthcheck", "--url", "http://127.0.0.1:1/readyz"])
        .output()
        .unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach http://127.0.0.1:1/readyz"));
}

/// A client namespace linked to a server namespace that silently drops TCP to port 9, so a probe
/// there stays in flight until its timeout; returns them and the server's address.
fn client_and_silent_server() -> (Netns, Netns, String) {
    let (client, server) = (Netns::new(), Netns::new());
    let net = random_byte();
    common::veth(
        &client,
        &format!("10.{net}.9.1/24"),
        &server,
        &format!("10.{net}.9.2/24"),
    );
    server.iptables("-A INPUT -p tcp --dport 9 -j DROP");
    (client, server, format!("10.{net}.9.2"))
}

#[test]
fn requests_beyond_the_concurrency_bound_are_answered_503_at_once() {
    require_root();
    let (client, _server, server_ip) = client_and_silent_server();
    let agent = std::sync::Arc::new(Agent::start(&["--max-concurrent", "1"]));
    let slow = json!({"source": {"kind": "netns", "path": client.path()},
        "probes": [{"kind": "tcp", "ip": server_ip, "port": 9, "timeoutMs": 10000}]});
    let holder = {
        let agent = agent.clone();
        let slow = slow.clone();
        std::thread::spawn(move || agent.probe(&slow))
    };
    // Wait until the slow request holds the only permit (its SYN is being dropped).
    assert!(common::eventually(std::time::Duration::from_secs(5), || {
        !client
            .exec(&["ss", "-Htn", "state", "syn-sent"])
            .trim()
            .is_empty()
    }));
    let (status, error) = agent.probe(&slow);
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["code"], "overloaded");
    let (status, report) = holder.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(report["results"][0]["outcome"]["kind"], "timeout");
}

#[test]
fn a_request_whose_client_went_away_keeps_its_slot_until_its_probes_end() {
    require_root();
    let (client, _server, server_ip) = client_and_silent_server();
    let agent = Agent::start(&["--max-concurrent", "1"]);
    let slow = json!({"source": {"kind": "netns", "path": client.path()},
        "probes": [{"kind": "tcp", "ip": server_ip, "port": 9, "timeoutMs": 30000}]})
    .to_string();
    let mut gone = std::net::TcpStream::connect(agent.addr).unwrap();
    write!(
        gone,
        "POST /v1/probe HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{slow}",
        slow.len()
    )
    .unwrap();
    let syn_sent = || {
        !client
            .exec(&["ss", "-Htn", "state", "syn-sent"])
            .trim()
            .is_empty()
    };
    assert!(common::eventually(std::time::Duration::from_secs(10), syn_sent));
    drop(gone);
    // The abandoned probe still runs in the namespace (its SYN is still unanswered), so the one slot
    // is still taken: for as long as we look (far less than the probe's 30 s timeout), other
    // requests are turned away.
    let quick = json!({"source": {"kind": "node"}, "probes": [{"kind": "listeners"}]});
    let admitted = common::eventually(std::time::Duration::from_secs(2), || {
        let (status, error) = agent.probe(&quick);
        assert!(status == 503 || status == 200, "{status} {error}");
        status == 200
    });
    assert!(
        !admitted,
        "a request was admitted while the abandoned probe held the only slot"
    );
}

#[test]
fn pid_and_node_sources_run_in_the_process_and_node_namespaces() {
    require_root();
    let pod = Netns::new();
    let process = pod.spawn(&["sleep", "600"]);
    let agent = Agent::start(&[]);
    let inode = |path: &str| {
        std::fs::metadata(path)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    };

    let (status, report) = agent
        .probe(&json!({"source": {"kind": "pid", "pid": process.pid()}, "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["netns"]["inode"], inode(&pod.path()));
    assert_eq!(report["netns"]["pid"], process.pid());

    // The node source is the configured node namespace: here the agent's own.
    let (status, report) =
        agent.probe(&json!({"source": {"kind": "node"}, "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["netns"]["inode"],
        inode(&format!("/proc/{}/ns/net", agent.pid()))
    );
    let sockets = report["results"][0]["sockets"].as_array().unwrap();
    let port = agent.addr.port();
    assert!(
        sockets.iter().any(|s| s["localPort"] == port),
        "the agent's own listener is in the node netns"
    );

    let (status, error) = agent
        .probe(&json!({"source": {"kind": "pid", "pid": 999_999_999u32}, "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"code": "invalidPid", "message": "source pid 999999999 is not a process id (at most 4194304)"})
    );
    // A pid in range whose process does not exist.
    let gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    let _ = gone.wait_with_output();
    let (status, error) =
        agent.probe(&json!({"source": {"kind": "pid", "pid": pid}, "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 404, "{error}");
    assert_eq!(
        error["message"],
        format!("process {pid} does not exist on this node")
    );
}
