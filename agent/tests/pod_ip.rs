//! A pod IP names the namespace on the agent's own node: when several namespaces on the machine have
//! the address (other "nodes" sharing the machine, leaked sandboxes), the one whose interface is
//! linked into the node namespace wins, and an unclear case is a 409 naming the namespaces.

mod common;

use common::{Agent, Netns, inode, random_byte, require_root, routed_pod};
use serde_json::{Value, json};

fn pod_ip_probe(ip: &str, port: u16) -> Value {
    json!({
        "source": {"kind": "podIP", "ip": ip},
        "probes": [{"kind": "tcp", "ip": "127.0.0.1", "port": port, "timeoutMs": 10000}]
    })
}

#[test]
fn each_node_agent_probes_the_pod_on_its_own_node_when_two_nodes_have_the_same_pod_ip() {
    require_root();
    let (node1, node2, pod1, pod2) = (Netns::new(), Netns::new(), Netns::new(), Netns::new());
    let ip = format!("172.29.{}.{}", random_byte(), random_byte());
    routed_pod(&pod1, &ip, &node1);
    routed_pod(&pod2, &ip, &node2);
    // Only node 1's pod listens: a connected probe proves it ran there.
    let _listener = pod1.listen("127.0.0.1", 18090);
    let agent1 = Agent::start(&["--node-netns", &node1.path()]);
    let agent2 = Agent::start(&["--node-netns", &node2.path()]);
    // Twice each: the second answer comes through the address cache.
    for _ in 0..2 {
        let (status, report) = agent1.probe(&pod_ip_probe(&ip, 18090));
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["netns"]["inode"], inode(&pod1.path()), "{report}");
        assert_eq!(report["results"][0]["outcome"]["kind"], "connected", "{report}");

        let (status, report) = agent2.probe(&pod_ip_probe(&ip, 18090));
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["netns"]["inode"], inode(&pod2.path()), "{report}");
        assert_eq!(report["results"][0]["outcome"]["kind"], "refused", "{report}");
    }
}

#[test]
fn a_pod_ip_in_two_namespaces_neither_attached_to_the_node_is_a_409_naming_both() {
    require_root();
    let (node, a, b) = (Netns::new(), Netns::new(), Netns::new());
    let ip = format!("172.28.{}.{}", random_byte(), random_byte());
    for ns in [&a, &b] {
        ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    }
    let agent = Agent::start(&["--node-netns", &node.path()]);
    let (status, error) = agent.probe(&pod_ip_probe(&ip, 18091));
    assert_eq!(status, 409, "{error}");
    let mut inodes = [inode(&a.path()), inode(&b.path())];
    inodes.sort_unstable();
    let message = format!(
        "2 network namespaces on this node have {ip} (inodes {}, {}) and none is attached to the node \
         namespace",
        inodes[0], inodes[1]
    );
    assert_eq!(error, json!({"code": "ambiguousNamespace", "message": message}));

    // Once one of them is linked to the node, it is the answer.
    b.ip(&["addr", "del", &format!("{ip}/32"), "dev", "lo"]);
    routed_pod(&b, &ip, &node);
    let (status, report) = agent.probe(&pod_ip_probe(&ip, 18091));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["netns"]["inode"], inode(&b.path()), "{report}");
}

#[test]
fn a_pod_ip_linked_to_the_node_in_two_namespaces_is_a_409_saying_both_are_attached() {
    require_root();
    let (node, live, leaked) = (Netns::new(), Netns::new(), Netns::new());
    let ip = format!("172.27.{}.{}", random_byte(), random_byte());
    routed_pod(&live, &ip, &node);
    // A terminating pod's sandbox still holding the reused IP on its own veth to the node.
    let (inside, outside) = (common::unique("vp"), common::unique("vn"));
    common::run(
        "ip",
        &[
            "link",
            "add",
            &inside,
            "netns",
            &leaked.name,
            "type",
            "veth",
            "peer",
            "name",
            &outside,
            "netns",
            &node.name,
        ],
    );
    leaked.ip(&["addr", "add", &format!("{ip}/32"), "dev", &inside]);
    let agent = Agent::start(&["--node-netns", &node.path()]);
    let (status, error) = agent.probe(&pod_ip_probe(&ip, 18092));
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["code"], "ambiguousNamespace");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.ends_with("and both are attached to the node namespace"),
        "{message}"
    );
    for ns in [&live, &leaked] {
        assert!(message.contains(&inode(&ns.path()).to_string()), "{message}");
    }
}

#[test]
fn a_host_network_pod_ip_is_the_node_namespace_even_when_another_namespace_has_it() {
    require_root();
    let (node, other) = (Netns::new(), Netns::new());
    let ip = format!("172.26.{}.{}", random_byte(), random_byte());
    for ns in [&node, &other] {
        ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    }
    let _listener = node.listen("127.0.0.1", 18093);
    let agent = Agent::start(&["--node-netns", &node.path()]);
    let (status, report) = agent.probe(&pod_ip_probe(&ip, 18093));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["netns"]["inode"], inode(&node.path()), "{report}");
    assert_eq!(report["results"][0]["outcome"]["kind"], "connected", "{report}");
}
