//! The lab on the real control plane, where it differs from the stand-in: the agent runs as
//! `deploy/` ships it (exactly the DaemonSet's capabilities, no_new_privs, its projected tokens at
//! the standard paths, its pod made by the DaemonSet controller), and `pods/portforward` goes
//! through the real kube-apiserver to the lab kubelet's upstream streaming server, for kubectl's
//! SPDY as well as the plugin's WebSocket.
//!
//! Needs root and real kubectl; fails otherwise. Builds the real components first if the cache
//! has none.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::checklab::{CheckLab, check_json, one_lab_at_a_time, scenario, show};
use common::{kubectl, require_root};
use k8s_openapi::api::apps::v1::DaemonSet;
use netdiag_lab::state::LabInfo;

fn real_lab(file: &str) -> CheckLab {
    CheckLab::up_with(&scenario(file), &["--control-plane", "real"])
}

fn lab_info(lab: &CheckLab) -> LabInfo {
    let text = std::fs::read_to_string(lab.state().join("lab.json")).expect("lab.json");
    serde_json::from_str(&text).expect("lab.json parses")
}

/// The agent DaemonSet as `deploy/daemonset.yaml` ships it.
fn shipped_daemonset() -> DaemonSet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/daemonset.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("daemonset.yaml")).expect("a DaemonSet")
}

/// Linux capability numbers (include/uapi/linux/capability.h) of the names a manifest uses.
fn cap_number(name: &str) -> u32 {
    match name {
        "CHOWN" => 0,
        "DAC_OVERRIDE" => 1,
        "FOWNER" => 3,
        "FSETID" => 4,
        "KILL" => 5,
        "SETGID" => 6,
        "SETUID" => 7,
        "SETPCAP" => 8,
        "NET_BIND_SERVICE" => 10,
        "NET_ADMIN" => 12,
        "NET_RAW" => 13,
        "SYS_CHROOT" => 18,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "MKNOD" => 27,
        "AUDIT_WRITE" => 29,
        "SETFCAP" => 31,
        other => panic!("capability {other} is not in this test's table"),
    }
}

/// A `/proc/PID/status` line's value.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
fn agents_run_as_the_daemonset_ships_them() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = real_lab("healthy.yaml");
    let info = lab_info(&lab);
    let ds = shipped_daemonset();
    let container = &ds.spec.unwrap().template.spec.unwrap().containers[0];
    let security = container.security_context.clone().unwrap();
    let granted: BTreeSet<String> = netdiag_lab::cluster::kubelet::granted_caps(&security);
    let expected_mask: u64 = granted.iter().map(|c| 1u64 << cap_number(c)).sum();

    assert_eq!(info.agents.len(), info.nodes.len(), "one agent per node");
    for agent in &info.agents {
        // Named by the DaemonSet controller, not by the lab.
        let name = agent
            .pod
            .strip_prefix("netdiag/netdiag-agent-")
            .expect("an agent pod");
        assert!(
            !info.nodes.iter().any(|n| n.name == name),
            "{} was named by the lab",
            agent.pod
        );
        let bounding = u64::from_str_radix(&status_field(agent.pid, "CapBnd"), 16).unwrap();
        assert_eq!(bounding, expected_mask, "{}: bounding set", agent.pod);
        let effective = u64::from_str_radix(&status_field(agent.pid, "CapEff"), 16).unwrap();
        assert_eq!(effective, expected_mask, "{}: effective set", agent.pod);
        assert_eq!(
            status_field(agent.pid, "NoNewPrivs"),
            if security.allow_privilege_escalation == Some(false) {
                "1"
            } else {
                "0"
            }
        );
        // The projected token and CA, seen at the standard path from inside the agent's mounts
        // (`/var/run` is a link to `/run`, which would resolve outside them through /proc).
        let root = format!("/proc/{}/root/run/secrets", agent.pid);
        let token = std::fs::read_to_string(format!("{root}/kubernetes.io/serviceaccount/token")).unwrap();
        assert_eq!(token.split('.').count(), 3, "a JWT");
        let ca = std::fs::read_to_string(format!("{root}/kubernetes.io/serviceaccount/ca.crt")).unwrap();
        assert!(ca.contains("BEGIN CERTIFICATE"));
        let peer = std::fs::read_to_string(format!("{root}/netdiag/token")).unwrap();
        assert_ne!(peer, token, "the netdiag-audience token is a token of its own");
    }
}

