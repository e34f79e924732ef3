//! `policy explain|matrix` against an API server: a minimal loopback HTTP server answers the list
//! calls with real Kubernetes list JSON (ClusterNetworkPolicy included; the v1alpha1 admin kinds
//! answer 404 as when their CRDs are not installed), and the binary reaches it through a kubeconfig.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;

/// Serves `GET` for the three collections; `forbidden` paths answer 403 like RBAC would.
fn serve(forbidden: &'static [&'static str]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut content_length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; content_length];
            let _ = reader.read_exact(&mut body);
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let (status, body) = if forbidden.contains(&path) {
                (
                    "403 Forbidden",
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": format!("{} is forbidden: User \"dev\" cannot list resource \"{}\" at the cluster scope",
                        path.rsplit('/').next().unwrap_or(""), path.rsplit('/').next().unwrap_or("")),
                    "reason": "Forbidden", "code": 403}),
                )
            } else {
                match path {
                    _ if namespaced(path).is_some() => namespaced(path).unwrap_or_else(not_found),
                    "/api/v1/namespaces" => ("200 OK", list("NamespaceList", "v1", namespaces())),
                    "/api/v1/pods" => ("200 OK", list("PodList", "v1", pods())),
                    "/apis/networking.k8s.io/v1/networkpolicies" => (
                        "200 OK",
                        list("NetworkPolicyList", "networking.k8s.io/v1", policies()),
                    ),
                    "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies" => (
                        "200 OK",
                        list(
                            "ClusterNetworkPolicyList",
                            "policy.networking.k8s.io/v1alpha2",
                            cluster_network_policies(),
                        ),
                    ),
                    _ => not_found(),
                }
            };
            let body = body.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn not_found() -> (&'static str, serde_json::Value) {
    (
        "404 Not Found",
        serde_json::json!({"kind": "Status", "apiVersion": "v1",
        "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

/// A Namespace by name and the pods and NetworkPolicies of one namespace, as the API server
/// serves them; `None` for another path.
fn namespaced(path: &str) -> Option<(&'static str, serde_json::Value)> {
    let in_namespace = |items: Vec<serde_json::Value>, ns: &str| -> Vec<serde_json::Value> {
        items
            .into_iter()
            .filter(|o| o["metadata"]["namespace"] == ns)
            .collect()
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        ["api", "v1", "namespaces", ns] => {
            match namespaces().into_iter().find(|n| n["metadata"]["name"] == *ns) {
                Some(namespace) => ("200 OK", namespace),
                None => not_found(),
            }
        }
        ["api", "v1", "namespaces", ns, "pods"] => {
            ("200 OK", list("PodList", "v1", in_namespace(pods(), ns)))
        }
        [
            "apis",
            "networking.k8s.io",
            "v1",
            "namespaces",
            ns,
            "networkpolicies",
        ] => (
            "200 OK",
            list(
                "NetworkPolicyList",
                "networking.k8s.io/v1",
                in_namespace(policies(), ns),
            ),
        ),
        _ => return None,
    })
}

fn list(kind: &str, api_version: &str, items: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn namespaces() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}}}),
        serde_json::json!({"metadata": {"name": "ops", "labels": {"kubernetes.io/metadata.name": "ops"}}}),
    ]
}

fn pods() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"metadata": {"name": "checkout", "namespace": "shop", "labels": {"app": "checkout"},
            "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"podIP": "10.0.0.1"}}),
        serde_json::json!({"metadata": {"name": "payments", "namespace": "shop", "labels": {"app": "payments"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"podIP": "10.0.0.2"}}),
        serde_json::json!({"metadata": {"name": "monitor", "namespace": "ops", "labels": {"app": "monitor"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"podIP": "10.0.1.1"}}),
    ]
}

fn policies() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"metadata": {"name": "payments-from-checkout", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "payments"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "checkout"}}}]}]}}),
    ]
}

fn cluster_network_policies() -> Vec<serde_json::Value> {
    vec![serde_json::json!({"metadata": {"name": "shop-not-to-ops"},
        "spec": {"tier": "Admin", "priority": 10,
                 "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}},
                 "egress": [{"name": "deny-to-ops", "action": "Deny",
                             "to": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]}]}})]
}

/// Accepts connections and never answers, like an API server that hangs.
fn serve_silently() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            held.push(stream);
        }
    });
    port
}

/// A kubeconfig for the loopback server, in a file unique to this test process and name.
struct Kubeconfig(PathBuf);

