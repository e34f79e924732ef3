//! The agent under hostile load, against the real binary: slowloris and idle connections are
//! closed, a declared-but-unsent body is answered, the connection table stays bounded, and a flood
//! of probes to a dropped port is refused by the socket budget instead of running the agent out of
//! file descriptors; a burst beyond the control port's connections is answered 503 and warned
//! about once. The in-cluster endpoint (against a fake API server on loopback): slow bodies without
//! a token are refused at once, an authenticated slow body is answered 408, and connections that
//! never start TLS neither fill the table nor lock callers out, while `/healthz` answers throughout.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use common::endpoint::{
    EndpointAgent, FakeApi, GOOD_TOKEN, Tls, answer, head, healthz, loopback, node_probe, tcp_from, tls_from,
};
use common::{Agent, Netns, eventually, random_byte, require_root};
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
    require_root();
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
    require_root();
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
    require_root();
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

/// Two namespaces joined by a veth, the server side dropping TCP port 9: a probe there is busy
/// for its whole timeout. Returns them and the server's address.
fn dropped_port() -> (Netns, Netns, String) {
    let (client, server) = (Netns::new(), Netns::new());
    let net = random_byte();
    common::veth(
        &client,
        &format!("10.{net}.9.1/24"),
        &server,
        &format!("10.{net}.9.2/24"),
    );
    server.iptables("-A INPUT -p tcp --dport 9 -j DROP");
    (client, server, format!("10.{net}.9.2"))
}

/// The status of `GET /healthz` on a fresh plain connection, or `None` when the connection was
/// closed without an answer.
fn plain_healthz(addr: std::net::SocketAddr) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .ok()?;
    answer(&mut stream).ok()
}

