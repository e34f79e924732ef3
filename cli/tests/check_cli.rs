//! `kubectl-netdiag check` as a process, without a cluster: usage errors exit 2 naming the
//! problem, and an API server that cannot be reached gives UNDETERMINED (exit 3), never a
//! network layer.

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
fn unreachable_api_server_is_undetermined_with_the_reason() {
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
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(report["verdict"], "undetermined");
    assert_eq!(report["reachable"], serde_json::Value::Null);
    assert_eq!(report["failingLayer"], serde_json::Value::Null);
    let steps = report["steps"].as_array().unwrap();
    let layers: Vec<&str> = steps.iter().map(|s| s["layer"].as_str().unwrap()).collect();
    assert_eq!(
        layers,
        [
            "source",
            "dns",
            "service",
            "endpoints",
            "network-policy",
            "pod-network",
            "service-proxy",
            "application"
        ]
    );
    assert_eq!(steps[0]["status"], "undetermined");
    let summary = steps[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("shop/checkout")
            && summary.contains("failed to get pods/checkout in namespace shop"),
        "{summary}"
    );
    assert!(steps[1..].iter().all(|s| s["status"] == "skip"));
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

/// An API server that answers every request with 403 Forbidden, as RBAC does; returns its kubeconfig.
fn forbidding_api_server() -> PathBuf {
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
                    let body = format!(
                        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\
                         \"message\":\"{path} is forbidden: User \\\"dev\\\" cannot list this resource\",\
                         \"reason\":\"Forbidden\",\"code\":403}}"
                    );
                    let response = format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    kubeconfig_for("403", port, None)
}

#[test]
fn rbac_forbidden_reads_are_undetermined_never_a_network_layer() {
    let kubeconfig = forbidding_api_server();
    let out = check(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--from",
        "shop/checkout",
        "--to",
        "svc/payments.shop:80",
        "-o",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_eq!(report["verdict"], "undetermined");
    let summary = report["steps"][0]["summary"].as_str().unwrap();
    // The read that was refused, by verb, resource and namespace: the check reads the source by name.
    assert!(
        summary.contains("forbidden to get pods/checkout in namespace shop"),
        "{summary}"
    );
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
fn api_server_that_never_answers_is_undetermined_instead_of_hanging() {
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
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(report["verdict"], "undetermined");
    let summary = report["steps"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("failed to get pods/checkout in namespace shop"),
        "{summary}"
    );
}

#[test]
fn color_only_when_forced_or_on_a_terminal_and_never_with_no_color() {
    let kubeconfig = forbidding_api_server();
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
