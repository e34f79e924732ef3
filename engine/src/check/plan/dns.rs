//! The name a check resolves and the DNS servers it asks (the cluster DNS Service's pods).

use super::destination::{find_service, names_in_namespace, service_cluster_ip};
use super::*;

pub(super) fn plan_dns(snap: &Snapshot, request: &CheckRequest, name: String) -> DnsPlan {
    let service_guess = match &request.target {
        Target::Service { name, namespace, .. } => Some(NamespacedName::new(
            namespace
                .clone()
                .unwrap_or_else(|| request.target_namespace.clone()),
            name.clone(),
        )),
        _ => service_guess(&name, &request.from.namespace)
            .filter(|guess| !names_nothing_in_the_cluster(snap, &name, guess)),
    };
    let services = snap.services();
    let (same_name_elsewhere, names_in_namespace) = match &service_guess {
        Some(guess) => (
            services
                .iter()
                .map(NamespacedName::of)
                .filter(|s| s.name == guess.name && s.namespace != guess.namespace)
                .collect(),
            names_in_namespace(services, &guess.namespace),
        ),
        None => (vec![], vec![]),
    };
    let kube_dns = NamespacedName::kube_dns();
    let (dns_service_ip, servers) = match &snap.cluster_dns_unread {
        Some(failure) => (Fact::Unknown(failure.clone()), Fact::Unknown(failure.clone())),
        None => (
            match &snap.services {
                Fact::Known(services) => {
                    Fact::Known(find_service(services, &kube_dns).and_then(service_cluster_ip))
                }
                Fact::Unknown(failure) => Fact::Unknown(failure.clone()),
            },
            match &snap.slices {
                Fact::Known(slices) => Fact::Known(dns_servers(slices, &kube_dns)),
                Fact::Unknown(failure) => Fact::Unknown(failure.clone()),
            },
        ),
    };
    DnsPlan {
        name,
        service_guess,
        same_name_elsewhere,
        names_in_namespace,
        dns_service_ip,
        servers,
    }
}

/// Whether `NAME.NS` guessed from a two-label host (`example.com`) designates nothing of the
/// cluster: no such Service, and no namespace `NS` among those read. Such a host is a name
/// outside the cluster, asked of the cluster DNS's upstream, not a Service that is missing.
fn names_nothing_in_the_cluster(snap: &Snapshot, host: &str, guess: &NamespacedName) -> bool {
    let two_labels = host.trim_end_matches('.').split('.').count() == 2;
    let Fact::Known(namespaces) = &snap.namespaces else {
        return false;
    };
    two_labels
        && find_service(snap.services(), guess).is_none()
        && !namespaces
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(guess.namespace.as_str()))
}

/// The DNS pods behind kube-dns: its endpoints for 53/UDP (a slice that lists no ports is
/// taken as serving DNS), one per address, marked as kube-proxy would use them.
fn dns_servers(
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
    kube_dns: &NamespacedName,
) -> Vec<DnsServerTarget> {
    let mut listed = endpoints::endpoints_where(slices, kube_dns, |ports| {
        if ports.is_empty() {
            return Some(53);
        }
        ports
            .iter()
            .find(|p| p.protocol.as_deref() == Some("UDP") && p.port == Some(53))
            .map(|_| 53)
    });
    let mut seen = std::collections::BTreeSet::new();
    listed.retain(|e| seen.insert(e.ip));
    let used: Vec<IpAddr> = endpoints::in_service(&listed, |e| e.conditions)
        .iter()
        .map(|e| e.ip)
        .collect();
    listed
        .into_iter()
        .map(|e| DnsServerTarget {
            in_service: used.contains(&e.ip),
            pod: e.pod,
            ip: e.ip,
        })
        .collect()
}
