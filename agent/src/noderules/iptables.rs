//! kube-proxy's iptables mode, read with `iptables-save` (with the nf_tables backend it reads the
//! kernel's nftables rules through netlink). Parsing is pure and tested on fixtures.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use netdiag_proto::{RuleSource, ServiceRules, ServiceVip, Transport};

use super::ModeReading;
use super::listing::{self, Listing};

const SOURCE: RuleSource = RuleSource::Iptables;

/// kube-proxy's iptables rules for `vip`, read in the calling thread's namespace (`netns`, its
/// inode) with one `iptables-save` of every table: with the nf_tables backend each run fetches the
/// whole ruleset, so the nat and filter tables read apart cost nearly twice as much as both read
/// at once.
pub async fn read(vip: &ServiceVip, netns: u64) -> ModeReading {
    let binary = if vip.ip.is_ipv6() {
        "ip6tables-save"
    } else {
        "iptables-save"
    };
    let out = match listing::list(netns, binary, &[], Listing::is_of_nftables_backend).await {
        Ok(out) => out,
        Err(err) => return ModeReading::Unread(format!("cannot run {binary}: {err}")),
    };
    if !out.success {
        return ModeReading::Unread(format!("{binary} failed: {}", out.failure()));
    }
    parse_rules(vip, table(&out.stdout, "nat"), table(&out.stdout, "filter"))
}

/// The lines of `table` in an `iptables-save` of several tables (from its `*table` line to its
/// `COMMIT`); empty when the save has no such table.
fn table<'a>(save: &'a str, table: &str) -> &'a str {
    let header = format!("*{table}\n");
    let Some(start) = save
        .match_indices(&header)
        .map(|(i, _)| i)
        .find(|i| *i == 0 || save[..*i].ends_with('\n'))
    else {
        return "";
    };
    let body = &save[start..];
    let end = body.find("\nCOMMIT").map_or(body.len(), |i| i + 1);
    &body[..end]
}

/// What kube-proxy's iptables mode programmed for `vip`, from the nat and filter tables: the `KUBE-SERVICES` rule for the VIP:port, the endpoint chains its
/// `KUBE-SVC-*` chain jumps to and their DNAT targets; or, in the filter table, the REJECT of a
/// Service without endpoints or the DROP of one with `internalTrafficPolicy: Local` and no
/// endpoint on this node.
/// A nat table without `KUBE-SERVICES` is no kube-proxy iptables mode at all: then nothing is
/// concluded from the missing rule.
pub fn parse_rules(vip: &ServiceVip, nat: &str, filter: &str) -> ModeReading {
    let mut rules = ServiceRules {
        source: SOURCE,
        ..Default::default()
    };
    let mut chains: BTreeMap<&str, Vec<Vec<&str>>> = BTreeMap::new();
    for line in nat.lines() {
        if let Some(rest) = line.strip_prefix("-A ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let Some((chain, args)) = words.split_first() {
                chains.entry(chain).or_default().push(args.to_vec());
            }
        }
    }
    let Some(services) = chains.get("KUBE-SERVICES").cloned() else {
        return ModeReading::Absent(format!(
            "no KUBE-SERVICES chain in the nat table ({SOURCE} mode not in use)"
        ));
    };
    let Some(svc_chain) = services
        .iter()
        .find(|args| matches_vip(args, vip))
        .and_then(|args| arg(args, "-j"))
    else {
        let target = filter
            .lines()
            .filter_map(|l| l.strip_prefix("-A KUBE-SERVICES "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|args| matches_vip(args, vip))
            .and_then(|args| arg(&args, "-j").map(str::to_string));
        rules.rejects = target.as_deref() == Some("REJECT");
        rules.drops = target.as_deref() == Some("DROP");
        rules.found = rules.rejects || rules.drops;
        return ModeReading::Programmed(rules);
    };
    rules.found = true;
    let seps: Vec<&str> = chains
        .get(svc_chain)
        .into_iter()
        .flatten()
        .filter_map(|args| arg(args, "-j"))
        .filter(|j| j.starts_with("KUBE-SEP-"))
        .collect();
    for sep in seps {
        for args in chains.get(sep).into_iter().flatten() {
            if arg(args, "-j") == Some("DNAT")
                && let Some(to) = arg(args, "--to-destination").and_then(|d| d.parse::<SocketAddr>().ok())
                && !rules.endpoints.contains(&to)
            {
                rules.endpoints.push(to);
            }
        }
    }
    ModeReading::Programmed(rules)
}

/// The word after `flag`.
fn arg<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .copied()
}

