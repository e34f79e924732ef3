//! Hostile input from pods and callers, against the real binary: a pod's resolv.conf that is huge,
//! a device, a FIFO or a symlink out of its root; `netns` paths that are not network namespaces
//! (all rejected alike, so the answers are no oracle of the node's files); unusable paths and pids;
//! source kinds the agent was not configured to accept. Callers of the in-cluster endpoint (against
//! a fake API server on loopback that counts reviews): random, repeated and oversized tokens cost a
//! bounded number of TokenReviews; a slow API server holds at most the reviews-in-flight budget; an
//! API outage keeps `/probe`'s `probe_success 0` and tells callers nothing internal; every request
//! on every route is one audit line with the client's address.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::endpoint::{EndpointAgent, FakeApi, GOOD_TOKEN, GOOD_USER, https, loopback, node_probe};
use common::{Agent, Netns, Proc, eventually, require_root, unique};
use serde_json::{Value, json};

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("ndh"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A "pod": a namespace whose process runs chrooted into `root`, so that the process's
/// `/proc/PID/root/etc/resolv.conf` is `root/etc/resolv.conf`, whatever that is.
fn chrooted_pod(root: &Path) -> (Netns, Proc) {
    const SCRIPT: &str = "import os, sys, time\nos.chroot(sys.argv[1])\nos.chdir('/')\nprint('ready', flush=True)\ntime.sleep(3600)\n";
    let pod = Netns::new();
    let mut process = pod.spawn(&["python3", "-c", SCRIPT, root.to_str().unwrap()]);
    process.wait_for_line("ready");
    (pod, process)
}

fn dns_request(pid: u32) -> Value {
    json!({"source": {"kind": "pid", "pid": pid},
        "probes": [{"kind": "dns", "name": "web", "timeoutMs": 200}]})
}

/// The DNS probe's final outcome for a pod whose `etc/resolv.conf` was made by `make`.
fn resolv_conf_outcome(agent: &Agent, make: impl FnOnce(&Path)) -> Value {
    let root = TempDir::new();
    std::fs::create_dir_all(root.0.join("etc")).unwrap();
    make(&root.0);
    let (_pod, process) = chrooted_pod(&root.0);
    let results = agent.results(&dns_request(process.pid()));
    results[0].clone()
}

fn error_detail(result: &Value) -> String {
    let outcome = &result["answer"]["outcome"];
    assert_eq!(outcome["kind"], "error", "{result}");
    outcome["detail"].as_str().unwrap().to_string()
}

#[test]
fn hostile_resolv_conf_files_are_error_outcomes_and_the_pods_own_file_is_read_in_its_root() {
    require_root();
    let agent = Agent::start(&[]);
    // A file outside every pod's root that a symlink tries to reach.
    let secret = TempDir::new();
    let secret_file = secret.0.join("resolv.conf");
    std::fs::write(&secret_file, "nameserver 192.0.2.53\nsearch leaked.example\n").unwrap();
    let secret_path = secret_file.to_str().unwrap().to_string();

    // The pod's own file, read inside its root.
    let own = resolv_conf_outcome(&agent, |root| {
        std::fs::write(
            root.join("etc/resolv.conf"),
            "nameserver 127.0.0.1\nsearch pod.example\n",
        )
        .unwrap();
    });
    assert_eq!(own["resolvConf"]["search"], json!(["pod.example"]), "{own}");

    // A sparse file of 1 GiB: costs no disk, and must cost the agent nothing either.
    let huge = resolv_conf_outcome(&agent, |root| {
        let file = std::fs::File::create(root.join("etc/resolv.conf")).unwrap();
        file.set_len(1 << 30).unwrap();
    });
    assert!(
        error_detail(&huge).ends_with("has 1073741824 bytes, more than the 65536 the agent reads"),
        "{huge}"
    );

    // A symlink to /dev/zero resolves to the pod's own /dev/zero: a device, never read.
    let zero = resolv_conf_outcome(&agent, |root| {
        std::fs::create_dir_all(root.join("dev")).unwrap();
        common::run("mknod", &[root.join("dev/zero").to_str().unwrap(), "c", "1", "5"]);
        std::os::unix::fs::symlink("/dev/zero", root.join("etc/resolv.conf")).unwrap();
    });
    assert!(
        error_detail(&zero).ends_with("is a character device, not a regular file"),
        "{zero}"
    );

    // An absolute symlink and a `..` symlink out of the root stay inside it: the file is not there.
    let absolute = resolv_conf_outcome(&agent, |root| {
        std::os::unix::fs::symlink(&secret_path, root.join("etc/resolv.conf")).unwrap();
    });
    let dotdot = resolv_conf_outcome(&agent, |root| {
        let up = "../".repeat(root.components().count() + 2);
        std::os::unix::fs::symlink(format!("{up}{}", &secret_path[1..]), root.join("etc/resolv.conf"))
            .unwrap();
    });
    for escaped in [&absolute, &dotdot] {
        assert!(
            error_detail(escaped).contains("No such file or directory"),
            "{escaped}"
        );
        assert!(!escaped.to_string().contains("leaked.example"), "{escaped}");
    }
    assert_eq!(agent.http("GET", "/healthz", b"").0, 200);
}

#[test]
fn a_fifo_resolv_conf_is_an_error_outcome_and_never_freezes_the_agent() {
    require_root();
    let agent = std::sync::Arc::new(Agent::start(&[]));
    let root = TempDir::new();
    std::fs::create_dir_all(root.0.join("etc")).unwrap();
    common::run("mkfifo", &[root.0.join("etc/resolv.conf").to_str().unwrap()]);
    let (_pod, process) = chrooted_pod(&root.0);
    // More requests at once than the agent has async workers.
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let agent = agent.clone();
            let request = dns_request(process.pid());
            std::thread::spawn(move || agent.results(&request))
        })
        .collect();
    for request in requests {
        let result = request.join().unwrap();
        assert!(
            error_detail(&result[0]).ends_with("is a FIFO, not a regular file"),
            "{result:?}"
        );
    }
    assert_eq!(agent.http("GET", "/healthz", b"").0, 200);
    // The same request again, while nobody writes to the FIFO, still answers.
    let again = agent.results(&dns_request(process.pid()));
    assert!(error_detail(&again[0]).contains("FIFO"));
}

