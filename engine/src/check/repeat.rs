//! Repeated live probes (`check --repeat N`, `check --for DURATION`): the probes whose outcome
//! may change from one attempt to the next — the target name looked up as the pod does, each DNS
//! pod asked directly, the ClusterIP and every endpoint — sent again, round after round, each
//! round with new connections and fresh lookups. The witnesses (rules, sockets, captures, path
//! MTU) describe the steady state and run once.
//!
//! Pure: [`Samples`] gathers the rounds' results, [`Samples::usual`] picks each probe's usual
//! result (what the steady checklist judges) and [`Samples::facts`] tallies every probe's
//! attempts for the report and the intermittent judgment. The rounds run in [`super::collect_repeated`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use netdiag_proto::{DnsOutcome, ProbeResult, TcpOutcome, UdpOutcome};
use serde::Serialize;

use super::evidence::fmt_ip;
use super::plan::ProbeKey;
use super::probe::Replies;
use crate::cluster::{NamespacedName, ToolFailure};

/// How often the live probes run: a number of rounds, or rounds until a duration has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repetition {
    /// This many rounds in all, back to back.
    Rounds(u32),
    /// A round every `interval` until `duration` has passed since the first.
    For { duration: Duration, interval: Duration },
}

/// The most rounds `--repeat` takes, and the longest `--for`: a check stays a check.
pub const MAX_ROUNDS: u32 = 1000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

impl Repetition {
    /// Whether another round starts, after `done` rounds that began `elapsed` ago.
    pub fn another(self, done: u32, elapsed: Duration) -> bool {
        match self {
            Repetition::Rounds(n) => done < n.min(MAX_ROUNDS),
            Repetition::For { duration, .. } => done < MAX_ROUNDS && elapsed < duration,
        }
    }

    /// The pause before the next round.
    pub fn pause(self) -> Duration {
        match self {
            Repetition::Rounds(_) => Duration::ZERO,
            Repetition::For { interval, .. } => interval,
        }
    }
}

/// Whether the probe of `key` is repeated: it opens a new connection or a fresh lookup from the
/// source pod each time.
pub fn is_repeated(key: ProbeKey) -> bool {
    matches!(
        key,
        ProbeKey::Resolve
            | ProbeKey::ResolveSecondary
            | ProbeKey::DirectDns(_)
            | ProbeKey::ClusterIp
            | ProbeKey::ClusterIpSecondary
            | ProbeKey::Endpoint(..)
    )
}

/// What one attempt met, as its class: what the tallies count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attempt {
    /// Connected, answered, or resolved.
    Ok,
    Refused,
    Timeout,
    Unreachable,
    /// The name does not exist (or has no record of the type).
    Nxdomain,
    Servfail,
    /// The probe could not be carried out (an agent or socket error, not the network).
    Error,
}

impl Attempt {
    pub fn of(result: &Result<ProbeResult, ToolFailure>) -> Attempt {
        match result {
            Ok(ProbeResult::Tcp(t)) => match t.outcome {
                TcpOutcome::Connected { .. } => Attempt::Ok,
                TcpOutcome::Refused { .. } => Attempt::Refused,
                TcpOutcome::Timeout { .. } => Attempt::Timeout,
                TcpOutcome::Unreachable { .. } => Attempt::Unreachable,
                TcpOutcome::Error { .. } => Attempt::Error,
            },
            Ok(ProbeResult::Udp(u)) => match u.outcome {
                UdpOutcome::Answered { .. } => Attempt::Ok,
                UdpOutcome::Refused { .. } => Attempt::Refused,
                UdpOutcome::Silent { .. } => Attempt::Timeout,
                UdpOutcome::Unreachable { .. } => Attempt::Unreachable,
                UdpOutcome::Error { .. } => Attempt::Error,
            },
            // A lookup that failed after one of its queries went unanswered failed because of
            // that query, whatever the search list's last name met.
            Ok(ProbeResult::Dns(d))
                if !d.answer.outcome.is_resolved()
                    && d.candidates.iter().any(|c| c.outcome == DnsOutcome::Timeout) =>
            {
                Attempt::Timeout
            }
            Ok(ProbeResult::Dns(d)) => match d.answer.outcome {
                DnsOutcome::Resolved { .. } => Attempt::Ok,
                DnsOutcome::Nxdomain | DnsOutcome::Nodata => Attempt::Nxdomain,
                DnsOutcome::Servfail => Attempt::Servfail,
                DnsOutcome::Refused => Attempt::Refused,
                DnsOutcome::Timeout => Attempt::Timeout,
                DnsOutcome::Error { .. } => Attempt::Error,
            },
            _ => Attempt::Error,
        }
    }

