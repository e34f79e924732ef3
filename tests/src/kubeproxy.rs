//! The iptables rules of one lab node, as `iptables-restore` (or, for IPv6, `ip6tables-restore`)
//! input: Services the way kube-proxy's iptables mode writes them — one rule set per family, from
//! that family's ClusterIP and EndpointSlices — and the scenario's deny rules on the forwarding
//! path. Pure.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::plan::{NodePlan, Plan, ServicePlan};
use crate::scenario::ServicePortSpec;
use crate::scenario::{DenyMode, Fault, IpFamily, Protocol, TrafficPolicy, split_ref};

/// The chain the lab's NetworkPolicy stand-in rules live in, jumped to first from FORWARD.
pub const POLICY_CHAIN: &str = "NETDIAG-LAB-POLICY";

fn chain_hash(s: &str) -> String {
    crate::objects::uid("chain", "", s).replace('-', "")[..16].to_uppercase()
}

/// One address a Service port's slices list, with what kube-proxy picks endpoints by.
struct Candidate {
    addr: (IpAddr, u16),
    ready: bool,
    serving_terminating: bool,
    node: Option<String>,
    for_zones: Vec<String>,
    for_nodes: Vec<String>,
}

/// The endpoints (address, port) kube-proxy on `node` sends one Service port's ClusterIP to, from
/// the Service's slices of `family`: under `internalTrafficPolicy: Local` the node's own
/// ([`local_endpoints`]), else [`cluster_endpoints`].
pub fn ready_endpoints(
    svc: &ServicePlan,
    port_name: Option<&str>,
    protocol: Protocol,
    slices: &[EndpointSlice],
    family: IpFamily,
    node: &NodePlan,
) -> Vec<(IpAddr, u16)> {
    let all = candidates(svc, port_name, protocol, slices, family);
    if svc.internal_traffic_policy == TrafficPolicy::Local {
        return local_endpoints(&all, node);
    }
    cluster_endpoints(&all, node)
}

/// Every endpoint kube-proxy on `node` translates one Service port to, by any of its paths: the
/// ClusterIP's, and for a NodePort or LoadBalancer Service the external policy's and the
/// cluster-wide one its pod traffic takes (kube-proxy's "all locally reachable endpoints").
pub fn reachable_endpoints(
    svc: &ServicePlan,
    port_name: Option<&str>,
    protocol: Protocol,
    slices: &[EndpointSlice],
    family: IpFamily,
    node: &NodePlan,
) -> Vec<(IpAddr, u16)> {
    let all = candidates(svc, port_name, protocol, slices, family);
    let uses_local = svc.internal_traffic_policy == TrafficPolicy::Local
        || (svc.is_external() && svc.external_traffic_policy == TrafficPolicy::Local);
    let uses_cluster = svc.internal_traffic_policy == TrafficPolicy::Cluster || svc.is_external();
    let mut out: BTreeSet<(IpAddr, u16)> = BTreeSet::new();
    if uses_cluster {
        out.extend(cluster_endpoints(&all, node));
    }
    if uses_local {
        out.extend(local_endpoints(&all, node));
    }
    out.into_iter().collect()
}

/// Ready endpoints, else the serving ones that are terminating (kube-proxy's fallback).
fn usable(list: Vec<&Candidate>) -> Vec<(IpAddr, u16)> {
    let ready: BTreeSet<_> = list.iter().filter(|c| c.ready).map(|c| c.addr).collect();
    if !ready.is_empty() {
        return ready.into_iter().collect();
    }
    let draining: BTreeSet<_> = list
        .iter()
        .filter(|c| c.serving_terminating)
        .map(|c| c.addr)
        .collect();
    draining.into_iter().collect()
}

/// Under a `Local` traffic policy: the node's own endpoints, ready, else serving-and-terminating.
fn local_endpoints(all: &[Candidate], node: &NodePlan) -> Vec<(IpAddr, u16)> {
    usable(
        all.iter()
            .filter(|c| c.node.as_deref() == Some(node.name.as_str()))
            .collect(),
    )
}

/// Under the `Cluster` traffic policy: the ready endpoints (a missing `ready` counts as ready)
/// that the topology hints give the node, when every ready endpoint has hints and one names the
/// node (else its zone); with none ready anywhere, the serving ones that are terminating.
fn cluster_endpoints(all: &[Candidate], node: &NodePlan) -> Vec<(IpAddr, u16)> {
    let ready: Vec<&Candidate> = all.iter().filter(|c| c.ready).collect();
    let same_node = !ready.is_empty()
        && ready.iter().all(|c| !c.for_nodes.is_empty())
        && ready.iter().any(|c| c.for_nodes.contains(&node.name));
    let zone = node.zone.as_ref().filter(|z| {
        !ready.is_empty()
            && ready.iter().all(|c| !c.for_zones.is_empty())
            && ready.iter().any(|c| c.for_zones.contains(z))
    });
    if same_node {
        return usable(
            ready
                .into_iter()
                .filter(|c| c.for_nodes.contains(&node.name))
                .collect(),
        );
    }
    if let Some(zone) = zone {
        return usable(ready.into_iter().filter(|c| c.for_zones.contains(zone)).collect());
    }
    usable(all.iter().collect())
}

/// Whether the Service port has an endpoint kube-proxy would use from some node.
fn has_usable_endpoints(
    svc: &ServicePlan,
    port_name: Option<&str>,
    protocol: Protocol,
    slices: &[EndpointSlice],
    family: IpFamily,
) -> bool {
    candidates(svc, port_name, protocol, slices, family)
        .iter()
        .any(|c| c.ready || c.serving_terminating)
}

fn candidates(
    svc: &ServicePlan,
    port_name: Option<&str>,
    protocol: Protocol,
    slices: &[EndpointSlice],
    family: IpFamily,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        let owner = labels.and_then(|l| l.get("kubernetes.io/service-name"));
        if slice.metadata.namespace.as_deref() != Some(&svc.namespace)
            || owner != Some(&svc.name)
            || slice.address_type != family.as_k8s()
        {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name.unwrap_or("")
                && p.protocol.as_deref().unwrap_or("TCP") == protocol.as_k8s()
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            let c = ep.conditions.clone().unwrap_or_default();
            let hints = ep.hints.as_ref();
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>()
                    && IpFamily::of(ip) == family
                {
                    out.push(Candidate {
                        addr: (ip, port),
                        ready: c.ready != Some(false),
                        serving_terminating: c.serving == Some(true) && c.terminating == Some(true),
                        node: ep.node_name.clone(),
                        for_zones: hints
                            .and_then(|h| h.for_zones.as_ref())
                            .map(|z| z.iter().map(|z| z.name.clone()).collect())
                            .unwrap_or_default(),
                        for_nodes: hints
                            .and_then(|h| h.for_nodes.as_ref())
                            .map(|n| n.iter().map(|n| n.name.clone()).collect())
                            .unwrap_or_default(),
                    });
                }
            }
        }
    }
    out
}

/// The `iptables-restore` input for node `node` (an index into `plan.nodes`).
pub fn node_rules(plan: &Plan, node: usize, slices: &[EndpointSlice], faults: &[Fault]) -> String {
    family_rules(plan, node, slices, faults, IpFamily::V4)
}

/// The `ip6tables-restore` input for node `node`: the same rules for the IPv6 family.
pub fn node_rules6(plan: &Plan, node: usize, slices: &[EndpointSlice], faults: &[Fault]) -> String {
    family_rules(plan, node, slices, faults, IpFamily::V6)
}

/// The host prefix length of `family` (`/32`, `/128`).
fn host_len(family: IpFamily) -> u8 {
    match family {
        IpFamily::V4 => 32,
        IpFamily::V6 => 128,
    }
}

/// The REJECT target with the ICMP type of `family` (`port` or `admin` unreachable).
fn reject(family: IpFamily, admin: bool) -> &'static str {
    match (family, admin) {
        (IpFamily::V4, false) => "REJECT --reject-with icmp-port-unreachable",
        (IpFamily::V4, true) => "REJECT --reject-with icmp-admin-prohibited",
        (IpFamily::V6, false) => "REJECT --reject-with icmp6-port-unreachable",
        (IpFamily::V6, true) => "REJECT --reject-with icmp6-adm-prohibited",
    }
}

