//! Many probes across many namespaces leave the agent as they found it: no leaked file descriptors,
//! no leftover threads, no thread in a foreign network namespace.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Agent, Netns, eventually, require_root};
use serde_json::{Value, json};

const NAMESPACES: usize = 20;
const PROBES_PER_REQUEST: usize = 50;
const ROUNDS: usize = 10;

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

/// The network namespace of every thread of `pid`.
fn thread_namespaces(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_link(t.path().join("ns/net")).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn ten_thousand_probes_over_twenty_namespaces_leak_no_fds_threads_or_namespaces() {
    require_root();
    let namespaces: Vec<Netns> = (0..NAMESPACES).map(|_| Netns::new()).collect();
    // Half the namespaces have a listener (connected probes), half do not (refused probes).
    let _listeners: Vec<_> = namespaces
        .iter()
        .step_by(2)
        .map(|ns| ns.listen("127.0.0.1", 18100))
        .collect();
    let agent = Arc::new(Agent::start(&[]));
    let pid = agent.pid();
    let own_netns = std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .to_string_lossy()
        .into_owned();

    let request = |ns: &Netns| {
        let probes: Vec<Value> = (0..PROBES_PER_REQUEST)
            .map(|_| json!({"kind": "tcp", "ip": "127.0.0.1", "port": 18100, "timeoutMs": 10000}))
            .collect();
        json!({"source": {"kind": "netns", "path": ns.path()}, "probes": probes})
    };
    // Warm up so lazily created runtime threads and sockets are part of the baseline.
    agent.results(&request(&namespaces[0]));
    let (fds, threads) = (fd_count(pid), thread_count(pid));

    let mut total = 0;
    for _ in 0..ROUNDS {
        let handles: Vec<_> = namespaces
            .iter()
            .map(|ns| {
                let (agent, body) = (agent.clone(), request(ns));
                std::thread::spawn(move || agent.results(&body))
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            let results = handle.join().unwrap();
            let expected = if i % 2 == 0 { "connected" } else { "refused" };
            assert!(
                results.iter().all(|r| r["outcome"]["kind"] == expected),
                "namespace {i}: {results:?}"
            );
            total += results.len();
        }
    }
    assert_eq!(total, NAMESPACES * PROBES_PER_REQUEST * ROUNDS);
    assert!(total >= 10_000);

    assert!(
        eventually(Duration::from_secs(10), || fd_count(pid) <= fds),
        "open fds went from {fds} to {}",
        fd_count(pid)
    );
    assert!(
        eventually(Duration::from_secs(10), || thread_count(pid) <= threads),
        "threads went from {threads} to {}",
        thread_count(pid)
    );
    assert_eq!(thread_namespaces(pid), BTreeSet::from([own_netns]));
    for ns in &namespaces {
        assert_eq!(
            ns.exec(&["ss", "-Htan", "state", "time-wait"]).trim(),
            "",
            "TIME_WAIT left in {}",
            ns.name
        );
    }
}