    /// `timed out`, `refused`, … as a sentence says it.
    pub fn words(self) -> &'static str {
        match self {
            Attempt::Ok => "succeeded",
            Attempt::Refused => "refused",
            Attempt::Timeout => "timed out",
            Attempt::Unreachable => "unreachable",
            Attempt::Nxdomain => "NXDOMAIN",
            Attempt::Servfail => "SERVFAIL",
            Attempt::Error => "could not run",
        }
    }
}

/// How long a successful attempt took, in microseconds: the handshake, the datagram's answer, or
/// every query of the lookup.
fn latency_us(result: &Result<ProbeResult, ToolFailure>) -> Option<u64> {
    match result.as_ref().ok()? {
        ProbeResult::Tcp(t) => match t.outcome {
            TcpOutcome::Connected { rtt_us } => Some(rtt_us),
            _ => None,
        },
        ProbeResult::Udp(u) => match u.outcome {
            UdpOutcome::Answered { rtt_us, .. } => Some(rtt_us),
            _ => None,
        },
        ProbeResult::Dns(d) => d
            .answer
            .outcome
            .is_resolved()
            .then(|| d.candidates.iter().map(|c| c.rtt_us).sum()),
        _ => None,
    }
}

/// Every round's result of each repeated probe, the first round's included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    pub rounds: u32,
    by_key: BTreeMap<ProbeKey, Vec<Result<ProbeResult, ToolFailure>>>,
}

impl Samples {
    /// Adds one round's replies (only the repeated probes' results count).
    pub fn add(&mut self, replies: &Replies) {
        self.rounds += 1;
        for (key, result) in replies.results.iter().filter(|(k, _)| is_repeated(**k)) {
            self.by_key.entry(*key).or_default().push(result.clone());
        }
    }

    /// Each probe's usual result: of the class most attempts met, success winning a tie, the
    /// first attempt of that class. So a 1-in-20 loss leaves the steady checklist its success,
    /// and a path that fails most of the time stays a failure, on every run.
    pub fn usual(&self) -> BTreeMap<ProbeKey, Result<ProbeResult, ToolFailure>> {
        self.by_key
            .iter()
            .filter_map(|(key, results)| {
                let class = usual_class(results)?;
                let first = results.iter().find(|r| Attempt::of(r) == class)?;
                Some((*key, first.clone()))
            })
            .collect()
    }

    /// Each repeated probe's tally, named by `name` (what the probe is, in report terms).
    pub fn facts(&self, name: impl Fn(ProbeKey) -> Option<Probed>) -> RepeatFacts {
        let targets = self
            .by_key
            .iter()
            .filter_map(|(key, results)| {
                let probed = name(*key)?;
                let mut tally: BTreeMap<Attempt, u32> = BTreeMap::new();
                for r in results {
                    *tally.entry(Attempt::of(r)).or_default() += 1;
                }
                let mut latencies: Vec<u64> = results.iter().filter_map(latency_us).collect();
                latencies.sort_unstable();
                Some(RepeatedProbe {
                    probed,
                    usual: usual_class(results)?,
                    tally,
                    latencies_us: latencies,
                })
            })
            .collect();
        RepeatFacts {
            rounds: self.rounds,
            probes: targets,
        }
    }
}

