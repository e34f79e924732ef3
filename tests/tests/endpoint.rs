//! End-to-end tests of the agents' in-cluster endpoint in the lab: real agents serving HTTPS in
//! their pods, TokenReview and SubjectAccessReview answered from the scenario's tokens and RBAC,
//! and callers running `curl` inside a lab pod's network namespace. On the real control plane
//! (`NETDIAG_LAB_CONTROL_PLANE=real`) kube-apiserver answers the reviews and the callers' tokens
//! are ServiceAccount tokens minted through the TokenRequest API for the audience each test
//! names; on the stand-in they are the scenario's `tokens`.
//!
//! Needs root (network namespaces) and `curl`; fails otherwise. Each test holds the check
//! scenarios' lock exclusively, as labs with agents must not overlap.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::checklab::one_lab_at_a_time;
use common::{BIN, DownOnDrop, TempDir, require_root};
use netdiag_lab::state::LabInfo;
use nix::fcntl::Flock;
use serde_json::Value;

const SHOP: &str = "svc/payments.shop:80";

/// Fails the calling test, saying what is missing, unless it runs as root and has `curl`.
#[track_caller]
fn require_root_and_curl() {
    require_root();
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "needs curl, to call the endpoint from inside a pod: run tests/scripts/install-deps as root"
    );
}

/// A lab with agents; taken down on drop.
struct Lab {
    _down: DownOnDrop,
    dir: TempDir,
    info: LabInfo,
    /// The callers' bearer tokens by the scenario's token names (themselves on the stand-in).
    tokens: BTreeMap<&'static str, String>,
    _lock: Flock<std::fs::File>,
}

/// Whether the tests run on the real control plane.
fn real() -> bool {
    std::env::var("NETDIAG_LAB_CONTROL_PLANE").is_ok_and(|v| v == "real")
}

/// The scenario's tokens as the real control plane mints them: (name, ServiceAccount in shop,
/// audience). `api-audience-token` is ci's token for the API server's own audience (the
/// default); `dev-token` is an account no binding names (a static user token would be valid for
/// the API server's audience only, which TokenReview then refuses for `netdiag`).
const MINTED: [(&str, &str, Option<&str>); 5] = [
    ("ci-token", "ci", Some("netdiag")),
    ("api-audience-token", "ci", None),
    ("dev-token", "dev", Some("netdiag")),
    ("reader-token", "reader", Some("netdiag")),
    ("ops-token", "ops", Some("netdiag")),
];

