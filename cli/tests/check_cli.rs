//! `kubectl-netdiag check` as a process, without a cluster: usage errors exit 2 naming the
//! problem; a source that does not exist, an API server that cannot be reached, 401 and 403 are
//! each kubectl's one `error:` line with their own exit code (an error object under `-o json`),
//! never a network layer.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-netdiag");

fn check(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("check")
        .args(args)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubectl-netdiag")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn malformed_targets_are_usage_errors_that_name_the_problem() {
    let cases = [
        ("svc/payments.shop", "the port is missing"),
        ("svc/payments.shop:0", "port 0"),
        ("deploy/payments:80", "unknown target kind \"deploy\""),
        ("payments", "the port is missing"),
        ("svc/Payments:80", "not a valid service name"),
    ];
    for (to, message) in cases {
        let out = check(&["--from", "shop/checkout", "--to", to]);
        assert_eq!(out.status.code(), Some(2), "--to {to}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "--to {to}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "usage errors print nothing on stdout");
    }
}

#[test]
fn malformed_source_timeout_and_output_are_usage_errors() {
    let out = check(&["--from", "shop/", "--to", "svc/payments:80"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the pod name is missing"),
        "{}",
        stderr(&out)
    );

    let out = check(&[
        "--from",
        "shop/checkout",
        "--to",
        "svc/payments:80",
        "--timeout",
        "1h",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown unit"), "{}", stderr(&out));

    let out = check(&["--from", "shop/checkout", "--to", "svc/payments:80", "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));

    let out = check(&["--to", "svc/payments:80"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--from"), "{}", stderr(&out));
}

/// A kubeconfig whose server is a loopback port nothing listens on.
fn dead_kubeconfig() -> PathBuf {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    kubeconfig_for("dead", port, Some("shop"))
}

/// Writes a kubeconfig for an API server on `127.0.0.1:port` (context namespace `namespace`).
fn kubeconfig_for(tag: &str, port: u16, namespace: Option<&str>) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "netdiag-check-cli-{tag}-{}-{port}.kubeconfig",
        std::process::id()
    ));
    let namespace = namespace
        .map(|ns| format!(", namespace: {ns}"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n\
         contexts:\n- name: c\n  context: {{cluster: c, user: u{namespace}}}\ncurrent-context: c\n\
         users:\n- name: u\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unreachable_api_server_is_one_error_line_and_an_error_object() {
    let kubeconfig = dead_kubeconfig();
    let out = check(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--from",
        "checkout",
        "--to",
        "svc/payments:80",
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: Unable to connect to the server: ") && err.contains("onnection refused"),
        "{err}"
    );
    assert!(!err.contains("client error (Connect)"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(json["error"]["reason"], "Unreachable");
    assert_eq!(json["error"]["exitCode"], 5);
    assert!(
        json.get("verdict").is_none() && json.get("reachable").is_none(),
        "{json}"
    );
}

/// A configuration error is kubectl's one line `error: …` naming the file, exit 4 — not a
/// checklist blaming a layer.
#[test]
fn kubeconfig_that_does_not_exist_is_a_one_line_configuration_error() {
    let out = check(&[
        "--kubeconfig",
        "/nonexistent/netdiag/kubeconfig",
        "--from",
        "shop/checkout",
        "--to",
        "10.96.0.10:53",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot read kubeconfig /nonexistent/netdiag/kubeconfig"),
        "{err}"
    );
}

#[test]
fn unknown_context_is_a_one_line_configuration_error() {
    let kubeconfig = dead_kubeconfig();
    let out = check(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        "no-such-context",
        "--from",
        "shop/checkout",
        "--to",
        "10.96.0.10:53",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: context \"no-such-context\" does not exist in the kubeconfig"
    );
}

/// An API server on loopback answering each request with `answer(path)`: a status and a JSON
/// body. Returns its kubeconfig.
fn fake_api_server(tag: &str, answer: fn(&str) -> (u16, String)) -> PathBuf {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    // Read one request's headers (no request of the check has a body on GET).
                    let mut path = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if path.is_empty() {
                            path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let (code, body) = answer(&path);
                    let response = format!(
                        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    kubeconfig_for(tag, port, None)
}

fn status_body(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

/// What a request path asks for, as kube-apiserver reads it.
struct Request<'a> {
    /// `v1`, `apps/v1`, ...
    api_version: String,
    namespace: Option<&'a str>,
    resource: &'a str,
    /// A GET of one object; `None` for a list.
    name: Option<&'a str>,
    query: &'a str,
}

impl<'a> Request<'a> {
    fn parse(path: &'a str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let (api_version, rest) = match path.strip_prefix("/apis/") {
            Some(rest) => {
                let mut parts = rest.splitn(3, '/');
                let group = parts.next().unwrap_or("");
                let version = parts.next().unwrap_or("");
                (format!("{group}/{version}"), parts.next().unwrap_or(""))
            }
            None => ("v1".to_string(), path.strip_prefix("/api/v1/").unwrap_or("")),
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (namespace, segments) = match segments.as_slice() {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail.to_vec()),
            _ => (None, segments),
        };
        Request {
            api_version,
            namespace,
            resource: segments.first().copied().unwrap_or(""),
            name: segments.get(1).copied(),
            query,
        }
    }

    /// RBAC's refusal of this request, worded as kube-apiserver words it.
    fn forbidden_message(&self, user: &str) -> String {
        let group = self.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let verb = if self.name.is_some() { "get" } else { "list" };
        let subject = match self.name {
            Some(name) => format!("{} \"{name}\"", self.resource),
            None => self.resource.to_string(),
        };
        let scope = match self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{group}\" {scope}",
            self.resource
        )
    }
}

/// Every request answered 403 Forbidden, as RBAC does.
fn forbidding_api_server() -> PathBuf {
    fake_api_server("403", |path| {
        let message = Request::parse(path).forbidden_message("dev");
        (403, status_body(403, "Forbidden", &message))
    })
}

/// A cluster with namespaces default and shop and one pod, shop/checkout, answering gets by name,
/// lists (cluster-wide or in a namespace) and the `status.podIP` field selector; every other
/// list is empty, and no workload (the agent DaemonSet included) exists.
fn small_cluster() -> PathBuf {
    fake_api_server("small", |path| {
        let request = Request::parse(path);
        let namespaces =
            serde_json::json!([{"metadata": {"name": "default"}}, {"metadata": {"name": "shop"}}]);
        let pods = serde_json::json!([{
            "metadata": {"name": "checkout", "namespace": "shop", "labels": {"app": "checkout"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "app"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }]);
        let objects = match (request.api_version.as_str(), request.resource) {
            ("v1", "namespaces") => namespaces.as_array().unwrap().clone(),
            ("v1", "pods") => pods.as_array().unwrap().clone(),
            _ => Vec::new(),
        };
        let pod_ip = request
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldSelector=status.podIP%3D"));
        let selected = objects.into_iter().filter(|o| {
            request
                .namespace
                .is_none_or(|ns| o["metadata"]["namespace"] == ns)
                && pod_ip.is_none_or(|ip| o["status"]["podIP"] == ip)
        });
        match request.name {
            Some(name) => match selected.into_iter().find(|o| o["metadata"]["name"] == name) {
                Some(object) => (200, object.to_string()),
                None => {
                    let message = format!("{} \"{name}\" not found", request.resource);
                    (404, status_body(404, "NotFound", &message))
                }
            },
            None => {
                let items: Vec<_> = selected.collect();
                let list = serde_json::json!({
                    "kind": "List", "apiVersion": request.api_version,
                    "metadata": {"resourceVersion": "1"}, "items": items,
                });
                (200, list.to_string())
            }
        }
    })
}

#[test]
fn a_mistyped_source_pod_is_not_found_with_the_close_name_never_a_verdict() {
    let kubeconfig = small_cluster();
    let path = kubeconfig.to_str().unwrap();
    let out = check(&[
        "--kubeconfig",
        path,
        "--from",
        "shop/chekout",
        "--to",
        "svc/payments:80",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert_eq!(
        err.trim_end(),
        "error: pods \"chekout\" not found in namespace \"shop\"; did you mean \"checkout\"?"
    );
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));

    let out = check(&[
        "--kubeconfig",
        path,
        "--from",
        "shpo/checkout",
        "--to",
        "svc/payments:80",
        "-o",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(json["error"]["reason"], "NotFound");
    assert_eq!(json["error"]["message"], "namespaces \"shpo\" not found");
    assert_eq!(json["error"]["didYouMean"], "shop");
    assert!(json.get("reachable").is_none(), "{json}");

    // A pod of that name in another namespace is pointed at.
    let out = check(&[
        "--kubeconfig",
        path,
        "--from",
        "default/checkout",
        "--to",
        "svc/payments:80",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("--from shop/checkout"), "{}", stderr(&out));

    // A missing Deployment is the same kind of error.
    let out = check(&[
        "--kubeconfig",
        path,
        "--from",
        "shop/deploy/checkout",
        "--to",
        "svc/payments:80",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: deployments.apps \"checkout\" not found in namespace \"shop\""
    );
    let _ = std::fs::remove_file(&kubeconfig);
}

#[test]
fn rbac_forbidden_reads_are_one_kubectl_line_never_a_network_layer() {
    let kubeconfig = forbidding_api_server();
    let out = check(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--from",
        "shop/checkout",
        "--to",
        "svc/payments.shop:80",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: pods \"checkout\" is forbidden: User \"dev\" cannot get resource \"pods\""),
        "{err}"
    );
    assert!(err.contains("netdiag-user"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn rejected_credentials_say_log_in_again() {
    let kubeconfig = fake_api_server("401", |_| (401, status_body(401, "Unauthorized", "Unauthorized")));
    let out = check(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--from",
        "shop/checkout",
        "--to",
        "svc/payments.shop:80",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.starts_with("error: You must be logged in to the server (Unauthorized); log in again"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// An API server that accepts connections and reads requests but never answers; returns its kubeconfig.
fn silent_api_server() -> PathBuf {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            });
        }
    });
    kubeconfig_for("silent", port, None)
}

#[test]
fn api_server_that_never_answers_is_an_error_instead_of_hanging() {
    let kubeconfig = silent_api_server();
    let out = check(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--from",
        "shop/checkout",
        "--to",
        "svc/payments.shop:80",
        "--timeout",
        "100ms",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.starts_with("error: Unable to connect to the server: "),
        "{err}"
    );
}

#[test]
fn color_only_when_forced_or_on_a_terminal_and_never_with_no_color() {
    let kubeconfig = small_cluster();
    let args = [
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--from",
        "shop/checkout",
        "--to",
        "10.0.0.1:80",
    ];
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("check")
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let piped = run(&[]);
    let forced = run(&[("CLICOLOR_FORCE", "1")]);
    let forced_but_no_color = run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    let _ = std::fs::remove_file(&kubeconfig);
    assert!(
        piped.contains("verdict: UNDETERMINED") && !piped.contains('\x1b'),
        "{piped}"
    );
    assert!(forced.contains("\x1b["), "{forced}");
    assert!(!forced_but_no_color.contains('\x1b'), "{forced_but_no_color}");
}

/// `-v=6` shows each API request as kubectl does: method, URL, status and latency.
#[test]
fn v6_shows_every_api_request_with_its_status_and_latency() {
    let kubeconfig = small_cluster();
    let out = check(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-v=6",
        "--from",
        "shop/checkout",
        "--to",
        "10.0.0.1:80",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    let err = stderr(&out);
    let pods = err
        .lines()
        .find(|l| l.contains("method=GET") && l.contains("/api/v1/pods"))
        .unwrap_or_else(|| panic!("no request line for the pods list:\n{err}"));
    assert!(pods.contains("200 OK in ") && pods.contains(" ms"), "{pods}");
}