fn family_rules(
    plan: &Plan,
    node: usize,
    slices: &[EndpointSlice],
    faults: &[Fault],
    family: IpFamily,
) -> String {
    let node_name = &plan.nodes[node].name;
    let ServicePortRules {
        nat_chains,
        nat,
        filter,
    } = service_port_rules(plan, &plan.nodes[node], slices, faults, family);
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for c in &nat_chains {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    out.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE\n",
    );
    out.push_str(&nat);
    out.push_str("COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    out.push_str(":KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n");
    // The load balancer firewall only when some Service has source ranges: the other clusters
    // keep the rules they always had.
    let firewall = plan
        .services
        .iter()
        .any(|s| !s.load_balancer_source_ranges.is_empty());
    if firewall {
        let _ = writeln!(out, ":{FIREWALL_CHAIN} - [0:0]");
    }
    let _ = writeln!(out, ":{POLICY_CHAIN} - [0:0]");
    let _ = writeln!(
        out,
        "-A FORWARD -m comment --comment \"network policy (lab deny rules)\" -j {POLICY_CHAIN}"
    );
    // kube-proxy's jump from each (its first; here FORWARD's comes after the lab's policy jump,
    // which changes no outcome): new connections to a load balancer address that its source
    // ranges did not let through, received, forwarded or sent by the node.
    for hook in ["INPUT", "FORWARD", "OUTPUT"].iter().filter(|_| firewall) {
        let _ = writeln!(
            out,
            "-A {hook} -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" \
             -j {FIREWALL_CHAIN}"
        );
    }
    // kube-proxy's jumps: ClusterIP rules on the forwarded and locally sent paths; the chain for
    // node ports and load balancer addresses on the input and forwarded paths.
    for (hook, chain, what) in [
        (
            "INPUT",
            "KUBE-EXTERNAL-SERVICES",
            "externally-visible service portals",
        ),
        ("FORWARD", "KUBE-SERVICES", "service portals"),
        (
            "FORWARD",
            "KUBE-EXTERNAL-SERVICES",
            "externally-visible service portals",
        ),
        ("OUTPUT", "KUBE-SERVICES", "service portals"),
    ] {
        let _ = writeln!(
            out,
            "-A {hook} -m conntrack --ctstate NEW -m comment --comment \"kubernetes {what}\" -j {chain}"
        );
    }
    out.push_str(&filter);
    out.push_str(&deny_rules(plan, faults, family));
    out.push_str(&intermittent_drop_rules(plan, faults, family));
    out.push_str(&reply_drop_rules(plan, faults, family));
    out.push_str(&family_cut_rules(node_name, faults, family));
    out.push_str("COMMIT\n");
    out
}

/// The scenario's policy faults alone, for a node whose Services real kube-proxy programs:
/// `iptables-restore --noflush` (or `ip6tables-restore`) input. The deny chain is jumped to from
/// the filter table's FORWARD, where a new connection meets it; reply drops go in the mangle
/// table, which every packet passes before kube-proxy's filter rules accept the established ones.
/// A one-family link cut comes later, to a running cluster (`family_cut_rules_restore`).
pub fn fault_rules(plan: &Plan, faults: &[Fault], family: IpFamily) -> String {
    let mut out = format!(
        "*filter\n:{POLICY_CHAIN} - [0:0]\n-A FORWARD -m comment --comment \"network policy (lab deny rules)\" -j {POLICY_CHAIN}\n"
    );
    out.push_str(&deny_rules(plan, faults, family));
    out.push_str(&intermittent_drop_rules(plan, faults, family));
    out.push_str("COMMIT\n*mangle\n");
    out.push_str(&reply_drop_rules(plan, faults, family));
    out.push_str("COMMIT\n");
    out
}

/// A one-family `link-cut` of node `node` as `iptables-restore --noflush` input for the mangle
/// table (before kube-proxy's accepts); empty when the node has none for `family`.
pub fn family_cut_rules_restore(plan: &Plan, node: usize, faults: &[Fault], family: IpFamily) -> String {
    let rules = family_cut_rules(&plan.nodes[node].name, faults, family);
    if rules.is_empty() {
        return String::new();
    }
    format!("*mangle\n{rules}COMMIT\n")
}

/// What kube-proxy on one node programs for the Services' ports of one family: the nat chains
/// it declares, the nat rules (VIP → service chain → endpoint chains → DNAT) and the filter
/// rules (REJECT for a port without endpoints).
#[derive(Default)]
struct ServicePortRules {
    nat_chains: Vec<String>,
    nat: String,
    filter: String,
}

fn service_port_rules(
    plan: &Plan,
    node: &NodePlan,
    slices: &[EndpointSlice],
    faults: &[Fault],
    family: IpFamily,
) -> ServicePortRules {
    let node_name = node.name.as_str();
    let skipped: BTreeSet<&str> = faults
        .iter()
        .filter_map(|f| match f {
            Fault::ServiceRulesMissing { service, node } if node == node_name => Some(service.as_str()),
            _ => None,
        })
        .collect();
    // The node-port chain only when some Service has node ports: a cluster of ClusterIP Services
    // keeps the rules it always had.
    let node_ports = plan.services.iter().any(ServicePlan::is_external);
    let mut rules = ServicePortRules {
        nat_chains: std::iter::once("KUBE-SERVICES")
            .chain(node_ports.then_some(NODE_PORTS_CHAIN))
            .chain(["KUBE-POSTROUTING", "KUBE-MARK-MASQ"])
            .map(String::from)
            .collect(),
        ..Default::default()
    };
    let view = NodeView {
        plan,
        node,
        slices,
        faults,
        family,
    };
    for svc in &plan.services {
        let Some(vip) = svc.vip(family) else { continue };
        if skipped.contains(svc.key().as_str()) {
            continue;
        }
        for sp in &svc.ports {
            if svc.is_external() {
                external_port_rules(&mut rules, &view, svc, sp, vip);
            } else {
                cluster_ip_port_rules(&mut rules, &view, svc, sp, vip);
            }
        }
    }
    if node_ports {
        // kube-proxy's last rule of KUBE-SERVICES (localhost node ports are not blocked for IPv4,
        // as with its default `localhostNodePorts`; IPv6 never has them).
        let not_loopback = match family {
            IpFamily::V4 => "",
            IpFamily::V6 => " ! -d ::1/128",
        };
        let _ = writeln!(
            rules.nat,
            "-A KUBE-SERVICES{not_loopback} -m comment --comment \"kubernetes service nodeports; NOTE: this must be \
             the last rule in this chain\" -m addrtype --dst-type LOCAL -j {NODE_PORTS_CHAIN}"
        );
    }
    rules
}

/// kube-proxy's nat chain of node ports, the last jump of KUBE-SERVICES for local addresses.
const NODE_PORTS_CHAIN: &str = "KUBE-NODEPORTS";

/// kube-proxy's filter chain that drops what a KUBE-FW chain left untranslated.
const FIREWALL_CHAIN: &str = "KUBE-PROXY-FIREWALL";

/// What kube-proxy on one node reads to program one family.
struct NodeView<'a> {
    plan: &'a Plan,
    node: &'a NodePlan,
    slices: &'a [EndpointSlice],
    faults: &'a [Fault],
    family: IpFamily,
}

impl NodeView<'_> {
    /// The endpoints of one Service port: kube-proxy's candidates in this family.
    fn candidates(&self, svc: &ServicePlan, sp: &ServicePortSpec) -> Vec<Candidate> {
        candidates(svc, sp.name.as_deref(), sp.protocol, self.slices, self.family)
    }

    /// `eps` with the pods a `service-rule-stale` fault leaves in this node's rules.
    fn with_stale(&self, svc: &ServicePlan, mut eps: Vec<(IpAddr, u16)>) -> Vec<(IpAddr, u16)> {
        let stale = stale_endpoints(
            self.plan,
            &self.node.name,
            &svc.key(),
            &eps,
            self.faults,
            self.family,
        );
        eps.extend(stale);
        eps
    }
}

/// `namespace/name:port` (or `namespace/name` for an unnamed port), as kube-proxy names a
/// Service port in its comments.
fn port_id(svc: &ServicePlan, sp: &ServicePortSpec) -> String {
    match &sp.name {
        Some(n) => format!("{}:{n}", svc.key()),
        None => svc.key(),
    }
}

/// A ClusterIP Service port: the ClusterIP's jump to the service chain and its endpoints, or
/// the filter rule for a port without them (REJECT; DROP under `internalTrafficPolicy: Local`
/// when only other nodes have endpoints).
fn cluster_ip_port_rules(
    rules: &mut ServicePortRules,
    view: &NodeView,
    svc: &ServicePlan,
    sp: &ServicePortSpec,
    vip: IpAddr,
) {
    let hl = host_len(view.family);
    let proto = sp.protocol.as_iptables();
    let port_id = port_id(svc, sp);
    let eps = view.with_stale(
        svc,
        ready_endpoints(
            svc,
            sp.name.as_deref(),
            sp.protocol,
            view.slices,
            view.family,
            view.node,
        ),
    );
    if eps.is_empty()
        && svc.internal_traffic_policy == TrafficPolicy::Local
        && has_usable_endpoints(svc, sp.name.as_deref(), sp.protocol, view.slices, view.family)
    {
        let _ = writeln!(
            rules.filter,
            "-A KUBE-SERVICES -d {vip}/{hl} -p {proto} -m comment --comment \"{port_id} has no local endpoints\" \
             -m {proto} --dport {} -j DROP",
            sp.port
        );
        return;
    }
    if eps.is_empty() {
        let _ = writeln!(
            rules.filter,
            "-A KUBE-SERVICES -d {vip}/{hl} -p {proto} -m comment --comment \"{port_id} has no endpoints\" \
             -m {proto} --dport {} -j {}",
            sp.port,
            reject(view.family, false)
        );
        return;
    }
    let svc_chain = format!("KUBE-SVC-{}", chain_hash(&format!("{port_id}/{proto}")));
    rules.nat_chains.push(svc_chain.clone());
    let _ = writeln!(
        rules.nat,
        "-A KUBE-SERVICES -d {vip}/{hl} -p {proto} -m comment --comment \"{port_id} cluster IP\" \
         -m {proto} --dport {} -j {svc_chain}",
        sp.port
    );
    endpoint_rules(rules, &port_id, proto, &svc_chain, &eps, hl);
}