impl Kubeconfig {
    fn new(port: u16, name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("netdiag-policy-live-{}-{name}.yaml", std::process::id()));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n\
             users:\n- name: anon\n  user: {{}}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: anon, namespace: shop}}\n\
             current-context: lab\n"
        );
        std::fs::write(&path, text).unwrap();
        Kubeconfig(path)
    }
}

impl Drop for Kubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(kubeconfig: &Kubeconfig, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-netdiag"))
        .args(["policy"])
        .args(args)
        .arg("--kubeconfig")
        .arg(&kubeconfig.0)
        .env_remove("KUBECONFIG")
        .output()
        .expect("binary runs")
}

#[test]
fn matrix_reads_namespaces_pods_and_policies_from_the_api_server() {
    let kubeconfig = Kubeconfig::new(serve(&[]), "matrix");
    let out = run(
        &kubeconfig,
        &["matrix", "--port", "80", "-n", "shop", "-o", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["results"],
        serde_json::json!([
            {"from": "shop/checkout", "to": "shop/checkout", "allowed": true},
            {"from": "shop/checkout", "to": "shop/payments", "allowed": true},
            {"from": "shop/payments", "to": "shop/checkout", "allowed": true},
            {"from": "shop/payments", "to": "shop/payments", "allowed": false},
        ])
    );
}

#[test]
fn explain_resolves_bare_names_in_the_context_namespace() {
    let kubeconfig = Kubeconfig::new(serve(&[]), "explain");
    let out = run(
        &kubeconfig,
        &[
            "explain",
            "--from",
            "ops/monitor",
            "--to",
            "payments",
            "--port",
            "80",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["to"], "shop/payments");
    assert_eq!(v["allowed"], false);
    assert_eq!(
        v["ingress"]["isolatingPolicies"][0]["name"],
        "payments-from-checkout"
    );
}

#[test]
fn explain_reads_only_the_namespaces_of_its_two_pods() {
    // Every list across namespaces is refused: explain never asks for one.
    let kubeconfig = Kubeconfig::new(
        serve(&[
            "/api/v1/namespaces",
            "/api/v1/pods",
            "/apis/networking.k8s.io/v1/networkpolicies",
        ]),
        "explain-scoped",
    );
    let out = run(
        &kubeconfig,
        &[
            "explain", "--from", "checkout", "--to", "payments", "--port", "80", "-o", "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], true);
    // A matrix of one namespace reads that namespace only.
    let out = run(&kubeconfig, &["matrix", "--port", "80", "-n", "shop"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn forbidden_list_is_an_error_naming_the_resource() {
    let kubeconfig = Kubeconfig::new(
        serve(&["/apis/networking.k8s.io/v1/networkpolicies"]),
        "forbidden",
    );
    let out = run(&kubeconfig, &["matrix", "--port", "80"]);
    assert_eq!(out.status.code(), Some(7), "the forbidden code of every command");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: networkpolicies is forbidden: User \"dev\" cannot list"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn explain_names_the_cluster_network_policy_rule_that_denies_and_who_can_change_it() {
    let kubeconfig = Kubeconfig::new(serve(&[]), "admin");
    let out = run(
        &kubeconfig,
        &[
            "explain",
            "--from",
            "checkout",
            "--to",
            "ops/monitor",
            "--port",
            "80",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["needsClusterAdmin"], true);
    assert_eq!(v["egress"]["decidedBy"], "Admin");
    assert_eq!(v["egress"]["rule"]["policy"]["name"], "shop-not-to-ops");
    assert_eq!(v["egress"]["rule"]["name"], "deny-to-ops");
    let out = run(
        &kubeconfig,
        &[
            "explain",
            "--from",
            "checkout",
            "--to",
            "ops/monitor",
            "--port",
            "80",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cluster admin"), "{text}");
    assert!(
        text.contains("ClusterNetworkPolicy shop-not-to-ops egress[0]"),
        "{text}"
    );
}

#[test]
fn forbidden_admin_policy_list_is_an_error_naming_the_resource() {
    let kubeconfig = Kubeconfig::new(
        serve(&["/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies"]),
        "admin-forbidden",
    );
    let out = run(&kubeconfig, &["matrix", "--port", "80"]);
    assert_eq!(out.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: clusternetworkpolicies is forbidden: "),
        "{stderr}"
    );
}

#[test]
fn an_api_server_that_never_answers_is_an_error_not_a_hang() {
    let kubeconfig = Kubeconfig::new(serve_silently(), "silent");
    let out = run(
        &kubeconfig,
        &["matrix", "--port", "80", "--request-timeout", "1s"],
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "the unreachable code of every command: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: Unable to connect to the server: "),
        "{stderr}"
    );
}
