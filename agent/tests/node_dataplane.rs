//! The `nodeDataplane` probe reads what the kernel of a node namespace holds for a Service VIP, in
//! each of kube-proxy's modes: an nftables table shaped as kube-proxy's nftables mode writes it,
//! iptables rules as its iptables mode writes them, and neither (no conclusion, never "no rule").

mod common;

use common::{Agent, Netns, require_root, unique};
use serde_json::{Value, json};

/// kube-proxy's nftables mode for one Service with two endpoints and one without endpoints, as
/// `nft -f` input.
const KUBE_PROXY_NFT: &str = r#"table ip kube-proxy {
    chain reject-chain {
        reject
    }
    map no-endpoint-services {
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = { 10.96.1.3 . tcp . 80 comment "shop/empty:http" : goto reject-chain }
    }
    chain endpoint-AAAA-shop/payments/tcp/http__10.244.2.4/8080 {
        meta l4proto tcp dnat to 10.244.2.4:8080
    }
    chain endpoint-BBBB-shop/payments/tcp/http__10.244.2.5/8080 {
        meta l4proto tcp dnat to 10.244.2.5:8080
    }
    chain service-CCCC-shop/payments/tcp/http {
        numgen random mod 2 vmap { 0 : goto endpoint-AAAA-shop/payments/tcp/http__10.244.2.4/8080, 1 : goto endpoint-BBBB-shop/payments/tcp/http__10.244.2.5/8080 }
    }
    map service-ips {
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = { 10.96.1.1 . tcp . 80 : goto service-CCCC-shop/payments/tcp/http }
    }
    chain services {
        ip daddr . meta l4proto . th dport vmap @service-ips
        ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    }
    chain nat-output {
        type nat hook output priority -100; policy accept;
        jump services
    }
}
"#;

fn rules_for(agent: &Agent, vip: &str) -> Value {
    let results = agent.results(&json!({
        "source": {"kind": "node"},
        "probes": [{"kind": "nodeDataplane", "service": {"ip": vip, "port": 80, "protocol": "tcp"}}]
    }));
    results[0]["serviceRules"].clone()
}

/// A node namespace with kube-proxy's iptables rules for 10.96.1.1:80/TCP → 10.244.2.4:8080.
fn iptables_mode_node() -> Netns {
    let node = Netns::new();
    node.exec(&["iptables", "-t", "nat", "-N", "KUBE-SERVICES"]);
    node.exec(&["iptables", "-t", "nat", "-N", "KUBE-SVC-X"]);
    node.exec(&["iptables", "-t", "nat", "-N", "KUBE-SEP-X"]);
    node.iptables("-t nat -A KUBE-SERVICES -d 10.96.1.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-X");
    node.iptables("-t nat -A KUBE-SVC-X -j KUBE-SEP-X");
    node.iptables("-t nat -A KUBE-SEP-X -p tcp -m tcp -j DNAT --to-destination 10.244.2.4:8080");
    node
}

fn agent_for(node: &Netns) -> Agent {
    Agent::start(&["--node-netns", &node.path()])
}

#[test]
fn kube_proxy_nftables_mode_is_read_from_the_kernel() {
    require_root();
    let node = Netns::new();
    let file = std::env::temp_dir().join(format!("{}.nft", unique("kp")));
    std::fs::write(&file, KUBE_PROXY_NFT).unwrap();
    node.exec(&["nft", "-f", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();
    let agent = agent_for(&node);
    let rules = rules_for(&agent, "10.96.1.1");
    assert_eq!(rules["source"], "nftables", "{rules}");
    assert_eq!(rules["found"], true, "{rules}");
    assert_eq!(
        rules["endpoints"],
        json!(["10.244.2.4:8080", "10.244.2.5:8080"]),
        "{rules}"
    );
    let empty = rules_for(&agent, "10.96.1.3");
    assert_eq!(
        (&empty["found"], &empty["rejects"]),
        (&json!(true), &json!(true)),
        "{empty}"
    );
    let absent = rules_for(&agent, "10.96.9.9");
    assert_eq!(
        (&absent["source"], &absent["found"]),
        (&json!("nftables"), &json!(false)),
        "{absent}"
    );
}

#[test]
fn kube_proxy_iptables_mode_is_read_and_a_node_without_any_mode_concludes_nothing() {
    require_root();
    let bare = Netns::new();
    let rules = rules_for(&agent_for(&bare), "10.96.1.1");
    assert_eq!(rules["found"], false, "{rules}");
    let error = rules["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("KUBE-SERVICES") && error.contains("kube-proxy"),
        "{rules}"
    );

    let node = iptables_mode_node();
    let agent = agent_for(&node);
    let rules = rules_for(&agent, "10.96.1.1");
    assert_eq!(rules["source"], "iptables", "{rules}");
    assert_eq!(rules["endpoints"], json!(["10.244.2.4:8080"]), "{rules}");
    let absent = rules_for(&agent, "10.96.1.2");
    assert_eq!(
        (&absent["found"], &absent["error"]),
        (&json!(false), &Value::Null),
        "{absent}"
    );
}

#[test]
fn a_change_to_the_rules_is_seen_by_the_next_reading() {
    require_root();
    let node = iptables_mode_node();
    let agent = agent_for(&node);
    let endpoints = || rules_for(&agent, "10.96.1.1")["endpoints"].clone();
    assert_eq!(endpoints(), json!(["10.244.2.4:8080"]));
    // Unchanged rules read twice give the same answer (the second may be the kept listing).
    assert_eq!(endpoints(), json!(["10.244.2.4:8080"]));
    node.exec(&["iptables", "-t", "nat", "-N", "KUBE-SEP-Y"]);
    node.iptables("-t nat -A KUBE-SEP-Y -p tcp -m tcp -j DNAT --to-destination 10.244.3.9:8080");
    node.iptables("-t nat -I KUBE-SVC-X -m statistic --mode random --probability 0.5 -j KUBE-SEP-Y");
    assert_eq!(endpoints(), json!(["10.244.3.9:8080", "10.244.2.4:8080"]));
    node.iptables("-t nat -D KUBE-SVC-X -j KUBE-SEP-X");
    assert_eq!(endpoints(), json!(["10.244.3.9:8080"]));

    // The same in nftables mode: a new table replaces the old one's answer at once.
    let file = std::env::temp_dir().join(format!("{}.nft", unique("kp")));
    std::fs::write(&file, KUBE_PROXY_NFT).unwrap();
    node.exec(&["nft", "-f", file.to_str().unwrap()]);
    assert_eq!(endpoints(), json!(["10.244.2.4:8080", "10.244.2.5:8080"]));
    let moved = KUBE_PROXY_NFT.replace("10.244.2.5", "10.244.2.6");
    std::fs::write(&file, format!("delete table ip kube-proxy\n{moved}")).unwrap();
    node.exec(&["nft", "-f", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();
    assert_eq!(endpoints(), json!(["10.244.2.4:8080", "10.244.2.6:8080"]));
}