/// `kubectl --kubeconfig ADMIN ARGS`, which must succeed; its stdout.
fn admin_kubectl(state: &Path, args: &[&str]) -> String {
    let out = Command::new(common::kubectl())
        .arg("--kubeconfig")
        .arg(state.join("admin.kubeconfig"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Each caller's ServiceAccount, and a token for it from the TokenRequest API.
fn mint_tokens(state: &Path) -> BTreeMap<&'static str, String> {
    for account in ["ci", "dev", "reader", "ops"] {
        admin_kubectl(state, &["create", "serviceaccount", "-n", "shop", account]);
    }
    MINTED
        .iter()
        .map(|(name, account, audience)| {
            let mut args = vec!["create", "token", "-n", "shop", account, "--duration", "1h"];
            if let Some(audience) = audience {
                args.extend(["--audience", audience]);
            }
            (*name, admin_kubectl(state, &args))
        })
        .collect()
}

impl Lab {
    fn up(tag: &str) -> Lab {
        let lock = one_lab_at_a_time();
        let dir = TempDir::new(tag);
        let state = dir.0.join("state");
        let down = DownOnDrop(state.clone());
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/endpoint/shop.yaml");
        let out = Command::new(BIN)
            .arg("up")
            .arg(&scenario)
            .arg("--state")
            .arg(&state)
            .args(["--control-plane", if real() { "real" } else { "stand-in" }])
            .output()
            .expect("run netdiag-lab up");
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: LabInfo = serde_json::from_slice(&std::fs::read(state.join("lab.json")).unwrap()).unwrap();
        let tokens = if real() {
            mint_tokens(&state)
        } else {
            MINTED
                .iter()
                .map(|(name, _, _)| (*name, name.to_string()))
                .collect()
        };
        Lab {
            _down: down,
            dir,
            info,
            tokens,
            _lock: lock,
        }
    }

    /// The bearer token the scenario calls `name`; any other name is sent as it is (a token no
    /// one issued).
    fn token<'a>(&'a self, name: &'a str) -> &'a str {
        self.tokens.get(name).map_or(name, String::as_str)
    }

    /// The API server's process: kube-apiserver on the real control plane (`api.pid` is the
    /// host's relay to it there), the stand-in otherwise.
    fn api_pid(&self) -> u32 {
        if !real() {
            return self.info.api.pid;
        }
        let state = self.state();
        common::live_processes_mentioning(&state)
            .into_iter()
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"kube-apiserver"))
            })
            .expect("the lab's kube-apiserver")
    }

    /// The agent pod on `node` (its name is the DaemonSet controller's on the real control plane).
    fn agent(&self, node: &str) -> &netdiag_lab::state::PodInfo {
        let agent = self
            .info
            .agents
            .iter()
            .find(|a| a.node == node)
            .unwrap_or_else(|| panic!("no agent on {node}"));
        self.pod(&agent.pod)
    }

    fn state(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    fn pod(&self, key: &str) -> &netdiag_lab::state::PodInfo {
        let (ns, name) = key.split_once('/').unwrap();
        self.info
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
            .unwrap_or_else(|| panic!("no pod {key}"))
    }

    /// The endpoint of the agent on `node`.
    fn endpoint(&self, node: &str) -> String {
        format!("https://{}:9443", self.agent(node).ip)
    }

    /// The agent's log, each line as the text format writes it (`target: message k=v ...`,
    /// strings quoted): deploy/ runs the agent with `--log-format json`, the stand-in with text.
    fn agent_log(&self, node: &str) -> String {
        let log = self
            .state()
            .join(format!("logs/netdiag_{}.log", self.agent(node).name));
        strip_ansi(&std::fs::read_to_string(log).unwrap_or_default())
            .lines()
            .map(as_text_line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `curl` from inside pod `from`'s network namespace, without waiting.
    fn spawn_curl(
        &self,
        from: &str,
        token: Option<&str>,
        url: &str,
        body: Option<&str>,
    ) -> std::process::Child {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.pod(from).netns,
            "curl",
            "-sk",
            "--max-time",
            "60",
        ])
        .args(["-w", "\n%{http_code}"]);
        if let Some(token) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            cmd.args(["-X", "POST", "-H", "Content-Type: application/json", "-d", body]);
        }
        cmd.arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl in the pod")
    }

    fn curl(&self, from: &str, token: Option<&str>, url: &str, body: Option<&str>) -> Http {
        Http::of(
            self.spawn_curl(from, token, url, body)
                .wait_with_output()
                .unwrap(),
        )
    }

    /// A check asked of node-a's endpoint with the token the scenario names `token`.
    fn check(&self, token: Option<&str>, from: &str, to: &str) -> Http {
        let body = serde_json::json!({"from": from, "to": to, "timeoutMs": 1000}).to_string();
        self.curl(
            "shop/frontend",
            token.map(|t| self.token(t)),
            &format!("{}/v1/check", self.endpoint("node-a")),
            Some(&body),
        )
    }
}

/// `text` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A response: status (0 when there was none) and body.
#[derive(Debug)]
struct Http {
    status: u16,
    body: String,
}

impl Http {
    fn of(out: Output) -> Http {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Http {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not json ({e}): {self:?}"))
    }
}

/// Verdict, failing layer and each layer's status of a report.
fn outline(report: &Value) -> (Value, Value, Vec<(String, String)>) {
    let steps = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["layer"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (report["verdict"].clone(), report["failingLayer"].clone(), steps)
}

fn plugin_report(lab: &Lab, from: &str, to: &str) -> Value {
    let plugin = Path::new(BIN).with_file_name("kubectl-netdiag");
    let out = Command::new(&plugin)
        .args(["check", "--kubeconfig"])
        .arg(lab.state().join("kubeconfig"))
        .args(["--from", from, "--to", to, "-o", "json"])
        .output()
        .expect("run kubectl-netdiag (cargo build --workspace --bins)");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("plugin json: {e}: {out:?}"))
}

#[test]
fn endpoint_authenticates_authorizes_and_answers_what_the_plugin_answers() {
    require_root_and_curl();
    let lab = Lab::up("endpoint-auth");
    let from = "shop/checkout";

    let none = lab.check(None, from, SHOP);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.json()["code"], "unauthorized");
    let unknown = lab.check(Some("no-such-token"), from, SHOP);
    assert_eq!(unknown.status, 401, "{unknown:?}");
    assert!(unknown.json()["message"].as_str().unwrap().contains("rejected"));
    let wrong_audience = lab.check(Some("api-audience-token"), from, SHOP);
    assert_eq!(
        wrong_audience.status, 401,
        "a token for another audience: {wrong_audience:?}"
    );