/// The chains of a NodePort or LoadBalancer Service port, named as kube-proxy names them: one
/// hash, a prefix per role.
struct ExternalChains {
    /// KUBE-SVC: the `Cluster` policy's endpoints.
    cluster: String,
    /// KUBE-SVL: the node's own endpoints, for a `Local` policy.
    local: String,
    /// KUBE-EXT: where node-port and load-balancer traffic goes first.
    external: String,
    /// KUBE-FW: the load balancer address's way to KUBE-EXT under `loadBalancerSourceRanges`.
    firewall: String,
}

/// A NodePort or LoadBalancer Service port as kube-proxy's iptables mode writes it (its
/// proxier's `syncProxyRules`): the ClusterIP, the load balancer's address and the node port
/// lead to KUBE-EXT, which masquerades and goes cluster-wide under `externalTrafficPolicy:
/// Cluster`; under `Local` it sends pod traffic and the node's own cluster-wide and the rest to
/// the node's endpoints only, and with none here external traffic is dropped in the filter
/// table. Under `loadBalancerSourceRanges` the load balancer address goes through KUBE-FW
/// first (node ports do not). The health check port is left out: the stand-in serves no health
/// checks.
fn external_port_rules(
    rules: &mut ServicePortRules,
    view: &NodeView,
    svc: &ServicePlan,
    sp: &ServicePortSpec,
    vip: IpAddr,
) {
    let hl = host_len(view.family);
    let proto = sp.protocol.as_iptables();
    let port_id = port_id(svc, sp);
    let hash = chain_hash(&format!("{port_id}/{proto}"));
    let chains = ExternalChains {
        cluster: format!("KUBE-SVC-{hash}"),
        local: format!("KUBE-SVL-{hash}"),
        external: format!("KUBE-EXT-{hash}"),
        firewall: format!("KUBE-FW-{hash}"),
    };
    let all = view.candidates(svc, sp);
    let cluster = view.with_stale(svc, cluster_endpoints(&all, view.node));
    let uses_local = svc.internal_traffic_policy == TrafficPolicy::Local
        || svc.external_traffic_policy == TrafficPolicy::Local;
    let local = if uses_local {
        local_endpoints(&all, view.node)
    } else {
        Vec::new()
    };
    // Some node has an endpoint: the cluster-wide list is never empty then.
    let any = !cluster.is_empty();
    let policy = |p: TrafficPolicy| match p {
        TrafficPolicy::Cluster => (chains.cluster.as_str(), any),
        TrafficPolicy::Local => (chains.local.as_str(), any && !local.is_empty()),
    };
    let (internal_chain, has_internal) = policy(svc.internal_traffic_policy);
    let (external_policy_chain, has_external) = policy(svc.external_traffic_policy);
    let refused = if any {
        Refusal {
            comment: format!("{port_id} has no local endpoints"),
            target: "DROP",
        }
    } else {
        Refusal {
            comment: format!("{port_id} has no endpoints"),
            target: reject(view.family, false),
        }
    };
    if has_internal {
        let _ = writeln!(
            rules.nat,
            "-A KUBE-SERVICES -d {vip}/{hl} -p {proto} -m comment --comment \"{port_id} cluster IP\" \
             -m {proto} --dport {} -j {internal_chain}",
            sp.port
        );
    } else {
        let _ = writeln!(
            rules.filter,
            "-A KUBE-SERVICES -d {vip}/{hl} -p {proto} -m comment --comment \"{}\" -m {proto} --dport {} -j {}",
            refused.comment, sp.port, refused.target
        );
    }
    // kube-proxy's `usesFWChain`: endpoints somewhere, a load balancer address of this family
    // and source ranges of it.
    let load_balancer = svc.load_balancer_ip.filter(|_| view.family == IpFamily::V4);
    let ranges = source_ranges(svc, view.family);
    let firewalled = load_balancer.filter(|_| any && !ranges.is_empty());
    let entries = ExternalEntries {
        port_id: &port_id,
        chain: &chains.external,
        firewall: firewalled.map(|_| chains.firewall.as_str()),
        captured: any,
        refused: (!has_external).then_some(&refused),
    };
    entries.write(rules, view.family, svc, sp);
    if !any {
        return;
    }
    external_chain_rules(
        rules,
        view.family,
        svc,
        &port_id,
        &chains,
        has_external.then_some(external_policy_chain),
    );
    if let Some(lb) = firewalled {
        let node_ip = match view.family {
            IpFamily::V4 => IpAddr::V4(view.node.ip),
            IpFamily::V6 => IpAddr::V6(view.node.ip6),
        };
        firewall_chain_rules(rules, &port_id, &chains, &ranges, (lb.into(), node_ip));
    }
    policy_chain_rules(rules, &port_id, proto, &chains.cluster, &cluster);
    if uses_local {
        policy_chain_rules(rules, &port_id, proto, &chains.local, &local);
    }
    let reachable: BTreeSet<(IpAddr, u16)> = cluster.iter().chain(&local).copied().collect();
    for &ep in &reachable {
        sep_rules(rules, &port_id, proto, ep, hl);
    }
}

/// The filter rule's comment and target for traffic a node cannot send to an endpoint.
struct Refusal {
    comment: String,
    target: &'static str,
}

/// Where external traffic enters a Service port: its load balancer address (IPv4) and its node
/// port.
struct ExternalEntries<'a> {
    port_id: &'a str,
    /// The port's KUBE-EXT chain.
    chain: &'a str,
    /// The port's KUBE-FW chain, when its load balancer address goes there first (source
    /// ranges): filter KUBE-PROXY-FIREWALL drops what it leaves untranslated.
    firewall: Option<&'a str>,
    /// Whether they lead to it: some node has an endpoint.
    captured: bool,
    /// What the filter table does with external traffic this node has no endpoint for.
    refused: Option<&'a Refusal>,
}

impl ExternalEntries<'_> {
    fn write(&self, rules: &mut ServicePortRules, family: IpFamily, svc: &ServicePlan, sp: &ServicePortSpec) {
        let (port_id, chain) = (self.port_id, self.chain);
        let proto = sp.protocol.as_iptables();
        if let Some(lb) = svc.load_balancer_ip.filter(|_| family == IpFamily::V4) {
            let dport = format!("-m {proto} --dport {}", sp.port);
            if self.captured {
                let to = self.firewall.unwrap_or(chain);
                let _ = writeln!(
                    rules.nat,
                    "-A KUBE-SERVICES -d {lb}/32 -p {proto} -m comment --comment \"{port_id} loadbalancer IP\" {dport} -j {to}"
                );
            }
            if let Some(fw) = self.firewall {
                let _ = writeln!(
                    rules.filter,
                    "-A {FIREWALL_CHAIN} -d {lb}/32 -p {proto} -m comment --comment \"{port_id} traffic not accepted by {fw}\" \
                     {dport} -j DROP"
                );
            }
            if let Some(Refusal { comment, target }) = self.refused {
                let _ = writeln!(
                    rules.filter,
                    "-A KUBE-EXTERNAL-SERVICES -d {lb}/32 -p {proto} -m comment --comment \"{comment}\" {dport} -j {target}"
                );
            }
        }
        let Some(node_port) = sp.node_port else { return };
        if self.captured {
            let _ = writeln!(
                rules.nat,
                "-A {NODE_PORTS_CHAIN} -p {proto} -m comment --comment \"{port_id}\" -m {proto} --dport {node_port} -j {chain}"
            );
        }
        if let Some(Refusal { comment, target }) = self.refused {
            let _ = writeln!(
                rules.filter,
                "-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment \"{comment}\" -m addrtype --dst-type LOCAL \
                 -m {proto} --dport {node_port} -j {target}"
            );
        }
    }
}

/// The KUBE-EXT chain of a Service port: under `externalTrafficPolicy: Cluster` a masquerade
/// mark (the endpoint may be on another node); under `Local` the pods' and the node's own traffic
/// short-circuited to the cluster-wide chain (the node's masqueraded, its address being the
/// source), the rest left with its source. Then the policy's chain, when it has endpoints here.
fn external_chain_rules(
    rules: &mut ServicePortRules,
    family: IpFamily,
    svc: &ServicePlan,
    port_id: &str,
    chains: &ExternalChains,
    policy_chain: Option<&str>,
) {
    let ext = &chains.external;
    rules.nat_chains.push(ext.clone());
    match svc.external_traffic_policy {
        TrafficPolicy::Cluster => {
            let _ = writeln!(
                rules.nat,
                "-A {ext} -m comment --comment \"masquerade traffic for {port_id} external destinations\" -j KUBE-MARK-MASQ"
            );
        }
        TrafficPolicy::Local => {
            let pods = match family {
                IpFamily::V4 => crate::plan::POD_CIDR,
                IpFamily::V6 => crate::plan::POD_CIDR6,
            };
            let cluster = &chains.cluster;
            let _ = writeln!(
                rules.nat,
                "-A {ext} -s {pods} -m comment --comment \"pod traffic for {port_id} external destinations\" -j {cluster}\n\
                 -A {ext} -m comment --comment \"masquerade LOCAL traffic for {port_id} external destinations\" \
                 -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ\n\
                 -A {ext} -m comment --comment \"route LOCAL traffic for {port_id} external destinations\" \
                 -m addrtype --src-type LOCAL -j {cluster}"
            );
        }
    }
    if let Some(chain) = policy_chain {
        let _ = writeln!(rules.nat, "-A {ext} -j {chain}");
    }
}

