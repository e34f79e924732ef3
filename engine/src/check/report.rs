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
/// Exit code of a reachable target whose flow NetworkPolicy denies: the policy the flow's owners
/// rely on is not enforced (the verdict stays REACHABLE).
pub const EXIT_POLICY_NOT_ENFORCED: u8 = 9;
/// Exit code when the tool could not decide (agent missing, RBAC, API unreachable).
pub const EXIT_UNDETERMINED: u8 = 3;
/// Exit code of a usage error (bad flags, malformed `--from`/`--to`).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a configuration error: no kubeconfig, an unknown context (kubectl's `error: …`).
pub const EXIT_CONFIG: u8 = 4;

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

impl Status {
    /// The status as the JSON and the tables name it (`pass`, `fail`, `skip`, `undetermined`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Undetermined => "undetermined",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Reachable,
    Unreachable,
    Undetermined,
}

impl Verdict {
    /// The verdict as the JSON names it (`reachable`, `unreachable`, `undetermined`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reachable => "reachable",
            Verdict::Unreachable => "unreachable",
            Verdict::Undetermined => "undetermined",
        }
    }
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

pub use super::codes::Code;

/// A step's sentence, and the stable code of the finding it words. Serialized as `summary` and,
/// beside it, `code` (absent where the step was not judged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    #[serde(rename = "summary")]
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
}

impl Summary {
    pub fn coded(code: Code, text: String) -> Self {
        Summary {
            text,
            code: Some(code),
        }
    }
}

impl From<String> for Summary {
    fn from(text: String) -> Self {
        Summary { text, code: None }
    }
}

impl From<&str> for Summary {
    fn from(text: &str) -> Self {
        text.to_string().into()
    }
}

impl std::ops::Deref for Summary {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub layer: Layer,
    pub status: Status,
    #[serde(flatten)]
    pub summary: Summary,
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
    /// Every line of advice, commands and hints in the order the judge gave them (kept for
    /// readers of the first schema; `commands` and `hints` split it).
    pub fix: Vec<String>,
    /// Shell commands that confirm or fix the finding, paste-ready: each `kubectl` command
    /// carries the `--context`/`--kubeconfig` the check ran with.
    pub commands: Vec<String>,
    /// What to change, in words (never a command).
    pub hints: Vec<String>,
    /// The minimal NetworkPolicy that admits the denied flow, when policy is the failing layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<PolicySuggestion>,
    pub duration_ms: u64,
    /// Each destination address traffic goes to, with its own verdict (absent when the check
    /// reached no destination address).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointReport>,
    /// For a dual-stack target: each family's own verdict, the primary first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<FamilyReport>,
    /// The report was reduced for a caller who may not read the destination's namespace
    /// ([`super::disclose::withheld`]); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
    /// A repeated check's tallies (`--repeat`, `--for`); absent for a check that looked once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<RepeatReport>,
}

/// Every attempt of a repeated check's live probes: per layer and per probe, the failures and
/// the successful attempts' latency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepeatReport {
    pub rounds: u32,
    pub layers: Vec<RepeatedLayer>,
    pub probes: Vec<RepeatedProbeReport>,
}

/// One layer's share of the attempts: what its probes tried and how many failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepeatedLayer {
    pub layer: Layer,
    pub attempts: u32,
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepeatedProbeReport {
    /// `lookup`, `dns-server`, `cluster-ip` or `endpoint`.
    pub kind: &'static str,
    /// What it reached (`shop/payments-2 (10.244.2.3:8080)`, `lookups of payments.shop`).
    pub probe: String,
    pub attempts: u32,
    pub failures: u32,
    /// Attempts by outcome (`ok`, `timeout`, `refused`, …).
    pub outcomes: std::collections::BTreeMap<super::repeat::Attempt, u32>,
    /// The successful attempts' latency percentiles, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Percentiles>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(probe: &super::repeat::RepeatedProbe) -> Option<Self> {
        Some(Percentiles {
            p50: probe.percentile_us(50)?,
            p90: probe.percentile_us(90)?,
            p99: probe.percentile_us(99)?,
            max: probe.percentile_us(100)?,
        })
    }
}

impl RepeatReport {
    pub fn of(facts: &super::repeat::RepeatFacts) -> Self {
        use super::repeat::{Attempt, Probed};
        let failures = |p: &super::repeat::RepeatedProbe, counts: &dyn Fn(Attempt) -> bool| -> u32 {
            p.tally.iter().filter(|(a, _)| counts(**a)).map(|(_, n)| n).sum()
        };
        let failed = |a: Attempt| !matches!(a, Attempt::Ok | Attempt::Error);
        let probes = facts
            .probes
            .iter()
            .map(|p| RepeatedProbeReport {
                kind: match p.probed {
                    Probed::Lookup { .. } => "lookup",
                    Probed::DnsServer { .. } => "dns-server",
                    Probed::ClusterIp { .. } => "cluster-ip",
                    Probed::Endpoint { .. } => "endpoint",
                },
                probe: p.probed.to_string(),
                attempts: p.attempts(),
                failures: failures(p, &failed),
                outcomes: p.tally.clone(),
                latency_us: Percentiles::of(p),
            })
            .collect();
        let layer = |layer: Layer, of: &dyn Fn(&Probed) -> bool, counts: &dyn Fn(Attempt) -> bool| {
            let mine = facts.probes.iter().filter(|p| of(&p.probed));
            RepeatedLayer {
                layer,
                attempts: mine.clone().map(|p| p.attempts()).sum(),
                failures: mine.map(|p| failures(p, counts)).sum(),
            }
        };
        let dns = |p: &Probed| matches!(p, Probed::Lookup { .. } | Probed::DnsServer { .. });
        let endpoint = |p: &Probed| matches!(p, Probed::Endpoint { .. });
        let vip = |p: &Probed| matches!(p, Probed::ClusterIp { .. });
        let lost = |a: Attempt| matches!(a, Attempt::Timeout | Attempt::Unreachable);
        let layers = [
            layer(Layer::Dns, &dns, &failed),
            layer(Layer::PodNetwork, &endpoint, &lost),
            layer(Layer::ServiceProxy, &vip, &failed),
            layer(Layer::Application, &endpoint, &|a| a == Attempt::Refused),
        ]
        .into_iter()
        .filter(|l| l.attempts > 0)
        .collect();
        RepeatReport {
            rounds: facts.rounds,
            layers,
            probes,
        }
    }
}

