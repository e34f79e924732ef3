//! `kubectl netdiag policy explain|matrix --from-file`: output formats, exit codes, error messages.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const WORLD: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop}
- apiVersion: v1
  kind: Namespace
  metadata: {name: default}
- apiVersion: v1
  kind: Pod
  metadata: {name: checkout, namespace: shop, labels: {app: checkout}}
  spec: {containers: [{name: c, image: x}]}
  status: {podIP: 10.244.1.5}
- apiVersion: v1
  kind: Pod
  metadata: {name: payments, namespace: shop, labels: {app: payments}}
  spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
  status: {podIP: 10.244.2.14}
- apiVersion: v1
  kind: Pod
  metadata: {name: tool, namespace: default, labels: {app: tool}}
  spec: {containers: [{name: c, image: x}]}
  status: {podIP: 10.244.3.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec:
  podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-checkout, namespace: shop}
spec:
  podSelector: {matchLabels: {app: payments}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: checkout}}}]
    ports: [{port: http}]
"#;

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-netdiag"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    // A usage error exits before reading standard input; the pipe then breaks, which is fine.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write the input to the binary's stdin"),
    }
    child.wait_with_output().unwrap()
}

fn explain(extra: &[&str], stdin: &str) -> Output {
    let mut args = vec!["policy", "explain", "--from-file", "-"];
    args.extend_from_slice(extra);
    run(&args, stdin)
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn explain_json_reports_an_allowed_flow_with_the_allowing_rule() {
    let out = explain(
        &[
            "--from",
            "shop/checkout",
            "--to",
            "shop/payments",
            "--port",
            "8080",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["ingress"]["isolated"], true);
    assert_eq!(
        v["ingress"]["isolatingPolicies"],
        serde_json::json!([{"namespace": "shop", "name": "default-deny"},
                           {"namespace": "shop", "name": "allow-checkout"}])
    );
    assert_eq!(
        v["ingress"]["allowingRules"],
        serde_json::json!([{"namespace": "shop", "name": "allow-checkout", "direction": "Ingress", "index": 0}])
    );
    assert_eq!(v["egress"]["isolated"], false);
}

#[test]
fn explain_exits_zero_for_a_denied_flow_and_names_the_isolating_policy() {
    let out = explain(
        &[
            "--from",
            "default/tool",
            "--to",
            "shop/payments",
            "--port",
            "8080",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "isolated by shop/default-deny, shop/allow-checkout; no rule allows from default/tool on 8080/TCP"
        ),
        "{text}"
    );
    assert!(text.contains("verdict  denied:"), "{text}");
}

#[test]
fn explain_resolves_bare_pod_names_in_the_default_namespace_and_pod_ips_to_pods() {
    let out = explain(
        &[
            "--from",
            "tool",
            "--to",
            "10.244.2.14",
            "--port",
            "8080",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["from"], "default/tool");
    assert_eq!(v["to"], "shop/payments");
    assert_eq!(v["allowed"], false);
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("10.244.2.14 is the IP of pod shop/payments")
    );
}

#[test]
fn explain_to_an_outside_address_has_no_ingress_side() {
    let out = explain(
        &[
            "--from",
            "shop/checkout",
            "--to",
            "203.0.113.1",
            "--port",
            "443",
            "--protocol",
            "udp",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["protocol"], "UDP");
    assert_eq!(v["ingress"]["applies"], false);
    assert_eq!(v["allowed"], true);
}

#[test]
fn explain_of_an_unknown_pod_is_kubectls_not_found_with_exit_four() {
    let out = explain(
        &["--from", "shop/foo", "--to", "shop/payments", "--port", "80"],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(4), "the not-found code of every command");
    assert_eq!(
        stderr(&out).trim(),
        "error: pods \"foo\" not found in namespace \"shop\""
    );
    assert!(out.stdout.is_empty());

    let out = explain(
        &[
            "--from",
            "shop/chekout",
            "--to",
            "shop/payments",
            "--port",
            "80",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("did you mean \"checkout\"?"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["error"]["reason"], "NotFound");
}

#[test]
fn explain_takes_pod_slash_names_and_named_ports() {
    let named = explain(
        &[
            "-n",
            "shop",
            "--from",
            "pod/checkout",
            "--to",
            "shop/pod/payments",
            "--port",
            "http",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(named.status.code(), Some(0), "{}", stderr(&named));
    let numbered = explain(
        &[
            "--from",
            "shop/checkout",
            "--to",
            "shop/payments",
            "--port",
            "8080",
            "-o",
            "json",
        ],
        WORLD,
    );
    let (named, numbered) = (json(&named), json(&numbered));
    assert_eq!(named["port"], 8080);
    assert_eq!(named["allowed"], numbered["allowed"]);
    assert_eq!(named["from"], "shop/checkout");

    let typo = explain(
        &[
            "--from",
            "shop/checkout",
            "--to",
            "shop/payments",
            "--port",
            "htp",
        ],
        WORLD,
    );
    assert_eq!(typo.status.code(), Some(4));
    assert_eq!(
        stderr(&typo).trim(),
        "error: pod \"payments\" in namespace \"shop\" has no TCP port named \"htp\"; did you mean \"http\"?"
    );
    let to_ip = explain(
        &["--from", "shop/checkout", "--to", "10.9.9.9", "--port", "http"],
        WORLD,
    );
    assert_eq!(to_ip.status.code(), Some(2), "{}", stderr(&to_ip));
    let bad = explain(
        &[
            "--from",
            "shop/checkout",
            "--to",
            "shop/payments",
            "--port",
            "Http!",
        ],
        WORLD,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(!stderr(&bad).contains("invalid digit"), "{}", stderr(&bad));
}

#[test]
fn malformed_yaml_fails_with_exit_one_naming_the_input() {
    let out = explain(
        &["--from", "shop/a", "--to", "shop/b", "--port", "80"],
        "kind: Pod\nmetadata: {name: [\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("error: failed to parse standard input: document 1 is not valid YAML or JSON"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_file_fails_with_exit_one_naming_the_file() {
    let out = run(
        &[
            "policy",
            "matrix",
            "--from-file",
            "/nonexistent/netdiag-objects.yaml",
            "--port",
            "80",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: failed to read /nonexistent/netdiag-objects.yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn port_zero_and_unknown_protocol_are_usage_errors() {
    let out = explain(
        &["--from", "shop/checkout", "--to", "shop/payments", "--port", "0"],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--port"), "{}", stderr(&out));
    let out = explain(
        &[
            "--from",
            "shop/checkout",
            "--to",
            "shop/payments",
            "--port",
            "80",
            "--protocol",
            "icmp",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected TCP, UDP or SCTP"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_policy_is_a_warning_and_the_answer_still_comes() {
    let broken = format!(
        "{WORLD}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: broken, namespace: default}}\n\
         spec: {{podSelector: {{}}, ingress: [{{from: [{{ipBlock: {{cidr: not-a-cidr}}}}]}}]}}\n"
    );
    let out = explain(
        &[
            "--from",
            "shop/checkout",
            "--to",
            "default/tool",
            "--port",
            "80",
            "-o",
            "json",
        ],
        &broken,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: networkpolicy default/broken: invalid, ignored: spec.ingress[0].from[0].ipBlock.cidr"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["allowed"], true);
}

#[test]
fn matrix_json_has_exactly_port_protocol_and_results() {
    let out = run(
        &[
            "policy",
            "matrix",
            "--from-file",
            "-",
            "--port",
            "8080",
            "-n",
            "shop",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["port", "protocol", "results"]);
    assert_eq!(v["port"], 8080);
    assert_eq!(v["protocol"], "TCP");
    assert_eq!(
        v["results"],
        serde_json::json!([
            {"from": "shop/checkout", "to": "shop/checkout", "allowed": false},
            {"from": "shop/checkout", "to": "shop/payments", "allowed": true},
            {"from": "shop/payments", "to": "shop/checkout", "allowed": false},
            {"from": "shop/payments", "to": "shop/payments", "allowed": false},
        ])
    );
}

#[test]
fn matrix_table_prints_a_grid_of_sources_by_destinations() {
    let out = run(&["policy", "matrix", "--from-file", "-", "--port", "8080"], WORLD);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    // Columns are numbered as the rows, so their width does not depend on the pod names.
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["1", "2", "3"]);
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["1", "default/tool", ".", "X", "X"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["2", "shop/checkout", ".", "X", "."]
    );
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["3", "shop/payments", ".", "X", "X"]
    );
    // Every cell sits under its column number.
    let header_end = lines[1].len();
    assert_eq!(lines[4].len(), header_end, "{text}");
}

#[test]
fn matrix_of_an_unknown_namespace_fails_with_the_not_found_code() {
    let out = run(
        &[
            "policy",
            "matrix",
            "--from-file",
            "-",
            "--port",
            "80",
            "-n",
            "nope",
        ],
        WORLD,
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        stderr(&out).trim(),
        "error: namespace nope not found in the input"
    );
}

#[test]
fn explain_takes_n_for_bare_pod_names_and_yaml_output() {
    let args = [
        "-n", "shop", "--from", "checkout", "--to", "payments", "--port", "8080",
    ];
    let mut with_json = args.to_vec();
    with_json.extend(["-o", "json"]);
    let out = explain(&with_json, WORLD);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let from_json = json(&out);
    assert_eq!(from_json["allowed"], true, "{from_json}");
    let mut with_yaml = args.to_vec();
    with_yaml.extend(["-o", "yaml"]);
    let out = explain(&with_yaml, WORLD);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let from_yaml: serde_json::Value = serde_yaml_ng::from_slice(&out.stdout).expect("stdout is YAML");
    assert_eq!(from_yaml, from_json);
}

#[test]
fn matrix_takes_a_for_every_namespace_and_refuses_it_with_n() {
    let all = run(
        &[
            "policy",
            "matrix",
            "--from-file",
            "-",
            "--port",
            "8080",
            "-A",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    let default = run(
        &[
            "policy",
            "matrix",
            "--from-file",
            "-",
            "--port",
            "8080",
            "-o",
            "json",
        ],
        WORLD,
    );
    assert_eq!(json(&all), json(&default));
    let both = run(
        &[
            "policy",
            "matrix",
            "--from-file",
            "-",
            "--port",
            "8080",
            "-A",
            "-n",
            "shop",
        ],
        WORLD,
    );
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}
