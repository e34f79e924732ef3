//! kube-proxy's nftables mode, read with `nft list table ip kube-proxy` (`ip6` for IPv6). The
//! table dispatches a Service's traffic through the `service-ips` verdict map
//! (`VIP . proto . port : goto service-…`); the service chain picks an `endpoint-…` chain with
//! `numgen random mod N vmap { … }`, and each endpoint chain DNATs to one address. A Service
//! without endpoints is an element of `no-endpoint-services` (reject or drop). Parsing is pure and
//! tested on fixtures in the format `nft` prints.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use netdiag_proto::{ServiceRules, ServiceVip, Transport};

use super::{ModeReading, listing};

const SOURCE: &str = "nftables";

/// kube-proxy's nftables table for the VIP's family, read in the calling thread's namespace
/// (`netns`, its inode).
pub async fn read(vip: &ServiceVip, netns: u64) -> ModeReading {
    let family = if vip.ip.is_ipv6() { "ip6" } else { "ip" };
    let out = match listing::list(netns, "nft", &["list", "table", family, "kube-proxy"], |_| true).await {
        Ok(out) => out,
        Err(err) => return ModeReading::Unread(format!("cannot run nft: {err}")),
    };
    if !out.success {
        // nft says "No such file or directory" for a table that does not exist.
        return if out.stderr.contains("No such file or directory") {
            ModeReading::Absent(format!("no table {family} kube-proxy ({SOURCE} mode not in use)"))
        } else {
            ModeReading::Unread(format!(
                "nft list table {family} kube-proxy failed: {}",
                out.failure()
            ))
        };
    }
    parse_table(vip, &out.stdout)
}

/// What the `kube-proxy` table (as `nft list table` prints it) programs for `vip`.
pub fn parse_table(vip: &ServiceVip, table: &str) -> ModeReading {
    let blocks = blocks(table);
    let mut rules = ServiceRules {
        source: SOURCE.into(),
        ..Default::default()
    };
    let key = element_key(vip);
    if let Some(verdict) = blocks
        .get("map service-ips")
        .and_then(|body| verdict_for(body, &key))
    {
        let chain = verdict.trim_start_matches("goto ").trim_start_matches("jump ");
        rules.found = true;
        let service = blocks
            .get(&format!("chain {chain}"))
            .map(String::as_str)
            .unwrap_or("");
        // Since Kubernetes 1.35 the service chain translates itself (`dnat ip to numgen random
        // mod N map { 0 : ADDR . PORT, … }`); before, it jumped to one endpoint chain each.
        for to in inline_dnat_targets(service) {
            if !rules.endpoints.contains(&to) {
                rules.endpoints.push(to);
            }
        }
        for endpoint in gotos(service).filter(|c| c.starts_with("endpoint-")) {
            let body = blocks
                .get(&format!("chain {endpoint}"))
                .map(String::as_str)
                .unwrap_or("");
            if let Some(to) = dnat_target(body)
                && !rules.endpoints.contains(&to)
            {
                rules.endpoints.push(to);
            }
        }
        return ModeReading::Programmed(rules);
    }
    if let Some(verdict) = blocks
        .get("map no-endpoint-services")
        .and_then(|body| verdict_for(body, &key))
    {
        rules.found = true;
        rules.rejects = verdict.contains("reject") || verdict.contains("drop");
    }
    ModeReading::Programmed(rules)
}

/// `10.96.1.1 . tcp . 80`, as the map's elements spell the VIP.
fn element_key(vip: &ServiceVip) -> String {
    let proto = match vip.protocol {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    format!("{} . {proto} . {}", vip.ip, vip.port)
}

/// The bodies of the table's maps and chains by header (`map service-ips`, `chain services`).
/// Nested braces (a map's `elements = { … }`, an inline `vmap { … }`) stay inside the body.
fn blocks(table: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String, i32)> = None;
    for line in table.lines() {
        let line = line.trim();
        if let Some((header, body, depth)) = current.as_mut() {
            *depth += brace_balance(line);
            if *depth <= 0 {
                out.insert(std::mem::take(header), std::mem::take(body));
                current = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        }
        for kind in ["chain ", "map "] {
            if let Some(name) = line.strip_prefix(kind).and_then(|l| l.strip_suffix('{')) {
                current = Some((format!("{kind}{}", name.trim()), String::new(), 1));
            }
        }
    }
    out
}

/// `{` minus `}` on a line, outside quoted comments.
fn brace_balance(line: &str) -> i32 {
    let mut quoted = false;
    line.chars().fold(0, |n, c| match c {
        '"' => {
            quoted = !quoted;
            n
        }
        '{' if !quoted => n + 1,
        '}' if !quoted => n - 1,
        _ => n,
    })
}

/// The verdict of the element `key` in a verdict map's body (`goto service-…`, `goto reject-chain`).
fn verdict_for(map_body: &str, key: &str) -> Option<String> {
    let elements = map_body.split_once("elements = {")?.1;
    let elements = elements.rsplit_once('}').map_or(elements, |(inside, _)| inside);
    without_comments(elements).split(',').find_map(|element| {
        let (k, verdict) = element.split_once(':')?;
        (k.split_whitespace().collect::<Vec<_>>().join(" ") == key).then(|| verdict.trim().to_string())
    })
}

/// The text with `comment "…"` parts removed (a comment may hold commas and colons).
fn without_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("comment \"") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "comment \"".len()..];
        rest = after.split_once('"').map_or("", |(_, tail)| tail);
    }
    out.push_str(rest);
    out
}

/// Every chain a body jumps to with `goto`.
fn gotos(body: &str) -> impl Iterator<Item = &str> {
    body.split("goto ")
        .skip(1)
        .filter_map(|tail| tail.split([',', ' ', '}', '\n']).next())
}

