//! Fidelity: the lab behaves like a cluster's network when probed with ordinary tools from inside
//! pods (getent, dig, ping, plain TCP sockets, real kubectl) — independent of netdiag.

mod common;

use std::collections::BTreeSet;

use common::{Lab, Tcp, require_root, stdout, tcp_in};

const SHOP: &str = "name: shop
nodes: [node-a, node-b]
pods:
  - {namespace: shop, name: client, node: node-a, labels: {app: client}}
  - {namespace: shop, name: pay-0, node: node-a, labels: {app: pay}, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080}, {port: 9000, protocol: UDP}]}
  - {namespace: shop, name: pay-1, node: node-b, labels: {app: pay}, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080}, {port: 9000, protocol: UDP}]}
  - {namespace: shop, name: pay-2, node: node-b, labels: {app: pay}, ready: false, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080}]}
  - {namespace: shop, name: local-0, node: node-b, labels: {app: local}, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080, address: 127.0.0.1}]}
  - {namespace: db, name: db-0, node: node-b, labels: {app: db}, listen: [{port: 5432}]}
  - {namespace: db, name: db-1, node: node-a, labels: {app: db}, listen: [{port: 5432}]}
services:
  - {namespace: shop, name: pay, selector: {app: pay}, ports: [{name: http, port: 80, targetPort: http}]}
  - {namespace: shop, name: empty, selector: {app: nothing}, ports: [{name: http, port: 80}]}
  - {namespace: shop, name: wrong-port, selector: {app: pay}, ports: [{name: http, port: 80, targetPort: 9999}]}
  - {namespace: db, name: db, headless: true, selector: {app: db}, ports: [{port: 5432}]}
";

fn with_faults(faults: &str) -> String {
    format!("{SHOP}faults:\n{faults}")
}

#[test]
fn pod_resolves_service_names_through_its_search_list() {
    require_root();
    let lab = Lab::up("dns", SHOP);
    let vip = lab.cluster_ip("shop/pay");
    for name in ["pay", "pay.shop", "pay.shop.svc", "pay.shop.svc.cluster.local"] {
        let out = lab.exec("shop/client", &["getent", "hosts", name]);
        assert!(out.status.success(), "getent hosts {name} failed: {out:?}");
        assert!(
            stdout(&out).starts_with(&format!("{vip} ")),
            "getent hosts {name}: {}",
            stdout(&out)
        );
    }
    let dig = lab.exec("shop/client", &["dig", "+search", "+short", "pay"]);
    assert_eq!(stdout(&dig).trim(), vip);
    let tcp = lab.exec(
        "shop/client",
        &["dig", "+tcp", "+short", "pay.shop.svc.cluster.local"],
    );
    assert_eq!(
        stdout(&tcp).trim(),
        vip,
        "dns over tcp through the kube-dns ClusterIP"
    );
    // Short names only resolve in the pod's own namespace.
    let other_ns = lab.exec("db/db-0", &["getent", "hosts", "pay"]);
    assert!(
        !other_ns.status.success(),
        "pay must not resolve from namespace db: {}",
        stdout(&other_ns)
    );
    let srv = lab.exec(
        "shop/client",
        &["dig", "+short", "SRV", "_http._tcp.pay.shop.svc.cluster.local"],
    );
    assert_eq!(
        stdout(&srv).trim(),
        "0 100 80 pay.shop.svc.cluster.local.",
        "SRV for the named port, as CoreDNS answers it"
    );
    let nx = lab.exec("shop/client", &["dig", "nope.shop.svc.cluster.local"]);
    assert!(stdout(&nx).contains("status: NXDOMAIN"), "{}", stdout(&nx));
    // No upstream: names outside the cluster domain get no answer.
    let outside = lab.exec("shop/client", &["dig", "example.com"]);
    assert!(
        stdout(&outside).contains("status: REFUSED"),
        "{}",
        stdout(&outside)
    );
}

#[test]
fn headless_service_resolves_to_its_ready_pod_ips() {
    require_root();
    let lab = Lab::up("headless", SHOP);
    let out = lab.exec("shop/client", &["dig", "+short", "db.db.svc.cluster.local"]);
    let got: BTreeSet<String> = stdout(&out).lines().map(str::to_string).collect();
    let want: BTreeSet<String> = [lab.pod_ip("db/db-0"), lab.pod_ip("db/db-1")].into();
    assert_eq!(got, want);
}

