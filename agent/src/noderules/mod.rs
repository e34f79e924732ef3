//! The `nodeDataplane` probe: what the node actually programmed for a Service VIP, and how full
//! its conntrack table is.
//!
//! Runs in the node's own network namespace (on a worker of [`crate::netns`]), whatever namespace
//! the request's other probes run in. Each of kube-proxy's modes is read where the node has it:
//! IPVS from `/proc/net/ip_vs`, nftables mode with `nft -j list table ip kube-proxy`, iptables mode
//! with `iptables-save` (children of the worker thread, so they see the node's rules). The first
//! mode with a rule for the VIP answers; a mode that is present but has no rule says "no rule";
//! when no mode is present or readable the reading is an error naming each, never a guess (a
//! node whose Services are handled elsewhere, e.g. by an eBPF dataplane, is not "missing rules").
//! Conntrack fill comes from `/proc/sys/net/netfilter/nf_conntrack_{count,max}`, which are per
//! namespace and resolved for the reading thread. Parsing is pure and tested on fixtures.

mod iptables;
mod ipvs;
mod listing;
mod nftables;

use netdiag_proto::{
    ConntrackFill, NodeDataplaneProbe, NodeDataplaneResult, RuleSource, ServiceRules, ServiceVip,
};

use crate::netns::{self, NetnsFile};

/// Runs the probe in the node namespace at `node_netns`.
pub async fn probe(p: &NodeDataplaneProbe, node_netns: &str) -> NodeDataplaneResult {
    let ns = match NetnsFile::open(node_netns) {
        Ok(ns) => ns,
        Err(err) => return failed(p, err.to_string()),
    };
    let service = p.service.clone();
    let inode = ns.inode();
    let read = netns::run_in(&ns, move || async move {
        NodeDataplaneResult {
            service_rules: match &service {
                Some(vip) => Some(read_rules(vip, inode).await),
                None => None,
            },
            conntrack: conntrack(),
        }
    })
    .await;
    read.unwrap_or_else(|err| failed(p, err.to_string()))
}

/// What one of kube-proxy's modes showed for a VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeReading {
    /// The mode is in use on the node; the rules say whether the VIP has one.
    Programmed(ServiceRules),
    /// The mode is not in use on the node (no table, no chain): why.
    Absent(String),
    /// The mode's rules could not be read: why.
    Unread(String),
}

/// The node's programming for `vip`, in the calling thread's namespace (`netns`, its inode):
/// IPVS, then nftables mode, then iptables mode. The rule listings run at once (each is a process
/// of its own, and each takes tens of milliseconds on a node with thousands of rules), and are
/// reused while the ruleset is unchanged ([`listing`]).
async fn read_rules(vip: &ServiceVip, netns: u64) -> ServiceRules {
    let (nftables, iptables) = tokio::join!(nftables::read(vip, netns), iptables::read(vip, netns));
    combine(vec![ipvs::read(vip), nftables, iptables])
}

/// The first mode with a rule for the VIP; else a mode in use without one; else an error that
/// says, mode by mode, why nothing was concluded.
pub fn combine(readings: Vec<ModeReading>) -> ServiceRules {
    let programmed = || {
        readings.iter().filter_map(|r| match r {
            ModeReading::Programmed(rules) => Some(rules),
            _ => None,
        })
    };
    if let Some(rules) = programmed().find(|r| r.found).or_else(|| programmed().next()) {
        return rules.clone();
    }
    let why: Vec<&str> = readings
        .iter()
        .filter_map(|r| match r {
            ModeReading::Absent(why) | ModeReading::Unread(why) => Some(why.as_str()),
            ModeReading::Programmed(_) => None,
        })
        .collect();
    ServiceRules {
        source: RuleSource::None,
        error: Some(format!("no kube-proxy rules were read: {}", why.join("; "))),
        ..Default::default()
    }
}

fn failed(p: &NodeDataplaneProbe, why: String) -> NodeDataplaneResult {
    NodeDataplaneResult {
        service_rules: p.service.as_ref().map(|_| ServiceRules {
            source: RuleSource::None,
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

/// What the modes' parser tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use netdiag_proto::{ServiceRules, ServiceVip, Transport};

    use super::ModeReading;

    pub fn vip(ip: &str, port: u16, protocol: Transport) -> ServiceVip {
        ServiceVip {
            ip: ip.parse().unwrap(),
            port,
            protocol,
        }
    }

    /// The rules of a mode in use; panics on any other reading.
    pub fn programmed(reading: ModeReading) -> ServiceRules {
        match reading {
            ModeReading::Programmed(rules) => rules,
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(source: &str, found: bool) -> ModeReading {
        ModeReading::Programmed(ServiceRules {
            source: source.into(),
            found,
            ..Default::default()
        })
    }

    #[test]
    fn the_mode_with_a_rule_for_the_vip_answers() {
        let r = combine(vec![
            rules("ipvs", false),
            rules("nftables", true),
            rules("iptables", false),
        ]);
        assert_eq!((r.source.as_str(), r.found), ("nftables", true));
    }

    #[test]
    fn a_mode_in_use_without_a_rule_says_no_rule() {
        let r = combine(vec![
            ModeReading::Absent("no ip_vs".into()),
            ModeReading::Unread("cannot run nft".into()),
            rules("iptables", false),
        ]);
        assert_eq!((r.source.as_str(), r.found, r.error), ("iptables", false, None));
    }

    #[test]
    fn no_mode_in_use_is_an_error_naming_each_never_a_missing_rule() {
        let r = combine(vec![
            ModeReading::Absent("no ip_vs".into()),
            ModeReading::Absent("no table ip kube-proxy".into()),
            ModeReading::Unread("cannot run iptables-save".into()),
        ]);
        let error = r.error.expect("an error");
        assert!(
            error.contains("no ip_vs") && error.contains("kube-proxy") && error.contains("iptables-save")
        );
        assert!(!r.found);
    }
}