    let elsewhere = lab.check(Some("ci-token"), "kube-system/coredns-0", SHOP);
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");
    let message = elsewhere.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with(
            "user system:serviceaccount:shop:ci cannot create checks.netdiag.io in namespace kube-system"
        ),
        "{message}"
    );
    let unbound = lab.check(Some("dev-token"), from, SHOP);
    assert_eq!(unbound.status, 403, "a user without a binding: {unbound:?}");

    let allowed = lab.check(Some("ci-token"), from, SHOP);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let report = allowed.json();
    let plugin = plugin_report(&lab, from, SHOP);
    assert_eq!(report["verdict"], "unreachable");
    assert_eq!(report["failingLayer"], "network-policy");
    assert_eq!(
        outline(&report),
        outline(&plugin),
        "the endpoint and the plugin agree"
    );
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&report), keys(&plugin), "the same schema");

    // A check from payments-0, which runs on node-b, asked of node-a's endpoint: node-a's agent
    // asks node-b's for the source pod's probes over the endpoint, as its ServiceAccount, and the
    // caller itself may not. (The check above needed nothing of node-b: its connections are
    // denied by policy, so the witnesses at node-b's pods were not waited for.)
    let from_b = lab.check(Some("ci-token"), "shop/payments-0", SHOP);
    assert_eq!(from_b.status, 200, "{from_b:?}");
    let b = lab.agent_log("node-b");
    assert!(
        b.lines().any(|l| l.contains("node-probe")
            && l.contains("system:serviceaccount:netdiag:netdiag-agent")
            && l.contains("status=200")),
        "node-b's audit log has no agent-to-agent probe:\n{b}"
    );
    // The pod that claims to be node-b's agent with a forged owner uid was never the peer. (On
    // the real control plane the garbage collector deletes it, its owner being no object, so the
    // agent may never see it: the probe above reaching node-b's real agent is what shows there.)
    if !real() {
        assert!(
            lab.agent_log("node-a")
                .contains("skipping pod netdiag/zzz-impostor on node node-b"),
            "{}",
            lab.agent_log("node-a")
        );
    }
    let peer = lab.curl(
        "shop/frontend",
        Some(lab.token("ci-token")),
        &format!("{}/v1/probe", lab.endpoint("node-b")),
        Some(r#"{"source": {"kind": "node"}, "probes": []}"#),
    );
    assert_eq!(
        peer.status, 403,
        "callers may not use the agents' probe api: {peer:?}"
    );
    let a = lab.agent_log("node-a");
    let audits: Vec<&str> = a.lines().filter(|l| l.contains("netdiag::audit")).collect();
    assert_eq!(audits.len(), 7, "one audit line per request:\n{a}");
    assert_eq!(audits.iter().filter(|l| l.contains("status=401")).count(), 3);
    assert!(
        audits
            .iter()
            .any(|l| l.contains("from=\"kube-system/coredns-0\"") && l.contains("status=403"))
    );
    assert!(
        audits
            .iter()
            .any(|l| l.contains("caller=\"system:serviceaccount:shop:ci\"")
                && l.contains("verdict=\"unreachable\"")
                && l.contains("status=200"))
    );
}

/// A JSON log line (tracing-subscriber's json format) as its text format writes it; any other
/// line as it is.
fn as_text_line(line: &str) -> String {
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let target = event.get("target").and_then(Value::as_str).unwrap_or_default();
    let mut text = format!("{target}:");
    for (key, value) in event
        .get("fields")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        match (key.as_str(), value) {
            ("message", Value::String(message)) => text.push_str(&format!(" {message}")),
            (_, Value::String(v)) => text.push_str(&format!(" {key}={v:?}")),
            (_, v) => text.push_str(&format!(" {key}={v}")),
        }
    }
    text
}

/// A pod in namespace admin that NetworkPolicy isolates from shop's pods.
const VAULT: &str = "pod/vault-0.admin:9999";

