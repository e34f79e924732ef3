//! The result of a check: the checklist, the verdict and the exit code (`-o json` is this, serialized).

use serde::Serialize;

/// The checklist's layers, in causal order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Source,
    Dns,
    Service,
    Endpoints,
    NetworkPolicy,
    PodNetwork,
    ServiceProxy,
    Application,
}

impl Layer {
    pub const ALL: [Layer; 8] = [
        Layer::Source,
        Layer::Dns,
        Layer::Service,
        Layer::Endpoints,
        Layer::NetworkPolicy,
        Layer::PodNetwork,
        Layer::ServiceProxy,
        Layer::Application,
    ];

    /// The identifier used in JSON and in the human checklist.
    pub fn id(self) -> &'static str {
        match self {
            Layer::Source => "source",
            Layer::Dns => "dns",
            Layer::Service => "service",
            Layer::Endpoints => "endpoints",
            Layer::NetworkPolicy => "network-policy",
            Layer::PodNetwork => "pod-network",
            Layer::ServiceProxy => "service-proxy",
            Layer::Application => "application",
        }
    }

    /// The process exit code when this layer is the failing one.
    pub fn exit_code(self) -> u8 {
        match self {
            Layer::Source => 10,
            Layer::Dns => 11,
            Layer::Service => 12,
            Layer::Endpoints => 13,
            Layer::NetworkPolicy => 14,
            Layer::PodNetwork => 15,
            Layer::ServiceProxy => 16,
            Layer::Application => 17,
        }
    }
}

/// Exit code of a reachable target.
pub const EXIT_REACHABLE: u8 = 0;
/// Exit code when the tool could not decide (agent missing, RBAC, API unreachable).
pub const EXIT_UNDETERMINED: u8 = 3;
/// Exit code of a usage error (bad flags, malformed `--from`/`--to`).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not judged: blocked upstream, or not applicable to this target.
    Skip,
    /// Could not be checked (a tool failure, never a network failure).
    Undetermined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Reachable,
    Unreachable,
    Undetermined,
}

/// What kind of fact an evidence line states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    Observation,
    /// Live probes and static analysis disagree: shown even on a passing step.
    Disagreement,
}

/// One line of a step's evidence; serialized as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceLine {
    pub kind: EvidenceKind,
    pub text: String,
}

impl EvidenceLine {
    pub fn disagreement(text: impl Into<String>) -> Self {
        EvidenceLine {
            kind: EvidenceKind::Disagreement,
            text: text.into(),
        }
    }
}

impl From<String> for EvidenceLine {
    fn from(text: String) -> Self {
        EvidenceLine {
            kind: EvidenceKind::Observation,
            text,
        }
    }
}

impl std::ops::Deref for EvidenceLine {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl Serialize for EvidenceLine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub layer: Layer,
    pub status: Status,
    pub summary: String,
    pub evidence: Vec<EvidenceLine>,
}

/// The whole answer of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub verdict: Verdict,
    pub reachable: Option<bool>,
    pub failing_layer: Option<Layer>,
    pub steps: Vec<Step>,
    /// Commands that confirm or fix the finding.
    pub fix: Vec<String>,
    pub duration_ms: u64,
    /// Each destination address traffic goes to, with its own verdict (absent when the check
    /// reached no destination address).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointReport>,
}

/// One destination address and the first layer at which it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointReport {
    /// `IP:PORT` (`[IPv6]:PORT`).
    pub address: String,
    /// `namespace/name` of the pod holding the address, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `pass`, `fail` or `undetermined`.
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_layer: Option<Layer>,
    /// What TCP from the source observed (`connected in 0.2 ms`, `refused (RST)`, ...).
    pub tcp: String,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match (self.verdict, self.failing_layer) {
            (Verdict::Reachable, _) => EXIT_REACHABLE,
            (Verdict::Unreachable, Some(layer)) => layer.exit_code(),
            (Verdict::Unreachable, None) | (Verdict::Undetermined, _) => EXIT_UNDETERMINED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layers_serialize_to_their_documented_identifiers() {
        for layer in Layer::ALL {
            assert_eq!(serde_json::to_value(layer).unwrap(), json!(layer.id()));
        }
    }

    #[test]
    fn every_layer_has_its_own_exit_code_distinct_from_usage_and_undetermined() {
        let mut codes: Vec<u8> = Layer::ALL.iter().map(|l| l.exit_code()).collect();
        codes.extend([EXIT_REACHABLE, EXIT_USAGE, EXIT_UNDETERMINED, 1]);
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }

    #[test]
    fn report_serializes_with_the_documented_field_names() {
        let report = Report {
            verdict: Verdict::Unreachable,
            reachable: Some(false),
            failing_layer: Some(Layer::NetworkPolicy),
            steps: vec![Step {
                layer: Layer::NetworkPolicy,
                status: Status::Fail,
                summary: "s".into(),
                evidence: vec![String::from("e").into()],
            }],
            fix: vec!["kubectl get networkpolicy -n shop".into()],
            duration_ms: 12,
            endpoints: vec![],
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            json!({"verdict": "unreachable", "reachable": false, "failingLayer": "network-policy",
                   "steps": [{"layer": "network-policy", "status": "fail", "summary": "s", "evidence": ["e"]}],
                   "fix": ["kubectl get networkpolicy -n shop"], "durationMs": 12})
        );
        assert_eq!(report.exit_code(), 14);
    }
}
