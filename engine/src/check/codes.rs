//! The stable machine codes of what a step found: the report's `code` beside each summary.
//! A code is a contract (CI gates and the in-cluster endpoint's consumers match on it): it is
//! never reworded, only added. `cli/README.md` lists each with its layer and meaning; a test
//! keeps the table and this list the same. Pure.

use serde::Serialize;

use super::report::Layer;

macro_rules! codes {
    ($($variant:ident = $code:literal, $layer:ident, $meaning:literal;)*) => {
        /// A finding's stable code (kebab-case; [`Code::as_str`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = $meaning] $variant,)*
        }

        impl Code {
            /// Every code, in the order the README's table lists them.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The code as JSON carries it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// The layer whose step carries it.
            pub fn layer(self) -> Layer {
                match self {
                    $(Code::$variant => Layer::$layer,)*
                }
            }

            /// What it means, as the README's table says.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }
        }
    };
}

codes! {
    SourceUnreadable = "source-unreadable", Source, "the source pod could not be read (RBAC, API server)";
    SourcePodNotFound = "source-pod-not-found", Source, "no pod of that name in the namespace";
    SourcePodWithoutIp = "source-pod-without-ip", Source, "the source pod has no IP yet (pending, unscheduled)";
    SourcePodNotRunning = "source-pod-not-running", Source, "the source pod is not Running";
    SourceProbed = "source-probed", Source, "the source pod runs and its node's agent probed from its netns";
    SourceAgentNotAsked = "source-agent-not-asked", Source, "the agent on the source pod's node was not asked";
    SourceAgentUnavailable = "source-agent-unavailable", Source, "no agent could probe as the source pod (missing, forbidden, failing)";
    DnsNotApplicable = "dns-not-applicable", Dns, "the target is a pod or an address: no name to resolve";
    DnsProbeFailed = "dns-probe-failed", Dns, "the lookup could not be run as the pod";
    DnsResolved = "dns-resolved", Dns, "the name resolves to the expected address";
    DnsWrongAddress = "dns-wrong-address", Dns, "the name resolves, but not to the Service's address";
    DnsShortNameAcrossNamespaces = "dns-short-name-across-namespaces", Dns, "a short name used from a namespace without that Service; it exists in another";
    DnsNoSuchService = "dns-no-such-service", Dns, "NXDOMAIN/NODATA: no Service of that name in the namespace";
    DnsNameNotFound = "dns-name-not-found", Dns, "NXDOMAIN/NODATA for every search candidate";
    DnsResolverOffCluster = "dns-resolver-off-cluster", Dns, "the pod's resolv.conf does not use the cluster DNS Service";
    DnsSearchListIncomplete = "dns-search-list-incomplete", Dns, "the Service exists, but the pod's search list never completes the name";
    DnsClusterZoneNotServed = "dns-cluster-zone-not-served", Dns, "cluster DNS answers NXDOMAIN for an existing Service's full name";
    DnsBlockedByPolicy = "dns-blocked-by-policy", Dns, "queries to cluster DNS are denied by NetworkPolicy (judged at network-policy)";
    DnsFailed = "dns-failed", Dns, "the lookup failed and cluster DNS could not be inspected to say why";
    DnsNoReadyPods = "dns-no-ready-pods", Dns, "the cluster DNS Service has no ready endpoints";
    DnsPolicyNotEvaluated = "dns-policy-not-evaluated", Dns, "the lookup timed out and NetworkPolicy for egress to DNS could not be evaluated";
    DnsServfail = "dns-servfail", Dns, "the DNS server answers SERVFAIL";
    DnsRefused = "dns-refused", Dns, "the DNS server answers REFUSED";
    DnsServiceIpNotProxied = "dns-service-ip-not-proxied", Dns, "the DNS pods answer directly, not through the DNS Service IP";
    DnsServerDown = "dns-server-down", Dns, "the DNS pods do not answer";
    DnsSomeServersFail = "dns-some-servers-fail", Dns, "some DNS pods fail when asked directly (timeout, SERVFAIL, REFUSED) while others answer: lookups sent to them fail";
    DnsTcpFallbackFailed = "dns-tcp-fallback-failed", Dns, "the answer came truncated over UDP and the retry over TCP/53 failed";
    DnsNodeLocalCacheDown = "dns-node-local-cache-down", Dns, "the pod's NodeLocal DNSCache does not answer while the DNS pods do";
    DnsUpstreamFailed = "dns-upstream-failed", Dns, "a name outside the cluster: the cluster DNS answers SERVFAIL or REFUSED, or times out while it answers the cluster's names (its upstream fails, does not answer, or it has none)";
    DnsIntermittent = "dns-intermittent", Dns, "a repeated check's lookups, or queries to a DNS pod, fail now and then (`--repeat`, `--for`)";
    ServiceNotApplicable = "service-not-applicable", Service, "the target is a pod or an address that belongs to no Service";
    ServiceUnreadable = "service-unreadable", Service, "the Service could not be read (RBAC, API server)";
    ServiceNotFound = "service-not-found", Service, "no Service of that name in the namespace";
    ServiceExternalName = "service-external-name", Service, "an ExternalName Service: a DNS alias for another host";
    ServicePortNotExposed = "service-port-not-exposed", Service, "the Service does not expose the requested port";
    ServiceProtocolMismatch = "service-protocol-mismatch", Service, "the selected pods declare or serve the target port over another protocol than the Service port's";
    ServicePortResolved = "service-port-resolved", Service, "the Service port and its targetPort resolve on the selected pods";
    ServiceNamedPortUnresolved = "service-named-port-unresolved", Service, "a named targetPort with no selected pod to resolve it on (judged at endpoints)";
    ServiceNamedPortUndeclared = "service-named-port-undeclared", Service, "the targetPort names a port that none of the selected pods declares";
    ServiceTargetPortNotListening = "service-target-port-not-listening", Service, "nothing listens on the numeric targetPort; the selected pods listen on other ports";
    EndpointsNotApplicable = "endpoints-not-applicable", Endpoints, "the target is an address, or a Service without endpoints (ExternalName)";
    EndpointsUnreadable = "endpoints-unreadable", Endpoints, "the endpoints could not be read (RBAC, API server)";
    EndpointsPodNotFound = "endpoints-pod-not-found", Endpoints, "the target pod does not exist";
    EndpointsPodWithoutAddress = "endpoints-pod-without-address", Endpoints, "the target pod has no address";
    EndpointsPodAddress = "endpoints-pod-address", Endpoints, "the target is a pod address the API names no pod for";
    EndpointsPodNotRunning = "endpoints-pod-not-running", Endpoints, "the target pod is not Running";
    EndpointsPodPortUndeclared = "endpoints-pod-port-undeclared", Endpoints, "the target pod declares no port of the requested name";
    EndpointsPodRunning = "endpoints-pod-running", Endpoints, "the target pod runs and has the port";
    EndpointsReady = "endpoints-ready", Endpoints, "at least one endpoint is ready";
    EndpointsServingTerminating = "endpoints-serving-terminating", Endpoints, "none ready; kube-proxy falls back to serving-but-terminating endpoints";
    EndpointsNoSelector = "endpoints-no-selector", Endpoints, "a Service without a selector and without ready endpoints";
    EndpointsSelectorMatchesNoPods = "endpoints-selector-matches-no-pods", Endpoints, "the Service's selector matches no pod in its namespace";
    EndpointsAllTerminating = "endpoints-all-terminating", Endpoints, "every selected pod is terminating";
    EndpointsNoneReady = "endpoints-none-ready", Endpoints, "pods are selected, none is ready";
    EndpointsReadyPodsUnlisted = "endpoints-ready-pods-unlisted", Endpoints, "selected pods are ready, but no ready endpoint lists them (stale EndpointSlices)";
    EndpointsStale = "endpoints-stale", Endpoints, "an EndpointSlice lists an address no pod holds and that does not answer";
    EndpointsNoneOnSourceNode = "endpoints-none-on-source-node", Endpoints, "internalTrafficPolicy: Local and no endpoint on the source's node: its traffic to the ClusterIP is dropped there";
    NetworkPolicyNotApplicable = "network-policy-not-applicable", NetworkPolicy, "no destination address to evaluate policy for (an ExternalName Service, no endpoints)";
    NetworkPolicyDnsDenied = "network-policy-dns-denied", NetworkPolicy, "NetworkPolicy denies the source's DNS queries to cluster DNS";
    NetworkPolicyIngressDenied = "network-policy-ingress-denied", NetworkPolicy, "the destination's ingress policy denies the flow, and it does not get through";
    NetworkPolicyEgressDenied = "network-policy-egress-denied", NetworkPolicy, "the source's egress policy denies the flow, and it does not get through";
    NetworkPolicyDenied = "network-policy-denied", NetworkPolicy, "the flow is denied, with no side named, and it does not get through";
    NetworkPolicyNotEvaluated = "network-policy-not-evaluated", NetworkPolicy, "the flow fails and NetworkPolicy could not be evaluated, so it cannot be ruled out";
    NetworkPolicyNotEnforced = "network-policy-not-enforced", NetworkPolicy, "NetworkPolicy denies flows that get through: the CNI does not enforce it";
    NetworkPolicyAllowed = "network-policy-allowed", NetworkPolicy, "egress of the source and ingress of the destination allow the flow";
    PodNetworkNotApplicable = "pod-network-not-applicable", PodNetwork, "no destination address to connect to";
    PodNetworkExternalName = "pod-network-external-name", PodNetwork, "an ExternalName Service: the host behind it is outside the cluster, not connected to";
    PodNetworkNotProbed = "pod-network-not-probed", PodNetwork, "a destination address was not probed, or its probe failed";
    PodNetworkAnswers = "pod-network-answers", PodNetwork, "the destination addresses answer from the source pod's netns";
    PodNetworkMtuBlackHole = "pod-network-mtu-black-hole", PodNetwork, "connections succeed, but large packets vanish on the path (an MTU black hole)";
    PodNetworkConnectFailed = "pod-network-connect-failed", PodNetwork, "TCP times out or is unreachable although policy allows it, on the source's node or outside the cluster's pods";
    PodNetworkPodDrops = "pod-network-pod-drops", PodNetwork, "TCP to a pod times out while other pods on its node, or the node itself, answer: a drop of that pod or port";
    PodNetworkPathBroken = "pod-network-path-broken", PodNetwork, "neither the pods on a node nor the node itself answer: the cross-node path is broken";
    PodNetworkEgressNoAnswer = "pod-network-egress-no-answer", PodNetwork, "the connection to an address outside the cluster left the source node and got no answer: the fault is beyond the cluster";
    PodNetworkEgressNotTranslated = "pod-network-egress-not-translated", PodNetwork, "the connection left the source node towards a next hop with the pod's own address and got no answer: the node's SNAT for traffic leaving the cluster is missing";
    PodNetworkEgressNeverLeft = "pod-network-egress-never-left", PodNetwork, "the connection to an address outside the cluster never left the source node by its route there: dropped on the node";
    PodNetworkEgressAnswerLost = "pod-network-egress-answer-lost", PodNetwork, "the address outside the cluster answered at the source node's uplink, but the answer never reached the pod";
    PodNetworkNoSecondWitness = "pod-network-no-second-witness", PodNetwork, "TCP to pods on another node fails and no second witness tells the path from the pods";
    PodNetworkDatagramRejected = "pod-network-datagram-rejected", PodNetwork, "an ICMP unreachable answers the datagram although policy allows it";
    PodNetworkSilent = "pod-network-silent", PodNetwork, "datagrams get no answer, and UDP silence alone does not tell the path from the application";
    PodNetworkIntermittent = "pod-network-intermittent", PodNetwork, "a repeated check's connections to an endpoint time out now and then (`--repeat`, `--for`)";
    ServiceProxyNotApplicable = "service-proxy-not-applicable", ServiceProxy, "no Service virtual IP on the path (headless, no ClusterIP, a pod or address target)";
    ServiceProxyNotProbed = "service-proxy-not-probed", ServiceProxy, "the ClusterIP was not probed, or its probe failed";
    ServiceProxyAsEndpoints = "service-proxy-as-endpoints", ServiceProxy, "the ClusterIP answers as its endpoints do: the Service rules translate to them";
    ServiceProxyRefusedAsEmpty = "service-proxy-refused-as-empty", ServiceProxy, "the ClusterIP is refused while endpoints answer: the rules act as if it had no endpoints";
    ServiceProxyRulesMissing = "service-proxy-rules-missing", ServiceProxy, "the ClusterIP drops what the pod IPs answer: the Service's rules are missing (kube-proxy/dataplane)";
    ServiceProxyNothingToCompare = "service-proxy-nothing-to-compare", ServiceProxy, "the ClusterIP fails and no endpoint answered to compare it with";
    ServiceProxyStaleRules = "service-proxy-stale-rules", ServiceProxy, "the source node translates the ClusterIP to addresses that are no longer endpoints";
    ServiceProxyNoLocalEndpoint = "service-proxy-no-local-endpoint", ServiceProxy, "a node port pods reach drops clients outside the pod network: externalTrafficPolicy: Local and no endpoint on that node";
    ServiceProxyLocalNotMasqueraded = "service-proxy-local-not-masqueraded", ServiceProxy, "a pod's connection to another node's node port under externalTrafficPolicy: Local goes on unmasqueraded, and endpoints on other nodes answer past it";
    ServiceProxySourceRangeExcluded = "service-proxy-source-range-excluded", ServiceProxy, "a LoadBalancer address whose loadBalancerSourceRanges leave out the source's address: kube-proxy drops its connections";
    ServiceProxyClosedOutside = "service-proxy-closed-outside", ServiceProxy, "a node port pods reach fails from another node's own address, not for want of an endpoint there";
    ServiceProxyIntermittent = "service-proxy-intermittent", ServiceProxy, "a repeated check's connections to the ClusterIP fail now and then while the endpoints' never do";
    ApplicationNotApplicable = "application-not-applicable", Application, "no destination address to check (an ExternalName Service, no endpoints)";
    ApplicationSocketsUnknown = "application-sockets-unknown", Application, "the destination refuses and its sockets could not be read";
    ApplicationLoopbackOnly = "application-loopback-only", Application, "the destination listens on the port on a loopback address only, not its pod IP";
    ApplicationNotListening = "application-not-listening", Application, "nothing in the destination pod listens on (or, over UDP, is bound to) the port";
    ApplicationOtherFamilyOnly = "application-other-family-only", Application, "the destination listens on the port only for the other address family";
    ApplicationRefusedOnPath = "application-refused-on-path", Application, "refused although the destination listens: a REJECT on the path or a full accept queue";
    ApplicationNotChecked = "application-not-checked", Application, "a destination was not probed, so the application could not be checked";
    ApplicationAccepts = "application-accepts", Application, "every destination accepts the connection (or answers the datagram)";
    ApplicationIntermittent = "application-intermittent", Application, "a repeated check's connections to an endpoint are refused now and then";
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../cli/README.md"));

    #[test]
    fn codes_are_distinct_kebab_case_and_serialize_as_themselves() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !s.starts_with('-'),
                "{s}"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(s));
        }
    }

    #[test]
    fn the_readme_documents_every_code_with_its_layer_and_meaning() {
        let rows: Vec<String> = Code::ALL
            .iter()
            .map(|c| format!("| `{}` | {} | {} |", c.as_str(), c.layer().id(), c.meaning()))
            .collect();
        let missing: Vec<&String> = rows.iter().filter(|r| !README.lines().any(|l| l == *r)).collect();
        assert!(
            missing.is_empty(),
            "cli/README.md lacks these rows of the finding-code table:\n{}",
            rows.join("\n")
        );
    }
}
