//! The `interfaces` probe: links, addresses and routes of the namespace, read over rtnetlink.
//!
//! The netlink socket is opened by the caller's thread, so called on a namespace worker thread it
//! describes that namespace.

use std::collections::HashMap;
use std::net::IpAddr;

use netdiag_proto::{Interface, InterfacesResult, Route};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot decode a netlink message: {0}")]
    Decode(String),
    #[error("the kernel refused the netlink dump: errno {0}")]
    Kernel(i32),
}

/// Reads the namespace's interfaces and main-table routes.
pub fn probe() -> InterfacesResult {
    match read() {
        Ok((interfaces, routes)) => InterfacesResult {
            interfaces,
            routes,
            error: None,
        },
        Err(err) => InterfacesResult {
            error: Some(err.to_string()),
            ..Default::default()
        },
    }
}

/// What one namespace says about a pod IP: every address it has, and whether the interface carrying
/// `ip` (if it has `ip`) is attached to the node namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub addresses: Vec<IpAddr>,
    /// `None` when the namespace does not have `ip`.
    pub attached: Option<bool>,
}

/// Lists the namespace's addresses and, when it has `ip`, tells whether an interface carrying `ip` is
/// linked to the namespace of `node` (an open network namespace file): a veth, ipvlan or macvlan
/// whose peer or lower device lives there. Inside this namespace the link's `IFLA_LINK_NETNSID` is
/// compared with the id this namespace gives `node` (`RTM_GETNSID` with `NETNSA_FD`). The link is read
/// first because filling `IFLA_LINK_NETNSID` makes the kernel assign the peer namespace an id.
pub fn holding(ip: IpAddr, node: BorrowedFd<'_>) -> Result<Holding, NetlinkError> {
    let mut addresses = Vec::new();
    let mut carriers = Vec::new();
    for msg in dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
        if let RouteNetlinkMessage::NewAddress(a) = msg
            && let Some((address, _)) = address_of(&a)
        {
            if address == ip {
                carriers.push(a.header.index);
            }
            addresses.push(address);
        }
    }
    if carriers.is_empty() {
        return Ok(Holding {
            addresses,
            attached: None,
        });
    }
    // The namespace has the IP whatever happens next: a failure to tell its attachment leaves it a
    // holder, not attached, rather than hiding it.
    let attached = attached_to(&carriers, node).unwrap_or_else(|err| {
        tracing::debug!(%err, "cannot tell whether the interface carrying {ip} is linked to the node namespace");
        false
    });
    Ok(Holding {
        addresses,
        attached: Some(attached),
    })
}

/// Whether one of the links `carriers` (interface indexes) has its peer in the namespace `node`.
fn attached_to(carriers: &[u32], node: BorrowedFd<'_>) -> Result<bool, NetlinkError> {
    let mut link_nsids = Vec::new();
    for index in carriers {
        let mut request = LinkMessage::default();
        request.header.index = *index;
        for msg in exchange(RouteNetlinkMessage::GetLink(request), NLM_F_REQUEST | NLM_F_ACK)? {
            if let RouteNetlinkMessage::NewLink(l) = msg {
                link_nsids.extend(l.attributes.iter().find_map(|at| match at {
                    LinkAttribute::LinkNetNsId(id) => Some(*id),
                    _ => None,
                }));
            }
        }
    }
    if link_nsids.is_empty() {
        return Ok(false);
    }
    let node_nsid = nsid_of(node)?;
    Ok(node_nsid >= 0 && link_nsids.contains(&node_nsid))
}

/// The id the current namespace gives the namespace open as `netns`; -1 when it has none.
fn nsid_of(netns: BorrowedFd<'_>) -> Result<i32, NetlinkError> {
    let mut request = NsidMessage::default();
    request
        .attributes
        .push(NsidAttribute::Fd(netns.as_raw_fd() as u32));
    let answers = exchange(RouteNetlinkMessage::GetNsId(request), NLM_F_REQUEST | NLM_F_ACK)?;
    Ok(answers
        .iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|at| match at {
                NsidAttribute::Id(id) => Some(*id),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or(-1))
}

/// The namespace's route to one address, as `ip route get` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTo {
    pub index: u32,
    pub interface: String,
    /// The next hop; `None` when `ip` is on a link of the namespace.
    pub gateway: Option<IpAddr>,
    /// The namespace's own address the route prefers as the source.
    pub source: Option<IpAddr>,
}