/// The source ranges kube-proxy programs for a Service in `family`: the ranges of that family,
/// as networks; none when one of them has a zero-length prefix (it admits every client).
fn source_ranges(svc: &ServicePlan, family: IpFamily) -> Vec<IpNet> {
    let ranges: Vec<IpNet> = svc
        .load_balancer_source_ranges
        .iter()
        .filter(|r| IpFamily::of(r.addr()) == family)
        .map(IpNet::trunc)
        .collect();
    if ranges.iter().any(|r| r.prefix_len() == 0) {
        return Vec::new();
    }
    ranges
}

/// The KUBE-FW chain of a load balancer port with source ranges: traffic from each range on to
/// KUBE-EXT; when a range holds the node's address, also traffic from the load balancer address
/// itself (the node's own connection to an address it holds arrives from it); the rest returns
/// untranslated, to be dropped by filter KUBE-PROXY-FIREWALL.
fn firewall_chain_rules(
    rules: &mut ServicePortRules,
    port_id: &str,
    chains: &ExternalChains,
    ranges: &[IpNet],
    (load_balancer, node_ip): (IpAddr, IpAddr),
) {
    let (fw, ext) = (&chains.firewall, &chains.external);
    rules.nat_chains.push(fw.clone());
    let comment = format!("-m comment --comment \"{port_id} loadbalancer IP\"");
    for range in ranges {
        let _ = writeln!(rules.nat, "-A {fw} -s {range} {comment} -j {ext}");
    }
    if ranges.iter().any(|r| r.contains(&node_ip)) {
        let hl = host_len(IpFamily::of(load_balancer));
        let _ = writeln!(rules.nat, "-A {fw} -s {load_balancer}/{hl} {comment} -j {ext}");
    }
    let _ = writeln!(
        rules.nat,
        "-A {fw} -m comment --comment \"other traffic to {port_id} will be dropped by {FIREWALL_CHAIN}\""
    );
}

/// A traffic policy's chain (KUBE-SVC, KUBE-SVL): a jump to each endpoint's chain with
/// kube-proxy's random probabilities. Nothing when it has no endpoints.
fn policy_chain_rules(
    rules: &mut ServicePortRules,
    port_id: &str,
    proto: &str,
    chain: &str,
    eps: &[(IpAddr, u16)],
) {
    if eps.is_empty() {
        return;
    }
    rules.nat_chains.push(chain.to_string());
    let n = eps.len();
    for (i, &(ip, port)) in eps.iter().enumerate() {
        let to = SocketAddr::new(ip, port);
        let _ = writeln!(
            rules.nat,
            "-A {chain} -m comment --comment \"{port_id} -> {to}\"{} -j {}",
            probability(i, n),
            sep_chain(port_id, proto, ip, port)
        );
    }
}

/// One port's endpoint chains: the service chain's jump to each (with kube-proxy's random
/// probabilities), the masquerade mark for hairpin traffic and the DNAT.
fn endpoint_rules(
    rules: &mut ServicePortRules,
    port_id: &str,
    proto: &str,
    svc_chain: &str,
    eps: &[(IpAddr, u16)],
    hl: u8,
) {
    let n = eps.len();
    for (i, &(ip, port)) in eps.iter().enumerate() {
        let to = SocketAddr::new(ip, port);
        let _ = writeln!(
            rules.nat,
            "-A {svc_chain} -m comment --comment \"{port_id} -> {to}\"{} -j {}",
            probability(i, n),
            sep_chain(port_id, proto, ip, port)
        );
        sep_rules(rules, port_id, proto, (ip, port), hl);
    }
}

/// The statistic match of the `i`th of `n` endpoint jumps: each takes its share of what the
/// earlier ones left; the last takes the rest.
fn probability(i: usize, n: usize) -> String {
    if i + 1 < n {
        format!(
            " -m statistic --mode random --probability {:.10}",
            1.0 / (n - i) as f64
        )
    } else {
        String::new()
    }
}

fn sep_chain(port_id: &str, proto: &str, ip: IpAddr, port: u16) -> String {
    format!(
        "KUBE-SEP-{}",
        chain_hash(&format!("{port_id}/{proto}/{ip}:{port}"))
    )
}

/// One endpoint's chain: the masquerade mark for hairpin traffic and the DNAT.
fn sep_rules(rules: &mut ServicePortRules, port_id: &str, proto: &str, (ip, port): (IpAddr, u16), hl: u8) {
    let sep = sep_chain(port_id, proto, ip, port);
    let to = SocketAddr::new(ip, port);
    rules.nat_chains.push(sep.clone());
    let _ = writeln!(
        rules.nat,
        "-A {sep} -s {ip}/{hl} -m comment --comment \"{port_id}\" -j KUBE-MARK-MASQ"
    );
    let _ = writeln!(
        rules.nat,
        "-A {sep} -p {proto} -m comment --comment \"{port_id}\" -m {proto} -j DNAT --to-destination {to}"
    );
}

/// A `link-cut` fault for one family: that family's traffic through the node's uplink dropped
/// both ways (forwarded and the node's own), the other family untouched.
fn family_cut_rules(node: &str, faults: &[Fault], family: IpFamily) -> String {
    let cut = faults
        .iter()
        .any(|f| matches!(f, Fault::LinkCut { node: n, family: Some(cf) } if n == node && *cf == family));
    if !cut {
        return String::new();
    }
    let comment = format!(
        "-m comment --comment \"link cut for {}\" -j DROP",
        family.as_k8s()
    );
    [
        "FORWARD -i eth0",
        "FORWARD -o eth0",
        "INPUT -i eth0",
        "OUTPUT -o eth0",
    ]
    .iter()
    .map(|m| format!("-A {m} {comment}\n"))
    .collect()
}

/// The pods a `service-rule-stale` fault leaves in this node's rules for the Service, on the
/// port its real endpoints use.
fn stale_endpoints(
    plan: &Plan,
    node: &str,
    service: &str,
    eps: &[(IpAddr, u16)],
    faults: &[Fault],
    family: IpFamily,
) -> Vec<(IpAddr, u16)> {
    let Some(&(_, port)) = eps.first() else {
        return vec![];
    };
    faults
        .iter()
        .filter_map(|f| match f {
            Fault::ServiceRuleStale {
                service: s,
                node: n,
                to,
            } if s == service && n == node => Some(pod_ips(plan, to, family)),
            _ => None,
        })
        .flatten()
        .filter(|ip| !eps.iter().any(|(e, _)| e == ip))
        .map(|ip| (ip, port))
        .collect()
}

/// Drops of the SYN-ACKs from one pod to another (`reply-drop` faults), on every node's
/// forwarding path.
fn reply_drop_rules(plan: &Plan, faults: &[Fault], family: IpFamily) -> String {
    let hl = host_len(family);
    let mut out = String::new();
    for f in faults {
        let Fault::ReplyDrop { from, to } = f else {
            continue;
        };
        for src in pod_ips(plan, from, family) {
            for dst in pod_ips(plan, to, family) {
                let _ = writeln!(
                    out,
                    "-A FORWARD -s {src}/{hl} -d {dst}/{hl} -p tcp --tcp-flags SYN,ACK SYN,ACK -m comment --comment \"reply drop {from} -> {to}\" -j DROP"
                );
            }
        }
    }
    out
}

fn pod_ips(plan: &Plan, end: &str, family: IpFamily) -> Vec<IpAddr> {
    if end == crate::scenario::OUTSIDE_HOST {
        return match family {
            IpFamily::V4 => vec![IpAddr::V4(crate::plan::OUTSIDE_HOST_IP)],
            IpFamily::V6 => vec![],
        };
    }
    let Some((ns, name)) = split_ref(end) else {
        return Vec::new();
    };
    plan.pods
        .iter()
        .filter(|p| p.spec.namespace == ns && (name == "*" || p.spec.name == name))
        .filter_map(|p| p.addr(family))
        .collect()
}

