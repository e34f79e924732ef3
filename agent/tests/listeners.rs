//! The listeners probe reads the socket tables of the namespace it runs in.

mod common;

use common::{Agent, Netns, require_root};
use serde_json::{Value, json};

fn tcp_8080(agent: &Agent, ns: &Netns) -> Vec<String> {
    let results = agent
        .results(&json!({"source": {"kind": "netns", "path": ns.path()}, "probes": [{"kind": "listeners"}]}));
    assert!(results[0].get("error").is_none(), "{results:?}");
    results[0]["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s: &&Value| s["protocol"] == "tcp" && s["localPort"] == 8080)
        .map(|s| s["localIp"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn listeners_tell_loopback_from_any_ipv4_and_any_ipv6() {
    require_root();
    let (lo, any4, any6) = (Netns::new(), Netns::new(), Netns::new());
    let _l1 = lo.listen("127.0.0.1", 8080);
    let _l2 = any4.listen("0.0.0.0", 8080);
    let _l3 = any6.listen("::", 8080);
    let agent = Agent::start(&[]);
    assert_eq!(tcp_8080(&agent, &lo), ["127.0.0.1"]);
    assert_eq!(tcp_8080(&agent, &any4), ["0.0.0.0"]);
    assert_eq!(tcp_8080(&agent, &any6), ["::"]);
}

#[test]
fn bound_udp_sockets_are_listed_with_their_inode() {
    require_root();
    let ns = Netns::new();
    let _server = ns.servfail_server("127.0.0.3");
    let agent = Agent::start(&[]);
    let results = agent
        .results(&json!({"source": {"kind": "netns", "path": ns.path()}, "probes": [{"kind": "listeners"}]}));
    let sockets = results[0]["sockets"].as_array().unwrap();
    let udp: Vec<&Value> = sockets.iter().filter(|s| s["protocol"] == "udp").collect();
    assert_eq!(udp.len(), 1, "{sockets:?}");
    assert_eq!(udp[0]["localIp"], "127.0.0.3");
    assert_eq!(udp[0]["localPort"], 53);
    assert!(udp[0]["inode"].as_u64().unwrap() > 0);
}
