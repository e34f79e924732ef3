//! Benchmark of the NetworkPolicy evaluator on a synthetic cluster, and its generator.
//!
//! ```text
//! cargo run --release -p kubectl-netdiag --example policy_bench -- --pods 2000 --policies 500 --admin-policies 50
//! cargo run --release -p kubectl-netdiag --example policy_bench -- --pods 2000 --policies 500 --admin-policies 50 --write cluster.yaml
//! time target/release/kubectl-netdiag policy matrix --from-file cluster.yaml --port 80 -o json > /dev/null
//! ```
//!
//! The cluster: `--namespaces` namespaces (labels `team`, `env`), pods spread over them with labels
//! `app`, `tier`, `version`, a pod IP and named containerPorts (`http` 8080, `metrics` 9090, `dns` 53/UDP).
//! Policies cycle through the shapes found in real clusters: default-deny per namespace, allow from
//! the same app, from other namespaces by namespace+pod selector, matchExpressions, named ports,
//! endPort ranges, ipBlock with except, and egress policies. Admin policies cycle through
//! ClusterNetworkPolicy Admin-tier denies, passes and accepts (namespace and pod subjects, port
//! numbers, ranges, named ports, `networks`), Baseline-tier ones, v1alpha1 AdminNetworkPolicies, and
//! one BaselineAdminNetworkPolicy. Deterministic for a given `--seed`.

use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use netdiag_engine::policy::admin::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy};
use netdiag_engine::policy::{AdminObjects, Flow, Peer, PolicyIndex, Protocol};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Number of pods.
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Number of NetworkPolicies.
    #[arg(long, default_value_t = 500)]
    policies: usize,
    /// Number of admin policies (ClusterNetworkPolicy, AdminNetworkPolicy, one BaselineAdminNetworkPolicy).
    #[arg(long, default_value_t = 50)]
    admin_policies: usize,
    /// Number of namespaces.
    #[arg(long, default_value_t = 40)]
    namespaces: usize,
    /// Number of single-flow evaluations to average.
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Repeat index build and matrix this many times and report the fastest (shared machines).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also write the cluster as a YAML List for `policy matrix|explain --from-file`.
    #[arg(long, value_name = "FILE")]
    write: Option<std::path::PathBuf>,
}

/// xorshift64*: deterministic, dependency-free randomness for the generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const APPS: usize = 25;
const TIERS: [&str; 3] = ["web", "api", "db"];

fn namespace_name(i: usize) -> String {
    format!("ns-{i:03}")
}

fn generate(args: &Args) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut rng = Rng(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let namespaces: Vec<Value> = (0..args.namespaces)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_name(i),
                "labels": {"team": format!("team-{}", i % 8), "env": if i % 3 == 0 { "prod" } else { "dev" }}}})
        })
        .collect();
    let pods: Vec<Value> = (0..args.pods)
        .map(|i| {
            let ns = namespace_name(i % args.namespaces);
            let app = format!("app-{}", rng.below(APPS));
            let tier = TIERS[rng.below(TIERS.len())];
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{app}-{i}"), "namespace": ns,
                             "labels": {"app": app, "tier": tier, "version": format!("v{}", rng.below(3))}},
                "spec": {"containers": [{"name": "main", "image": "x", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "metrics", "containerPort": 9090},
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
                "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256)}})
        })
        .collect();
    let policies: Vec<Value> = (0..args.policies)
        .map(|i| {
            let ns_index = i % args.namespaces;
            let ns = namespace_name(ns_index);
            let app = format!("app-{}", rng.below(APPS));
            let other_team = format!("team-{}", rng.below(8));
            let spec = match i / args.namespaces % 8 {
                0 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                1 => json!({"podSelector": {"matchLabels": {"app": app}},
                            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app}}}],
                                         "ports": [{"port": "http"}]}]}),
                2 => json!({"podSelector": {"matchLabels": {"tier": "api"}},
                            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": other_team}},
                                                   "podSelector": {"matchLabels": {"tier": "web"}}}],
                                         "ports": [{"port": 8080}, {"port": 80}]}]}),
                3 => json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
                            "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                                {"key": "tier", "operator": "NotIn", "values": ["web"]},
                                {"key": "version", "operator": "Exists"}]}}],
                                         "ports": [{"port": 5432}, {"port": 80, "endPort": 90}]}]}),
                4 => json!({"podSelector": {"matchLabels": {"app": app}},
                            "ingress": [{"from": [{"ipBlock": {"cidr": "10.64.0.0/16", "except": [format!("10.64.{}.0/24", ns_index % 8)]}}]}]}),
                5 => json!({"podSelector": {"matchLabels": {"tier": "web"}}, "policyTypes": ["Egress"],
                            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}],
                                        "ports": [{"port": 80}, {"port": "http"}]},
                                       {"ports": [{"port": "dns", "protocol": "UDP"}]}]}),
                6 => json!({"podSelector": {"matchLabels": {"app": app}},
                            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "api"}}}]},
                                        {"from": [{"podSelector": {}}], "ports": [{"port": "metrics"}]}]}),
                _ => json!({"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress", "Egress"],
                            "ingress": [{}],
                            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": app}}},
                                               {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}),
            };
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": format!("policy-{i}"), "namespace": ns}, "spec": spec})
        })
        .collect();
    (namespaces, pods, policies)
}