/// The `intermittent-drop` faults: on the way in from the source pod's veth (so on its node only,
/// where conntrack knows whether a Service address was translated), every `every`th new flow
/// from the source to the destination is dropped; flows to a Service address translated to it
/// count only when `throughService` says so.
fn intermittent_drop_rules(plan: &Plan, faults: &[Fault], family: IpFamily) -> String {
    let hl = host_len(family);
    let mut out = String::new();
    for f in faults {
        let Fault::IntermittentDrop {
            from,
            to,
            port,
            protocol,
            every,
            through_service,
        } = f
        else {
            continue;
        };
        let Some(source) = plan.pods.iter().find(|p| p.key() == *from) else {
            continue;
        };
        let mut matcher = String::new();
        if let Some(p) = protocol.or(port.map(|_| Protocol::Tcp)) {
            let p = p.as_iptables();
            let _ = write!(matcher, " -p {p}");
            if let Some(port) = port {
                let _ = write!(matcher, " -m {p} --dport {port}");
            }
        }
        if !through_service {
            matcher.push_str(" -m conntrack ! --ctstate DNAT");
        }
        for src in pod_ips(plan, from, family) {
            for dst in pod_ips(plan, to, family) {
                let _ = writeln!(
                    out,
                    "-A {POLICY_CHAIN} -s {src}/{hl} -d {dst}/{hl} -i {}{matcher} -m conntrack --ctstate NEW \
                     -m statistic --mode nth --every {every} --packet 0 \
                     -m comment --comment \"drop 1 in {every} of {from} -> {to}\" -j DROP",
                    source.host_if
                );
            }
        }
    }
    out
}

