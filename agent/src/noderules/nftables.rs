//! kube-proxy's nftables mode, read with `nft -j list table ip kube-proxy` (`ip6` for IPv6). The
//! table dispatches a Service's traffic through the `service-ips` verdict map
//! (`VIP . proto . port : goto service-…`); the service chain picks an `endpoint-…` chain with
//! `numgen random mod N vmap { … }`, and each endpoint chain DNATs to one address (since
//! Kubernetes 1.35 the service chain DNATs itself through `numgen random mod N map { … }`). A
//! Service without endpoints is an element of `no-endpoint-services` (reject or drop). The JSON is
//! read with serde into the few objects this needs; parsing is pure and tested on listings the
//! `nft` binary printed.

use std::net::{IpAddr, SocketAddr};

use netdiag_proto::{RuleSource, ServiceRules, ServiceVip, Transport};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{ModeReading, listing};

const SOURCE: RuleSource = RuleSource::Nftables;

/// kube-proxy's nftables table for the VIP's family, read in the calling thread's namespace
/// (`netns`, its inode).
pub async fn read(vip: &ServiceVip, netns: u64) -> ModeReading {
    let family = if vip.ip.is_ipv6() { "ip6" } else { "ip" };
    let args = ["-j", "list", "table", family, "kube-proxy"];
    let out = match listing::list(netns, "nft", &args, |_| true).await {
        Ok(out) => out,
        Err(err) => return ModeReading::Unread(format!("cannot run nft: {err}")),
    };
    if !out.success {
        // nft says "No such file or directory" for a table that does not exist.
        return if out.stderr.contains("No such file or directory") {
            ModeReading::Absent(format!("no table {family} kube-proxy ({SOURCE} mode not in use)"))
        } else {
            ModeReading::Unread(format!(
                "nft -j list table {family} kube-proxy failed: {}",
                out.failure()
            ))
        };
    }
    match serde_json::from_str::<Listing>(&out.stdout) {
        Ok(table) => parse_table(vip, &table),
        Err(err) => ModeReading::Unread(format!(
            "cannot read the output of nft -j list table {family} kube-proxy: {err}"
        )),
    }
}

/// What `nft -j list …` prints: a list of objects, each one of `table`, `chain`, `map`, `set`,
/// `rule`, … Only maps and rules are read.
#[derive(Debug, Deserialize)]
pub struct Listing {
    nftables: Vec<Object>,
}

/// One object of a listing; the others (`metainfo`, `table`, `chain`, `set`) are skipped.
#[derive(Debug, Deserialize)]
struct Object {
    map: Option<Map>,
    rule: Option<Rule>,
}

/// A named map: `elem` holds `[key, value]` pairs.
#[derive(Debug, Deserialize)]
struct Map {
    name: String,
    #[serde(default)]
    elem: Vec<(Key, Verdict)>,
}

/// A map element's key: `{"concat": [ADDR, PROTO, PORT]}`, or that inside `{"elem": {"val":
/// …}}` when the element has a comment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Key {
    Concat { concat: Vec<Atom> },
    Element { elem: Box<Element> },
    Other(IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct Element {
    val: Key,
}

/// A literal inside an expression: an address or protocol name, or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Atom {
    Text(String),
    Number(u64),
    Other(IgnoredAny),
}

/// A verdict: `{"goto": {"target": CHAIN}}`, `{"drop": null}`, …
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Verdict {
    Known(KnownVerdict),
    Other(IgnoredAny),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KnownVerdict {
    Goto { target: String },
    Jump { target: String },
    Drop,
    Accept,
}

/// One rule of a chain, as its list of expressions.
#[derive(Debug, Deserialize)]
struct Rule {
    chain: String,
    expr: Vec<Expr>,
}

/// An expression of a rule; only the ones that pick or translate to an endpoint are read.
#[derive(Debug, Deserialize)]
struct Expr {
    vmap: Option<Vmap>,
    dnat: Option<Dnat>,
}

/// `KEY vmap { … }` (an inline map) or `KEY vmap @name`.
#[derive(Debug, Deserialize)]
struct Vmap {
    data: Inline<Verdict>,
}

/// An inline map's elements, `{"set": [[KEY, VALUE], …]}`, or anything else (a named map).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Inline<V> {
    Set { set: Vec<(IgnoredAny, V)> },
    Other(IgnoredAny),
}