fn matches_vip(args: &[&str], vip: &ServiceVip) -> bool {
    let dest = arg(args, "-d").map(|d| d.trim_end_matches("/32").trim_end_matches("/128"));
    let proto = match vip.protocol {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    dest.and_then(|d| d.parse::<IpAddr>().ok()) == Some(vip.ip)
        && arg(args, "-p") == Some(proto)
        && arg(args, "--dport").and_then(|p| p.parse::<u16>().ok()) == Some(vip.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noderules::fixtures::{self, programmed};

    const NAT: &str = r#"*nat
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.1.1/32 -p tcp -m comment --comment "shop/payments:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAA
-A KUBE-SERVICES -d 10.96.1.2/32 -p tcp -m comment --comment "shop/other cluster IP" -m tcp --dport 80 -j KUBE-SVC-BBBB
-A KUBE-SVC-AAAA -m comment --comment "shop/payments:http -> 10.244.2.4:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-1
-A KUBE-SVC-AAAA -m comment --comment "shop/payments:http -> 10.244.2.5:8080" -j KUBE-SEP-2
-A KUBE-SEP-1 -s 10.244.2.4/32 -m comment --comment "shop/payments:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-1 -p tcp -m comment --comment "shop/payments:http" -m tcp -j DNAT --to-destination 10.244.2.4:8080
-A KUBE-SEP-2 -p tcp -m comment --comment "shop/payments:http" -m tcp -j DNAT --to-destination 10.244.2.5:8080
-A KUBE-SVC-BBBB -j KUBE-SEP-3
-A KUBE-SEP-3 -p tcp -m tcp -j DNAT --to-destination 10.244.9.9:80
COMMIT
"#;
    const FILTER: &str = r#"*filter
-A KUBE-SERVICES -d 10.96.1.3/32 -p tcp -m comment --comment "shop/empty has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
COMMIT
"#;

    fn vip(ip: &str, port: u16) -> ServiceVip {
        fixtures::vip(ip, port, Transport::Tcp)
    }

    #[test]
    fn a_vip_rule_is_followed_to_its_dnat_endpoints() {
        let rules = programmed(parse_rules(&vip("10.96.1.1", 80), NAT, FILTER));
        assert!(rules.found && !rules.rejects);
        assert_eq!(
            rules.endpoints,
            vec![
                "10.244.2.4:8080".parse::<SocketAddr>().unwrap(),
                "10.244.2.5:8080".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_vip_without_a_rule_is_not_found() {
        let rules = programmed(parse_rules(&vip("10.96.1.1", 443), NAT, FILTER));
        assert!(!rules.found && rules.endpoints.is_empty());
        let rules = programmed(parse_rules(&vip("10.96.7.7", 80), NAT, FILTER));
        assert!(!rules.found);
    }

    #[test]
    fn an_ipv6_vip_rule_from_ip6tables_is_followed_to_its_dnat_endpoints() {
        let nat = "*nat\n\
            -A KUBE-SERVICES -d fd00:10:96::101/128 -p tcp -m comment --comment \"shop/payments:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-AAAA\n\
            -A KUBE-SVC-AAAA -j KUBE-SEP-1\n\
            -A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination [fd00:10:244:2::2]:8080\nCOMMIT\n";
        let rules = programmed(parse_rules(&vip("fd00:10:96::101", 80), nat, ""));
        assert!(rules.found, "{rules:?}");
        assert_eq!(
            rules.endpoints,
            vec!["[fd00:10:244:2::2]:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn a_service_without_endpoints_has_a_reject_rule() {
        let rules = programmed(parse_rules(&vip("10.96.1.3", 80), NAT, FILTER));
        assert!(rules.found && rules.rejects && rules.endpoints.is_empty());
    }

    #[test]
    fn a_local_service_without_an_endpoint_on_the_node_has_a_drop_rule() {
        let filter = "*filter\n\
            -A KUBE-SERVICES -d 10.96.1.4/32 -p tcp -m comment --comment \"shop/local:http has no local endpoints\" -m tcp --dport 80 -j DROP\nCOMMIT\n";
        let rules = programmed(parse_rules(&vip("10.96.1.4", 80), NAT, filter));
        assert!(rules.found && rules.drops && !rules.rejects && rules.endpoints.is_empty());
        let rules = programmed(parse_rules(&vip("10.96.1.3", 80), NAT, FILTER));
        assert!(!rules.drops);
    }

    #[test]
    fn a_local_service_chain_is_followed_to_the_nodes_endpoints() {
        let nat = "*nat\n\
            -A KUBE-SERVICES -d 10.96.1.4/32 -p tcp -m comment --comment \"shop/local:http cluster IP\" -m tcp --dport 80 -j KUBE-SVL-CCCC\n\
            -A KUBE-SVL-CCCC -m comment --comment \"shop/local:http -> 10.244.1.4:8080\" -j KUBE-SEP-4\n\
            -A KUBE-SEP-4 -p tcp -m tcp -j DNAT --to-destination 10.244.1.4:8080\nCOMMIT\n";
        let rules = programmed(parse_rules(&vip("10.96.1.4", 80), nat, ""));
        assert_eq!(
            rules.endpoints,
            vec!["10.244.1.4:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn the_nat_and_filter_tables_are_found_in_a_save_of_every_table() {
        let save = format!(
            "# Generated by iptables-save\n*mangle\n-A PREROUTING -j MARK --set-mark 1\nCOMMIT\n{FILTER}{NAT}"
        );
        assert_eq!(table(&save, "nat"), NAT.trim_end_matches("COMMIT\n"));
        assert_eq!(table(&save, "filter"), FILTER.trim_end_matches("COMMIT\n"));
        assert_eq!(table(&save, "raw"), "");
        let rules = programmed(parse_rules(
            &vip("10.96.1.3", 80),
            table(&save, "nat"),
            table(&save, "filter"),
        ));
        assert!(rules.found && rules.rejects);
        let rules = programmed(parse_rules(
            &vip("10.96.1.1", 80),
            table(&save, "nat"),
            table(&save, "filter"),
        ));
        assert_eq!(rules.endpoints.len(), 2);
    }

    #[test]
    fn a_nat_table_without_kube_services_concludes_nothing() {
        let reading = parse_rules(&vip("10.96.1.1", 80), "*nat\nCOMMIT\n", FILTER);
        assert!(matches!(reading, ModeReading::Absent(why) if why.contains("KUBE-SERVICES")));
    }
}
