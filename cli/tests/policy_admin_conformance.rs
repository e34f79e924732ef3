//! Conformance of the admin tiers: every probe of every case in `tests/fixtures/admin/` (the
//! upstream network-policy-api conformance tests for ClusterNetworkPolicy, AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy, transcribed) against `evaluate_tiers`, the matrix, and the built
//! binary. The fixture format and the world the cases run in are described in the fixtures' README.md.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use netdiag_engine::policy::{AdminObjects, Flow, PolicyIndex, Protocol};
use serde::Deserialize;
use serde_json::{Value, json};

const HOUSES: [&str; 4] = ["gryffindor", "slytherin", "hufflepuff", "ravenclaw"];
const STUDENTS: [&str; 4] = ["harry-potter", "draco-malfoy", "cedric-diggory", "luna-lovegood"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    #[serde(default)]
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Free text for readers of the fixture; not checked.
    #[serde(default, rename = "note")]
    _note: Option<String>,
    policies: Vec<Value>,
    probes: Vec<Probe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    from: String,
    to: String,
    port: u16,
    protocol: String,
    reachable: bool,
}

fn load_cases() -> Vec<(String, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admin");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures directory is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).expect("fixture is readable");
            let case: Case = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|err| panic!("fixture {file} is malformed: {err}"));
            (file, case)
        })
        .collect()
}

fn namespace(house: &str) -> String {
    format!("network-policy-conformance-{house}")
}

/// `HOUSE/POD` in a fixture is the pod in namespace `network-policy-conformance-HOUSE`.
fn pod_ref(text: &str) -> String {
    let (house, pod) = text.split_once('/').expect("probe end is HOUSE/POD");
    format!("{}/{pod}", namespace(house))
}

/// The upstream base manifests: one namespace per house, two pods each (a StatefulSet of two),
/// labelled `conformance-house`, declaring `web` 80/TCP and `dns` 53/UDP; pod IPs 10.244.H.10/11.
fn world(case: &Case) -> (Vec<Namespace>, Vec<Pod>) {
    let mut namespaces = Vec::new();
    let mut pods = Vec::new();
    for (h, (house, student)) in HOUSES.iter().zip(STUDENTS).enumerate() {
        let mut labels = BTreeMap::from([("conformance-house".to_string(), house.to_string())]);
        if let Some(replaced) = case.namespace_labels.get(*house) {
            labels = replaced.clone();
        }
        labels.insert("kubernetes.io/metadata.name".into(), namespace(house));
        namespaces.push(
            serde_json::from_value(json!({"metadata": {"name": namespace(house), "labels": labels}}))
                .unwrap(),
        );
        for replica in 0..2 {
            pods.push(
                serde_json::from_value(json!({
                    "metadata": {"name": format!("{student}-{replica}"), "namespace": namespace(house),
                                 "labels": {"conformance-house": house}},
                    "spec": {"containers": [
                        {"name": format!("{student}-client")},
                        {"name": format!("{student}-80"), "ports": [{"containerPort": 80, "protocol": "TCP", "name": "web"}]},
                        {"name": format!("{student}-8080")},
                        {"name": format!("{student}-5353")},
                        {"name": format!("{student}-53"), "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]},
                        {"name": format!("{student}-9003")},
                        {"name": format!("{student}-9005")}]},
                    "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", h + 1, 10 + replica)},
                }))
                .unwrap(),
            );
        }
    }
    (namespaces, pods)
}

fn policies(file: &str, case: &Case) -> (Vec<NetworkPolicy>, AdminObjects) {
    let mut network_policies = Vec::new();
    let mut admin = AdminObjects::default();
    for policy in &case.policies {
        let value = policy.clone();
        match policy["kind"].as_str() {
            Some("NetworkPolicy") => network_policies.push(serde_json::from_value(value).unwrap()),
            Some("ClusterNetworkPolicy") => admin
                .cluster_network_policies
                .push(serde_json::from_value(value).unwrap()),
            Some("AdminNetworkPolicy") => admin
                .admin_network_policies
                .push(serde_json::from_value(value).unwrap()),
            Some("BaselineAdminNetworkPolicy") => admin
                .baseline_admin_network_policies
                .push(serde_json::from_value(value).unwrap()),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
    }
    (network_policies, admin)
}

fn index(file: &str, case: &Case) -> PolicyIndex {
    let (namespaces, pods) = world(case);
    let (network_policies, admin) = policies(file, case);
    let index = PolicyIndex::with_admin(&namespaces, &pods, &network_policies, &admin);
    assert!(
        index.findings().is_empty(),
        "{file}: unexpected findings {:?}",
        index.findings()
    );
    index
}

#[test]
fn fixtures_hold_at_least_thirty_cases_each_naming_its_upstream_test() {
    let cases = load_cases();
    assert!(cases.len() >= 30, "only {} admin conformance cases", cases.len());
    let kinds: BTreeSet<String> = cases
        .iter()
        .flat_map(|(_, case)| {
            case.policies
                .iter()
                .map(|p| p["kind"].as_str().unwrap().to_string())
        })
        .collect();
    for kind in [
        "ClusterNetworkPolicy",
        "AdminNetworkPolicy",
        "BaselineAdminNetworkPolicy",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(kind), "no case uses {kind}");
    }
    for (file, case) in &cases {
        assert!(
            case.source.starts_with("upstream network-policy-api ")
                && case.source.contains("conformance/tests/"),
            "{file}: source must name the upstream conformance test"
        );
        assert!(
            file.contains(&case.name),
            "{file}: file name should contain the case name {}",
            case.name
        );
        assert!(!case.probes.is_empty(), "{file}: no probes");
    }
}

