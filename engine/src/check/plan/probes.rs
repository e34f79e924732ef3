//! Which probe each agent runs: DNS as the pod, the destination's ports, and the datapath
//! witnesses that say where a lost packet stopped.

use super::*;

/// Every probe of the check: DNS as the pod, each DNS pod directly, the ClusterIP, every
/// endpoint in service, and the listening sockets of each destination pod on its own node.
pub(super) fn probes(plan: &CheckPlan, request: &CheckRequest) -> Vec<PlannedProbe> {
    let Some((node, ip)) = plan.probe_source() else {
        return vec![];
    };
    let mut probes = vec![];
    if let Some(dns) = &plan.dns {
        let (primary, secondary) = dns_record_types(dns, &plan.destination);
        let mut at_source = |key, name: &str, nameserver, record_type| {
            probes.push(PlannedProbe {
                key,
                node: node.to_string(),
                run_in: RunIn::Pod(ip),
                probe: Probe::Dns(DnsProbe {
                    name: name.to_string(),
                    record_type,
                    nameserver,
                    timeout_ms: request.dns_timeout_ms(),
                }),
            })
        };
        at_source(ProbeKey::Resolve, &dns.name, None, primary);
        if let Some(record_type) = secondary {
            at_source(ProbeKey::ResolveSecondary, &dns.name, None, record_type);
        }
        for server in dns.servers.known().into_iter().flatten().filter(|s| s.in_service) {
            at_source(
                ProbeKey::DirectDns(server.ip),
                DNS_LIVENESS_NAME,
                Some(NameserverAddr::Ip(server.ip)),
                RecordType::A,
            );
        }
    }
    probes.extend(destination_probes(&plan.destination, request, node, ip));
    if probes.is_empty() {
        probes.push(PlannedProbe {
            key: ProbeKey::Netns,
            node: node.to_string(),
            run_in: RunIn::Pod(ip),
            probe: Probe::Listeners,
        });
    }
    probes
}

/// The record types the target name is asked for: the family of the first address the name
/// should resolve to (for a name the API ties to nothing, the cluster DNS Service's family), and
/// for a dual-stack target the other family's as well (what getaddrinfo with AF_UNSPEC asks).
pub fn dns_record_types(dns: &DnsPlan, dest: &DestinationPlan) -> (RecordType, Option<RecordType>) {
    let record = |family| match family {
        IpFamily::V4 => RecordType::A,
        IpFamily::V6 => RecordType::Aaaa,
    };
    let mut families: Vec<IpFamily> = Vec::new();
    for ip in &dest.expected_dns {
        if !families.contains(&IpFamily::of(*ip)) {
            families.push(IpFamily::of(*ip));
        }
    }
    match families.as_slice() {
        [first, second, ..] => (record(*first), Some(record(*second))),
        [only] => (record(*only), None),
        [] => match dns.dns_service_ip.known().copied().flatten() {
            Some(ip) => (record(IpFamily::of(ip)), None),
            None => (RecordType::A, None),
        },
    }
}

/// The destination addresses traffic goes to: a Service's endpoints in service (kube-proxy's
/// rule), or the one pod or address. Under `internalTrafficPolicy: Local` a node whose own
/// endpoints all terminate falls back to them while others are ready elsewhere, so those that
/// still serve are probed too.
pub fn live_targets(dest: &DestinationPlan) -> Vec<&EndpointTarget> {
    let all = dest.endpoints.known().map(Vec::as_slice).unwrap_or_default();
    if dest.destination != Destination::Service {
        return all.iter().collect();
    }
    let local = matches!(&dest.service, ServiceFacts::Found(svc) if svc.internal_traffic_policy == TrafficPolicy::Local);
    if local {
        return all
            .iter()
            .filter(|e| e.conditions.ready || e.conditions.serving_terminating())
            .collect();
    }
    endpoints::in_service(all, |e| e.conditions)
}

