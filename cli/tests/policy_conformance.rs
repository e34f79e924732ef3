//! Conformance: every probe of every case in `tests/fixtures/netpol/` (the upstream Kubernetes
//! NetworkPolicy e2e suite transcribed, plus cases from the API reference) against the evaluator,
//! the matrix, and the built binary. The fixture format is described in the fixtures' README.md.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::{Container, ContainerPort, Namespace, Pod, PodIP, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use netdiag_engine::policy::{Flow, Peer, PolicyIndex, Protocol};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    pods: Vec<String>,
    server_ports: Vec<u16>,
    server_protocols: Vec<String>,
    port: u16,
    protocol: String,
    ignore_loopback: bool,
    #[serde(default)]
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    extra_container_ports: BTreeMap<String, Vec<ContainerPort>>,
    /// Free text for readers of the fixture (why an expectation is what it is); not checked.
    #[serde(default, rename = "note")]
    _note: Option<String>,
    policies: Vec<NetworkPolicy>,
    expectation: Vec<String>,
    expected: String,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netpol")
}

fn load_cases() -> Vec<(String, Case)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
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

/// The upstream model's pod IP scheme used by the fixtures: 10.244.N.M with x=1,y=2,z=3 and a=1,b=2,c=3.
fn pod_ip(pod: &str) -> String {
    let (ns, name) = pod.split_once('/').unwrap();
    let n = "xyz".find(ns).expect("namespace is x, y or z") + 1;
    let m = "abc".find(name).expect("pod is a, b or c") + 1;
    format!("10.244.{n}.{m}")
}

