//! kube-proxy's IPVS mode, read from `/proc/net/ip_vs` (the kernel's virtual server table for the
//! reading thread's namespace; present only where the `ip_vs` module is loaded). Each virtual
//! server `PROTO ADDR:PORT scheduler` is followed by its real servers `-> ADDR:PORT Masq …`;
//! addresses and ports are hexadecimal (IPv6 in brackets). Parsing is pure and tested on fixtures.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netdiag_proto::{RuleSource, ServiceRules, ServiceVip, Transport};

use super::ModeReading;

const SOURCE: RuleSource = RuleSource::Ipvs;
const TABLE: &str = "/proc/net/ip_vs";

/// The IPVS table, read in the calling thread's namespace.
pub fn read(vip: &ServiceVip) -> ModeReading {
    match std::fs::read_to_string(TABLE) {
        Ok(text) => parse_table(vip, &text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            ModeReading::Absent(format!("no {TABLE} (ip_vs not loaded: {SOURCE} mode not in use)"))
        }
        Err(err) => ModeReading::Unread(format!("cannot read {TABLE}: {err}")),
    }
}

/// The virtual server for `vip` and its real servers. A table without any virtual server is no
/// IPVS mode in use (the module may be loaded for something else).
pub fn parse_table(vip: &ServiceVip, table: &str) -> ModeReading {
    let proto = match vip.protocol {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    };
    let mut rules = ServiceRules {
        source: SOURCE,
        ..Default::default()
    };
    let mut any_server = false;
    let mut in_vip = false;
    for line in table.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["->", addr, ..] if in_vip => {
                if let Some(real) = hex_socket_addr(addr)
                    && !rules.endpoints.contains(&real)
                {
                    rules.endpoints.push(real);
                }
            }
            [p @ ("TCP" | "UDP" | "SCTP"), addr, ..] => {
                any_server = true;
                in_vip = *p == proto && hex_socket_addr(addr) == Some(SocketAddr::new(vip.ip, vip.port));
                rules.found |= in_vip;
            }
            ["FWM", ..] => {
                any_server = true;
                in_vip = false;
            }
            _ => {}
        }
    }
    if any_server {
        ModeReading::Programmed(rules)
    } else {
        ModeReading::Absent(format!(
            "{TABLE} has no virtual servers ({SOURCE} mode not in use)"
        ))
    }
}

/// `0A600101:0050` or `[FD00:0010:0096:0000:0000:0000:0000:0001]:0050`.
fn hex_socket_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse::<Ipv6Addr>().ok()?),
        None => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?)),
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noderules::fixtures::{programmed, vip};

    const TABLE: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A600101:0050 rr
  -> 0AF40204:1F90      Masq    1      0          0
  -> 0AF40205:1F90      Masq    1      0          0
UDP  0A60000A:0035 rr
  -> 0AF40235:0035      Masq    1      0          3
TCP  0A600103:0050 rr
TCP  [FD00:0010:0096:0000:0000:0000:0000:0001]:0050 rr
  -> [FD00:0010:0244:0002:0000:0000:0000:0004]:1F90      Masq    1      0          0
";

    #[test]
    fn a_virtual_server_lists_its_real_servers() {
        let rules = programmed(parse_table(&vip("10.96.1.1", 80, Transport::Tcp), TABLE));
        assert!(rules.found);
        assert_eq!(
            rules.endpoints,
            vec![
                "10.244.2.4:8080".parse::<SocketAddr>().unwrap(),
                "10.244.2.5:8080".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_virtual_server_without_real_servers_is_found_with_none() {
        let rules = programmed(parse_table(&vip("10.96.1.3", 80, Transport::Tcp), TABLE));
        assert!(rules.found && rules.endpoints.is_empty());
    }

    #[test]
    fn protocol_and_family_are_matched() {
        let rules = programmed(parse_table(&vip("10.96.0.10", 53, Transport::Tcp), TABLE));
        assert!(!rules.found);
        let rules = programmed(parse_table(&vip("fd00:10:96::1", 80, Transport::Tcp), TABLE));
        assert_eq!(
            rules.endpoints,
            vec!["[fd00:10:244:2::4]:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn an_empty_table_is_no_ipvs_mode() {
        let empty = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n";
        let reading = parse_table(&vip("10.96.1.1", 80, Transport::Tcp), empty);
        assert!(matches!(reading, ModeReading::Absent(_)));
    }
}