#[test]
fn evaluate_tiers_and_matrix_agree_with_every_upstream_probe() {
    let mut failures = Vec::new();
    let mut probes = 0;
    for (file, case) in load_cases() {
        let index = index(&file, &case);
        for probe in &case.probes {
            probes += 1;
            let protocol: Protocol = probe.protocol.parse().unwrap();
            let (from, to) = (pod_ref(&probe.from), pod_ref(&probe.to));
            let flow = Flow {
                from: from.parse().unwrap(),
                to: to.parse().unwrap(),
                port: probe.port,
                protocol,
            };
            let verdict = index.evaluate_tiers(&flow).expect("flow evaluates");
            if verdict.allowed != probe.reachable {
                failures.push(format!(
                    "{file}: {from} -> {to} {}/{}: expected {}, evaluator says {}",
                    probe.port,
                    probe.protocol,
                    probe.reachable,
                    verdict.explain()
                ));
            }
            let matrix = index.matrix(probe.port, protocol, &[]).unwrap();
            let position = |pod: &str| matrix.pods.iter().position(|p| p == pod).unwrap();
            if matrix.allowed(position(&from), position(&to)) != probe.reachable {
                failures.push(format!(
                    "{file}: {from} -> {to} {}/{}: matrix disagrees",
                    probe.port, probe.protocol
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(probes > 150, "only {probes} probes checked");
}

/// The case's objects as one YAML List, as `kubectl get -o yaml` would print them.
fn as_yaml_list(file: &str, case: &Case) -> String {
    let (namespaces, pods) = world(case);
    let mut items: Vec<Value> = Vec::new();
    for ns in namespaces {
        let mut value = serde_json::to_value(&ns).unwrap();
        value["apiVersion"] = "v1".into();
        value["kind"] = "Namespace".into();
        items.push(value);
    }
    for pod in pods {
        let mut value = serde_json::to_value(&pod).unwrap();
        value["apiVersion"] = "v1".into();
        value["kind"] = "Pod".into();
        items.push(value);
    }
    assert!(
        case.policies.iter().all(|p| p["apiVersion"].is_string()),
        "{file}: policies need apiVersion"
    );
    items.extend(case.policies.iter().cloned());
    serde_yaml_ng::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap()
}

#[test]
fn matrix_command_agrees_with_every_upstream_probe() {
    let mut failures = Vec::new();
    for (file, case) in load_cases() {
        let questions: BTreeSet<(u16, String)> =
            case.probes.iter().map(|p| (p.port, p.protocol.clone())).collect();
        let input = as_yaml_list(&file, &case);
        for (port, protocol) in questions {
            let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-netdiag"))
                .args(["policy", "matrix", "--from-file", "-", "-o", "json"])
                .args(["--port", &port.to_string(), "--protocol", &protocol])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("binary starts");
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{file}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                output.stderr.is_empty(),
                "{file}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let json: Value = serde_json::from_slice(&output.stdout).expect("json output");
            let cells: BTreeMap<(String, String), bool> = json["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let key = (
                        r["from"].as_str().unwrap().to_string(),
                        r["to"].as_str().unwrap().to_string(),
                    );
                    (key, r["allowed"].as_bool().unwrap())
                })
                .collect();
            for probe in case
                .probes
                .iter()
                .filter(|p| p.port == port && p.protocol == protocol)
            {
                let key = (pod_ref(&probe.from), pod_ref(&probe.to));
                if cells[&key] != probe.reachable {
                    failures.push(format!(
                        "{file}: {} -> {} {port}/{protocol}: command says {}",
                        key.0, key.1, cells[&key]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
