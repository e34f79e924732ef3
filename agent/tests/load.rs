//! The agent under hostile load, against the real binary: slowloris and idle connections are
//! closed, a declared-but-unsent body is answered, the connection table stays bounded, and a flood
//! of probes to a dropped port is refused by the socket budget instead of running the agent out of
//! file descriptors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Agent, Netns, eventually, random_byte, root_or_skip};
use serde_json::{Value, json};

/// Whether the server closed `stream` (EOF or reset), waiting at most `limit`.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn slowloris_and_idle_connections_are_closed_and_the_agent_keeps_answering() {
    if !root_or_skip("slowloris_and_idle_connections_are_closed_and_the_agent_keeps_answering") {
        return;
    }
    let agent = Agent::start(&["--header-timeout-ms", "1000", "--max-connections", "64"]);
    let baseline = open_fds(agent.pid());
    // Half send a request line and a header, then nothing; half send nothing at all.
    let mut streams: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut s = TcpStream::connect(agent.addr).unwrap();
            if i % 2 == 0 {
                s.write_all(b"POST /v1/probe HTTP/1.1\r\nHost: agent\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    // More connections than the table holds: the agent never holds more than its limit.
    assert!(eventually(Duration::from_secs(5), || open_fds(agent.pid()) <= baseline + 64));
    assert_eq!(agent.http("GET", "/healthz", b"").0, 200);
    // Every one of them is closed by the agent, the last ones by the header timeout.
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, Duration::from_secs(30)),
            "connection {i} is still open"
        );
    }
    assert!(eventually(Duration::from_secs(5), || open_fds(agent.pid()) <= baseline));
}

#[test]
fn a_declared_but_unsent_body_is_answered_408() {
    if !root_or_skip("a_declared_but_unsent_body_is_answered_408") {
        return;
    }
    let agent = Agent::start(&["--body-timeout-ms", "1000"]);
    let mut stream = TcpStream::connect(agent.addr).unwrap();
    stream
        .write_all(b"POST /v1/probe HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"so")
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["code"], "requestTimeout");
}

#[test]
fn a_flood_of_probes_to_a_dropped_port_is_refused_by_the_socket_budget_never_emfile() {
    if !root_or_skip("a_flood_of_probes_to_a_dropped_port_is_refused_by_the_socket_budget_never_emfile") {
        return;
    }
    let (client, server) = (Netns::new(), Netns::new());
    let net = random_byte();
    common::veth(
        &client,
        &format!("10.{net}.7.1/24"),
        &server,
        &format!("10.{net}.7.2/24"),
    );
    server.iptables("-A INPUT -p tcp --dport 9 -j DROP");
    // 512 descriptors: without the budget, 6 requests × 300 probes in flight × 2 sockets would
    // need 3,600 of them.
    let agent = std::sync::Arc::new(Agent::start_via(
        &["prlimit", "--nofile=512:512"],
        &["--max-connections", "64"],
    ));
    let probes: Vec<Value> = (0..300)
        .map(|_| json!({"kind": "tcp", "ip": format!("10.{net}.7.2"), "port": 9, "timeoutMs": 1500}))
        .collect();
    let request = json!({"source": {"kind": "netns", "path": client.path()}, "probes": probes});
    let flood: Vec<_> = (0..6)
        .map(|_| {
            let (agent, request) = (agent.clone(), request.clone());
            std::thread::spawn(move || agent.probe(&request))
        })
        .collect();
    let answers: Vec<(u16, Value)> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    let mut served = 0;
    for (status, body) in &answers {
        match status {
            200 => {
                served += 1;
                for result in body["results"].as_array().unwrap() {
                    assert_eq!(result["outcome"]["kind"], "timeout", "{result}");
                }
            }
            503 => {
                assert_eq!(body["code"], "overloaded", "{body}");
                assert!(
                    body["message"].as_str().unwrap().contains("sockets in flight"),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(served >= 1, "no request was served: {answers:?}");
    assert!(
        served < answers.len(),
        "no request was refused: the budget did not apply"
    );
    assert_eq!(agent.http("GET", "/healthz", b"").0, 200);
}
