//! A repeated check's intermittent failures and their wording (see `judge::intermittent`).

use std::collections::BTreeMap;
use std::fmt;

use crate::check::prose::NonEmpty;
use crate::check::repeat::{Attempt, Probed};
use crate::check::report::{Code, Layer, Summary};

/// One probe that failed now and then: its failures by class, of its attempts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Flaky {
    pub probed: Probed,
    pub failures: BTreeMap<Attempt, u32>,
    pub attempts: u32,
}

impl Flaky {
    fn noun(&self) -> &'static str {
        match self.probed {
            Probed::Lookup { .. } => "lookups",
            Probed::DnsServer { .. } => "queries",
            Probed::ClusterIp { .. } | Probed::Endpoint { .. } => "connections",
        }
    }
}

/// `3 of 20 lookups of payments.shop timed out`, `1 of 20 connections to shop/payments-2 (…)
/// timed out, 1 was refused`.
impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.probed {
            Probed::Lookup { name } => format!("of {name}"),
            other => format!("to {other}"),
        };
        let mut classes = self.failures.iter();
        if let Some((attempt, n)) = classes.next() {
            write!(
                f,
                "{n} of {} {} {what} {}",
                self.attempts,
                self.noun(),
                attempt.words()
            )?;
        }
        for (attempt, n) in classes {
            write!(f, ", {n} {}", attempt.words())?;
        }
        Ok(())
    }
}

/// The probes of one layer that failed now and then over `rounds` rounds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntermittentFinding {
    pub layer: Layer,
    pub rounds: u32,
    pub flaky: NonEmpty<Flaky>,
}

impl IntermittentFinding {
    pub fn code(&self) -> Code {
        match self.layer {
            Layer::Dns => Code::DnsIntermittent,
            Layer::ServiceProxy => Code::ServiceProxyIntermittent,
            Layer::Application => Code::ApplicationIntermittent,
            _ => Code::PodNetworkIntermittent,
        }
    }

    pub fn summary(&self) -> Summary {
        Summary::coded(self.code(), self.to_string())
    }

    fn timed_out(&self) -> bool {
        self.flaky
            .iter()
            .any(|f| f.failures.contains_key(&Attempt::Timeout))
    }
}

impl fmt::Display for IntermittentFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "intermittent over {} rounds: {}",
            self.rounds,
            self.flaky.joined()
        )?;
        match self.layer {
            Layer::Dns if self.timed_out() => f.write_str(
                " — a pod's resolver waits its timeout (5 s by default) for each lost query before it retries",
            ),
            Layer::PodNetwork => f.write_str("; the other attempts connected"),
            Layer::ServiceProxy => f.write_str(", while every endpoint connected each time"),
            Layer::Application => f.write_str("; the other attempts connected"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flaky_endpoint_reads_as_a_share_of_its_connections() {
        let flaky = Flaky {
            probed: Probed::Endpoint {
                ip: "10.244.2.3".parse().unwrap(),
                port: 8080,
                pod: Some(crate::cluster::NamespacedName::new("shop", "payments-2")),
            },
            failures: BTreeMap::from([(Attempt::Timeout, 1)]),
            attempts: 20,
        };
        let finding = IntermittentFinding {
            layer: Layer::PodNetwork,
            rounds: 20,
            flaky: NonEmpty::new(flaky),
        };
        assert_eq!(
            finding.to_string(),
            "intermittent over 20 rounds: 1 of 20 connections to shop/payments-2 (10.244.2.3:8080) \
             timed out; the other attempts connected"
        );
        assert_eq!(finding.code(), Code::PodNetworkIntermittent);
    }
}