/// `dnat to ADDR:PORT`, or `dnat ip to numgen random mod N map { 0 : ADDR . PORT, … }`.
#[derive(Debug, Deserialize)]
struct Dnat {
    addr: DnatAddr,
    port: Option<Atom>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DnatAddr {
    Address(IpAddr),
    Map { map: DnatMap },
    Other(IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct DnatMap {
    data: Inline<Key>,
}

/// What the `kube-proxy` table (as `nft -j list table` prints it) programs for `vip`.
pub fn parse_table(vip: &ServiceVip, table: &Listing) -> ModeReading {
    let mut rules = ServiceRules {
        source: SOURCE,
        ..Default::default()
    };
    if let Some(verdict) = verdict_for(table, "service-ips", vip) {
        rules.found = true;
        let chain = match verdict {
            KnownVerdict::Goto { target } | KnownVerdict::Jump { target } => target.as_str(),
            KnownVerdict::Drop | KnownVerdict::Accept => "",
        };
        let service: Vec<&Expr> = exprs(table, chain).collect();
        // Since Kubernetes 1.35 the service chain translates itself (`dnat ip to numgen random
        // mod N map { 0 : ADDR . PORT, … }`); before, it jumped to one endpoint chain each.
        let inline = service.iter().flat_map(|e| inline_dnat_targets(e));
        let through_chains = service
            .iter()
            .flat_map(|e| gotos(e))
            .filter(|c| c.starts_with("endpoint-"))
            .filter_map(|endpoint| exprs(table, endpoint).find_map(dnat_target));
        for to in inline.chain(through_chains) {
            if !rules.endpoints.contains(&to) {
                rules.endpoints.push(to);
            }
        }
        return ModeReading::Programmed(rules);
    }
    if let Some(verdict) = verdict_for(table, "no-endpoint-services", vip) {
        rules.found = true;
        // kube-proxy rejects a Service without endpoints and drops one whose
        // internalTrafficPolicy is Local when this node has none of them.
        match verdict {
            KnownVerdict::Goto { target } | KnownVerdict::Jump { target } => {
                rules.rejects = target.contains("reject");
                rules.drops = target.contains("drop");
            }
            KnownVerdict::Drop => rules.drops = true,
            KnownVerdict::Accept => {}
        }
    }
    ModeReading::Programmed(rules)
}

/// The verdict of `vip`'s element (`ADDR . PROTO . PORT`) in the verdict map `map`.
fn verdict_for<'a>(table: &'a Listing, map: &str, vip: &ServiceVip) -> Option<&'a KnownVerdict> {
    let map = table
        .nftables
        .iter()
        .filter_map(|o| o.map.as_ref())
        .find(|m| m.name == map)?;
    map.elem.iter().find_map(|(key, verdict)| match verdict {
        Verdict::Known(verdict) if is_vip(key, vip) => Some(verdict),
        _ => None,
    })
}

/// Whether a map key is `vip`'s address, protocol and port.
fn is_vip(key: &Key, vip: &ServiceVip) -> bool {
    let proto = match vip.protocol {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    match key {
        Key::Element { elem } => is_vip(&elem.val, vip),
        Key::Concat { concat } => match concat.as_slice() {
            [Atom::Text(ip), Atom::Text(p), Atom::Number(port)] => {
                ip.parse::<IpAddr>().is_ok_and(|ip| ip == vip.ip)
                    && p == proto
                    && *port == u64::from(vip.port)
            }
            _ => false,
        },
        Key::Other(_) => false,
    }
}

/// The expressions of every rule of `chain`, in order.
fn exprs<'a>(table: &'a Listing, chain: &'a str) -> impl Iterator<Item = &'a Expr> {
    table
        .nftables
        .iter()
        .filter_map(|o| o.rule.as_ref())
        .filter(move |r| r.chain == chain)
        .flat_map(|r| &r.expr)
}

/// The chains an inline verdict map goes to (`numgen random mod N vmap { 0 : goto …, … }`).
fn gotos(expr: &Expr) -> impl Iterator<Item = &str> {
    let set = match expr.vmap.as_ref().map(|v| &v.data) {
        Some(Inline::Set { set }) => set.as_slice(),
        _ => &[],
    };
    set.iter().filter_map(|(_, verdict)| match verdict {
        Verdict::Known(KnownVerdict::Goto { target }) => Some(target.as_str()),
        _ => None,
    })
}

/// The endpoints of a `dnat … to numgen random mod N map { 0 : ADDR . PORT, … }`, in element
/// order.
fn inline_dnat_targets(expr: &Expr) -> Vec<SocketAddr> {
    let Some(Dnat {
        addr: DnatAddr::Map { map },
        ..
    }) = &expr.dnat
    else {
        return vec![];
    };
    let Inline::Set { set } = &map.data else {
        return vec![];
    };
    set.iter()
        .filter_map(|(_, target)| match target {
            Key::Concat { concat } => match concat.as_slice() {
                [Atom::Text(addr), Atom::Number(port)] => {
                    Some(SocketAddr::new(addr.parse().ok()?, u16::try_from(*port).ok()?))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The `dnat to ADDR:PORT` of an endpoint chain.
fn dnat_target(expr: &Expr) -> Option<SocketAddr> {
    match expr.dnat.as_ref()? {
        Dnat {
            addr: DnatAddr::Address(addr),
            port: Some(Atom::Number(port)),
        } => Some(SocketAddr::new(*addr, u16::try_from(*port).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noderules::fixtures::{programmed, vip};

    /// `nft -j list table ip kube-proxy` as nft 1.0.6 printed it after `nft -f` loaded
    /// `testdata/nft-kube-proxy-ip.nft`, a table of kube-proxy's shape: `payments` through
    /// endpoint chains, `orders` and `kube-dns` translated by their service chains (1.35 and
    /// later), `empty` without endpoints.
    const TABLE: &str = include_str!("testdata/nft-kube-proxy-ip.json");
    /// The same for `ip6` (`testdata/nft-kube-proxy-ip6.nft`), with a `drop` verdict.
    const TABLE6: &str = include_str!("testdata/nft-kube-proxy-ip6.json");

    fn read(vip: &ServiceVip, json: &str) -> ServiceRules {
        programmed(parse_table(vip, &serde_json::from_str(json).unwrap()))
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_vip_element_is_followed_through_its_service_chain_to_each_dnat() {
        let rules = read(&vip("10.96.1.1", 80, Transport::Tcp), TABLE);
        assert_eq!(rules.source, "nftables");
        assert!(rules.found && !rules.rejects);
        assert_eq!(rules.endpoints, addrs(&["10.244.2.4:8080", "10.244.2.5:8080"]));
    }

    #[test]
    fn the_protocol_and_port_are_part_of_the_key() {
        let rules = read(&vip("10.96.1.1", 80, Transport::Udp), TABLE);
        assert!(!rules.found);
        let rules = read(&vip("10.96.1.1", 8080, Transport::Tcp), TABLE);
        assert!(!rules.found);
        let rules = read(&vip("10.96.0.10", 53, Transport::Udp), TABLE);
        assert!(rules.found);
    }

    #[test]
    fn a_service_without_endpoints_is_rejected_through_its_own_map() {
        let rules = read(&vip("10.96.1.3", 80, Transport::Tcp), TABLE);
        assert!(rules.found && rules.rejects && !rules.drops && rules.endpoints.is_empty());
    }

    #[test]
    fn a_service_without_local_endpoints_is_dropped_not_rejected() {
        let rules = read(&vip("fd00:10:96::4", 53, Transport::Udp), TABLE6);
        assert!(rules.found && rules.drops && !rules.rejects && rules.endpoints.is_empty());
    }

    #[test]
    fn a_service_chain_that_translates_itself_lists_each_endpoint_of_its_map() {
        let rules = read(&vip("10.96.1.2", 80, Transport::Tcp), TABLE);
        assert!(rules.found && !rules.rejects);
        assert_eq!(rules.endpoints, addrs(&["10.244.2.2:8080", "10.244.2.3:8080"]));
        let dns = read(&vip("10.96.0.10", 53, Transport::Udp), TABLE);
        assert_eq!(dns.endpoints, addrs(&["10.244.1.3:53"]));
    }

    #[test]
    fn ipv6_endpoints_are_read_from_endpoint_chains_and_inline_maps() {
        let chains = read(&vip("fd00:10:96::1", 80, Transport::Tcp), TABLE6);
        assert!(chains.found && !chains.rejects);
        assert_eq!(chains.endpoints, addrs(&["[fd00:10:244:2::4]:8080"]));
        let inline = read(&vip("fd00:10:96::2", 80, Transport::Tcp), TABLE6);
        assert_eq!(
            inline.endpoints,
            addrs(&["[fd00:10:244:2::2]:8080", "[fd00:10:244:2::3]:8080"])
        );
    }

    #[test]
    fn a_vip_not_in_the_table_is_a_table_without_its_rule() {
        let rules = read(&vip("10.96.9.9", 80, Transport::Tcp), TABLE);
        assert_eq!(rules.source, "nftables");
        assert!(!rules.found && rules.endpoints.is_empty() && rules.error.is_none());
    }

    #[test]
    fn objects_and_expressions_it_does_not_know_are_skipped() {
        let json = r#"{"nftables": [{"metainfo": {"version": "9"}}, {"flowtable": {"name": "f"}},
            {"map": {"name": "service-ips", "elem": [[{"concat": ["10.96.1.1", "tcp", 80]},
              {"goto": {"target": "service-A"}}], [{"range": [1, 2]}, {"queue": {"num": 1}}]]}},
            {"rule": {"chain": "service-A", "expr": [{"counter": null},
              {"dnat": {"addr": {"payload": {"protocol": "ip", "field": "saddr"}}}},
              {"vmap": {"key": {"numgen": {}}, "data": {"set": [[0, {"goto": {"target": "endpoint-B"}}]]}}}]}},
            {"rule": {"chain": "endpoint-B", "expr": [{"dnat": {"addr": "10.244.0.7", "port": 80}}]}}]}"#;
        let rules = read(&vip("10.96.1.1", 80, Transport::Tcp), json);
        assert!(rules.found);
        assert_eq!(rules.endpoints, addrs(&["10.244.0.7:80"]));
    }
}