#[test]
fn pod_process_sees_its_kubelet_style_resolv_conf() {
    require_root();
    let lab = Lab::up("resolv", SHOP);
    let pod = lab.info.pods.iter().find(|p| p.name == "client").unwrap();
    let conf = std::fs::read_to_string(format!("/proc/{}/root/etc/resolv.conf", pod.pid)).unwrap();
    assert_eq!(
        conf,
        "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );
}

#[test]
fn cluster_ip_lands_on_ready_endpoints_only() {
    require_root();
    let lab = Lab::up("vip", SHOP);
    let vip = format!("{}:80", lab.cluster_ip("shop/pay"));
    let mut seen = BTreeSet::new();
    for _ in 0..24 {
        match lab.tcp("shop/client", &vip) {
            Tcp::Connected(pod) => {
                seen.insert(pod);
            }
            other => panic!("connect to {vip} gave {other:?}"),
        }
    }
    // Random spread over both ready endpoints (each connection picks pay-0 with probability 1/2,
    // so missing one in 24 tries has odds of 2^-23); never the not-ready pay-2.
    assert_eq!(
        seen,
        BTreeSet::from(["shop/pay-0".to_string(), "shop/pay-1".to_string()])
    );
}

#[test]
fn service_rules_apply_to_connections_from_the_node_itself() {
    require_root();
    let lab = Lab::up("nodeout", SHOP);
    let node = lab.node_netns("node-a");
    assert!(
        matches!(
            tcp_in(&node, &format!("{}:80", lab.cluster_ip("shop/pay"))),
            Tcp::Connected(ref p) if p == "shop/pay-0" || p == "shop/pay-1"
        ),
        "the ClusterIP is DNATed on the node's OUTPUT path too"
    );
    assert_eq!(
        tcp_in(&node, &format!("{}:80", lab.cluster_ip("shop/empty"))),
        Tcp::Refused,
        "a Service without endpoints is REJECTed on the node's OUTPUT path too"
    );
}

#[test]
fn service_without_endpoints_refuses_and_wrong_target_port_refuses() {
    require_root();
    let lab = Lab::up("refuse", SHOP);
    assert_eq!(
        lab.tcp("shop/client", &format!("{}:80", lab.cluster_ip("shop/empty"))),
        Tcp::Refused
    );
    assert_eq!(
        lab.tcp(
            "shop/client",
            &format!("{}:80", lab.cluster_ip("shop/wrong-port"))
        ),
        Tcp::Refused
    );
}

#[test]
fn app_bound_to_loopback_refuses_on_its_pod_ip() {
    require_root();
    let lab = Lab::up("loopback", SHOP);
    assert_eq!(
        lab.tcp("shop/client", &format!("{}:8080", lab.pod_ip("shop/local-0"))),
        Tcp::Refused
    );
    assert_eq!(
        lab.tcp("shop/local-0", "127.0.0.1:8080"),
        Tcp::Connected("shop/local-0".into())
    );
}

#[test]
fn drop_rule_times_out_and_reject_rule_answers_unreachable() {
    require_root();
    let lab = Lab::up(
        "deny",
        &with_faults(
            "  - {kind: deny, from: shop/client, to: shop/pay-1, port: 8080, protocol: TCP, mode: drop}\n  \
             - {kind: deny, from: shop/client, to: shop/pay-0, port: 8080, mode: reject}\n",
        ),
    );
    assert_eq!(
        lab.tcp("shop/client", &format!("{}:8080", lab.pod_ip("shop/pay-1"))),
        Tcp::TimedOut
    );
    assert_eq!(
        lab.tcp("shop/client", &format!("{}:8080", lab.pod_ip("shop/pay-0"))),
        Tcp::Unreachable
    );
    // Only the named flow is denied.
    assert_eq!(
        lab.tcp("db/db-0", &format!("{}:8080", lab.pod_ip("shop/pay-1"))),
        Tcp::Connected("shop/pay-1".into())
    );
}

#[test]
fn cut_link_breaks_only_cross_node_traffic() {
    require_root();
    let lab = Lab::up("cut", &with_faults("  - {kind: link-cut, node: node-b}\n"));
    assert_eq!(
        lab.tcp("shop/client", &format!("{}:8080", lab.pod_ip("shop/pay-0"))),
        Tcp::Connected("shop/pay-0".into()),
        "same-node traffic still flows"
    );
    assert_eq!(
        lab.tcp("shop/client", &format!("{}:8080", lab.pod_ip("shop/pay-1"))),
        Tcp::TimedOut
    );
    assert_eq!(
        lab.tcp("db/db-0", &format!("{}:8080", lab.pod_ip("shop/pay-1"))),
        Tcp::Connected("shop/pay-1".into()),
        "traffic inside the cut node still flows"
    );
}

#[test]
fn lowered_mtu_passes_small_df_packets_and_drops_large_ones() {
    require_root();
    let lab = Lab::up(
        "mtu",
        &with_faults("  - {kind: link-mtu, node: node-b, mtu: 1200}\n"),
    );
    let remote = format!("{}:9000", lab.pod_ip("shop/pay-1"));
    let local = format!("{}:9000", lab.pod_ip("shop/pay-0"));
    // UDP datagrams leave with DF set (Linux path-MTU discovery), like `ping -M do -s SIZE`.
    assert_eq!(
        lab.udp_df("shop/client", &remote, 1000).as_deref(),
        Some("shop/pay-1"),
        "1028-byte packet passes"
    );
    assert_eq!(
        lab.udp_df("shop/client", &remote, 1400),
        None,
        "1428-byte packet is dropped silently"
    );
    assert_eq!(
        lab.udp_df("shop/client", &local, 1400).as_deref(),
        Some("shop/pay-0"),
        "same-node traffic unaffected"
    );
}

/// Connects to `addr` from `pod`, reads the greeting, sends `bytes` bytes and says whether the
/// pod app's echo of all of them came back within a second: "echoed" or "stalled".
fn large_write(lab: &Lab, pod: &str, addr: &str, bytes: usize) -> String {
    const SCRIPT: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=1)
s.recv(100)
s.sendall(b"x" * n)
got = 0
try:
    while got < n:
        d = s.recv(65536)
        if not d:
            break
        got += len(d)
except OSError:
    pass
print("echoed" if got >= n else "stalled")
"#;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let n = bytes.to_string();
    let out = lab.exec(pod, &["python3", "-c", SCRIPT, host, port, &n]);
    assert!(out.status.success(), "{out:?}");
    stdout(&out).trim().to_string()
}

