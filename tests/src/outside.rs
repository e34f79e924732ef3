//! The network outside the cluster (`outside: true`): a namespace beyond the underlay router
//! holding a host that serves TCP and a DNS server that the cluster DNS forwards to, the nodes'
//! outgoing NAT towards it (what a CNI's masquerade does), and the faults on that path.
//!
//! The outside namespace routes only the nodes' network back, as the Internet does: a packet that
//! leaves a node with a pod's own address gets no answer.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::lab::Builder;
use crate::netns;
use crate::plan::{
    self, OUTSIDE_CIDR, OUTSIDE_DNS_IP, OUTSIDE_HOST_IP, OUTSIDE_NAME, OUTSIDE_PORTS, OUTSIDE_ROUTER_IP,
    Plan, UNDERLAY_ROUTER_IP,
};
use crate::scenario::Fault;

/// The nftables table the lab's "CNI" keeps its egress rules in, on every node.
const CNI_TABLE: &str = "netdiag-lab-cni";
/// The router's port towards the outside network, in the underlay namespace.
pub const ROUTER_PORT: &str = "x0";

/// The `ip -batch` lines of the underlay router's side, and of the outside namespace.
pub fn network(plan: &Plan) -> Option<(String, String)> {
    plan.outside_netns.as_ref()?;
    let router = format!("addr add {OUTSIDE_ROUTER_IP}/24 dev {ROUTER_PORT}\nlink set {ROUTER_PORT} up\n");
    let [a, b, c, _] = UNDERLAY_ROUTER_IP.octets();
    let outside = format!(
        "link set lo up\naddr add {OUTSIDE_HOST_IP}/24 dev eth0\naddr add {OUTSIDE_DNS_IP}/24 dev eth0\n\
         link set eth0 up\nroute add {a}.{b}.{c}.0/24 via {OUTSIDE_ROUTER_IP}\n"
    );
    Some((router, outside))
}

/// The `nft -f` input for node `node`: masquerade of its pods' traffic to the outside network
/// (unless `egress-no-snat`), and the `egress-drop` / `egress-reply-drop` faults.
pub fn node_rules(plan: &Plan, node: usize, faults: &[Fault]) -> String {
    let name = &plan.nodes[node].name;
    let has = |f: fn(&Fault) -> Option<&String>| faults.iter().filter_map(f).any(|n| n == name);
    let mut out = format!(
        "table ip {CNI_TABLE} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n"
    );
    if !has(|f| match f {
        Fault::EgressNoSnat { node } => Some(node),
        _ => None,
    }) {
        let _ = writeln!(
            out,
            "    oifname \"eth0\" ip saddr {} ip daddr {OUTSIDE_CIDR} masquerade",
            plan.nodes[node].pod_cidr()
        );
    }
    out.push_str("  }\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    if has(|f| match f {
        Fault::EgressDrop { node } => Some(node),
        _ => None,
    }) {
        let _ = writeln!(out, "    oifname \"eth0\" ip daddr {OUTSIDE_CIDR} drop");
    }
    if has(|f| match f {
        Fault::EgressReplyDrop { node } => Some(node),
        _ => None,
    }) {
        let _ = writeln!(
            out,
            "    iifname \"eth0\" ip saddr {OUTSIDE_CIDR} tcp flags & (syn | ack) == syn | ack drop"
        );
    }
    out.push_str("  }\n}\n");
    out
}

/// The `nft -f` input for the outside namespace: the `outside-drop` fault, or nothing.
fn outside_rules(faults: &[Fault]) -> Option<String> {
    faults.iter().any(|f| matches!(f, Fault::OutsideDrop)).then(|| {
        format!(
            "table ip netdiag-lab-outside {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
             iifname \"eth0\" ip daddr {OUTSIDE_HOST_IP} meta l4proto tcp drop\n  }}\n}}\n"
        )
    })
}

