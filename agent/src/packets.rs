//! Reading the IPv4 packets the packet witnesses (`capture`, `egress`) see. Pure.

use std::net::Ipv4Addr;

use pnet_packet::Packet;
use pnet_packet::icmp::{IcmpPacket, IcmpTypes};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;

/// The addresses and ports of the TCP segment an ICMP error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedTcp {
    pub source: Ipv4Addr,
    pub source_port: u16,
    pub destination: Ipv4Addr,
    pub destination_port: u16,
}

/// An ICMP destination-unreachable or time-exceeded error quoting a TCP segment: its type and
/// code (`type 3 code 13`) and the segment it quotes. `None` for any other packet.
pub fn icmp_error_quoting_tcp(ip: &Ipv4Packet) -> Option<(String, QuotedTcp)> {
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Icmp {
        return None;
    }
    let icmp = IcmpPacket::new(ip.payload())?;
    let kind = icmp.get_icmp_type();
    if kind != IcmpTypes::DestinationUnreachable && kind != IcmpTypes::TimeExceeded {
        return None;
    }
    // Type, code, checksum and 4 unused bytes precede the quoted header.
    let inner = icmp.payload().get(4..).and_then(Ipv4Packet::new)?;
    if inner.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
        return None;
    }
    let ports = inner.payload();
    let (src, dst) = (ports.get(0..2)?, ports.get(2..4)?);
    let quoted = QuotedTcp {
        source: inner.get_source(),
        source_port: u16::from_be_bytes([src[0], src[1]]),
        destination: inner.get_destination(),
        destination_port: u16::from_be_bytes([dst[0], dst[1]]),
    };
    Some((format!("type {} code {}", kind.0, icmp.get_icmp_code().0), quoted))
}

/// Packets built byte by byte for the witnesses' tests.
#[cfg(test)]
pub mod fixtures {
    use std::net::Ipv4Addr;

    /// An IPv4/TCP packet without options.
    pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src.0.octets());
        p.extend_from_slice(&dst.0.octets());
        p.extend_from_slice(&src.1.to_be_bytes());
        p.extend_from_slice(&dst.1.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p
    }

    /// An ICMP error of `kind` and `code` from `from` to the quoted packet's source, quoting its
    /// IP header and first 8 bytes.
    pub fn icmp_error(from: Ipv4Addr, quoting: &[u8], kind: u8, code: u8) -> Vec<u8> {
        let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoting[..28]);
        let total = u16::try_from(20 + icmp.len()).unwrap();
        let mut outer = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        outer.extend_from_slice(&from.octets());
        outer.extend_from_slice(&quoting[12..16]);
        outer.extend_from_slice(&icmp);
        outer
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{icmp_error, tcp};
    use super::*;

    #[test]
    fn an_icmp_error_gives_its_kind_and_the_segment_it_quotes() {
        let a = Ipv4Addr::new(10, 244, 1, 5);
        let b = Ipv4Addr::new(198, 51, 100, 10);
        let router = Ipv4Addr::new(172, 18, 0, 1);
        let error = icmp_error(router, &tcp((a, 40000), (b, 443), 2), 3, 13);
        let (kind, quoted) = icmp_error_quoting_tcp(&Ipv4Packet::new(&error).unwrap()).unwrap();
        assert_eq!(kind, "type 3 code 13");
        assert_eq!(
            quoted,
            QuotedTcp {
                source: a,
                source_port: 40000,
                destination: b,
                destination_port: 443
            }
        );
        // An echo request, and a TCP segment, are not errors.
        let mut echo = error.clone();
        echo[20] = 8;
        assert_eq!(icmp_error_quoting_tcp(&Ipv4Packet::new(&echo).unwrap()), None);
        let segment = tcp((a, 1), (b, 2), 2);
        assert_eq!(icmp_error_quoting_tcp(&Ipv4Packet::new(&segment).unwrap()), None);
    }
}
