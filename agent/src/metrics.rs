//! Prometheus metrics: probes by kind and outcome, probe durations, API requests by status.

use std::time::Duration;

use netdiag_proto::{DnsOutcome, ProbeResult, TcpOutcome, UdpOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    probes: Family<ProbeLabels, Counter>,
    durations: Family<KindLabel, Histogram>,
    requests: Family<StatusLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("netdiag_agent");
        let probes = Family::<ProbeLabels, Counter>::default();
        let durations = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        let requests = Family::<StatusLabel, Counter>::default();
        registry.register("probes", "Probes run, by kind and outcome", probes.clone());
        registry.register(
            "probe_duration_seconds",
            "Time one probe took, by kind",
            durations.clone(),
        );
        registry.register("requests", "Probe API requests, by answer code", requests.clone());
        Metrics {
            registry,
            probes,
            durations,
            requests,
        }
    }
}

impl Metrics {
    pub fn observe(&self, result: &ProbeResult, took: Duration) {
        let kind = result_kind(result);
        self.probes
            .get_or_create(&ProbeLabels {
                kind: kind.into(),
                outcome: outcome_label(result),
            })
            .inc();
        self.durations
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(took.as_secs_f64());
    }

    pub fn request(&self, code: &str) {
        self.requests
            .get_or_create(&StatusLabel { code: code.into() })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a string");
        out
    }
}

fn result_kind(result: &ProbeResult) -> &'static str {
    match result {
        ProbeResult::Dns(_) => "dns",
        ProbeResult::Tcp(_) => "tcp",
        ProbeResult::Udp(_) => "udp",
        ProbeResult::Listeners(_) => "listeners",
        ProbeResult::Interfaces(_) => "interfaces",
        ProbeResult::PathMtu(_) => "pathMtu",
        ProbeResult::Capture(_) => "capture",
        ProbeResult::NodeDataplane(_) => "nodeDataplane",
    }
}

/// The `outcome` label: the outcome's `kind` tag, or `ok`/`error` for the inventory probes.
pub fn outcome_label(result: &ProbeResult) -> String {
    let label = match result {
        ProbeResult::Tcp(t) => match t.outcome {
            TcpOutcome::Connected { .. } => "connected",
            TcpOutcome::Refused { .. } => "refused",
            TcpOutcome::Timeout { .. } => "timeout",
            TcpOutcome::Unreachable { .. } => "unreachable",
            TcpOutcome::Error { .. } => "error",
        },
        ProbeResult::Udp(u) => match u.outcome {
            UdpOutcome::Answered { .. } => "answered",
            UdpOutcome::Refused { .. } => "refused",
            UdpOutcome::Unreachable { .. } => "unreachable",
            UdpOutcome::Silent { .. } => "silent",
            UdpOutcome::Error { .. } => "error",
        },
        ProbeResult::Dns(d) => match d.answer.outcome {
            DnsOutcome::Resolved { .. } => "resolved",
            DnsOutcome::Nxdomain => "nxdomain",
            DnsOutcome::Nodata => "nodata",
            DnsOutcome::Servfail => "servfail",
            DnsOutcome::Refused => "refused",
            DnsOutcome::Timeout => "timeout",
            DnsOutcome::Error { .. } => "error",
        },
        ProbeResult::Listeners(l) => {
            if l.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
        ProbeResult::Interfaces(i) => {
            if i.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
        ProbeResult::PathMtu(m) => match m.outcome {
            netdiag_proto::PathMtuOutcome::Measured { .. } => "measured",
            netdiag_proto::PathMtuOutcome::NotMeasured { .. } => "notMeasured",
        },
        ProbeResult::Capture(c) => {
            if c.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
        ProbeResult::NodeDataplane(d) => {
            if d.conntrack.error.is_some() {
                "error"
            } else {
                "ok"
            }
        }
    };
    label.into()
}