impl Builder<'_> {
    /// The nodes' egress rules, and the outside host's processes: the TCP server and (unless
    /// `upstream-dns-down`) the DNS server.
    pub(crate) fn outside(&self, me: &Path) -> Result<()> {
        let plan = self.plan;
        let Some(ns) = plan.outside_netns.as_deref() else {
            return Ok(());
        };
        let faults = &self.scenario.faults;
        for (i, node) in plan.nodes.iter().enumerate() {
            self.run_file(
                &format!("{}.cni.nft", node.netns),
                &node_rules(plan, i, faults),
                "ip",
                &["netns", "exec", &node.netns, "nft", "-f"],
            )
            .with_context(|| format!("failed to program the egress rules of node {}", node.name))?;
        }
        if let Some(rules) = outside_rules(faults) {
            self.run_file("outside.nft", &rules, "ip", &["netns", "exec", ns, "nft", "-f"])
                .context("failed to program the outside network's firewall")?;
        }
        std::fs::create_dir_all(self.state.path("logs"))?;
        let mut args: Vec<String> = vec!["pod-app".into(), "--pod".into(), "outside/partner".into()];
        for port in OUTSIDE_PORTS {
            args.extend(["--listen".into(), format!("tcp:{OUTSIDE_HOST_IP}:{port}")]);
        }
        let log = self.state.path("logs/outside-host.log");
        crate::cluster::components::spawn_in(ns, me, &args, &log)
            .context("failed to start the outside host's server")?;
        wait_listening(ns, SocketAddr::from((OUTSIDE_HOST_IP, OUTSIDE_PORTS[0])), &log)?;
        if faults.iter().any(|f| matches!(f, Fault::UpstreamDnsDown)) {
            return Ok(());
        }
        let log = self.state.path("logs/outside-dns.log");
        let args: Vec<String> = [
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--log-facility=-",
            "--user=root",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([
            format!("--listen-address={OUTSIDE_DNS_IP}"),
            format!("--host-record={OUTSIDE_NAME},{OUTSIDE_HOST_IP}"),
        ])
        .collect();
        crate::cluster::components::spawn_in(ns, Path::new("dnsmasq"), &args, &log)
            .context("failed to start the outside network's DNS server")?;
        wait_listening(ns, SocketAddr::from((OUTSIDE_DNS_IP, 53)), &log)
    }
}

/// Waits until something accepts TCP on `at` in namespace `ns`; else names the log.
fn wait_listening(ns: &str, at: SocketAddr, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while netns::connect_tcp(&netns::named(ns), at, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "nothing listens on {at} in the outside network; its log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The cluster DNS's upstream, when the lab has an outside network.
pub fn upstream_dns(plan: &Plan) -> Option<std::net::Ipv4Addr> {
    plan.outside_netns.as_ref().map(|_| plan::OUTSIDE_DNS_IP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn plan(faults: &str) -> Plan {
        let text = format!("name: t\nnodes: [a, b]\noutside: true\nfaults: {faults}\n");
        Plan::new(&Scenario::parse(&text).unwrap(), "ox000002", false).unwrap()
    }

    #[test]
    fn every_node_masquerades_its_pods_to_the_outside_network_unless_told_not_to() {
        let faults = vec![Fault::EgressNoSnat { node: "b".into() }];
        let p = plan("[{kind: egress-no-snat, node: b}]");
        let a = node_rules(&p, 0, &faults);
        assert!(
            a.contains(&format!(
                "ip saddr {} ip daddr 198.51.100.0/24 masquerade",
                p.nodes[0].pod_cidr()
            )),
            "{a}"
        );
        assert!(!a.contains("drop"), "{a}");
        assert!(!node_rules(&p, 1, &faults).contains("masquerade"));
    }

    #[test]
    fn egress_drops_go_on_the_named_node_only() {
        let faults = vec![
            Fault::EgressDrop { node: "a".into() },
            Fault::EgressReplyDrop { node: "b".into() },
        ];
        let p = plan("[]");
        let a = node_rules(&p, 0, &faults);
        let b = node_rules(&p, 1, &faults);
        assert!(a.contains("oifname \"eth0\" ip daddr 198.51.100.0/24 drop") && !a.contains("syn | ack"));
        assert!(
            b.contains("tcp flags & (syn | ack) == syn | ack drop")
                && !b.contains("daddr 198.51.100.0/24 drop")
        );
    }

    #[test]
    fn the_outside_routes_only_the_nodes_network_back() {
        let (_, outside) = network(&plan("[]")).unwrap();
        let routes: Vec<&str> = outside.lines().filter(|l| l.starts_with("route")).collect();
        assert_eq!(routes, ["route add 172.18.0.0/24 via 198.51.100.1"]);
        assert_eq!(outside_rules(&[]), None);
        assert!(
            outside_rules(&[Fault::OutsideDrop])
                .unwrap()
                .contains("iifname \"eth0\" ip daddr 198.51.100.10 meta l4proto tcp drop")
        );
    }
}