/// The class most attempts met (errors of the tool never count), success winning a tie.
fn usual_class(results: &[Result<ProbeResult, ToolFailure>]) -> Option<Attempt> {
    let mut tally: BTreeMap<Attempt, u32> = BTreeMap::new();
    for r in results {
        *tally.entry(Attempt::of(r)).or_default() += 1;
    }
    let counted = |a: &Attempt| *a != Attempt::Error || tally.len() == 1;
    // Highest count first; on a tie the lower class (Ok sorts first) wins.
    tally
        .iter()
        .filter(|(a, _)| counted(a))
        .max_by(|(a1, n1), (a2, n2)| n1.cmp(n2).then(a2.cmp(a1)))
        .map(|(a, _)| *a)
}

/// What a repeated probe reached, in report terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probed {
    /// The target name, looked up as the pod's resolver does.
    Lookup { name: String },
    /// One DNS pod, asked directly.
    DnsServer { ip: IpAddr, pod: Option<NamespacedName> },
    /// The Service's virtual address: its ClusterIP, or the node port or LoadBalancer address
    /// the target entered by (`named`: `ClusterIP`, `node port`, `LoadBalancer address`).
    ClusterIp {
        ip: IpAddr,
        port: u16,
        named: &'static str,
    },
    /// One destination address, and the pod behind it.
    Endpoint {
        ip: IpAddr,
        port: u16,
        pod: Option<NamespacedName>,
    },
}

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probed::Lookup { name } => write!(f, "lookups of {name}"),
            Probed::DnsServer { ip, pod: Some(pod) } => write!(f, "DNS pod {pod} ({})", fmt_ip(*ip)),
            Probed::DnsServer { ip, pod: None } => write!(f, "DNS server {}", fmt_ip(*ip)),
            Probed::ClusterIp { ip, port, named } => write!(f, "{named} {}:{port}", fmt_ip(*ip)),
            Probed::Endpoint {
                ip,
                port,
                pod: Some(pod),
            } => write!(f, "{pod} ({}:{port})", fmt_ip(*ip)),
            Probed::Endpoint { ip, port, pod: None } => write!(f, "{}:{port}", fmt_ip(*ip)),
        }
    }
}

/// The repeated probes' tallies: the evidence of a `--repeat`/`--for` check.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatFacts {
    pub rounds: u32,
    pub probes: Vec<RepeatedProbe>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RepeatedProbe {
    pub probed: Probed,
    /// The class most attempts met: what the steady checklist judged.
    pub usual: Attempt,
    pub tally: BTreeMap<Attempt, u32>,
    /// The successful attempts' latencies, ascending.
    pub latencies_us: Vec<u64>,
}

impl RepeatedProbe {
    /// Attempts that ran (a tool error is no attempt at the network).
    pub fn attempts(&self) -> u32 {
        self.tally
            .iter()
            .filter(|(a, _)| **a != Attempt::Error)
            .map(|(_, n)| n)
            .sum()
    }

    /// Failed attempts while the usual result is a success: the intermittent failures, by class.
    pub fn intermittent(&self) -> BTreeMap<Attempt, u32> {
        if self.usual != Attempt::Ok {
            return BTreeMap::new();
        }
        self.tally
            .iter()
            .filter(|(a, _)| !matches!(a, Attempt::Ok | Attempt::Error))
            .map(|(a, n)| (*a, *n))
            .collect()
    }

    /// The `p`th percentile (0–100) of the successful attempts' latency, nearest rank.
    pub fn percentile_us(&self, p: u32) -> Option<u64> {
        let n = self.latencies_us.len();
        if n == 0 {
            return None;
        }
        let rank = (u64::from(p) * n as u64).div_ceil(100).max(1) as usize;
        self.latencies_us.get(rank.min(n) - 1).copied()
    }
}

#[cfg(test)]
#[path = "repeat_tests.rs"]
mod tests;