fn rejected(path: &str) -> Value {
    let message = format!(
        "{path:?} is not a network namespace this agent may enter (allowed: /proc/*/ns/net, /run/netns/*)"
    );
    json!({"code": "netnsRejected", "message": message})
}

#[test]
fn netns_paths_that_are_not_network_namespaces_are_all_rejected_alike() {
    require_root();
    let agent = Agent::start(&[]);
    let real = Netns::new();
    let name = unique("ndf");
    let in_run_netns = |what: &str| format!("/run/netns/{name}{what}");
    // Files in the allowed directory that are no network namespace.
    std::fs::write(in_run_netns("file"), "x").unwrap();
    common::run("mkfifo", &[&in_run_netns("fifo")]);
    std::os::unix::fs::symlink("/dev/zero", in_run_netns("zero")).unwrap();
    std::os::unix::fs::symlink(in_run_netns("loop"), in_run_netns("loop")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", in_run_netns("passwd")).unwrap();
    let gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    let _ = gone.wait_with_output();
    let paths = [
        "/etc/passwd".to_string(),
        "/etc/no-such-file".to_string(),
        format!("/proc/{}/root/etc/passwd", std::process::id()),
        format!("/proc/{}/ns/uts", std::process::id()),
        format!("/proc/{gone_pid}/ns/net"),
        in_run_netns("missing"),
        in_run_netns("file"),
        in_run_netns("fifo"),
        in_run_netns("zero"),
        in_run_netns("loop"),
        in_run_netns("passwd"),
    ];
    for path in &paths {
        let (status, error) = agent
            .probe(&json!({"source": {"kind": "netns", "path": path}, "probes": [{"kind": "listeners"}]}));
        assert_eq!((status, &error), (404, &rejected(path)), "{path}");
    }
    for what in ["file", "fifo", "zero", "loop", "passwd"] {
        let _ = std::fs::remove_file(in_run_netns(what));
    }
    // A real one in the same directory works.
    let (status, report) = agent
        .probe(&json!({"source": {"kind": "netns", "path": real.path()}, "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 200, "{report}");
}

#[test]
fn unusable_paths_and_pids_are_client_errors_that_say_what_is_wrong() {
    require_root();
    let agent = Agent::start(&[]);
    let cases = [
        (
            json!({"kind": "netns", "path": "/run/netns/a\u{0}b"}),
            400,
            "invalidPath",
            "holds a NUL byte",
        ),
        (
            json!({"kind": "netns", "path": format!("/run/netns/{}", "n".repeat(300))}),
            400,
            "invalidPath",
            "NAME_MAX",
        ),
        (
            json!({"kind": "netns", "path": "/x".repeat(3000)}),
            400,
            "invalidPath",
            "PATH_MAX",
        ),
        (
            json!({"kind": "netns", "path": "/run/netns/../../proc/1/ns/net"}),
            400,
            "invalidPath",
            ".. component",
        ),
        (
            json!({"kind": "netns", "path": "run/netns/x"}),
            400,
            "invalidPath",
            "not absolute",
        ),
        (
            json!({"kind": "pid", "pid": 0}),
            400,
            "badRequest",
            "source pid 0 is not a process",
        ),
        (
            json!({"kind": "pid", "pid": 4_194_305}),
            400,
            "invalidPid",
            "at most 4194304",
        ),
    ];
    for (source, status, code, says) in cases {
        let (got, error) = agent.probe(&json!({"source": source, "probes": [{"kind": "listeners"}]}));
        assert_eq!(
            (got, error["code"].as_str().unwrap()),
            (status, code),
            "{source}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{source}: {error}"
        );
    }
}

#[test]
fn source_kinds_the_agent_does_not_allow_are_forbidden() {
    require_root();
    let agent = Agent::start(&["--allow-sources", "podIP,node"]);
    let pod = Netns::new();
    let process = pod.spawn(&["sleep", "600"]);
    for source in [
        json!({"kind": "netns", "path": pod.path()}),
        json!({"kind": "pid", "pid": process.pid()}),
    ] {
        let (status, error) = agent.probe(&json!({"source": source, "probes": [{"kind": "listeners"}]}));
        assert_eq!(status, 403, "{error}");
        assert_eq!(error["code"], "sourceNotAllowed");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .ends_with("is not enabled on this agent (enabled: podIP, node)"),
            "{error}"
        );
    }
    let (status, report) =
        agent.probe(&json!({"source": {"kind": "node"}, "probes": [{"kind": "listeners"}]}));
    assert_eq!(status, 200, "{report}");
}

/// A check request's body from `shop/{pod}`.
fn check_body(pod: &str) -> Vec<u8> {
    json!({"from": format!("shop/{pod}"), "to": "svc/payments.shop:80"})
        .to_string()
        .into_bytes()
}

/// `POST /v1/check` from `from` with `token`; the status and body.
fn check(from: IpAddr, agent: &EndpointAgent, token: &str, pod: &str) -> (u16, String) {
    https(
        from,
        agent.endpoint,
        "POST",
        "/v1/check",
        Some(token),
        &check_body(pod),
    )
    .expect("an answer")
}

#[test]
fn random_and_repeated_bad_tokens_cost_a_bounded_number_of_token_reviews() {
    let api = FakeApi::start();
    // 8 a minute: 2 at once, then one every 7.5 s.
    let agent = EndpointAgent::start(&api, &["--token-reviews-per-source", "8"], "warn", false);
    let started = Instant::now();
    for i in 0..100 {
        let (status, body) = check(loopback(1), &agent, &format!("random-token-{i}"), "checkout");
        assert!(status == 401 || status == 429, "{status}: {body}");
    }
    let earned = started.elapsed().as_secs_f64() / 7.5;
    let reviews = api.state.token_reviews.total();
    eprintln!(
        "MEASURE 100 random tokens from one address: {reviews} token reviews in {} ms",
        started.elapsed().as_millis()
    );
    assert!(
        reviews as f64 <= 2.0 + earned.ceil(),
        "100 random tokens from one address cost {reviews} reviews"
    );
    // One bad token again and again, from an address of its own: one review.
    for _ in 0..50 {
        let (status, _) = check(loopback(2), &agent, "the-same-bad-token", "checkout");
        assert_eq!(status, 401);
    }
    assert_eq!(
        api.state.token_reviews.total(),
        reviews + 1,
        "a rejection is remembered"
    );
    // The known caller is not throttled by others' bad tokens.
    let (status, body) = node_probe(loopback(3), agent.endpoint, GOOD_TOKEN).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn oversized_tokens_are_refused_without_a_review() {
    let api = FakeApi::start();
    let agent = EndpointAgent::start(&api, &[], "warn", false);
    for size in [8 * 1024, 64 * 1024] {
        let token = "t".repeat(size);
        let body = check_body("checkout");
        match https(
            loopback(1),
            agent.endpoint,
            "POST",
            "/v1/check",
            Some(&token),
            &body,
        ) {
            // 401 from the size cap, 431 when the head does not even fit the read buffer.
            Ok((status, body)) => assert!(status == 401 || status == 431, "{size} bytes: {status} {body}"),
            // Past the read buffer the connection may be closed before the 431 is read.
            Err(err) => assert!(size > 16 * 1024, "{size} bytes: {err}"),
        }
    }
    assert_eq!(
        api.state.token_reviews.total(),
        0,
        "no oversized token reached the api server"
    );
}

/// Starts `n` requests at once on threads; their answers.
fn concurrently(
    n: usize,
    request: impl Fn(usize) -> (u16, String) + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<(u16, String)>> {
    let request = Arc::new(request);
    (0..n)
        .map(|i| {
            let request = request.clone();
            std::thread::spawn(move || request(i))
        })
        .collect()
}

#[test]
fn a_slow_api_server_holds_at_most_the_reviews_in_flight_and_the_rest_is_refused_at_once() {
    let api = Arc::new(FakeApi::start());
    let agent = Arc::new(EndpointAgent::start(
        &api,
        &[
            "--max-reviews-in-flight",
            "4",
            "--token-reviews-per-source",
            "100000",
        ],
        "warn",
        false,
    ));
    // TokenReviews of distinct tokens.
    api.hold_token_reviews(true);
    let waiting = concurrently(32, {
        let agent = agent.clone();
        move |i| check(loopback(1), &agent, &format!("unknown-token-{i}"), "checkout")
    });
    assert!(eventually(Duration::from_secs(10), || api
        .state
        .token_reviews
        .now()
        == 4));
    assert!(
        eventually(Duration::from_secs(10), || waiting
            .iter()
            .filter(|t| t.is_finished())
            .count()
            == 28),
        "all but the four under review are answered while the api server holds them"
    );
    assert_eq!(api.state.token_reviews.max(), 4);
    api.hold_token_reviews(false);
    let statuses: Vec<u16> = waiting.into_iter().map(|t| t.join().unwrap().0).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 28, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "{statuses:?}");

    // SubjectAccessReviews of distinct checks by one known caller.
    let (status, _) = node_probe(loopback(2), agent.endpoint, GOOD_TOKEN).unwrap();
    assert_eq!(status, 200, "the caller's token is now known");
    api.hold_access_reviews(true);
    let before = api.state.access_reviews.total();
    let waiting = concurrently(32, {
        let agent = agent.clone();
        move |i| check(loopback(2), &agent, GOOD_TOKEN, &format!("pod-{i}"))
    });
    assert!(eventually(Duration::from_secs(10), || api
        .state
        .access_reviews
        .now()
        == 4));
    assert!(eventually(Duration::from_secs(10), || waiting
        .iter()
        .filter(|t| t.is_finished())
        .count()
        == 28));
    api.hold_access_reviews(false);
    let statuses: Vec<u16> = waiting.into_iter().map(|t| t.join().unwrap().0).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 28, "{statuses:?}");
    assert_eq!(api.state.access_reviews.total() - before, 4);
    assert_eq!(api.state.access_reviews.max(), 4);
}

#[test]
fn an_api_outage_keeps_probe_success_0_and_tells_callers_nothing_internal() {
    let api = FakeApi::start();
    let agent = EndpointAgent::start(&api, &[], "warn", false);
    api.state.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let path = "/probe?from=shop/checkout&to=svc/payments.shop:80";
    let (status, text) = https(loopback(1), agent.endpoint, "GET", path, Some(GOOD_TOKEN), b"").unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.lines().any(|l| l == "probe_success 0"), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "netdiag_check_not_run{reason=\"unavailable\"} 1"),
        "{text}"
    );
    for token in [GOOD_TOKEN, "some-token"] {
        let (status, body) = check(loopback(1), &agent, token, "checkout");
        assert_eq!(status, 503, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["code"], "unavailable");
        let message = error["message"].as_str().unwrap();
        for internal in ["tokenreview", "127.0.0.1", &api.addr.port().to_string(), "503"] {
            assert!(!message.contains(internal), "{message:?} tells {internal:?}");
        }
    }
    let (status, _) = https(loopback(1), agent.endpoint, "GET", path, None, b"").unwrap();
    assert_eq!(status, 401, "without a token it stays an error");
}

#[test]
fn every_request_on_every_route_is_one_audit_line_with_the_client_address() {
    let api = FakeApi::start();
    let agent = EndpointAgent::start(&api, &[], "warn,netdiag::audit=info", true);
    let from = loopback(7);
    let cases: [(&str, &str, Option<&str>, u16, &str); 5] = [
        ("GET", "/healthz", None, 200, "allowed"),
        ("GET", "/no-such-path", None, 404, "notFound"),
        ("DELETE", "/healthz", None, 405, "methodNotAllowed"),
        ("POST", "/v1/check", None, 401, "unauthenticated"),
        ("POST", "/v1/probe", Some(GOOD_TOKEN), 200, "allowed"),
    ];
    for (method, path, token, status, _) in cases {
        let body = br#"{"source": {"kind": "node"}, "probes": [{"kind": "interfaces"}]}"#;
        let (got, text) = https(from, agent.endpoint, method, path, token, body).unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
    }
    let audits = || -> Vec<Value> {
        agent
            .log_lines()
            .into_iter()
            .filter(|l| l["target"] == "netdiag::audit")
            .collect()
    };
    assert!(eventually(Duration::from_secs(5), || audits().len() >= cases.len()));
    let lines = audits();
    assert_eq!(lines.len(), cases.len(), "one line per request: {lines:#?}");
    for ((method, path, token, status, decision), line) in cases.iter().zip(&lines) {
        let fields = &line["fields"];
        assert_eq!(fields["method"], *method, "{line}");
        assert_eq!(fields["path"], *path, "{line}");
        assert_eq!(fields["status"], *status, "{line}");
        assert_eq!(fields["decision"], *decision, "{line}");
        let client = fields["client"].as_str().unwrap();
        assert!(client.starts_with("127.0.0.7:"), "{line}");
        let caller = if token.is_some() { GOOD_USER } else { "-" };
        assert_eq!(fields["caller"], caller, "{line}");
    }
}
