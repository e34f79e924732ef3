//! TCP probes run in the namespace they were asked for and tell refused, timeout and the kinds of
//! unreachable apart, against real namespaces, veth links and iptables rules.

mod common;

use common::{Agent, Netns, require_root, veth};
use serde_json::{Value, json};

fn tcp(ip: &str, port: u16, timeout_ms: u64) -> Value {
    json!({"kind": "tcp", "ip": ip, "port": port, "timeoutMs": timeout_ms})
}

/// A client and a server namespace linked by a veth pair on 10.NET.SUBNET.0/24 (NET random),
/// with their addresses and NET.
fn linked_pair(subnet: u8) -> (Netns, Netns, String, u8) {
    let (client, server) = (Netns::new(), Netns::new());
    let net = common::random_byte();
    let server_ip = format!("10.{net}.{subnet}.2");
    veth(
        &client,
        &format!("10.{net}.{subnet}.1/24"),
        &server,
        &format!("{server_ip}/24"),
    );
    (client, server, server_ip, net)
}

#[test]
fn loopback_probe_reaches_the_listener_of_the_namespace_it_runs_in_only() {
    require_root();
    let (a, b) = (Netns::new(), Netns::new());
    let _listener = a.listen("127.0.0.1", 18080);
    let agent = Agent::start(&[]);
    let probe = |ns: &Netns| {
        agent.results(&json!({"source": {"kind": "netns", "path": ns.path()}, "probes": [tcp("127.0.0.1", 18080, 10000)]}))
    };
    assert_eq!(probe(&a)[0]["outcome"]["kind"], "connected");
    assert_eq!(probe(&b)[0]["outcome"]["kind"], "refused");
}