pub(super) fn destination_probes(
    dest: &DestinationPlan,
    request: &CheckRequest,
    node: &str,
    ip: IpAddr,
) -> Vec<PlannedProbe> {
    if dest.not_probed.is_some() {
        return vec![];
    }
    let timeout_ms = request.timeout_ms();
    let tcp = |key, to: IpAddr, port| PlannedProbe {
        key,
        node: node.to_string(),
        run_in: RunIn::Pod(ip),
        probe: Probe::Tcp(TcpProbe {
            ip: to,
            port,
            timeout_ms,
        }),
    };
    // The VIP and the endpoints are probed over the Service port's protocol.
    let live_probe = |key, to: IpAddr, port| PlannedProbe {
        probe: dest.live.probe(to, port, timeout_ms),
        ..tcp(key, to, port)
    };
    let mut probes = vec![];
    if let Some((vip, port)) = dest.cluster_ip {
        probes.push(live_probe(ProbeKey::ClusterIp, vip, port));
    }
    if let Some((vip, port)) = dest.secondary_cluster_ip {
        probes.push(live_probe(ProbeKey::ClusterIpSecondary, vip, port));
    }
    let live = live_targets(dest);
    for e in &live {
        if let Some(port) = e.port {
            probes.push(live_probe(ProbeKey::Endpoint(e.ip, port), e.ip, port));
        }
    }
    for e in &live {
        if let Some(dest_node) = e.pod.as_ref().and_then(|p| p.node.clone()) {
            // Every destination pod of a node in one request to that node's agent.
            probes.push(PlannedProbe {
                key: ProbeKey::Listeners(e.ip),
                node: dest_node,
                run_in: RunIn::Node,
                probe: Probe::PodListeners(PodListenersProbe { pod_ip: e.ip }),
            });
        }
    }
    for (_, host_ip) in witness_nodes(&live, node) {
        probes.push(tcp(ProbeKey::NodeWitness(host_ip), host_ip, NODE_WITNESS_PORT));
    }
    if let (Some((vip, port)), Some(vantage)) = (dest.cluster_ip, outside_vantage(dest, &live, node)) {
        probes.push(PlannedProbe {
            node: vantage,
            run_in: RunIn::Node,
            ..tcp(ProbeKey::EntryFromNode, vip, port)
        });
    }
    probes.extend(datapath_witnesses(dest, &live, request, node, ip));
    probes
}

/// For a TCP node port, the node a client outside the pod network connects from: one other
/// than the node whose address it is (traffic a node sends to its own address counts as the
/// node's and goes to every endpoint), the source's when it can, else the first other node an
/// endpoint runs on. `None` for any other target, or when every node is the node port's.
fn outside_vantage(dest: &DestinationPlan, live: &[&EndpointTarget], source_node: &str) -> Option<String> {
    let Some(ServiceEntry::NodePort { node: entered, .. }) = dest.entry() else {
        return None;
    };
    if dest.live != LiveProbe::Tcp {
        return None;
    }
    let endpoint_nodes: BTreeSet<&str> = live
        .iter()
        .filter_map(|e| e.pod.as_ref()?.node.as_deref())
        .collect();
    std::iter::once(source_node)
        .chain(endpoint_nodes)
        .find(|n| n != entered)
        .map(str::to_string)
}

/// How much longer than the TCP probes a capture watches. A capture whose request reached its
/// agent after the source's still sees SYNs: a probe not yet connected sends a fresh one every
/// 100 ms until the timeout, so what a capture sees does not hang on its last moments. The
/// margin only covers the last SYN's way across the path (the capture also starts a few
/// milliseconds after its request leaves), and it is paid by every check whose connection is
/// lost, so it stays small.
pub const CAPTURE_MARGIN_MS: u64 = 10;
/// Packets of the peer's connections a capture records at most.
pub const CAPTURE_MAX_PACKETS: u32 = 256;