/// Namespaces x, y, z and the case's pods, built as upstream's model builds them.
fn objects(case: &Case) -> (Vec<Namespace>, Vec<Pod>) {
    let namespaces = ["x", "y", "z"]
        .iter()
        .map(|ns| {
            let mut labels = BTreeMap::from([
                ("ns".to_string(), ns.to_string()),
                ("kubernetes.io/metadata.name".to_string(), ns.to_string()),
            ]);
            labels.extend(case.namespace_labels.get(*ns).cloned().unwrap_or_default());
            Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            }
        })
        .collect();
    let pods = case
        .pods
        .iter()
        .map(|pod| {
            let (ns, name) = pod.split_once('/').unwrap();
            let labels = case
                .pod_labels
                .get(pod)
                .cloned()
                .unwrap_or_else(|| BTreeMap::from([("pod".to_string(), name.to_string())]));
            let mut containers = Vec::new();
            for port in &case.server_ports {
                for protocol in &case.server_protocols {
                    let lower = protocol.to_lowercase();
                    containers.push(Container {
                        name: format!("cont-{port}-{lower}"),
                        ports: Some(vec![ContainerPort {
                            container_port: i32::from(*port),
                            name: Some(format!("serve-{port}-{lower}")),
                            protocol: Some(protocol.clone()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    });
                }
            }
            if let Some(extra) = case.extra_container_ports.get(pod) {
                containers.push(Container {
                    name: "extra".to_string(),
                    ports: Some(extra.clone()),
                    ..Default::default()
                });
            }
            let ip = pod_ip(pod);
            Pod {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers,
                    ..Default::default()
                }),
                status: Some(PodStatus {
                    pod_ip: Some(ip.clone()),
                    pod_ips: Some(vec![PodIP { ip }]),
                    phase: Some("Running".to_string()),
                    ..Default::default()
                }),
            }
        })
        .collect();
    (namespaces, pods)
}

/// The expected grid: rows are sources, columns destinations; `.` reachable, `X` not.
fn expected_table(file: &str, case: &Case) -> BTreeMap<(String, String), bool> {
    let mut lines = case.expected.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .expect("grid has a header")
        .split_whitespace()
        .skip(1)
        .collect();
    assert_eq!(
        header, case.pods,
        "{file}: grid columns must list the case's pods in order"
    );
    let mut table = BTreeMap::new();
    let mut rows = Vec::new();
    for line in lines {
        let mut cells = line.split_whitespace();
        let from = cells.next().unwrap().to_string();
        let marks: Vec<&str> = cells.collect();
        assert_eq!(
            marks.len(),
            header.len(),
            "{file}: row {from} has the wrong number of cells"
        );
        for (to, mark) in header.iter().zip(marks) {
            let reachable = match mark {
                "." => true,
                "X" => false,
                other => panic!("{file}: unexpected cell {other:?}"),
            };
            table.insert((from.clone(), to.to_string()), reachable);
        }
        rows.push(from);
    }
    assert_eq!(
        rows, case.pods,
        "{file}: grid rows must list the case's pods in order"
    );
    table
}

/// Replays the transcribed upstream `Reachability` calls (`NewReachability`, `ExpectPeer`,
/// `ExpectAllIngress`, `ExpectAllEgress`, `Expect`) over the case's pods.
fn replay_expectation(file: &str, case: &Case) -> BTreeMap<(String, String), bool> {
    let matches = |pattern: &str, pod: &str| {
        let (pns, pname) = pattern.split_once('/').unwrap();
        let (ns, name) = pod.split_once('/').unwrap();
        (pns == "*" || pns == ns) && (pname == "*" || pname == name)
    };
    let mut table = BTreeMap::new();
    for step in &case.expectation {
        let (call, rest) = step
            .split_once('(')
            .unwrap_or_else(|| panic!("{file}: bad step {step:?}"));
        let args: Vec<&str> = rest.trim_end_matches(')').split(',').map(str::trim).collect();
        let value = |text: &str| match text {
            "true" => true,
            "false" => false,
            other => panic!("{file}: bad boolean {other:?} in {step:?}"),
        };
        for from in &case.pods {
            for to in &case.pods {
                let hit = match (call, args.as_slice()) {
                    ("NewReachability", [_, v]) => Some(value(v)),
                    ("ExpectPeer", [f, t, v]) => (matches(f, from) && matches(t, to)).then(|| value(v)),
                    ("ExpectAllIngress", [p, v]) => (p == to).then(|| value(v)),
                    ("ExpectAllEgress", [p, v]) => (p == from).then(|| value(v)),
                    ("Expect", [f, t, v]) => (f == from && t == to).then(|| value(v)),
                    _ => panic!("{file}: unknown step {step:?}"),
                };
                if let Some(v) = hit {
                    table.insert((from.clone(), to.clone()), v);
                }
            }
        }
    }
    table
}

fn peer(pod: &str) -> Peer {
    pod.parse().expect("pod string is NS/NAME")
}

#[test]
fn fixtures_hold_at_least_forty_cases_whose_grids_follow_their_upstream_steps() {
    let cases = load_cases();
    assert!(cases.len() >= 40, "only {} conformance cases", cases.len());
    for (file, case) in &cases {
        assert!(
            case.source.starts_with("upstream e2e") || case.source.starts_with("API reference"),
            "{file}: source must say where the expectation comes from"
        );
        assert!(
            !case.expectation.is_empty(),
            "{file}: expectation steps are missing"
        );
        assert!(
            file.contains(&case.name),
            "{file}: file name should contain the case name {}",
            case.name
        );
        assert_eq!(
            replay_expectation(file, case),
            expected_table(file, case),
            "{file}: the grid must be what the transcribed upstream Reachability calls produce"
        );
    }
}

#[test]
fn evaluator_and_matrix_agree_with_every_upstream_probe() {
    let mut failures = Vec::new();
    let mut probes = 0;
    for (file, case) in load_cases() {
        let (namespaces, pods) = objects(&case);
        let index = PolicyIndex::new(&namespaces, &pods, &case.policies);
        assert!(
            index.findings().is_empty(),
            "{file}: unexpected findings {:?}",
            index.findings()
        );
        let protocol: Protocol = case.protocol.parse().expect("protocol");
        let expected = expected_table(&file, &case);
        let matrix = index.matrix(case.port, protocol, &[]).expect("matrix");
        let position = |pod: &str| matrix.pods.iter().position(|p| p == pod).expect("pod in matrix");
        for ((from, to), reachable) in &expected {
            if case.ignore_loopback && from == to {
                continue;
            }
            probes += 1;
            let flow = Flow {
                from: peer(from),
                to: peer(to),
                port: case.port,
                protocol,
            };
            let verdict = index.evaluate(&flow).expect("flow evaluates");
            if verdict.allowed != *reachable {
                failures.push(format!(
                    "{file}: {from} -> {to} {}/{}: expected {}, evaluator says {}",
                    case.port,
                    case.protocol,
                    reachable,
                    verdict.explain()
                ));
            }
            let cell = matrix.allowed(position(from), position(to));
            if cell != *reachable {
                failures.push(format!(
                    "{file}: {from} -> {to}: expected {reachable}, matrix says {cell}"
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
    assert!(probes > 500, "only {probes} probes checked");
}

/// The case's objects as one YAML List, as `kubectl get -o yaml` would print them.
fn as_yaml_list(case: &Case) -> String {
    let (namespaces, pods) = objects(case);
    let mut items: Vec<serde_json::Value> = Vec::new();
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
    for policy in &case.policies {
        let mut value = serde_json::to_value(policy).unwrap();
        value["apiVersion"] = "networking.k8s.io/v1".into();
        value["kind"] = "NetworkPolicy".into();
        items.push(value);
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    serde_yaml_ng::to_string(&list).unwrap()
}

#[test]
fn matrix_command_agrees_with_every_upstream_probe() {
    let mut failures = Vec::new();
    for (file, case) in load_cases() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-netdiag"))
            .args(["policy", "matrix", "--from-file", "-", "-o", "json"])
            .args(["--port", &case.port.to_string(), "--protocol", &case.protocol])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(as_yaml_list(&case).as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{file}: exit {:?}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json output");
        assert_eq!(json["port"], case.port, "{file}");
        assert_eq!(json["protocol"], case.protocol.as_str(), "{file}");
        let expected = expected_table(&file, &case);
        let results = json["results"].as_array().expect("results array");
        assert_eq!(
            results.len(),
            case.pods.len() * case.pods.len(),
            "{file}: one result per pair"
        );
        for result in results {
            let from = result["from"].as_str().unwrap().to_string();
            let to = result["to"].as_str().unwrap().to_string();
            if case.ignore_loopback && from == to {
                continue;
            }
            let allowed = result["allowed"].as_bool().unwrap();
            if expected[&(from.clone(), to.clone())] != allowed {
                failures.push(format!("{file}: {from} -> {to}: command says {allowed}"));
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