#[test]
fn endpoint_shows_another_namespaces_details_only_to_callers_who_may_read_there() {
    require_root_and_curl();
    let lab = Lab::up("endpoint-disclosure");
    let vault_ip = lab.pod("admin/vault-0").ip.clone();
    let named_in_admin = [vault_ip.as_str(), "node-b", "vault-ingress", "admin", "vault"];

    // Bound only in shop: the verdict and each layer's status, nothing named from admin.
    let bound = lab.check(Some("ci-token"), "shop/checkout", VAULT);
    assert_eq!(bound.status, 200, "{bound:?}");
    let reduced = bound.json();
    assert_eq!(reduced["verdict"], "unreachable", "{bound:?}");
    assert_eq!(reduced["failingLayer"], "network-policy");
    assert_eq!(reduced["withheld"], true);
    for detail in named_in_admin {
        assert!(!bound.body.contains(detail), "{detail} shown: {}", bound.body);
    }
    let url = format!(
        "{}/probe?from=shop/checkout&to={VAULT}&timeout=1s",
        lab.endpoint("node-a")
    );
    let metrics = lab.curl("shop/frontend", Some(lab.token("ci-token")), &url, None);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(
        scrape(&metrics.body)["netdiag_check_failing_layer{layer=network-policy}"],
        1.0
    );
    for detail in named_in_admin {
        assert!(!metrics.body.contains(detail), "{detail} in {}", metrics.body);
    }

    // Also allowed to list pods, services and networkpolicies in admin: the whole report.
    let reader = lab.check(Some("reader-token"), "shop/checkout", VAULT);
    assert_eq!(reader.status, 200, "{reader:?}");
    let full = reader.json();
    assert_eq!(full["withheld"], Value::Null);
    assert_eq!(outline(&full), outline(&reduced), "the same finding");
    for detail in [vault_ip.as_str(), "admin/vault-ingress"] {
        assert!(reader.body.contains(detail), "{detail} missing: {}", reader.body);
    }
    assert!(full["networkPolicy"]["yaml"].is_string(), "{full}");
}

#[test]
fn endpoint_checks_from_a_hostnetwork_pod_need_their_own_grant() {
    require_root_and_curl();
    let lab = Lab::up("endpoint-hostnetwork");
    let denied = lab.check(Some("ci-token"), "shop/node-agent", SHOP);
    assert_eq!(denied.status, 403, "{denied:?}");
    let message = denied.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with(
            "user system:serviceaccount:shop:ci cannot create checks/hostnetwork.netdiag.io \
             in namespace shop (name node-agent)"
        ),
        "{message}"
    );

    let granted = lab.check(Some("ops-token"), "shop/node-agent", SHOP);
    assert_eq!(granted.status, 200, "{granted:?}");
    let report = granted.json();
    assert_eq!(report["steps"][0]["status"], "pass", "{report}");
}

fn scrape(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid prometheus text exposition");
    parsed
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample type {other:?}"),
            };
            (format!("{}{{{}}}", s.metric, labels.join(",")), value)
        })
        .collect()
}

#[test]
fn endpoint_probe_is_prometheus_text_with_one_series_per_layer() {
    require_root_and_curl();
    let lab = Lab::up("endpoint-probe");
    let url = |from: &str| {
        format!(
            "{}/probe?from={from}&to={SHOP}&timeout=500ms",
            lab.endpoint("node-b")
        )
    };

    let broken = lab.curl(
        "shop/frontend",
        Some(lab.token("ci-token")),
        &url("shop/checkout"),
        None,
    );
    assert_eq!(broken.status, 200, "{broken:?}");
    let samples = scrape(&broken.body);
    assert_eq!(samples["probe_success{}"], 0.0);
    assert!(samples["probe_duration_seconds{}"] > 0.0);
    assert_eq!(samples["netdiag_check_layer{layer=dns,status=pass}"], 1.0);
    assert_eq!(
        samples["netdiag_check_layer{layer=network-policy,status=fail}"],
        1.0
    );
    assert_eq!(samples["netdiag_check_layer{layer=application,status=skip}"], 1.0);
    assert_eq!(samples["netdiag_check_failing_layer{layer=network-policy}"], 1.0);
    assert_eq!(samples["netdiag_check_verdict{verdict=unreachable}"], 1.0);
    let layers = samples
        .keys()
        .filter(|k| k.starts_with("netdiag_check_layer{"))
        .count();
    assert_eq!(layers, 8, "one series per layer: {samples:?}");

    // The policy admits the frontend: the same path from it passes.
    let healthy = lab.curl(
        "shop/frontend",
        Some(lab.token("ci-token")),
        &url("shop/frontend"),
        None,
    );
    let samples = scrape(&healthy.body);
    assert_eq!(samples["probe_success{}"], 1.0, "{healthy:?}");
    assert_eq!(
        samples["netdiag_check_layer{layer=network-policy,status=pass}"],
        1.0
    );
    assert_eq!(samples["netdiag_check_layer{layer=application,status=pass}"], 1.0);
    assert!(
        !samples
            .keys()
            .any(|k| k.starts_with("netdiag_check_failing_layer"))
    );

    let unauthorized = lab.curl("shop/frontend", None, &url("shop/frontend"), None);
    assert_eq!(unauthorized.status, 401);
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal the api stand-in");
}