/// Asks the kernel which route a packet to `ip` takes (`RTM_GETROUTE` for the one address).
/// `None` when no route leaves by an interface (unreachable, blackhole, or local).
pub fn route_to(ip: IpAddr) -> Result<Option<RouteTo>, NetlinkError> {
    let mut request = RouteMessage::default();
    let (family, len, dst) = match ip {
        IpAddr::V4(v4) => (AddressFamily::Inet, 32, RouteAddress::Inet(v4)),
        IpAddr::V6(v6) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(v6)),
    };
    request.header.address_family = family;
    request.header.destination_prefix_length = len;
    request.attributes.push(RouteAttribute::Destination(dst));
    let answers = match exchange(RouteNetlinkMessage::GetRoute(request), NLM_F_REQUEST | NLM_F_ACK) {
        // No route at all: ENETUNREACH (or EHOSTUNREACH) from the kernel.
        Err(NetlinkError::Kernel(code))
            if code.abs() == nix::libc::ENETUNREACH || code.abs() == nix::libc::EHOSTUNREACH =>
        {
            return Ok(None);
        }
        other => other?,
    };
    let Some(route) = answers.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) if r.header.kind == RouteType::Unicast => Some(r),
        _ => None,
    }) else {
        return Ok(None);
    };
    let (mut oif, mut gateway, mut source) = (None, None, None);
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::PrefSource(a) => source = ip_of(a),
            _ => {}
        }
    }
    let Some(index) = oif else { return Ok(None) };
    Ok(Some(RouteTo {
        index,
        interface: interface_name(index),
        gateway,
        source,
    }))
}

/// The name of the interface of `index` in the current namespace (`if7` once it is gone).
pub fn interface_name(index: u32) -> String {
    nix::net::if_::if_indextoname(index)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("if{index}"))
}

fn read() -> Result<(Vec<Interface>, Vec<Route>), NetlinkError> {
    let links = dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    let addrs = dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
    let routes = dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))?;

    let mut by_index: HashMap<u32, Vec<String>> = HashMap::new();
    for msg in addrs {
        if let RouteNetlinkMessage::NewAddress(a) = msg
            && let Some((ip, len)) = address_of(&a)
        {
            by_index
                .entry(a.header.index)
                .or_default()
                .push(format!("{ip}/{len}"));
        }
    }
    let mut interfaces: Vec<Interface> = links
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .map(|l| {
            let mut name = String::new();
            let mut mtu = 0;
            for attr in &l.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = n.clone(),
                    LinkAttribute::Mtu(m) => mtu = *m,
                    _ => {}
                }
            }
            Interface {
                name,
                index: l.header.index,
                mtu,
                up: l.header.flags.contains(LinkFlags::Up),
                addresses: by_index.remove(&l.header.index).unwrap_or_default(),
            }
        })
        .collect();
    interfaces.sort_by_key(|i| i.index);
    let names: HashMap<u32, String> = interfaces.iter().map(|i| (i.index, i.name.clone())).collect();

    let routes = routes
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => route_of(&r, &names),
            _ => None,
        })
        .collect();
    Ok((interfaces, routes))
}

fn address_of(a: &AddressMessage) -> Option<(IpAddr, u8)> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let local = a.attributes.iter().find_map(|at| match at {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = a.attributes.iter().find_map(|at| match at {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    local.or(address).map(|ip| (ip, a.header.prefix_len))
}

fn route_of(r: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
    let mut table = u32::from(r.header.table);
    let (mut dst, mut gateway, mut oif, mut mtu) = (None, None, None, None);
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Metrics(metrics) => {
                mtu = metrics.iter().find_map(|m| match m {
                    RouteMetric::Mtu(v) => Some(*v),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN)
        || !matches!(
            r.header.kind,
            RouteType::Unicast | RouteType::Unreachable | RouteType::BlackHole
        )
    {
        return None;
    }
    let len = r.header.destination_prefix_length;
    let dst = dst.unwrap_or(match r.header.address_family {
        AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
        _ => IpAddr::from([0u8; 4]),
    });
    Some(Route {
        destination: format!("{dst}/{len}"),
        gateway,
        device: oif.and_then(|i| names.get(&i).cloned()),
        mtu,
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Sends one dump request and collects every answer up to NLMSG_DONE.
fn dump(request: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
    exchange(request, NLM_F_DUMP | NLM_F_REQUEST)
}

/// Sends one request and collects every answer up to NLMSG_DONE or the acknowledgement.
fn exchange(request: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(request));
    packet.header.flags = flags;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut out = Vec::new();
    loop {
        let (datagram, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < datagram.len() {
            let msg: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&datagram[offset..])
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => return Err(NetlinkError::Kernel(code.get())),
                    None => return Ok(out),
                },
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}