/// The datapath witnesses, sent in the same round as the TCP probes: the path MTU to each
/// endpoint, a capture on each destination pod's interface (on the source node's uplink for an
/// address that is no pod), and the source node's dataplane.
fn datapath_witnesses(
    dest: &DestinationPlan,
    live: &[&EndpointTarget],
    request: &CheckRequest,
    node: &str,
    ip: IpAddr,
) -> Vec<PlannedProbe> {
    let at_source = |key, probe| PlannedProbe {
        key,
        node: node.to_string(),
        run_in: RunIn::Pod(ip),
        probe,
    };
    if live.is_empty() && dest.cluster_ip.is_none() {
        return vec![];
    }
    let mut probes = vec![];
    let measured = path_mtu_measured(live);
    // The path MTU and the capture witness TCP segments: a UDP port has neither.
    let tcp_live = match dest.live {
        LiveProbe::Tcp => live,
        LiveProbe::Udp(_) => &[][..],
    };
    for e in tcp_live {
        let Some(port) = e.port else { continue };
        // Path MTU and the packet witness watch IPv4 only: an IPv6 endpoint gets neither,
        // rather than a witness that would see nothing and seem to accuse the path.
        if !(e.ip.is_ipv4() && ip.is_ipv4()) {
            continue;
        }
        if measured.contains(&e.ip) {
            probes.push(at_source(
                ProbeKey::PathMtu(e.ip, port),
                Probe::PathMtu(PathMtuProbe {
                    ip: e.ip,
                    port,
                    timeout_ms: request.timeout_ms(),
                }),
            ));
        }
        if e.pod.is_none() {
            // An address outside the cluster's pods: where the source node sends it, and with
            // which address, is the last thing the cluster can witness.
            probes.push(PlannedProbe {
                key: ProbeKey::Egress(e.ip),
                node: node.to_string(),
                run_in: RunIn::Node,
                probe: Probe::Egress(EgressProbe {
                    pod_ip: ip,
                    ip: e.ip,
                    port,
                    duration_ms: request.capture_ms(),
                    max_packets: CAPTURE_MAX_PACKETS,
                }),
            });
        }
        if let Some(dest_node) = e.pod.as_ref().and_then(|p| p.node.clone()) {
            // In the destination node's one request, naming its pod like `podListeners`.
            probes.push(PlannedProbe {
                key: ProbeKey::Capture(e.ip),
                node: dest_node,
                run_in: RunIn::Node,
                probe: Probe::Capture(CaptureProbe {
                    pod_ip: Some(e.ip),
                    peer: ip,
                    port,
                    duration_ms: request.capture_ms(),
                    max_packets: CAPTURE_MAX_PACKETS,
                }),
            });
        }
    }
    // The rules read back are the ClusterIP's: kube-proxy matches a node port by port alone,
    // and a LoadBalancer address through chains the reading does not follow.
    let service = dest
        .cluster_ip
        .filter(|_| dest.entry().is_none())
        .map(|(vip, port)| ServiceVip {
            ip: vip,
            port,
            protocol: dest.live.transport(),
        });
    probes.push(at_source(
        ProbeKey::NodeDataplane,
        Probe::NodeDataplane(NodeDataplaneProbe { service }),
    ));
    probes
}

/// The endpoints whose path MTU is measured: the path MTU belongs to the path between two nodes,
/// so one endpoint per destination node and address family (the lowest address, so that every run
/// picks the same), and each endpoint that is no pod. A measurement opens a round of
/// connections, which at hundreds of endpoints would be most of the check's cost.
fn path_mtu_measured(live: &[&EndpointTarget]) -> BTreeSet<IpAddr> {
    let mut lowest: BTreeMap<(&str, bool), IpAddr> = BTreeMap::new();
    let mut measured = BTreeSet::new();
    for e in live.iter().filter(|e| e.port.is_some()) {
        match e.pod.as_ref().and_then(|p| p.node.as_deref()) {
            Some(node) => {
                let low = lowest.entry((node, e.ip.is_ipv4())).or_insert(e.ip);
                *low = (*low).min(e.ip);
            }
            None => {
                measured.insert(e.ip);
            }
        }
    }
    measured.extend(lowest.into_values());
    measured
}

/// For a speculative probe, the destination address whose probes' failure it would explain: a
/// destination pod's listening sockets explain a refused connection, a capture on its interface
/// a lost one. They have nothing to tell when every connection to that address was established,
/// so a healthy check never waits for them ([`super::probe::execute`] says when they are sent).
/// `None` for every other probe.
pub fn explains(p: &PlannedProbe) -> Option<IpAddr> {
    match (&p.key, &p.probe) {
        (ProbeKey::Capture(ip), Probe::Capture(_))
        | (ProbeKey::Egress(ip), Probe::Egress(_))
        | (ProbeKey::Listeners(ip), Probe::PodListeners(_)) => Some(*ip),
        _ => None,
    }
}

/// The destination pods' nodes other than the source's, with their address in the family of
/// the endpoint (a dual-stack endpoint's node is witnessed per family), once each.
pub fn witness_nodes(live: &[&EndpointTarget], source_node: &str) -> BTreeSet<(String, IpAddr)> {
    live.iter()
        .filter_map(|e| {
            let pod = e.pod.as_ref()?;
            let node = pod.node.clone().filter(|n| n != source_node)?;
            let host = pod.host_ips.iter().find(|h| h.is_ipv4() == e.ip.is_ipv4());
            Some((node, *host?))
        })
        .collect()
}
