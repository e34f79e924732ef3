//! A request is answered as soon as each of its probes has its answer, against the real binary:
//! connections refused, unreachable or without a route, and the witnesses riding with them (the
//! path MTU toward the same targets, the node's rules), never hold it for the probes' timeout.
//! The probes ask for the longest timeout a request may give and the test waits half of it, so
//! a request held for its timeout fails the test instead of slowing it. A dropped connection
//! still gets its witness's repeated SYNs.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Agent, Netns, random_byte, require_root, veth};
use serde_json::{Value, json};

/// The longest `timeoutMs` a probe may ask for.
const TIMEOUT_MS: u64 = 30_000;
/// How long the test waits for an answer: half the probes' timeout, hundreds of times what an
/// answered request takes, so only a request held for its timeout misses it.
const PATIENCE: Duration = Duration::from_secs(15);

/// A client and a server namespace linked on 10.NET.SUBNET.0/24 (NET random), with the server's
/// address and NET.
fn linked_pair(subnet: u8) -> (Netns, Netns, String, u8) {
    let (client, server) = (Netns::new(), Netns::new());
    let net = random_byte();
    let server_ip = format!("10.{net}.{subnet}.2");
    veth(
        &client,
        &format!("10.{net}.{subnet}.1/24"),
        &server,
        &format!("{server_ip}/24"),
    );
    (client, server, server_ip, net)
}

/// POSTs `request` to the agent and reads its answer, waiting at most `patience`: `None` when
/// the agent had not answered by then.
fn answer_within(agent: &Agent, request: &Value, patience: Duration) -> Option<(u16, Value)> {
    let body = request.to_string();
    let mut stream = TcpStream::connect(agent.addr).expect("connect to agent");
    stream.set_read_timeout(Some(patience)).unwrap();
    write!(
        stream,
        "POST /v1/probe HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
        other => other.expect("read the agent's answer"),
    };
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an http response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    Some((
        status.expect("a status code"),
        serde_json::from_str(body).expect("a json body"),
    ))
}

fn tcp_and_path_mtu(ip: &str, port: u16, timeout_ms: u64) -> [Value; 2] {
    [
        json!({"kind": "tcp", "ip": ip, "port": port, "timeoutMs": timeout_ms}),
        json!({"kind": "pathMtu", "ip": ip, "port": port, "timeoutMs": timeout_ms}),
    ]
}

#[test]
fn a_request_whose_every_connection_is_refused_or_unreachable_ends_without_waiting_for_its_timeout() {
    require_root();
    let (client, server, server_ip, net) = linked_pair(11);
    server.iptables("-A INPUT -p tcp --dport 8083 -j REJECT --reject-with icmp-admin-prohibited");
    server.iptables("-A INPUT -p tcp --dport 8084 -j REJECT --reject-with icmp-host-unreachable");
    // Nothing listens on 8081 (a reset), nor on udp 9 or 5300 (ICMP port unreachable); the
    // client knows no route to another /24.
    let no_route = format!("10.{net}.12.1");
    let connects = [
        (server_ip.as_str(), 8081, "refused", None),
        (&server_ip, 8083, "unreachable", Some("admin-prohibited")),
        (&server_ip, 8084, "unreachable", Some("host")),
        (&no_route, 8080, "unreachable", Some("network")),
    ];
    let mut probes: Vec<Value> = connects
        .iter()
        .flat_map(|(ip, port, _, _)| tcp_and_path_mtu(ip, *port, TIMEOUT_MS))
        .collect();
    probes.push(json!({"kind": "udp", "ip": server_ip, "port": 9, "timeoutMs": TIMEOUT_MS}));
    probes.push(
        json!({"kind": "dns", "name": "web", "nameserver": format!("{server_ip}:5300"),
        "timeoutMs": TIMEOUT_MS}),
    );
    probes.push(json!({"kind": "nodeDataplane",
        "service": {"ip": server_ip, "port": 8081, "protocol": "tcp"}}));
    let agent = Agent::start(&[]);
    let request = json!({"source": {"kind": "netns", "path": client.path()}, "probes": probes});
    let (status, body) = answer_within(&agent, &request, PATIENCE)
        .expect("the agent held a request whose every probe was answered at once for its timeout");
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    for (i, (ip, port, kind, reason)) in connects.iter().enumerate() {
        let (connect, mtu) = (&results[2 * i], &results[2 * i + 1]);
        assert_eq!(connect["outcome"]["kind"], *kind, "{ip}:{port}: {connect}");
        if let Some(reason) = reason {
            assert_eq!(connect["outcome"]["reason"], *reason, "{ip}:{port}: {connect}");
        }
        assert_eq!(mtu["outcome"]["kind"], "notMeasured", "{ip}:{port}: {mtu}");
    }
    let n = 2 * connects.len();
    assert_eq!(results[n]["outcome"]["kind"], "refused", "{}", results[n]);
    assert_eq!(
        results[n + 1]["answer"]["outcome"]["kind"],
        "error",
        "{}",
        results[n + 1]
    );
    assert!(results[n + 2]["serviceRules"].is_object(), "{}", results[n + 2]);
}

#[test]
fn a_dropped_connection_still_gets_fresh_syns_from_its_path_mtu_witness() {
    require_root();
    let (client, server, server_ip, _) = linked_pair(13);
    server.iptables("-A INPUT -p tcp --dport 8082 --syn -j DROP");
    let agent = Agent::start(&[]);
    let request = json!({"source": {"kind": "netns", "path": client.path()},
        "probes": [{"kind": "pathMtu", "ip": server_ip, "port": 8082, "timeoutMs": 600}]});
    let (status, body) = answer_within(&agent, &request, PATIENCE).expect("an answer");
    assert_eq!(status, 200, "{body}");
    let mtu = &body["results"][0];
    assert_eq!(mtu["outcome"]["kind"], "notMeasured", "{mtu}");
    assert!(mtu["lastSynUnixUs"].is_u64(), "{mtu}");
    // The kernel retransmits a SYN only after a second: more than one SYN within the timeout came
    // from fresh connections, for a capture at the destination that started late.
    let counted = server.exec(&["iptables", "-nvxL", "INPUT"]);
    let syns: u64 = counted
        .lines()
        .find(|l| l.contains("dpt:8082"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter for the drop rule: {counted}"));
    assert!(syns > 1, "only {syns} SYN left toward the dropped port");
}