/// One address family's verdict on a dual-stack target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyReport {
    pub family: super::evidence::IpFamily,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_layer: Option<Layer>,
    /// The failing (or undetermined) layer's summary; empty when the family is reachable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

/// One line of advice: a command to run, or a change described in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixLine {
    /// A shell command (`kubectl ...`); the front end adds the connection flags.
    Command(String),
    /// Prose: what to change.
    Hint(String),
}

impl FixLine {
    pub fn text(&self) -> &str {
        match self {
            FixLine::Command(text) | FixLine::Hint(text) => text,
        }
    }
}

/// A NetworkPolicy that would admit the denied flow, checked by re-running the evaluator over
/// the cluster's objects with it added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySuggestion {
    /// One YAML document per policy (`---`-separated), ready for `kubectl apply -f -`.
    pub yaml: String,
    /// The flows it was verified to admit: `shop/checkout → shop/payments-0:8080/TCP`.
    pub admits: Vec<String>,
    /// The evaluator admits every denied flow once the policies are added.
    pub verified: bool,
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
    /// What a datagram from the source observed, for a UDP port (`answered (12 bytes in 0.3 ms)`,
    /// `refused (ICMP port unreachable)`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp: Option<String>,
    /// The MTU black hole on the path to this address, when the path MTU witness found one
    /// (its connection succeeds, its large packets vanish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_mtu: Option<String>,
}

impl Report {
    /// Sets the advice: `fix` in the given order, split into `commands` and `hints`.
    pub fn set_fix(&mut self, lines: Vec<FixLine>) {
        self.fix = lines.iter().map(|l| l.text().to_string()).collect();
        self.commands = lines
            .iter()
            .filter_map(|l| match l {
                FixLine::Command(c) => Some(c.clone()),
                FixLine::Hint(_) => None,
            })
            .collect();
        self.hints = lines
            .iter()
            .filter_map(|l| match l {
                FixLine::Hint(h) => Some(h.clone()),
                FixLine::Command(_) => None,
            })
            .collect();
    }

    /// Every command rewritten by `scope` (in `fix` too), e.g. to add `--context`.
    pub fn scope_commands(&mut self, scope: impl Fn(&str) -> String) {
        for line in &mut self.fix {
            if self.commands.contains(line) {
                *line = scope(line);
            }
        }
        for command in &mut self.commands {
            *command = scope(command);
        }
    }

    pub fn exit_code(&self) -> u8 {
        let not_enforced = self
            .steps
            .iter()
            .any(|s| s.summary.code == Some(Code::NetworkPolicyNotEnforced));
        match (self.verdict, self.failing_layer) {
            (Verdict::Reachable, _) if not_enforced => EXIT_POLICY_NOT_ENFORCED,
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
    fn statuses_and_verdicts_are_named_as_they_serialize() {
        for status in [Status::Pass, Status::Fail, Status::Skip, Status::Undetermined] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(status.as_str()));
        }
        for verdict in [Verdict::Reachable, Verdict::Unreachable, Verdict::Undetermined] {
            assert_eq!(serde_json::to_value(verdict).unwrap(), json!(verdict.as_str()));
        }
    }

    #[test]
    fn every_layer_has_its_own_exit_code_distinct_from_usage_and_undetermined() {
        let mut codes: Vec<u8> = Layer::ALL.iter().map(|l| l.exit_code()).collect();
        codes.extend([EXIT_REACHABLE, EXIT_USAGE, EXIT_UNDETERMINED, EXIT_CONFIG, 1]);
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
            fix: vec![],
            commands: vec![],
            hints: vec![],
            network_policy: None,
            duration_ms: 12,
            endpoints: vec![],
            families: vec![],
            withheld: false,
            repeat: None,
        };
        let mut report = report;
        report.set_fix(vec![
            FixLine::Hint("allow it".into()),
            FixLine::Command("kubectl get networkpolicy -n shop".into()),
        ]);
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            json!({"verdict": "unreachable", "reachable": false, "failingLayer": "network-policy",
                   "steps": [{"layer": "network-policy", "status": "fail", "summary": "s", "evidence": ["e"]}],
                   "fix": ["allow it", "kubectl get networkpolicy -n shop"],
                   "commands": ["kubectl get networkpolicy -n shop"], "hints": ["allow it"],
                   "durationMs": 12})
        );
        assert_eq!(report.exit_code(), 14);
    }

    #[test]
    fn a_step_with_a_finding_carries_its_code_beside_the_summary() {
        let step = Step {
            layer: Layer::Dns,
            status: Status::Fail,
            summary: Summary::coded(Code::DnsServerDown, "s".into()),
            evidence: vec![],
        };
        assert_eq!(
            serde_json::to_string(&step).unwrap(),
            r#"{"layer":"dns","status":"fail","summary":"s","code":"dns-server-down","evidence":[]}"#
        );
    }
}