#[test]
fn endpoint_with_the_api_server_stopped_answers_503_never_a_pass() {
    require_root_and_curl();
    use nix::sys::signal::Signal;
    let lab = Lab::up("endpoint-api-down");
    // Reachable while the API answers (and the token is now in the agent's cache).
    let before = lab.check(Some("ci-token"), "shop/frontend", SHOP);
    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(before.json()["verdict"], "reachable");

    let api = lab.api_pid();
    signal(api, Signal::SIGSTOP);
    let stopped = lab.check(Some("ci-token"), "shop/frontend", SHOP);
    signal(api, Signal::SIGCONT);
    assert!(
        stopped.status == 503 || stopped.status == 200 && stopped.json()["verdict"] == "undetermined",
        "an unanswering API server must not give a verdict: {stopped:?}"
    );
    assert_eq!(
        stopped.status, 503,
        "the access review hangs, so the request is refused: {stopped:?}"
    );
    assert_eq!(stopped.json()["code"], "unavailable");

    let resumed = lab.check(Some("ci-token"), "shop/frontend", SHOP);
    assert_eq!(resumed.json()["verdict"], "reachable", "{resumed:?}");

    signal(api, Signal::SIGKILL);
    for token in ["ci-token", "dev-token"] {
        let gone = lab.check(Some(token), "shop/frontend", SHOP);
        assert_eq!(gone.status, 503, "{token}: {gone:?}");
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn endpoint_under_200_concurrent_callers_answers_429_with_bounded_memory_and_stays_healthy() {
    require_root_and_curl();
    const CALLERS: usize = 200;
    let lab = Lab::up("endpoint-load");
    let agent = lab.info.agents.iter().find(|a| a.node == "node-a").unwrap().pid;
    let warm = lab.check(Some("ci-token"), "shop/checkout", SHOP);
    assert_eq!(warm.status, 200, "{warm:?}");
    let rss_before = rss_kib(agent);

    let started = Instant::now();
    let body = serde_json::json!({"from": "shop/checkout", "to": SHOP, "timeoutMs": 2000}).to_string();
    let url = format!("{}/v1/check", lab.endpoint("node-a"));
    let mut children: Vec<_> = (0..CALLERS)
        .map(|_| lab.spawn_curl("shop/frontend", Some(lab.token("ci-token")), &url, Some(&body)))
        .collect();
    let mut peak = rss_before;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    // Sample the agent's memory while the callers run; every curl ends within its --max-time.
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        peak = peak.max(rss_kib(agent));
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in children {
        *statuses
            .entry(Http::of(child.wait_with_output().unwrap()).status)
            .or_default() += 1;
    }
    let rss_after = rss_kib(agent);
    eprintln!(
        "MEASURE {CALLERS} concurrent callers: statuses {statuses:?}, agent rss before {rss_before} KiB, \
         peak {peak} KiB, after {rss_after} KiB, wall {} ms",
        started.elapsed().as_millis()
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) > 0,
        "beyond the per-caller limit: 429 ({statuses:?})"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 0,
        "some checks ran ({statuses:?})"
    );
    assert_eq!(
        statuses.keys().filter(|s| ![200, 429].contains(*s)).count(),
        0,
        "{statuses:?}"
    );
    assert!(
        peak < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} → peak {peak} KiB"
    );

    let after = lab.check(Some("ci-token"), "shop/checkout", SHOP);
    assert_eq!(
        after.status, 200,
        "the agent is healthy after the burst: {after:?}"
    );
    assert_eq!(after.json()["failingLayer"], "network-policy");
}