#[test]
fn lowered_mtu_black_holes_large_tcp_segments_after_the_handshake() {
    require_root();
    let lab = Lab::up(
        "mtutcp",
        &with_faults("  - {kind: link-mtu, node: node-b, mtu: 1200}\n"),
    );
    let remote = format!("{}:8080", lab.pod_ip("shop/pay-1"));
    let local = format!("{}:8080", lab.pod_ip("shop/pay-0"));
    assert_eq!(
        lab.tcp("shop/client", &remote),
        Tcp::Connected("shop/pay-1".into()),
        "the handshake passes"
    );
    assert_eq!(
        large_write(&lab, "shop/client", &remote, 500),
        "echoed",
        "small segments pass"
    );
    assert_eq!(
        large_write(&lab, "shop/client", &remote, 8000),
        "stalled",
        "full-size segments vanish"
    );
    assert_eq!(
        large_write(&lab, "shop/client", &local, 8000),
        "echoed",
        "same-node traffic unaffected"
    );
}

#[test]
fn reply_drop_times_out_that_pair_while_the_syn_still_arrives() {
    require_root();
    let lab = Lab::up(
        "replydrop",
        &with_faults("  - {kind: reply-drop, from: shop/pay-1, to: shop/client}\n"),
    );
    let remote = format!("{}:8080", lab.pod_ip("shop/pay-1"));
    assert_eq!(lab.tcp("shop/client", &remote), Tcp::TimedOut);
    assert_eq!(
        lab.tcp("db/db-1", &remote),
        Tcp::Connected("shop/pay-1".into()),
        "other clients are answered"
    );
}

#[test]
fn missing_service_rules_on_one_node_blackhole_the_cluster_ip_there_only() {
    require_root();
    let lab = Lab::up(
        "stale",
        &with_faults("  - {kind: service-rules-missing, service: shop/pay, node: node-a}\n"),
    );
    let vip = format!("{}:80", lab.cluster_ip("shop/pay"));
    assert_eq!(
        lab.tcp("shop/client", &vip),
        Tcp::TimedOut,
        "node-a has no rules for the VIP"
    );
    assert!(
        matches!(lab.tcp("db/db-0", &vip), Tcp::Connected(_)),
        "node-b still proxies the VIP"
    );
}