#[test]
fn refused_timeout_admin_prohibited_host_and_network_unreachable_are_told_apart() {
    require_root();
    let (client, server, server_ip, net) = linked_pair(7);
    let _listener = server.listen("0.0.0.0", 8080);
    server.iptables("-A INPUT -p tcp --dport 8081 -j REJECT --reject-with tcp-reset");
    server.iptables("-A INPUT -p tcp --dport 8082 -j DROP");
    server.iptables("-A INPUT -p tcp --dport 8083 -j REJECT --reject-with icmp-admin-prohibited");
    server.iptables("-A INPUT -p tcp --dport 8084 -j REJECT --reject-with icmp-host-unreachable");
    let agent = Agent::start(&[]);
    let results = agent.results(&json!({
        "source": {"kind": "netns", "path": client.path()},
        "probes": [
            tcp(&server_ip, 8080, 10000),
            tcp(&server_ip, 8081, 10000),
            tcp(&server_ip, 8082, 300),
            tcp(&server_ip, 8083, 10000),
            tcp(&server_ip, 8084, 10000),
            // No route: the client only knows its /24.
            tcp(&format!("10.{net}.8.1"), 8080, 2000),
        ]
    }));
    let outcome = |i: usize| &results[i]["outcome"];
    assert_eq!(outcome(0)["kind"], "connected", "{results:?}");
    assert_eq!(outcome(1)["kind"], "refused", "{results:?}");
    assert_eq!(outcome(2)["kind"], "timeout", "{results:?}");
    assert_eq!(outcome(2)["afterMs"], 300);
    assert_eq!(outcome(3)["kind"], "unreachable", "{results:?}");
    assert_eq!(outcome(3)["reason"], "admin-prohibited", "{results:?}");
    assert!(
        outcome(3)["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("from {server_ip}")),
        "{results:?}"
    );
    assert_eq!(outcome(4)["kind"], "unreachable", "{results:?}");
    assert_eq!(outcome(4)["reason"], "host", "{results:?}");
    assert_eq!(outcome(5)["kind"], "unreachable", "{results:?}");
    assert_eq!(outcome(5)["reason"], "network", "{results:?}");
}

#[test]
fn probes_sharing_a_worker_each_find_the_icmp_error_about_their_own_syn() {
    require_root();
    let (client, server, server_ip, _) = linked_pair(9);
    server.iptables("-A INPUT -p tcp --dport 8083 -j REJECT --reject-with icmp-admin-prohibited");
    server.iptables("-A INPUT -p tcp --dport 8084 -j REJECT --reject-with icmp-host-unreachable");
    // Every SYN gets its error: the kernel would otherwise send one per second to the client.
    server.exec(&["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"]);
    // Interleaved, in one request: one probe reading the raw socket reads the others' errors too.
    let probes: Vec<Value> = (0..40)
        .map(|i| tcp(&server_ip, if i % 2 == 0 { 8083 } else { 8084 }, 10000))
        .collect();
    let agent = Agent::start(&[]);
    let results = agent.results(&json!({
        "source": {"kind": "netns", "path": client.path()},
        "probes": probes,
    }));
    for (i, result) in results.iter().enumerate() {
        let reason = if i % 2 == 0 { "admin-prohibited" } else { "host" };
        assert_eq!(result["outcome"]["kind"], "unreachable", "{i}: {result}");
        assert_eq!(result["outcome"]["reason"], reason, "{i}: {result}");
    }
}

#[test]
fn probes_leave_no_time_wait_sockets_behind() {
    require_root();
    let ns = Netns::new();
    let _listener = ns.listen("127.0.0.1", 18081);
    let agent = Agent::start(&[]);
    let probes: Vec<Value> = (0..50).map(|_| tcp("127.0.0.1", 18081, 10000)).collect();
    let results = agent.results(&json!({"source": {"kind": "netns", "path": ns.path()}, "probes": probes}));
    assert!(
        results.iter().all(|r| r["outcome"]["kind"] == "connected"),
        "{results:?}"
    );
    let time_wait = ns.exec(&["ss", "-Htan", "state", "time-wait"]);
    assert_eq!(time_wait.trim(), "", "sockets left in TIME_WAIT");
}

#[test]
fn without_net_raw_an_icmp_rejection_is_host_unreachable_with_the_reason_given() {
    require_root();
    let (client, server, server_ip, _) = linked_pair(7);
    server.iptables("-A INPUT -p tcp --dport 8083 -j REJECT --reject-with icmp-admin-prohibited");
    // Root's capabilities after exec are limited by the bounding set.
    let agent = Agent::start_via(&["setpriv", "--bounding-set", "-net_raw"], &[]);
    let (status, info) = agent.http("GET", "/v1/info", b"");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["capabilities"]["netRaw"], false, "{info}");
    assert_eq!(info["capabilities"]["setns"], true, "{info}");
    let results = agent.results(&json!({"source": {"kind": "netns", "path": client.path()},
        "probes": [tcp(&server_ip, 8083, 2000)]}));
    let outcome = &results[0]["outcome"];
    assert_eq!(outcome["kind"], "unreachable", "{outcome}");
    assert_eq!(outcome["reason"], "host", "{outcome}");
    assert!(
        outcome["detail"].as_str().unwrap().contains("CAP_NET_RAW"),
        "{outcome}"
    );
}

#[test]
fn a_connection_not_established_sends_a_fresh_syn_every_100_ms_and_says_when_the_last_left() {
    require_root();
    let (client, server, server_ip, _) = linked_pair(9);
    let _listener = server.listen("0.0.0.0", 8080);
    server.iptables("-A INPUT -p tcp --syn --dport 8082 -j DROP");
    let agent = Agent::start(&[]);
    let results = agent.results(&json!({
        "source": {"kind": "netns", "path": client.path()},
        "probes": [tcp(&server_ip, 8080, 10000), tcp(&server_ip, 8082, 550)]
    }));
    // Established at once: no beacon.
    assert_eq!(results[0]["outcome"]["kind"], "connected");
    assert!(results[0].get("lastSynUnixUs").is_none(), "{}", results[0]);
    // Dropped for 550 ms: the probe's SYN and one every 100 ms after it, the last after the first.
    assert_eq!(results[1]["outcome"]["kind"], "timeout");
    let started = results[1]["startedUnixUs"].as_u64().unwrap();
    let last = results[1]["lastSynUnixUs"].as_u64().expect("a beacon time");
    assert!(last >= started + 400_000, "{}", results[1]);
    let counters = server.exec(&["iptables", "-L", "INPUT", "-v", "-x", "-n"]);
    let dropped: u64 = counters
        .lines()
        .find(|l| l.contains("dpt:8082"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dropped >= 5, "SYNs dropped: {dropped}\n{counters}");
}