#[test]
fn kubectl_port_forward_reaches_a_pod_through_the_real_api_server() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = real_lab("healthy.yaml");
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(lab.state().join("admin.kubeconfig"))
        .args(["port-forward", "-n", "shop", "pod/payments-0", ":8080"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    // Kept open to the end: kubectl writes a line per connection, and a closed pipe ends it.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("kubectl port-forward printed {line:?}"));
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"hello\n").unwrap();
    let mut got = [0u8; 64];
    let n = conn.read(&mut got).unwrap();
    let _ = child.kill();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    // The pod app answers each connection with its own name.
    assert!(
        String::from_utf8_lossy(&got[..n]).starts_with("shop/payments-0"),
        "{:?}\n{}",
        String::from_utf8_lossy(&got[..n]),
        show(&out)
    );
}

/// `kubectl --kubeconfig ADMIN ARGS` with `stdin`, and its output.
fn admin_kubectl(lab: &CheckLab, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(lab.state().join("admin.kubeconfig"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Waits (up to a minute) until `kubectl get ARGS -o json` satisfies `done`; returns that JSON.
fn wait_for(
    lab: &CheckLab,
    args: &[&str],
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..120 {
        let mut get = vec!["get"];
        get.extend(args);
        get.extend(["-o", "json"]);
        let out = admin_kubectl(lab, &get, "");
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if done(&v) {
                return v;
            }
        }
        last = show(&out);
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{what} never happened; last kubectl get:\n{last}");
}

fn running_with_ip(pod: &serde_json::Value) -> bool {
    pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()
}

#[test]
fn the_lab_kubelet_runs_pods_created_after_up_and_stops_deleted_ones() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = real_lab("healthy.yaml");
    let pod = r#"{"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "shop", "name": "late-0", "labels": {"app": "late"}},
        "spec": {"nodeName": "node-b", "containers": [{"name": "app", "image": "late:1",
                 "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]}]}}"#;
    let daemonset = r#"{"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"namespace": "shop", "name": "late-ds"},
        "spec": {"selector": {"matchLabels": {"app": "late-ds"}},
                 "template": {"metadata": {"labels": {"app": "late-ds"}},
                              "spec": {"containers": [{"name": "app", "image": "late-ds:1",
                                       "ports": [{"containerPort": 7070, "protocol": "TCP"}]}]}}}}"#;
    for object in [pod, daemonset] {
        let out = admin_kubectl(&lab, &["apply", "-f", "-"], object);
        assert!(out.status.success(), "{}", show(&out));
    }
    let info = lab_info(&lab);
    let late = wait_for(
        &lab,
        &["pod", "-n", "shop", "late-0"],
        "late-0 Running",
        running_with_ip,
    );
    let node_b = info.nodes.iter().find(|n| n.name == "node-b").unwrap();
    assert_eq!(
        late["status"]["hostIP"].as_str(),
        Some(node_b.ip.as_str()),
        "{late}"
    );
    let late_ip = late["status"]["podIP"].as_str().unwrap().to_string();
    let ds_pods = wait_for(
        &lab,
        &["pods", "-n", "shop", "-l", "app=late-ds"],
        "a DaemonSet pod Running on every node",
        |v| {
            let items = v["items"].as_array().unwrap();
            items.len() == info.nodes.len() && items.iter().all(running_with_ip)
        },
    );

    // Reachable by a check, as a destination and as a source.
    let out = lab.netdiag(&check_json("shop/checkout", "pod/late-0.shop:9090"));
    let report = common::checklab::json(&out);
    assert_eq!(report["verdict"], "reachable", "{}", show(&out));
    let out = lab.netdiag(&check_json("shop/late-0", "svc/payments.shop:80"));
    let report = common::checklab::json(&out);
    assert_eq!(report["verdict"], "reachable", "{}", show(&out));
    for ds_pod in ds_pods["items"].as_array().unwrap() {
        let name = ds_pod["metadata"]["name"].as_str().unwrap();
        let out = lab.netdiag(&check_json("shop/checkout", &format!("pod/{name}.shop:7070")));
        assert_eq!(
            common::checklab::json(&out)["verdict"],
            "reachable",
            "{}",
            show(&out)
        );
    }

    // Deleted: the kubelet stops it and confirms the deletion, so the API forgets it.
    let out = admin_kubectl(
        &lab,
        &["delete", "pod", "-n", "shop", "late-0", "--wait=false"],
        "",
    );
    assert!(out.status.success(), "{}", show(&out));
    wait_for(
        &lab,
        &["pods", "-n", "shop", "--field-selector", "metadata.name=late-0"],
        "late-0 gone",
        |v| v["items"].as_array().is_some_and(|i| i.is_empty()),
    );
    // Its address no longer answers.
    let out = lab.netdiag(&check_json("shop/checkout", &format!("{late_ip}:9090")));
    assert_eq!(
        common::checklab::json(&out)["verdict"],
        "unreachable",
        "{}",
        show(&out)
    );
}