#[test]
fn dns_down_times_out_or_refuses_lookups() {
    require_root();
    let lab = Lab::up("dnsdown", &with_faults("  - {kind: dns-down}\n"));
    assert!(!lab.info.dns.running);
    let out = lab.exec(
        "shop/client",
        &["dig", "+tries=1", "+time=1", "pay.shop.svc.cluster.local"],
    );
    assert!(!stdout(&out).contains("status: NOERROR"), "{}", stdout(&out));
    assert!(
        !lab.exec("shop/client", &["getent", "hosts", "pay"])
            .status
            .success()
    );
}

const DUAL_STACK: &str = "name: dual
nodes: [node-a, node-b]
ipFamilies: [IPv4, IPv6]
pods:
  - {namespace: shop, name: client, node: node-a, labels: {app: client}}
  - {namespace: shop, name: pay-0, node: node-a, labels: {app: pay}, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080}]}
  - {namespace: shop, name: pay-1, node: node-b, labels: {app: pay}, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080}]}
  - {namespace: shop, name: pay-2, node: node-b, labels: {app: pay}, ready: false, ports: [{name: http, containerPort: 8080}], listen: [{port: 8080}]}
services:
  - {namespace: shop, name: pay, selector: {app: pay}, ports: [{name: http, port: 80, targetPort: http}]}
  - {namespace: shop, name: old, ipFamilies: [IPv4], selector: {app: pay}, ports: [{name: http, port: 80, targetPort: http}]}
";

#[test]
fn dual_stack_names_resolve_to_both_families_as_libc_asks_and_each_vip_lands_on_ready_pods() {
    require_root();
    let lab = Lab::up("dual", DUAL_STACK);
    let svc = lab.info.services.iter().find(|s| s.name == "pay").unwrap();
    let (v4, v6) = (svc.cluster_ips[0].clone(), svc.cluster_ips[1].clone());
    assert_eq!(v6, "fd00:10:96::101");
    // getent ahosts asks with AF_UNSPEC: A and AAAA.
    let ahosts = stdout(&lab.exec("shop/client", &["getent", "ahosts", "pay"]));
    assert!(ahosts.contains(&v4) && ahosts.contains(&v6), "{ahosts}");
    // A single-stack Service has no AAAA (NODATA), as its ipFamilies say.
    let old = lab.exec("shop/client", &["dig", "AAAA", "old.shop.svc.cluster.local"]);
    assert!(stdout(&old).contains("ANSWER: 0"), "{}", stdout(&old));
    let vip6 = format!("[{v6}]:80");
    let mut seen = BTreeSet::new();
    for _ in 0..24 {
        match lab.tcp("shop/client", &vip6) {
            Tcp::Connected(pod) => {
                seen.insert(pod);
            }
            other => panic!("connect to {vip6} gave {other:?}"),
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from(["shop/pay-0".to_string(), "shop/pay-1".to_string()])
    );
}

#[test]
fn ipv6_only_pods_resolve_through_the_ipv6_dns_and_reach_pods_across_nodes() {
    require_root();
    let lab = Lab::up(
        "v6only",
        &DUAL_STACK.replace("ipFamilies: [IPv4, IPv6]", "ipFamilies: [IPv6]").replace(
            "  - {namespace: shop, name: old, ipFamilies: [IPv4], selector: {app: pay}, ports: [{name: http, port: 80, targetPort: http}]}\n",
            "",
        ),
    );
    let pod = lab.info.pods.iter().find(|p| p.name == "client").unwrap();
    let conf = std::fs::read_to_string(format!("/proc/{}/root/etc/resolv.conf", pod.pid)).unwrap();
    assert!(conf.starts_with("nameserver fd00:10:96::a\n"), "{conf}");
    let ahosts = stdout(&lab.exec("shop/client", &["getent", "ahosts", "pay"]));
    assert!(ahosts.contains("fd00:10:96::101"), "{ahosts}");
    assert!(
        !ahosts.contains("10.96."),
        "no IPv4 in an IPv6-only cluster: {ahosts}"
    );
    let remote = lab.info.pods.iter().find(|p| p.name == "pay-1").unwrap();
    let addr = format!("[{}]:8080", remote.ip6.as_ref().unwrap());
    assert_eq!(lab.tcp("shop/client", &addr), Tcp::Connected("shop/pay-1".into()));
}