#[test]
fn a_burst_beyond_the_control_ports_connections_is_answered_503_and_warned_about_once() {
    require_root();
    let (client, _server, target) = dropped_port();
    let log = std::env::temp_dir().join(format!("{}.log", common::unique("ndl")));
    let agent = std::sync::Arc::new(Agent::start_logging(
        &[],
        &["--max-connections", "8"],
        std::fs::File::create(&log).unwrap(),
    ));
    // Eight requests fill the table, each inside its request for its probe's 3 s timeout.
    let request = json!({"source": {"kind": "netns", "path": client.path()},
        "probes": [{"kind": "tcp", "ip": target, "port": 9, "timeoutMs": 3000}]});
    let busy: Vec<_> = (0..8)
        .map(|_| {
            let (agent, request) = (agent.clone(), request.clone());
            std::thread::spawn(move || agent.probe(&request).0)
        })
        .collect();
    // All eight are inside their requests once their probes' SYNs are out (a connection not read
    // yet may still make room for a newcomer).
    let syn_sent = || client.exec(&["ss", "-Htn", "state", "syn-sent"]).lines().count();
    assert!(
        eventually(Duration::from_secs(10), || syn_sent() == 8),
        "the eight probes run"
    );
    let burst = Instant::now();
    for i in 0..30 {
        let (status, body) =
            plain_healthz(agent.addr).unwrap_or_else(|| panic!("connection {i} got no answer"));
        assert_eq!(status, 503, "connection {i}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["code"], "overloaded", "{body}");
    }
    let burst_secs = burst.elapsed().as_secs();
    for request in busy {
        assert_eq!(request.join().unwrap(), 200);
    }
    assert_eq!(agent.http("GET", "/healthz", b"").0, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let warnings = text
        .lines()
        .filter(|l| l.contains("refusing connections"))
        .count();
    // At most one line per 10 s of refusals (31 or more refusals here).
    assert!(
        (1..=1 + burst_secs as usize / 10).contains(&warnings),
        "{warnings} warnings for one burst:\n{text}"
    );
}

/// A TLS connection from `from` that declared a `length`-byte body of a check and sent one byte.
fn slow_body(from: IpAddr, endpoint: std::net::SocketAddr, token: Option<&str>, length: usize) -> Tls {
    let mut tls = tls_from(from, endpoint).expect("tls handshake");
    tls.write_all(head("POST", "/v1/check", token, length).as_bytes())
        .unwrap();
    tls.write_all(b"{").unwrap();
    tls.flush().unwrap();
    tls
}

#[test]
fn slow_bodies_without_a_token_are_refused_at_once_and_healthz_and_callers_keep_answering() {
    let api = FakeApi::start();
    let agent = EndpointAgent::start(&api, &[], "warn", false);
    // 256 connections (the whole table) without a token, each declaring a 1,000-byte body and
    // sending 1 byte.
    let mut held: Vec<Tls> = (0..256)
        .map(|_| slow_body(loopback(1), agent.endpoint, None, 1000))
        .collect();
    for _ in 0..5 {
        assert_eq!(healthz(loopback(2), agent.endpoint), Ok(200));
    }
    let (status, body) = node_probe(loopback(3), agent.endpoint, GOOD_TOKEN).unwrap();
    assert_eq!(status, 200, "an authenticated caller is served: {body}");
    for (i, tls) in held.iter_mut().enumerate() {
        let (status, body) = answer(tls).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(status, 401, "connection {i} is refused before its body: {body}");
    }
    assert_eq!(
        api.state.token_reviews.total(),
        1,
        "only the caller's token was reviewed"
    );
}

#[test]
fn a_slow_body_from_an_authenticated_caller_is_answered_408() {
    let api = FakeApi::start();
    let agent = EndpointAgent::start(&api, &["--body-timeout-ms", "1000"], "warn", false);
    let mut tls = slow_body(loopback(1), agent.endpoint, Some(GOOD_TOKEN), 100);
    let (status, body) = answer(&mut tls).expect("an answer");
    assert_eq!(status, 408, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "requestTimeout");
}

/// Replaces the connections of `held` the endpoint closed (evicted) with new silent ones from the
/// same address, at most `at_most` of them; how many it replaced.
fn reconnect_closed(
    held: &mut [(IpAddr, TcpStream)],
    endpoint: std::net::SocketAddr,
    at_most: usize,
) -> usize {
    let mut replaced = 0;
    for (from, stream) in held.iter_mut() {
        if replaced == at_most {
            break;
        }
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let closed = match stream.read(&mut buf) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        if closed && let Ok(fresh) = tcp_from(*from, endpoint) {
            *stream = fresh;
            replaced += 1;
        }
    }
    replaced
}

#[test]
fn connections_that_never_start_tls_neither_fill_the_table_nor_lock_callers_out() {
    let api = FakeApi::start();
    // Handshakes may take long here, so that only eviction makes room.
    let agent = EndpointAgent::start(&api, &["--header-timeout-ms", "60000"], "warn", false);
    let baseline = open_fds(agent.agent.pid());
    // Five addresses with 64 silent connections each: more than the table's 256.
    let mut held: Vec<(IpAddr, TcpStream)> = (10..15)
        .flat_map(|n| (0..64).map(move |_| loopback(n)))
        .map(|from| (from, tcp_from(from, agent.endpoint).unwrap()))
        .collect();
    assert!(eventually(Duration::from_secs(5), || open_fds(agent.agent.pid())
        <= baseline + 256));
    // The attackers reconnect what is closed, a few a round, while callers come and go, one of
    // them from an attacking address.
    for round in 0..20 {
        reconnect_closed(&mut held, agent.endpoint, 8);
        for from in [loopback(2), loopback(10)] {
            assert_eq!(
                healthz(from, agent.endpoint),
                Ok(200),
                "round {round} from {from}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = node_probe(loopback(3), agent.endpoint, GOOD_TOKEN).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        open_fds(agent.agent.pid()) <= baseline + 256 + 4,
        "the table stays within its 256 connections"
    );
}