fn ns_is(name: &str) -> Value {
    json!({"matchLabels": {"kubernetes.io/metadata.name": name}})
}

/// Admin policies in the shapes the API documents; priorities spread over 0-1000.
fn generate_admin(args: &Args) -> Vec<Value> {
    let mut rng = Rng(args.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let cnp = |name: String, tier: &str, priority: usize, spec: Value| {
        let mut spec = spec;
        spec["tier"] = tier.into();
        spec["priority"] = (priority % 1001).into();
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
               "metadata": {"name": name}, "spec": spec})
    };
    (0..args.admin_policies)
        .map(|i| {
            let name = format!("admin-{i}");
            let team = json!({"matchLabels": {"team": format!("team-{}", rng.below(8))}});
            let app = json!({"matchLabels": {"app": format!("app-{}", rng.below(APPS))}});
            let ns = namespace_name(rng.below(args.namespaces));
            let priority = i * 17 + 3;
            if i + 1 == args.admin_policies {
                return json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
                    "metadata": {"name": "default"}, "spec": {"subject": {"namespaces": {"matchLabels": {"env": "prod"}}},
                    "ingress": [{"name": "dev-not-to-prod", "action": "Deny", "from": [{"namespaces": {"matchLabels": {"env": "dev"}}}]}]}});
            }
            match i % 6 {
                0 => cnp(name, "Admin", priority, json!({"subject": {"namespaces": team},
                    "ingress": [{"name": "pass-own-namespace", "action": "Pass", "from": [{"namespaces": ns_is(&ns)}]},
                                {"name": "deny-ssh", "action": "Deny", "from": [{"namespaces": {}}],
                                 "protocols": [{"tcp": {"destinationPort": {"range": {"start": 22, "end": 23}}}}]}]})),
                1 => cnp(name, "Admin", priority, json!({"subject": {"pods": {"namespaceSelector": {}, "podSelector": app}},
                    "egress": [{"name": "db", "action": "Accept",
                                "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}}],
                                "protocols": [{"tcp": {"destinationPort": {"number": 5432}}}]},
                               {"name": "no-internet", "action": "Deny", "to": [{"networks": ["0.0.0.0/5", "200.0.0.0/8"]}]}]})),
                2 => cnp(name, "Admin", priority, json!({"subject": {"namespaces": {"matchLabels": {"env": "prod"}}},
                    "ingress": [{"name": "monitoring", "action": "Accept", "from": [{"namespaces": team}],
                                 "protocols": [{"destinationNamedPort": "metrics"}]},
                                {"name": "quarantine", "action": "Deny",
                                 "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"version": "v2"}}}}]}]})),
                3 => cnp(name, "Baseline", priority, json!({"subject": {"namespaces": team},
                    "ingress": [{"name": "same-team", "action": "Accept", "from": [{"namespaces": team}]},
                                {"name": "others", "action": "Deny", "from": [{"namespaces": {}}]}],
                    "egress": [{"name": "dns", "action": "Accept", "to": [{"namespaces": {}}],
                                "protocols": [{"udp": {"destinationPort": {"number": 53}}}]}]})),
                4 => json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
                    "metadata": {"name": name}, "spec": {"priority": priority % 1001, "subject": {"namespaces": ns_is(&ns)},
                    "ingress": [{"name": "web", "action": "Allow", "from": [{"namespaces": {}}],
                                 "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}, {"namedPort": "http"}]},
                                {"name": "rest", "action": "Deny", "from": [{"namespaces": team}],
                                 "ports": [{"portRange": {"protocol": "TCP", "start": 1, "end": 1024}}]}]}}),
                _ => cnp(name, "Admin", priority, json!({"subject": {"namespaces": {}},
                    "egress": [{"name": "to-app", "action": "Pass", "to": [{"pods": {"namespaceSelector": team, "podSelector": app}}]}]})),
            }
        })
        .collect()
}

fn admin_objects(values: Vec<Value>) -> anyhow::Result<AdminObjects> {
    let mut admin = AdminObjects::default();
    for value in values {
        match value["kind"].as_str() {
            Some("ClusterNetworkPolicy") => admin
                .cluster_network_policies
                .push(serde_json::from_value::<ClusterNetworkPolicy>(value)?),
            Some("AdminNetworkPolicy") => admin
                .admin_network_policies
                .push(serde_json::from_value::<AdminNetworkPolicy>(value)?),
            _ => admin
                .baseline_admin_network_policies
                .push(serde_json::from_value::<BaselineAdminNetworkPolicy>(value)?),
        }
    }
    Ok(admin)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (namespaces, pods, policies) = generate(&args);
    let admin = generate_admin(&args);
    if let Some(path) = &args.write {
        let items: Vec<&Value> = namespaces
            .iter()
            .chain(&pods)
            .chain(&policies)
            .chain(&admin)
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        std::fs::write(path, serde_yaml_ng::to_string(&list)?)?;
        println!("wrote {}", path.display());
    }
    let namespaces: Vec<Namespace> = namespaces
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?;
    let pods: Vec<Pod> = pods
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?;
    let policies: Vec<NetworkPolicy> = policies
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?;
    let admin = admin_objects(admin)?;

    // The machine may be shared: repeat and keep the fastest run of each measurement.
    let mut build = Duration::MAX;
    let mut index = None;
    for _ in 0..args.repeat.max(1) {
        let start = Instant::now();
        let built = PolicyIndex::with_admin(&namespaces, &pods, &policies, &admin);
        build = build.min(start.elapsed());
        index = Some(built);
    }
    let index = index.expect("built at least once");
    anyhow::ensure!(
        index.findings().is_empty(),
        "generator produced invalid objects: {:?}",
        index.findings()
    );

    let mut matrix_time = Duration::MAX;
    let mut matrix = index.matrix(80, Protocol::Tcp, &[])?;
    for _ in 0..args.repeat.max(1) {
        let start = Instant::now();
        matrix = index.matrix(80, Protocol::Tcp, &[])?;
        matrix_time = matrix_time.min(start.elapsed());
    }
    let allowed = matrix.entries().filter(|e| e.allowed).count();

    let names: Vec<(String, String)> = index
        .pods()
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .collect();
    let mut rng = Rng(args.seed | 1);
    let flows: Vec<Flow> = (0..args.flows)
        .map(|_| {
            let (from, to) = (&names[rng.below(names.len())], &names[rng.below(names.len())]);
            Flow {
                from: Peer::pod(&from.0, &from.1),
                to: Peer::pod(&to.0, &to.1),
                port: [80, 8080, 9090, 5432][rng.below(4)],
                protocol: Protocol::Tcp,
            }
        })
        .collect();
    let start = Instant::now();
    let mut denied = 0;
    for flow in &flows {
        if !index.evaluate_tiers(flow)?.allowed {
            denied += 1;
        }
    }
    let explain_total = start.elapsed();

    println!(
        "cluster: {} namespaces, {} pods, {} policies, {} admin policies",
        args.namespaces, args.pods, args.policies, args.admin_policies
    );
    println!(
        "index build:        {:9.2} ms  (fastest of {})",
        millis(build),
        args.repeat.max(1)
    );
    println!(
        "matrix 80/TCP:      {:9.2} ms  (fastest of {}; {} pairs, {} allowed)",
        millis(matrix_time),
        args.repeat.max(1),
        args.pods * args.pods,
        allowed
    );
    println!(
        "explain (tiers):    {:9.4} ms per flow  (mean of {}, {} denied)",
        millis(explain_total) / args.flows.max(1) as f64,
        args.flows,
        denied
    );
    println!(
        "explain incl. build:{:9.2} ms  (index build + one evaluate, what one `policy explain` computes)",
        millis(build) + millis(explain_total) / args.flows.max(1) as f64
    );
    Ok(())
}
