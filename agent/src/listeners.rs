//! The `listeners` probe: listening TCP sockets and bound UDP sockets of the namespace.
//!
//! Read through sock_diag netlink with the kernel filtering by state (listening TCP, unconnected
//! UDP), as `ss -ltn` does: the cost is the listeners, not the whole socket table. Where the kernel
//! lacks a diag module the `/proc/thread-self/net/*` table is read instead. Both show the calling
//! thread's network namespace, so this runs on a namespace worker thread. Parsing is pure and
//! tested on fixtures.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netdiag_proto::{ListenersResult, ListeningSocket, Transport};
use netlink_packet_core_sock_diag::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

/// `st` value of a listening TCP socket.
const TCP_LISTEN: u8 = 0x0A;
/// `st` value of an unconnected UDP socket.
const UDP_UNCONNECTED: u8 = 0x07;

/// One socket table: its `/proc` name, transport, and the sock_diag query for it.
struct Table {
    proc_name: &'static str,
    transport: Transport,
    family: u8,
    protocol: u8,
}

const TABLES: [Table; 4] = [
    Table {
        proc_name: "tcp",
        transport: Transport::Tcp,
        family: AF_INET,
        protocol: IPPROTO_TCP,
    },
    Table {
        proc_name: "tcp6",
        transport: Transport::Tcp,
        family: AF_INET6,
        protocol: IPPROTO_TCP,
    },
    Table {
        proc_name: "udp",
        transport: Transport::Udp,
        family: AF_INET,
        protocol: IPPROTO_UDP,
    },
    Table {
        proc_name: "udp6",
        transport: Transport::Udp,
        family: AF_INET6,
        protocol: IPPROTO_UDP,
    },
];

/// Reads the four socket tables of the calling thread's namespace.
pub fn probe() -> ListenersResult {
    let mut sockets = Vec::new();
    let mut errors = Vec::new();
    let mut diag = Socket::new(NETLINK_SOCK_DIAG).and_then(|mut s| {
        s.bind_auto()?;
        s.connect(&SocketAddr::new(0, 0))?;
        Ok(s)
    });
    for table in &TABLES {
        let dumped = match &mut diag {
            Ok(socket) => dump(socket, table),
            Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
        };
        match dumped {
            Ok(found) => sockets.extend(found),
            Err(_) => match read_proc_table(table) {
                Ok(found) => sockets.extend(found),
                Err(err) => errors.push(err.to_string()),
            },
        }
    }
    sockets.sort_by_key(|s| (s.protocol == Transport::Udp, s.local_port, s.local_ip));
    sockets.dedup();
    ListenersResult {
        sockets,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// A socket table neither sock_diag nor `/proc` gave.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
struct TableUnread {
    path: String,
    source: io::Error,
}

/// The `/proc` fallback for one table (a kernel without IPv6 has no tcp6/udp6 table: empty).
fn read_proc_table(table: &Table) -> Result<Vec<ListeningSocket>, TableUnread> {
    let path = format!("/proc/thread-self/net/{}", table.proc_name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_table(&text, table.transport)),
        Err(err) if err.kind() == io::ErrorKind::NotFound && table.family == AF_INET6 => Ok(vec![]),
        Err(source) => Err(TableUnread { path, source }),
    }
}

/// One sock_diag dump of the table's sockets in the wanted state.
fn dump(socket: &mut Socket, table: &Table) -> io::Result<Vec<ListeningSocket>> {
    let states = match table.transport {
        Transport::Tcp => StateFlags::LISTEN,
        Transport::Udp => StateFlags::CLOSE,
    };
    let socket_id = match table.family {
        AF_INET6 => SocketId::new_v6(),
        _ => SocketId::new_v4(),
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: table.family,
            protocol: table.protocol,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    let mut found = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&buffer[offset..size])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    found.push(listening_socket(&response, table.transport));
                }
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(err) => {
                    return Err(err.to_io());
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

fn listening_socket(response: &InetResponse, transport: Transport) -> ListeningSocket {
    let id = &response.header.socket_id;
    // The kernel adds INET_DIAG_SKV6ONLY to every IPv6 socket's record.
    let v6_only = response.nlas.iter().find_map(|nla| match nla {
        Nla::SkV6Only(only) => Some(*only),
        _ => None,
    });
    ListeningSocket {
        protocol: transport,
        local_ip: id.source_address,
        local_port: id.source_port,
        inode: u64::from(response.header.inode),
        v6_only: v6_only.filter(|_| id.source_address.is_ipv6()),
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
                // The /proc tables do not say; unknown.
                v6_only: None,
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

    #[test]
    fn sock_diag_finds_what_the_proc_table_lists_and_only_listeners() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let connected = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).unwrap();
        socket.bind_auto().unwrap();
        socket.connect(&SocketAddr::new(0, 0)).unwrap();
        let by_diag = dump(&mut socket, &TABLES[0]).unwrap();
        let by_proc = read_proc_table(&TABLES[0]).unwrap();
        let ours = |list: &[ListeningSocket]| -> Vec<(IpAddr, u16)> {
            list.iter()
                .filter(|s| s.local_port == port)
                .map(|s| (s.local_ip, s.local_port))
                .collect()
        };
        assert_eq!(ours(&by_diag), [("127.0.0.1".parse().unwrap(), port)]);
        assert_eq!(ours(&by_diag), ours(&by_proc));
        let client_port = connected.local_addr().unwrap().port();
        assert!(
            !by_diag.iter().any(|s| s.local_port == client_port),
            "a connected socket is no listener"
        );
        let udp_found = dump(&mut socket, &TABLES[2]).unwrap();
        assert!(
            udp_found
                .iter()
                .any(|s| s.local_port == udp_port && s.protocol == Transport::Udp)
        );
    }

    #[test]
    fn sock_diag_reads_ipv6_listeners_and_whether_they_are_v6_only() {
        use socket2::{Domain, Protocol, Socket as Sock, Type};
        let listen = |v6_only: bool| {
            let s = Sock::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
            s.set_only_v6(v6_only).unwrap();
            s.bind(&"[::]:0".parse::<std::net::SocketAddr>().unwrap().into())
                .unwrap();
            s.listen(1).unwrap();
            let port = s.local_addr().unwrap().as_socket().unwrap().port();
            (s, port)
        };
        let (_dual, dual_port) = listen(false);
        let (_only, only_port) = listen(true);
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).unwrap();
        socket.bind_auto().unwrap();
        socket.connect(&SocketAddr::new(0, 0)).unwrap();
        let found = dump(&mut socket, &TABLES[1]).unwrap();
        let v6_only_of = |port: u16| {
            found
                .iter()
                .find(|s| s.local_port == port)
                .map(|s| (s.local_ip, s.v6_only))
        };
        let any: IpAddr = "::".parse().unwrap();
        assert_eq!(v6_only_of(dual_port), Some((any, Some(false))));
        assert_eq!(v6_only_of(only_port), Some((any, Some(true))));
    }

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
