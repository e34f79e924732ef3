//! The `listeners` probe: listening TCP sockets and bound UDP sockets of the namespace.
//!
//! `/proc/thread-self/net/*` shows the socket tables of the calling thread's network namespace, so
//! this must run on a namespace worker thread. Parsing is pure and tested on fixtures.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netdiag_proto::{ListenersResult, ListeningSocket, Transport};

/// `st` value of a listening TCP socket.
const TCP_LISTEN: u8 = 0x0A;
/// `st` value of an unconnected UDP socket.
const UDP_UNCONNECTED: u8 = 0x07;

const TABLES: [(&str, Transport); 4] = [
    ("tcp", Transport::Tcp),
    ("tcp6", Transport::Tcp),
    ("udp", Transport::Udp),
    ("udp6", Transport::Udp),
];

/// Reads the four socket tables of the calling thread's namespace.
pub fn probe() -> ListenersResult {
    let mut sockets = Vec::new();
    let mut errors = Vec::new();
    for (table, transport) in TABLES {
        let path = format!("/proc/thread-self/net/{table}");
        match std::fs::read_to_string(&path) {
            Ok(text) => sockets.extend(parse_table(&text, transport)),
            // A kernel without IPv6 has no tcp6/udp6 table.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && table.ends_with('6') => {}
            Err(err) => errors.push(format!("cannot read {path}: {err}")),
        }
    }
    sockets.sort_by_key(|s| (s.protocol == Transport::Udp, s.local_port, s.local_ip));
    sockets.dedup();
    ListenersResult {
        sockets,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// Parses one `/proc/net/{tcp,tcp6,udp,udp6}` table, keeping listening TCP and unconnected UDP sockets.
pub fn parse_table(text: &str, transport: Transport) -> Vec<ListeningSocket> {
    let wanted = match transport {
        Transport::Tcp => TCP_LISTEN,
        Transport::Udp => UDP_UNCONNECTED,
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if u8::from_str_radix(state, 16).ok()? != wanted {
                return None;
            }
            let (ip, port) = parse_endpoint(local)?;
            Some(ListeningSocket {
                protocol: transport,
                local_ip: ip,
                local_port: port,
                inode: inode.parse().ok()?,
            })
        })
        .collect()
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6). The kernel prints each 32-bit word
/// of the network-order address as a host-order integer.
fn parse_endpoint(field: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::to_ne_bytes)
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0A00000A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 6666 2 0000000000000000 0
  101: 0A00000A:A000 0100000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 7777 2 0000000000000000 0
";

    #[test]
    fn listening_tcp_sockets_keep_their_bound_address_and_skip_established_ones() {
        let sockets = parse_table(TCP, Transport::Tcp);
        let got: Vec<(IpAddr, u16, u64)> = sockets
            .iter()
            .map(|s| (s.local_ip, s.local_port, s.inode))
            .collect();
        assert_eq!(
            got,
            vec![
                ("127.0.0.1".parse().unwrap(), 8080, 1111),
                ("0.0.0.0".parse().unwrap(), 80, 2222),
            ]
        );
    }

    #[test]
    fn ipv6_words_are_decoded_in_network_order() {
        let sockets = parse_table(TCP6, Transport::Tcp);
        let got: Vec<(IpAddr, u16)> = sockets.iter().map(|s| (s.local_ip, s.local_port)).collect();
        assert_eq!(
            got,
            vec![("::".parse().unwrap(), 8080), ("::1".parse().unwrap(), 22)]
        );
    }

    #[test]
    fn only_unconnected_udp_sockets_count_as_bound() {
        let sockets = parse_table(UDP, Transport::Udp);
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].local_ip, "10.0.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(sockets[0].local_port, 53);
        assert_eq!(sockets[0].protocol, Transport::Udp);
    }
}
