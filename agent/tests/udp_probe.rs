//! UDP probes tell an answer, ICMP port-unreachable, ICMP admin-prohibited and silence apart,
//! against real namespaces, veth links and iptables rules, and silence ends at the timeout.

mod common;

use common::{Agent, Netns, require_root, veth};
use serde_json::{Value, json};

fn udp(ip: &str, port: u16, timeout_ms: u64) -> Value {
    json!({"kind": "udp", "ip": ip, "port": port, "timeoutMs": timeout_ms})
}

/// A UDP server on `ip:port` that echoes every datagram when `echo`, else never answers.
fn udp_server(ns: &Netns, ip: &str, port: u16, echo: bool) -> common::Proc {
    const SCRIPT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    if sys.argv[3] == "echo":
        s.sendto(b"pong" + data, peer)
"#;
    let mode = if echo { "echo" } else { "mute" };
    let mut proc = ns.spawn(&["python3", "-c", SCRIPT, ip, &port.to_string(), mode]);
    proc.wait_for_line("ready");
    proc
}

#[test]
fn answer_refusal_admin_prohibited_and_silence_are_told_apart() {
    require_root();
    let (client, server) = (Netns::new(), Netns::new());
    let net = common::random_byte();
    let (client_ip, server_ip) = (format!("10.{net}.9.1"), format!("10.{net}.9.2"));
    veth(
        &client,
        &format!("{client_ip}/24"),
        &server,
        &format!("{server_ip}/24"),
    );
    let _echo = udp_server(&server, "0.0.0.0", 5353, true);
    let _mute = udp_server(&server, "0.0.0.0", 5354, false);
    let _dns = server.servfail_server("0.0.0.0");
    server.iptables("-A INPUT -p udp --dport 5355 -j REJECT --reject-with icmp-admin-prohibited");
    server.iptables("-A INPUT -p udp --dport 5356 -j DROP");
    let agent = Agent::start(&[]);
    let results = agent.results(&json!({
        "source": {"kind": "netns", "path": client.path()},
        "probes": [
            udp(&server_ip, 5353, 5000),
            udp(&server_ip, 5354, 300),
            udp(&server_ip, 5355, 5000),
            udp(&server_ip, 5356, 300),
            udp(&server_ip, 5357, 5000),
            udp(&server_ip, 53, 5000),
        ]
    }));
    let outcome = |i: usize| &results[i]["outcome"];
    assert_eq!(outcome(0)["kind"], "answered", "{results:?}");
    assert_eq!(results[0]["payload"], "empty", "{results:?}");
    assert_eq!(outcome(1)["kind"], "silent", "{results:?}");
    assert_eq!(outcome(1)["afterMs"], 300);
    assert_eq!(outcome(2)["kind"], "unreachable", "{results:?}");
    assert_eq!(outcome(2)["reason"], "admin-prohibited", "{results:?}");
    assert_eq!(
        outcome(2)["detail"],
        format!("icmp type 3 code 13 from {server_ip}"),
        "{results:?}"
    );
    assert_eq!(outcome(3)["kind"], "silent", "{results:?}");
    assert_eq!(outcome(4)["kind"], "refused", "{results:?}");
    // Port 53 gets a DNS query, which a DNS server answers (here with SERVFAIL).
    assert_eq!(results[5]["payload"], "dnsQuery", "{results:?}");
    assert_eq!(outcome(5)["kind"], "answered", "{results:?}");
}
