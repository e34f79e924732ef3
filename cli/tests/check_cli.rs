//! `kubectl-netdiag check` as a process, without a cluster: usage errors exit 2 naming the
//! problem; a source that does not exist, an API server that cannot be reached, 401 and 403 are
//! each kubectl's one `error:` line with their own exit code (an error object under `-o json`),
//! never a network layer.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

use common::{fake_api_server, forbidding_api_server, kubeconfig_for, status_body};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-netdiag");

/// The cluster of [`common::small_cluster_answer`]; returns its kubeconfig.
fn small_cluster() -> PathBuf {
    fake_api_server("small", common::small_cluster_answer)
}

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
        "1d",
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
