//! The `nodeDataplane` probe: what the node actually programmed for a Service VIP, and how full
//! its conntrack table is.
//!
//! Runs in the node's own network namespace (on a worker of [`crate::netns`]), whatever namespace
//! the request's other probes run in. kube-proxy's iptables mode is read with `iptables-save`
//! (run as a child of the worker thread, so it sees the node's rules; with the nf_tables backend
//! it reads the kernel's nftables rules through netlink); a node without the binary, or whose
//! proxy uses IPVS or nftables mode, gets an error naming that, never a guess. Conntrack fill
//! comes from `/proc/sys/net/netfilter/nf_conntrack_{count,max}`, which are per namespace and
//! resolved for the reading thread. Parsing is pure and tested on fixtures.

mod iptables;

use netdiag_proto::{ConntrackFill, NodeDataplaneProbe, NodeDataplaneResult, ServiceRules};

use crate::netns::{self, NetnsFile};

/// Runs the probe in the node namespace at `node_netns`.
pub async fn probe(p: &NodeDataplaneProbe, node_netns: &str) -> NodeDataplaneResult {
    let ns = match NetnsFile::open(node_netns) {
        Ok(ns) => ns,
        Err(err) => return failed(p, err.to_string()),
    };
    let service = p.service.clone();
    let read = netns::run_in(&ns, move || async move {
        NodeDataplaneResult {
            service_rules: service.as_ref().map(iptables::read_rules),
            conntrack: conntrack(),
        }
    })
    .await;
    read.unwrap_or_else(|err| failed(p, err.to_string()))
}

fn failed(p: &NodeDataplaneProbe, why: String) -> NodeDataplaneResult {
    NodeDataplaneResult {
        service_rules: p.service.as_ref().map(|_| ServiceRules {
            source: "iptables".into(),
            error: Some(why.clone()),
            ..Default::default()
        }),
        conntrack: ConntrackFill {
            error: Some(why),
            ..Default::default()
        },
    }
}

/// The conntrack table's fill in the calling thread's namespace.
pub fn conntrack() -> ConntrackFill {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
            .map_err(|err| format!("cannot read {name} (is nf_conntrack loaded?): {err}"))
            .and_then(|s| s.trim().parse::<u64>().map_err(|err| format!("{name}: {err}")))
    };
    match (read("nf_conntrack_count"), read("nf_conntrack_max")) {
        (Ok(count), Ok(max)) => ConntrackFill {
            count: Some(count),
            max: Some(max),
            error: None,
        },
        (Err(err), _) | (_, Err(err)) => ConntrackFill {
            error: Some(err),
            ..Default::default()
        },
    }
}