/// The endpoints of a `dnat … to numgen random mod N map { 0 : ADDR . PORT, … }` rule, in
/// element order (IPv6 addresses hold colons, so an element splits at its ` : `).
fn inline_dnat_targets(body: &str) -> Vec<SocketAddr> {
    body.lines()
        .filter(|line| line.contains("dnat ") && line.contains(" map {"))
        .filter_map(|line| line.split_once(" map {").map(|(_, tail)| tail))
        .flat_map(|tail| {
            let elements = tail.rsplit_once('}').map_or(tail, |(inside, _)| inside);
            elements
                .split(',')
                .filter_map(|element| {
                    let (_, target) = element.split_once(" : ")?;
                    let (addr, port) = target.split_once(" . ")?;
                    let addr: std::net::IpAddr = addr.trim().parse().ok()?;
                    Some(SocketAddr::new(addr, port.trim().parse().ok()?))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `dnat to ADDR:PORT` of an endpoint chain (`dnat ip to` and `[v6]:port` too).
fn dnat_target(body: &str) -> Option<SocketAddr> {
    body.lines().find_map(|line| {
        let tail = line.split_once("dnat ")?.1;
        let target = tail.split_once("to ")?.1.split_whitespace().next()?;
        target.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noderules::fixtures::{programmed, vip};

    /// The shape `nft list table ip kube-proxy` prints in kube-proxy's nftables mode.
    const TABLE: &str = r#"table ip kube-proxy {
	comment "rules for kube-proxy"
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "vmap to drop or reject packets to services with no endpoints"
		elements = { 10.96.1.3 . tcp . 80 comment "shop/empty:http" : goto reject-chain }
	}

	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 10.96.0.10 . udp . 53 : goto service-FY5PMXPG-kube-system/kube-dns/udp/dns,
			     10.96.1.1 . tcp . 80 : goto service-ULMVA6XW-shop/payments/tcp/http }
	}

	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
	}

	chain service-ULMVA6XW-shop/payments/tcp/http {
		ip daddr 10.96.1.1 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-shop/payments/tcp/http__10.244.2.4/8080, 1 : goto endpoint-HQ3WZ7KF-shop/payments/tcp/http__10.244.2.5/8080 }
	}

	chain endpoint-5OJB2KTY-shop/payments/tcp/http__10.244.2.4/8080 {
		ip saddr 10.244.2.4 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.244.2.4:8080
	}

	chain endpoint-HQ3WZ7KF-shop/payments/tcp/http__10.244.2.5/8080 {
		ip saddr 10.244.2.5 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.244.2.5:8080
	}
}
"#;

    #[test]
    fn a_vip_element_is_followed_through_its_service_chain_to_each_dnat() {
        let rules = programmed(parse_table(&vip("10.96.1.1", 80, Transport::Tcp), TABLE));
        assert_eq!(rules.source, "nftables");
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
    fn the_protocol_and_port_are_part_of_the_key() {
        let rules = programmed(parse_table(&vip("10.96.1.1", 80, Transport::Udp), TABLE));
        assert!(!rules.found);
        let rules = programmed(parse_table(&vip("10.96.0.10", 53, Transport::Udp), TABLE));
        // The element exists; its service chain is not in the fixture, so no endpoints.
        assert!(rules.found && rules.endpoints.is_empty());
    }

    #[test]
    fn a_service_without_endpoints_is_rejected_through_its_own_map() {
        let rules = programmed(parse_table(&vip("10.96.1.3", 80, Transport::Tcp), TABLE));
        assert!(rules.found && rules.rejects && rules.endpoints.is_empty());
    }

    /// Kubernetes 1.36's kube-proxy, as `nft list table ip kube-proxy` printed it in the lab: the
    /// service chain translates to its endpoints itself, without endpoint chains.
    const TABLE_1_36: &str = r#"table ip kube-proxy {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 10.96.0.10 . udp . 53 : goto service-FY5PMXPG-kube-system/kube-dns/udp/dns,
			     10.96.1.1 . tcp . 80 : goto service-VQSU36QR-shop/payments/tcp/http }
	}

	chain service-FY5PMXPG-kube-system/kube-dns/udp/dns {
		meta l4proto udp dnat ip to numgen random mod 1 map { 0 : 10.244.1.3 . 53 }
	}

	chain service-VQSU36QR-shop/payments/tcp/http {
		meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.2.2 . 8080, 1 : 10.244.2.3 . 8080 }
	}
}
"#;

    #[test]
    fn a_service_chain_that_translates_itself_lists_each_endpoint_of_its_map() {
        let rules = programmed(parse_table(&vip("10.96.1.1", 80, Transport::Tcp), TABLE_1_36));
        assert!(rules.found && !rules.rejects);
        assert_eq!(
            rules.endpoints,
            vec![
                "10.244.2.2:8080".parse::<SocketAddr>().unwrap(),
                "10.244.2.3:8080".parse().unwrap()
            ]
        );
        let dns = programmed(parse_table(&vip("10.96.0.10", 53, Transport::Udp), TABLE_1_36));
        assert_eq!(
            dns.endpoints,
            vec!["10.244.1.3:53".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn ipv6_endpoints_of_an_inline_map_keep_their_colons() {
        let body = "meta l4proto tcp dnat ip6 to numgen random mod 1 map { 0 : fd00:10:244:2::4 . 8080 }\n";
        assert_eq!(
            inline_dnat_targets(body),
            vec!["[fd00:10:244:2::4]:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn ipv6_endpoints_parse_in_brackets() {
        let body = "meta l4proto tcp dnat to [fd00:10:244:2::4]:8080\n";
        assert_eq!(
            dnat_target(body),
            Some("[fd00:10:244:2::4]:8080".parse().unwrap())
        );
    }
}