fn deny_rules(plan: &Plan, faults: &[Fault], family: IpFamily) -> String {
    let hl = host_len(family);
    let mut out = String::new();
    for f in faults {
        let Fault::Deny {
            from,
            to,
            port,
            protocol,
            mode,
            family: only,
        } = f
        else {
            continue;
        };
        if only.is_some_and(|only| only != family) {
            continue;
        }
        let proto = match (protocol, port) {
            (Some(p), _) => Some(*p),
            (None, Some(_)) => Some(Protocol::Tcp),
            (None, None) => None,
        };
        let mut matcher = String::new();
        if let Some(p) = proto {
            let p = p.as_iptables();
            let _ = write!(matcher, " -p {p}");
            if let Some(port) = port {
                let _ = write!(matcher, " -m {p} --dport {port}");
            }
        }
        let target = match mode {
            DenyMode::Drop => "DROP".to_string(),
            DenyMode::Reject => reject(family, true).to_string(),
        };
        for src in pod_ips(plan, from, family) {
            for dst in pod_ips(plan, to, family) {
                let _ = writeln!(
                    out,
                    "-A {POLICY_CHAIN} -s {src}/{hl} -d {dst}/{hl}{matcher} -m comment --comment \"deny {from} -> {to}\" -j {target}"
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::endpoint_slices;
    use crate::scenario::Scenario;
    use k8s_openapi::jiff::Timestamp;

    const TEXT: &str = "name: t\nnodes: [a, b]\npods:\n\
        - {namespace: shop, name: c, node: a}\n\
        - {namespace: shop, name: p0, node: a, labels: {app: pay}, ports: [{name: http, containerPort: 8080}]}\n\
        - {namespace: shop, name: p1, node: b, labels: {app: pay}, ports: [{name: http, containerPort: 8080}]}\n\
        - {namespace: shop, name: p2, node: b, labels: {app: pay}, ready: false, ports: [{name: http, containerPort: 8080}]}\n\
        services:\n- {namespace: shop, name: pay, selector: {app: pay}, ports: [{name: web, port: 80, targetPort: http}]}\n\
        - {namespace: shop, name: empty, selector: {app: none}, ports: [{port: 81}]}\n\
        - {namespace: shop, name: hl, headless: true, selector: {app: pay}, ports: [{port: 82}]}\n";

    fn rules(extra: &str, node: usize) -> String {
        let s = Scenario::parse(&format!("{TEXT}{extra}")).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        node_rules(&plan, node, &slices, &s.faults)
    }

    #[test]
    fn cluster_ip_spreads_over_ready_endpoints_only() {
        let r = rules("", 0);
        let dnat: Vec<&str> = r
            .lines()
            .filter(|l| l.contains("DNAT") && l.contains("shop/pay:web"))
            .collect();
        assert_eq!(dnat.len(), 2, "{r}");
        assert!(
            dnat[0].ends_with("--to-destination 10.244.1.3:8080"),
            "{}",
            dnat[0]
        );
        assert!(
            dnat[1].ends_with("--to-destination 10.244.2.2:8080"),
            "{}",
            dnat[1]
        );
        assert!(
            !r.contains("10.244.2.3"),
            "the not-ready pod is no endpoint:\n{r}"
        );
        assert!(r.contains("--probability 0.5000000000"));
        let jump = r
            .lines()
            .find(|l| l.starts_with("-A KUBE-SERVICES -d 10.96.1.1/32"))
            .unwrap();
        assert!(jump.contains("--dport 80 -j KUBE-SVC-"), "{jump}");
    }

    #[test]
    fn service_without_ready_endpoints_is_rejected_in_the_filter_table() {
        let r = rules("", 0);
        let filter = r.split("*filter").nth(1).unwrap();
        let reject = filter
            .lines()
            .find(|l| l.contains("shop/empty has no endpoints"))
            .unwrap();
        assert!(reject.contains("-d 10.96.1.2/32 -p tcp"), "{reject}");
        assert!(reject.ends_with("--dport 81 -j REJECT --reject-with icmp-port-unreachable"));
    }

    #[test]
    fn service_rejects_are_reached_from_forwarded_and_local_traffic_as_kube_proxy_jumps() {
        let r = rules("", 0);
        let jumps: Vec<&str> = r
            .lines()
            .filter(|l| l.ends_with("-j KUBE-SERVICES") && l.contains("--ctstate NEW"))
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(jumps, ["FORWARD", "OUTPUT"], "{r}");
        assert!(r.contains("-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"));
    }

    #[test]
    fn terminating_serving_endpoints_are_used_only_when_none_is_ready() {
        let slice = |extra: &str| {
            rules(
                &format!(
                    "endpointSlices:\n- metadata: {{name: x, namespace: shop, labels: {{kubernetes.io/service-name: pay}}}}\n  \
                     ports: [{{name: web, port: 8080, protocol: TCP}}]\n  endpoints:\n  \
                     - {{addresses: [10.244.2.50], conditions: {{ready: false, serving: true, terminating: true}}}}\n  \
                     - {{addresses: [10.244.2.51], conditions: {{ready: false, serving: false, terminating: true}}}}\n{extra}"
                ),
                0,
            )
        };
        let only_terminating = slice("");
        assert!(
            only_terminating.contains("--to-destination 10.244.2.50:8080"),
            "{only_terminating}"
        );
        assert!(
            !only_terminating.contains("10.244.2.51"),
            "not serving: {only_terminating}"
        );
        let with_ready = slice("  - {addresses: [10.244.2.52], conditions: {ready: true}}\n");
        assert!(
            with_ready.contains("--to-destination 10.244.2.52:8080"),
            "{with_ready}"
        );
        assert!(
            !with_ready.contains("10.244.2.50"),
            "a ready endpoint wins: {with_ready}"
        );
    }

    fn rules6(extra: &str, node: usize) -> String {
        let s = Scenario::parse(&format!("{TEXT}ipFamilies: [IPv4, IPv6]\n{extra}")).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        node_rules6(&plan, node, &slices, &s.faults)
    }

    #[test]
    fn ipv6_rules_use_the_ipv6_cluster_ip_slices_and_icmp6() {
        let r = rules6(
            "faults: [{kind: deny, from: shop/c, to: shop/p1, mode: reject}]\n",
            0,
        );
        let dnat: Vec<&str> = r
            .lines()
            .filter(|l| l.contains("DNAT") && l.contains("shop/pay:web"))
            .collect();
        assert_eq!(dnat.len(), 2, "{r}");
        assert!(
            dnat[0].ends_with("--to-destination [fd00:10:244:1::3]:8080"),
            "{}",
            dnat[0]
        );
        assert!(
            r.contains("-A KUBE-SERVICES -d fd00:10:96::101/128 -p tcp"),
            "{r}"
        );
        assert!(
            r.contains("-d fd00:10:96::102/128 -p tcp -m comment --comment \"shop/empty has no endpoints\"")
        );
        assert!(
            r.contains("-j REJECT --reject-with icmp6-port-unreachable"),
            "{r}"
        );
        assert!(
            r.contains("-s fd00:10:244:1::2/128 -d fd00:10:244:2::2/128 -m comment --comment \"deny shop/c -> shop/p1\" -j REJECT --reject-with icmp6-adm-prohibited"),
            "{r}"
        );
        assert!(!r.contains("10.244."), "no IPv4 address in IPv6 rules:\n{r}");
    }

    #[test]
    fn family_deny_is_written_for_its_family_only() {
        let deny = "faults: [{kind: deny, from: shop/c, to: shop/p1, family: IPv6}]\n";
        assert!(rules6(deny, 0).contains("deny shop/c -> shop/p1"));
        let s = Scenario::parse(&format!("{TEXT}ipFamilies: [IPv4, IPv6]\n{deny}")).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        assert!(!node_rules(&plan, 0, &slices, &s.faults).contains("deny shop/c"));
    }

    #[test]
    fn family_link_cut_drops_only_that_family_on_the_nodes_uplink() {
        let cut = "faults: [{kind: link-cut, node: b, family: IPv6}]\n";
        let v6 = rules6(cut, 1);
        let drops: Vec<&str> = v6.lines().filter(|l| l.contains("link cut for IPv6")).collect();
        assert_eq!(drops.len(), 4, "{v6}");
        assert!(drops.iter().any(|l| l.starts_with("-A FORWARD -i eth0 ")));
        assert!(!rules6(cut, 0).contains("link cut"), "only node b's uplink");
        let s = Scenario::parse(&format!("{TEXT}ipFamilies: [IPv4, IPv6]\n{cut}")).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        assert!(
            !node_rules(&plan, 1, &slices, &s.faults).contains("link cut"),
            "IPv4 untouched"
        );
    }

    #[test]
    fn headless_service_gets_no_rules() {
        assert!(!rules("", 0).contains("shop/hl"));
    }

    #[test]
    fn dns_service_is_programmed_for_udp_and_tcp() {
        let r = rules("", 1);
        assert!(r.contains("-A KUBE-SERVICES -d 10.96.0.10/32 -p udp"), "{r}");
        assert!(r.contains("-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp"), "{r}");
    }

    #[test]
    fn stale_rule_fault_adds_the_pod_to_its_node_rules_only() {
        let extra = "faults: [{kind: service-rule-stale, service: shop/pay, node: a, to: shop/c}]\n";
        let dnat = |node| {
            rules(extra, node)
                .lines()
                .filter(|l| l.contains("DNAT") && l.contains("shop/pay:web"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let on_a = dnat(0);
        assert_eq!(on_a.len(), 3, "{on_a:?}");
        assert!(
            on_a.iter()
                .any(|l| l.ends_with("--to-destination 10.244.1.2:8080")),
            "{on_a:?}"
        );
        assert_eq!(dnat(1).len(), 2);
    }

    #[test]
    fn reply_drop_fault_drops_syn_acks_only() {
        let r = rules("faults: [{kind: reply-drop, from: shop/p1, to: shop/c}]\n", 0);
        let line = r
            .lines()
            .find(|l| l.contains("reply drop"))
            .expect("a reply drop rule");
        assert!(
            line.starts_with(
                "-A FORWARD -s 10.244.2.2/32 -d 10.244.1.2/32 -p tcp --tcp-flags SYN,ACK SYN,ACK"
            ),
            "{line}"
        );
    }

    #[test]
    fn missing_service_rules_fault_applies_to_its_node_only() {
        let extra = "faults: [{kind: service-rules-missing, service: shop/pay, node: a}]\n";
        assert!(!rules(extra, 0).contains("shop/pay"));
        assert!(rules(extra, 1).contains("shop/pay:web cluster IP"));
    }

    #[test]
    fn deny_rule_matches_pod_ips_port_and_mode() {
        let r = rules(
            "faults:\n- {kind: deny, from: shop/c, to: shop/p1, port: 8080, mode: drop}\n\
             - {kind: deny, from: shop/c, to: shop/*, mode: reject}\n",
            1,
        );
        let lines: Vec<&str> = r
            .lines()
            .filter(|l| l.starts_with(&format!("-A {POLICY_CHAIN}")))
            .collect();
        assert_eq!(lines.len(), 1 + 4, "{r}");
        assert!(
            lines[0].contains("-s 10.244.1.2/32 -d 10.244.2.2/32 -p tcp -m tcp --dport 8080"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("-j DROP"));
        assert!(lines[1].ends_with("-j REJECT --reject-with icmp-admin-prohibited"));
        assert!(
            !lines[1].contains("-p "),
            "no port means every protocol: {}",
            lines[1]
        );
    }

    #[test]
    fn a_deny_to_the_outside_host_matches_its_address() {
        let r = rules(
            "outside: true\nfaults:\n- {kind: deny, from: shop/c, to: outside, port: 443}\n",
            0,
        );
        let line = r
            .lines()
            .find(|l| l.starts_with(&format!("-A {POLICY_CHAIN}")))
            .unwrap_or_else(|| panic!("no deny rule in {r}"));
        assert!(
            line.contains("-s 10.244.1.2/32 -d 198.51.100.10/32 -p tcp -m tcp --dport 443"),
            "{line}"
        );
        let e = Scenario::parse(&format!(
            "{TEXT}faults:\n- {{kind: deny, from: shop/c, to: outside}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("deny fault needs outside: true"), "{e}");
    }

    #[test]
    fn override_slices_drive_the_rules() {
        let r = rules(
            "endpointSlices:\n- metadata: {name: x, namespace: shop, labels: {kubernetes.io/service-name: pay}}\n  \
             ports: [{name: web, port: 9999, protocol: TCP}]\n  endpoints: [{addresses: [10.244.2.77]}]\n",
            0,
        );
        assert!(r.contains("--to-destination 10.244.2.77:9999"), "{r}");
        assert!(!r.contains("10.244.1.3:8080"));
    }

    /// The `shop/pay:web` DNATs and filter rules of node `node` when the pay Service has `extra`
    /// spec fields and the nodes `zones`.
    fn routed(extra: &str, zones: &str, node: usize) -> (Vec<String>, Vec<String>) {
        let text = TEXT.replace(
            "name: pay, selector: {app: pay},",
            &format!("name: pay, selector: {{app: pay}}, {extra}"),
        );
        let s = Scenario::parse(&format!("{text}zones: {zones}\n")).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let r = node_rules(&plan, node, &slices, &s.faults);
        let dnat = r
            .lines()
            .filter(|l| l.contains("DNAT") && l.contains("shop/pay:web"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect();
        let filter = r
            .lines()
            .filter(|l| l.contains("shop/pay:web has"))
            .map(str::to_string)
            .collect();
        (dnat, filter)
    }

    #[test]
    fn local_traffic_policy_translates_to_the_nodes_endpoints_or_drops() {
        let (dnat, filter) = routed("internalTrafficPolicy: Local,", "{}", 0);
        assert_eq!(dnat, ["10.244.1.3:8080"]);
        assert!(filter.is_empty());
        // A node without a pay pod: p2 there is not ready, so nothing local serves.
        let s = TEXT.replace("name: p1, node: b", "name: p1, node: a");
        let scenario = Scenario::parse(&s.replace(
            "name: pay, selector: {app: pay},",
            "name: pay, selector: {app: pay}, internalTrafficPolicy: Local,",
        ))
        .unwrap();
        let plan = Plan::new(&scenario, "nl000001", false).unwrap();
        let slices = endpoint_slices(&scenario, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let r = node_rules(&plan, 1, &slices, &scenario.faults);
        assert!(
            !r.lines()
                .any(|l| l.contains("DNAT") && l.contains("shop/pay:web")),
            "{r}"
        );
        assert!(
            r.contains("\"shop/pay:web has no local endpoints\" -m tcp --dport 80 -j DROP"),
            "{r}"
        );
    }

    #[test]
    fn zone_hints_translate_to_the_zones_endpoints_and_without_zones_to_all() {
        let zones = "{a: zone-a, b: zone-b}";
        let (dnat, _) = routed("trafficDistribution: PreferClose,", zones, 0);
        assert_eq!(dnat, ["10.244.1.3:8080"]);
        let (dnat, _) = routed("trafficDistribution: PreferClose,", zones, 1);
        assert_eq!(dnat, ["10.244.2.2:8080"]);
        let (dnat, _) = routed("trafficDistribution: PreferClose,", "{}", 1);
        assert_eq!(dnat.len(), 2);
        let (dnat, _) = routed("", zones, 1);
        assert_eq!(dnat.len(), 2);
    }

    /// The rules of node `node` when the pay Service is external with `fields` (its type, policy,
    /// load balancer address) and node port 30080, in scenario `text`.
    fn external(text: &str, fields: &str, node: usize) -> String {
        let text = text.replace(
            "name: pay, selector: {app: pay}, ports: [{name: web, port: 80, targetPort: http}]",
            &format!(
                "name: pay, selector: {{app: pay}}, {fields}, ports: [{{name: web, port: 80, targetPort: http, nodePort: 30080}}]"
            ),
        );
        let s = Scenario::parse(&text).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let r = node_rules(&plan, node, &slices, &s.faults);
        assert_chains_declared(&r);
        r
    }

    /// Every chain a rule is added to or jumps to is declared once in its table (or built in), as
    /// `iptables-restore` needs.
    fn assert_chains_declared(rules: &str) {
        for table in rules.split('*').skip(1) {
            let declared: Vec<&str> = table
                .lines()
                .filter_map(|l| l.strip_prefix(':')?.split(' ').next())
                .collect();
            let unique: BTreeSet<&str> = declared.iter().copied().collect();
            assert_eq!(unique.len(), declared.len(), "a chain declared twice:\n{table}");
            for line in table.lines().filter(|l| l.starts_with("-A ")) {
                let words: Vec<&str> = line.split(' ').collect();
                let target = words.iter().position(|w| *w == "-j").map(|i| words[i + 1]);
                for chain in std::iter::once(words[1]).chain(target) {
                    let builtin = chain.chars().all(|c| c.is_ascii_uppercase()) && !chain.contains('-');
                    assert!(builtin || unique.contains(chain), "{chain} undeclared in: {line}");
                }
            }
        }
    }

    /// The lines of `rules` that start with `prefix`.
    fn lines_of<'a>(rules: &'a str, prefix: &str) -> Vec<&'a str> {
        rules.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    /// The pay Service's chain with `prefix` (`KUBE-SVC-`, ...), as kube-proxy names it: one
    /// hash of the port, a prefix per role.
    fn pay_chain(prefix: &str) -> String {
        format!("{prefix}{}", chain_hash("shop/pay:web/tcp"))
    }

    #[test]
    fn a_cluster_ip_only_cluster_has_no_node_port_chain() {
        let r = rules("", 0);
        assert!(!r.contains("KUBE-NODEPORTS") && !r.contains("KUBE-EXT-"), "{r}");
        assert_chains_declared(&r);
    }

    #[test]
    fn a_node_port_goes_through_the_external_chain_which_masquerades_then_goes_cluster_wide() {
        let r = external(TEXT, "type: NodePort", 0);
        let ext = pay_chain("KUBE-EXT-");
        let svc = pay_chain("KUBE-SVC-");
        assert_eq!(
            lines_of(&r, "-A KUBE-NODEPORTS"),
            [format!(
                "-A KUBE-NODEPORTS -p tcp -m comment --comment \"shop/pay:web\" -m tcp --dport 30080 -j {ext}"
            )]
        );
        assert_eq!(
            lines_of(&r, &format!("-A {ext} ")),
            [
                format!(
                    "-A {ext} -m comment --comment \"masquerade traffic for shop/pay:web external destinations\" -j KUBE-MARK-MASQ"
                ),
                format!("-A {ext} -j {svc}")
            ]
        );
        assert_eq!(
            lines_of(&r, &format!("-A {svc} ")).len(),
            2,
            "both endpoints:\n{r}"
        );
        assert!(r.contains(&format!("\"shop/pay:web cluster IP\" -m tcp --dport 80 -j {svc}")));
        let nat = r.split("*filter").next().unwrap();
        let services = lines_of(nat, "-A KUBE-SERVICES");
        assert_eq!(
            services.last().copied(),
            Some(
                "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule \
                 in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
            )
        );
        // The other Services' rules stay as they were.
        assert!(r.contains("\"shop/empty has no endpoints\" -m tcp --dport 81 -j REJECT"));
    }

    #[test]
    fn a_local_load_balancer_short_circuits_pods_and_the_node_and_sends_the_rest_to_local_endpoints() {
        let r = external(
            TEXT,
            "type: LoadBalancer, loadBalancerIP: 203.0.113.10, externalTrafficPolicy: Local",
            0,
        );
        let (ext, svc, svl) = (
            pay_chain("KUBE-EXT-"),
            pay_chain("KUBE-SVC-"),
            pay_chain("KUBE-SVL-"),
        );
        assert!(
            r.contains(&format!(
                "-A KUBE-SERVICES -d 203.0.113.10/32 -p tcp -m comment --comment \"shop/pay:web loadbalancer IP\" \
                 -m tcp --dport 80 -j {ext}"
            )),
            "{r}"
        );
        assert_eq!(
            lines_of(&r, &format!("-A {ext} ")),
            [
                format!(
                    "-A {ext} -s 10.244.0.0/16 -m comment --comment \"pod traffic for shop/pay:web external destinations\" -j {svc}"
                ),
                format!(
                    "-A {ext} -m comment --comment \"masquerade LOCAL traffic for shop/pay:web external destinations\" \
                     -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
                ),
                format!(
                    "-A {ext} -m comment --comment \"route LOCAL traffic for shop/pay:web external destinations\" \
                     -m addrtype --src-type LOCAL -j {svc}"
                ),
                format!("-A {ext} -j {svl}"),
            ]
        );
        let svl_rules = lines_of(&r, &format!("-A {svl} "));
        assert_eq!(svl_rules.len(), 1, "{r}");
        assert!(svl_rules[0].contains("shop/pay:web -> 10.244.1.3:8080"));
        assert_eq!(lines_of(&r, &format!("-A {svc} ")).len(), 2);
        let dnat = r
            .lines()
            .filter(|l| l.contains("-j DNAT") && l.contains("shop/pay:web"))
            .count();
        assert_eq!(
            dnat, 2,
            "one endpoint chain per endpoint, the local one not twice:\n{r}"
        );
        assert!(!r.contains("has no local endpoints"), "{r}");
    }

    #[test]
    fn a_local_policy_without_a_local_endpoint_drops_external_traffic_but_keeps_the_short_circuits() {
        // Node b has no ready pay pod once p1 moves to a.
        let text = TEXT.replace("name: p1, node: b", "name: p1, node: a");
        let r = external(
            &text,
            "type: LoadBalancer, loadBalancerIP: 203.0.113.10, externalTrafficPolicy: Local",
            1,
        );
        let ext = pay_chain("KUBE-EXT-");
        assert!(
            !r.contains(":KUBE-SVL-"),
            "no local endpoints, no local chain:\n{r}"
        );
        let ext_rules = lines_of(&r, &format!("-A {ext} "));
        assert_eq!(ext_rules.len(), 3, "the short-circuits, no policy jump:\n{r}");
        assert!(r.contains(&format!("--dport 30080 -j {ext}")), "{r}");
        assert_eq!(
            lines_of(&r, "-A KUBE-EXTERNAL-SERVICES -"),
            [
                "-A KUBE-EXTERNAL-SERVICES -d 203.0.113.10/32 -p tcp -m comment --comment \"shop/pay:web has no local \
                 endpoints\" -m tcp --dport 80 -j DROP",
                "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"shop/pay:web has no local endpoints\" \
                 -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j DROP",
            ]
        );
        // The ClusterIP (internal policy Cluster) still goes cluster-wide.
        assert!(
            r.contains("\"shop/pay:web cluster IP\" -m tcp --dport 80 -j KUBE-SVC-"),
            "{r}"
        );
    }

    /// The rules of node `node` when the pay Service is a Cluster-policy LoadBalancer at
    /// 203.0.113.10 with `ranges` as its `loadBalancerSourceRanges`.
    fn firewalled(ranges: &str, node: usize) -> String {
        external(
            TEXT,
            &format!("type: LoadBalancer, loadBalancerIP: 203.0.113.10, loadBalancerSourceRanges: {ranges}"),
            node,
        )
    }

    #[test]
    fn source_ranges_send_the_load_balancer_address_through_a_firewall_chain_and_drop_the_rest() {
        let r = firewalled("[192.0.2.0/24, 10.244.1.0/24]", 0);
        let (fw, ext) = (pay_chain("KUBE-FW-"), pay_chain("KUBE-EXT-"));
        assert!(
            r.contains(&format!(
                "-A KUBE-SERVICES -d 203.0.113.10/32 -p tcp -m comment --comment \"shop/pay:web loadbalancer IP\" \
                 -m tcp --dport 80 -j {fw}\n"
            )),
            "{r}"
        );
        assert_eq!(
            lines_of(&r, &format!("-A {fw} ")),
            [
                format!(
                    "-A {fw} -s 192.0.2.0/24 -m comment --comment \"shop/pay:web loadbalancer IP\" -j {ext}"
                ),
                format!(
                    "-A {fw} -s 10.244.1.0/24 -m comment --comment \"shop/pay:web loadbalancer IP\" -j {ext}"
                ),
                format!(
                    "-A {fw} -m comment --comment \"other traffic to shop/pay:web will be dropped by KUBE-PROXY-FIREWALL\""
                ),
            ]
        );
        // Declared after the external chain, before the policy chain, as kube-proxy writes them.
        let declared: Vec<&str> = r.lines().filter(|l| l.starts_with(':')).collect();
        let at = |c: &str| {
            declared
                .iter()
                .position(|l| l.starts_with(&format!(":{c} ")))
                .unwrap()
        };
        assert!(at(&ext) < at(&fw) && at(&fw) < at(&pay_chain("KUBE-SVC-")), "{r}");
        let filter = r.split("*filter").nth(1).unwrap();
        assert_eq!(
            lines_of(filter, "-A KUBE-PROXY-FIREWALL "),
            [format!(
                "-A KUBE-PROXY-FIREWALL -d 203.0.113.10/32 -p tcp -m comment --comment \"shop/pay:web traffic not \
                 accepted by {fw}\" -m tcp --dport 80 -j DROP"
            )]
        );
        assert!(filter.contains("\n:KUBE-PROXY-FIREWALL - [0:0]\n"), "{filter}");
        for hook in ["INPUT", "FORWARD", "OUTPUT"] {
            assert!(
                filter.contains(&format!(
                    "-A {hook} -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" \
                     -j KUBE-PROXY-FIREWALL\n"
                )),
                "{hook}: {filter}"
            );
        }
        // Node ports are not subject to the ranges.
        assert!(r.contains(&format!("-m tcp --dport 30080 -j {ext}\n")), "{r}");
        assert!(!filter.contains("30080 -j DROP"), "{filter}");
    }

    #[test]
    fn a_range_holding_the_node_also_admits_the_load_balancer_address_as_source_there() {
        // Node a is 172.18.0.2, node b 172.18.0.3; the IPv6 range is not the IPv4 rules'.
        let (fw, ext) = (pay_chain("KUBE-FW-"), pay_chain("KUBE-EXT-"));
        let from_lb = format!(
            "-A {fw} -s 203.0.113.10/32 -m comment --comment \"shop/pay:web loadbalancer IP\" -j {ext}"
        );
        let on_a = firewalled("[172.18.0.2/32, '2001:db8::/64']", 0);
        let fw_a = lines_of(&on_a, &format!("-A {fw} "));
        assert_eq!(fw_a.len(), 3, "{on_a}");
        assert!(
            fw_a[0].starts_with(&format!("-A {fw} -s 172.18.0.2/32 ")),
            "{on_a}"
        );
        assert_eq!(fw_a[1], from_lb);
        assert!(fw_a[2].contains("will be dropped by KUBE-PROXY-FIREWALL"));
        let on_b = firewalled("[172.18.0.2/32, '2001:db8::/64']", 1);
        assert!(!on_b.contains(&from_lb), "{on_b}");
        assert_eq!(lines_of(&on_b, &format!("-A {fw} ")).len(), 2, "{on_b}");
    }

    #[test]
    fn a_zero_length_range_admits_everyone_and_without_ranges_there_is_no_firewall() {
        let ext = pay_chain("KUBE-EXT-");
        let open = firewalled("[192.0.2.0/24, 0.0.0.0/0]", 0);
        assert!(!open.contains("KUBE-FW-"), "{open}");
        assert!(open.contains(&format!(
            "\"shop/pay:web loadbalancer IP\" -m tcp --dport 80 -j {ext}"
        )));
        // kube-proxy's chain and jumps stay, with no rule of the Service.
        assert!(open.contains(":KUBE-PROXY-FIREWALL - [0:0]") && !open.contains("-A KUBE-PROXY-FIREWALL "));
        // Only an IPv6 range: nothing for IPv4 to filter.
        let v6 = firewalled("['2001:db8::/64']", 0);
        assert!(
            !v6.contains("KUBE-FW-") && !v6.contains("-A KUBE-PROXY-FIREWALL "),
            "{v6}"
        );
        let plain = external(TEXT, "type: LoadBalancer, loadBalancerIP: 203.0.113.10", 0);
        assert!(
            !plain.contains("FIREWALL") && !plain.contains("KUBE-FW-"),
            "{plain}"
        );
        assert!(!rules("", 0).contains("FIREWALL"));
    }

    #[test]
    fn a_load_balancer_without_endpoints_has_no_firewall_chain() {
        let text = TEXT.replace("- {namespace: shop, name: empty, selector: {app: none}, ports: [{port: 81}]}", "- {namespace: shop, name: empty, selector: {app: none}, type: LoadBalancer, \
             loadBalancerIP: 203.0.113.11, loadBalancerSourceRanges: [192.0.2.0/24], ports: [{port: 81, nodePort: 30081}]}");
        let s = Scenario::parse(&text).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let r = node_rules(&plan, 0, &slices, &s.faults);
        assert_chains_declared(&r);
        assert!(
            !r.contains("KUBE-FW-") && !r.contains("-A KUBE-PROXY-FIREWALL "),
            "{r}"
        );
        assert!(
            r.contains(
                "-A KUBE-EXTERNAL-SERVICES -d 203.0.113.11/32 -p tcp -m comment --comment \"shop/empty has no endpoints\" \
                 -m tcp --dport 81 -j REJECT"
            ),
            "{r}"
        );
    }

    #[test]
    fn an_internal_local_policy_sends_the_cluster_ip_to_local_endpoints_and_node_ports_cluster_wide() {
        let r = external(TEXT, "type: NodePort, internalTrafficPolicy: Local", 1);
        let (svc, svl) = (pay_chain("KUBE-SVC-"), pay_chain("KUBE-SVL-"));
        assert!(
            r.contains(&format!("\"shop/pay:web cluster IP\" -m tcp --dport 80 -j {svl}")),
            "{r}"
        );
        assert_eq!(lines_of(&r, &format!("-A {svl} ")).len(), 1);
        assert_eq!(lines_of(&r, &format!("-A {svc} ")).len(), 2);
    }

    #[test]
    fn an_external_service_without_endpoints_rejects_its_cluster_ip_and_node_port() {
        let text = TEXT.replace("- {namespace: shop, name: empty, selector: {app: none}, ports: [{port: 81}]}", "- {namespace: shop, name: empty, selector: {app: none}, type: NodePort, ports: [{port: 81, nodePort: 30081}]}");
        let s = Scenario::parse(&text).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let r = node_rules(&plan, 0, &slices, &s.faults);
        assert_chains_declared(&r);
        assert!(!r.contains("-A KUBE-NODEPORTS"), "{r}");
        assert!(
            r.contains(
                "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"shop/empty has no endpoints\" \
                 -m addrtype --dst-type LOCAL -m tcp --dport 30081 -j REJECT --reject-with icmp-port-unreachable"
            ),
            "{r}"
        );
        assert!(r.contains("\"shop/empty has no endpoints\" -m tcp --dport 81 -j REJECT"));
    }

    #[test]
    fn missing_service_rules_take_the_node_port_and_load_balancer_rules_too() {
        let fault = format!("{TEXT}faults: [{{kind: service-rules-missing, service: shop/pay, node: a}}]\n");
        let lb = "type: LoadBalancer, loadBalancerIP: 203.0.113.10";
        let on_a = external(&fault, lb, 0);
        assert!(
            !on_a.contains("shop/pay") && !on_a.contains("203.0.113.10"),
            "{on_a}"
        );
        assert!(
            on_a.contains("-j KUBE-NODEPORTS"),
            "kube-proxy's own jump stays: {on_a}"
        );
        let on_b = external(&fault, lb, 1);
        assert!(on_b.contains("--dport 30080 -j KUBE-EXT-") && on_b.contains("-d 203.0.113.10/32"));
    }

    #[test]
    fn ipv6_node_ports_use_the_ipv6_pod_network_and_no_load_balancer_address() {
        let text = format!("{TEXT}ipFamilies: [IPv4, IPv6]\n").replace(
            "name: pay, selector: {app: pay}, ports: [{name: web, port: 80, targetPort: http}]",
            "name: pay, selector: {app: pay}, type: LoadBalancer, loadBalancerIP: 203.0.113.10, \
             externalTrafficPolicy: Local, ports: [{name: web, port: 80, targetPort: http, nodePort: 30080}]",
        );
        let s = Scenario::parse(&text).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let slices = endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let r = node_rules6(&plan, 0, &slices, &s.faults);
        assert_chains_declared(&r);
        assert!(
            r.contains("-s fd00:10:244::/56 -m comment --comment \"pod traffic for"),
            "{r}"
        );
        assert!(
            r.contains("-A KUBE-SERVICES ! -d ::1/128 -m comment --comment \"kubernetes service nodeports")
        );
        assert!(r.contains("-m tcp --dport 30080 -j KUBE-EXT-"));
        assert!(!r.contains("203.0.113.10"), "{r}");
    }

    #[test]
    fn an_intermittent_drop_counts_new_flows_from_the_source_veth_and_spares_service_traffic() {
        let rules = |fault: &str| {
            let s = Scenario::parse(&format!("{TEXT}faults:\n- {fault}\n")).unwrap();
            let plan = Plan::new(&s, "nl000001", false).unwrap();
            let source = plan
                .pods
                .iter()
                .find(|p| p.key() == "shop/c")
                .unwrap()
                .host_if
                .clone();
            (fault_rules(&plan, &s.faults, IpFamily::V4), source)
        };
        let (r, source) =
            rules("{kind: intermittent-drop, from: shop/c, to: shop/p1, port: 8080, every: 15}");
        let line = r
            .lines()
            .find(|l| l.contains("drop 1 in 15"))
            .expect("the drop rule");
        assert!(line.contains(&format!(" -i {source} ")), "{line}");
        assert!(
            line.contains("-p tcp -m tcp --dport 8080 -m conntrack ! --ctstate DNAT"),
            "{line}"
        );
        assert!(
            line.contains("--ctstate NEW -m statistic --mode nth --every 15 --packet 0"),
            "{line}"
        );
        assert!(line.ends_with("-j DROP"), "{line}");
        let (r, _) = rules(
            "{kind: intermittent-drop, from: shop/c, to: kube-system/coredns-0, port: 53, protocol: UDP, every: 15, throughService: true}",
        );
        let line = r
            .lines()
            .find(|l| l.contains("drop 1 in 15"))
            .expect("the drop rule");
        assert!(
            line.contains("-p udp -m udp --dport 53") && !line.contains("DNAT"),
            "{line}"
        );
    }
}
