//! `kubectl netdiag policy verify`: the live side of `policy matrix`. The matrix says what
//! NetworkPolicy and the admin tiers allow; nothing in the API says whether the cluster enforces
//! it. For one pod pair of each class of the matrix (pods that send alike × pods that admit
//! alike: every pair of a class has the same answer), a check runs from the real source pod, and
//! each pair whose live answer disagrees with the evaluation is reported.
//!
//! I/O: the cluster reads and the checks; [`agreement`] is the pure comparison.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::check::check_client;
use super::policy::{InputArgs, OutputFormat, PolicyCmdError, Scope, index_and_warn, load};
use crate::agent_client::{Agents, DEFAULT_AGENT_NAMESPACE, DEFAULT_AGENT_SELECTOR};
use crate::errors::CliError;
use crate::kube_args::KubeArgs;
use netdiag_engine::policy::{MatrixEntry, Protocol};
use netdiag_engine::report::{
    Code, EXIT_POLICY_NOT_ENFORCED, EXIT_REACHABLE, EXIT_UNDETERMINED, Layer, Report, Verdict,
};
use netdiag_engine::{
    CheckRequest, NamespacedName, PortRef, Snapshot, Target, collect, parse_timeout, verdict,
};

const EXAMPLES: &str = "\
Examples:
  # Does the cluster enforce shop's policies on port 8080?
  kubectl netdiag policy verify -n shop --port 8080

  # Two namespaces, more pairs, as data
  kubectl netdiag policy verify -n shop -n payments --port 8080 --max-pairs 50 -o json

Exit codes: 0 every pair probed agrees with the evaluation; 9 a flow policy denies got through
(policy is not enforced); 10-17 a flow policy allows failed at that layer; 3 a pair could not
be tested (no agent, source not running); 2, 4-7, 1 as for check.";

/// Probe a sample of pod pairs from the real pods and report where the live answer disagrees
/// with what NetworkPolicy and the admin tiers allow (TCP).
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct VerifyArgs {
    /// The connection flags, given before or after the subcommand (-n, repeatable: the
    /// namespaces whose pods are paired; without it, the context's namespace).
    #[arg(skip)]
    pub kube: KubeArgs,
    /// Destination port (1-65535), probed over TCP.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Probe at most this many pod pairs: one per class of the matrix, in its order.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub max_pairs: u16,
    /// Per-probe timeout, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Namespace of the netdiag agent DaemonSet.
    #[arg(long, default_value = DEFAULT_AGENT_NAMESPACE, value_name = "NAMESPACE")]
    pub agent_namespace: String,
    /// Label selector of the agent pods.
    #[arg(long, default_value = DEFAULT_AGENT_SELECTOR, value_name = "SELECTOR")]
    pub agent_selector: String,
}

/// How a pair's live answer compares with the evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Agreement {
    /// The live answer is the evaluation's.
    Agrees,
    /// Policy allows the flow and it got through, but the pod does not serve the port: the
    /// evaluation holds (a refusal comes from the pod itself).
    NotServed { why: String },
    /// Policy denies the flow, yet it connected (or the pod itself answered).
    NotEnforced { why: String },
    /// Policy allows the flow, yet it failed at `layer`.
    Blocked { layer: Layer, why: String },
    /// The pair could not be tested (its source cannot send, no agent, a read forbidden).
    NotTested { why: String },
}

/// Compares the evaluation (`allowed`) with the check of that pair. Pure.
pub fn agreement(allowed: bool, report: &Report) -> Agreement {
    let step_of = |layer: Layer| report.steps.iter().find(|s| s.layer == layer);
    let summary = |layer: Layer| step_of(layer).map(|s| s.summary.text.clone()).unwrap_or_default();
    let failing = match (report.verdict, report.failing_layer) {
        (Verdict::Reachable, _) if allowed => return Agreement::Agrees,
        (Verdict::Reachable, _) => {
            let why = match step_of(Layer::NetworkPolicy) {
                Some(step) if step.summary.code == Some(Code::NetworkPolicyNotEnforced) => {
                    step.summary.text.clone()
                }
                _ => "policy denies the flow, yet it connected".to_string(),
            };
            return Agreement::NotEnforced { why };
        }
        (Verdict::Unreachable, Some(layer)) => layer,
        (Verdict::Unreachable, None) | (Verdict::Undetermined, _) => {
            let step = report
                .steps
                .iter()
                .find(|s| s.status == netdiag_engine::report::Status::Undetermined);
            let why = step.map_or_else(
                || "the check could not decide".to_string(),
                |s| format!("{}: {}", s.layer.id(), s.summary.text),
            );
            return Agreement::NotTested { why };
        }
    };
    let why = summary(failing);
    match (failing, allowed) {
        (Layer::NetworkPolicy, false) => Agreement::Agrees,
        (Layer::Application, true) => Agreement::NotServed { why },
        (Layer::Application, false) => Agreement::NotEnforced {
            why: format!("policy denies the flow, yet the pod itself answered: {why}"),
        },
        (layer, true) if layer >= Layer::NetworkPolicy => Agreement::Blocked { layer, why },
        (layer, _) => Agreement::NotTested {
            why: format!("{}: {why}", layer.id()),
        },
    }
}

/// One probed pair.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Probed {
    from: String,
    to: String,
    /// What the evaluation says: `allowed` or `denied`.
    policy: &'static str,
    verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    failing_layer: Option<Layer>,
    #[serde(flatten)]
    agreement: Agreement,
}

/// The answer of `policy verify`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    namespaces: Vec<String>,
    port: u16,
    protocol: &'static str,
    pods: usize,
    /// Classes of pod pairs the matrix has; one pair of each is probed, up to `--max-pairs`.
    classes: usize,
    probed: Vec<Probed>,
    /// Classes left out by `--max-pairs`.
    not_probed: usize,
    disagreements: usize,
}

impl Verified {
    /// 9 when a denied flow got through; else the layer of the first allowed flow that failed;
    /// else 3 when a pair could not be tested; else 0.
    fn exit_code(&self) -> u8 {
        let results = || self.probed.iter().map(|p| &p.agreement);
        if results().any(|a| matches!(a, Agreement::NotEnforced { .. })) {
            return EXIT_POLICY_NOT_ENFORCED;
        }
        if let Some(layer) = results().find_map(|a| match a {
            Agreement::Blocked { layer, .. } => Some(*layer),
            _ => None,
        }) {
            return layer.exit_code();
        }
        if results().any(|a| matches!(a, Agreement::NotTested { .. })) {
            return EXIT_UNDETERMINED;
        }
        EXIT_REACHABLE
    }
}

fn pod_key(text: &str) -> NamespacedName {
    let (namespace, name) = text.split_once('/').unwrap_or(("", text));
    NamespacedName::new(namespace, name)
}

/// The check of one pair, as `kubectl netdiag check --from FROM --to pod/TO:PORT` runs it.
async fn check_pair(
    client: &kube::Client,
    agents: &Agents,
    pair: &MatrixEntry,
    port: u16,
    timeout: Duration,
) -> Probed {
    let to = pod_key(&pair.to);
    let request = CheckRequest {
        from: pod_key(&pair.from),
        target: Target::Pod {
            name: to.name.clone(),
            namespace: Some(to.namespace.clone()),
            port: PortRef::Number(port),
        },
        to_text: format!("pod/{}.{}:{port}", to.name, to.namespace),
        target_namespace: to.namespace.clone(),
        timeout,
    };
    let started = Instant::now();
    let snap = Snapshot::read(client, &request).await;
    let evidence = collect(&snap, agents, &request).await;
    let report = verdict(&snap, &evidence, started.elapsed().as_millis() as u64);
    Probed {
        from: pair.from.clone(),
        to: pair.to.clone(),
        policy: if pair.allowed { "allowed" } else { "denied" },
        verdict: report.verdict,
        failing_layer: report.failing_layer,
        agreement: agreement(pair.allowed, &report),
    }
}

/// Checks at once at most: each holds a port-forward to an agent and waits out its timeout.
const CONCURRENT_CHECKS: usize = 4;

async fn verify(args: &VerifyArgs) -> Result<Verified, PolicyCmdError> {
    let (client, default_ns, _) = check_client(&args.kube, args.timeout).await?;
    let namespaces = match args.kube.namespaces.as_slice() {
        [] => vec![default_ns],
        given => given.to_vec(),
    };
    let input = InputArgs {
        kube: args.kube.clone(),
        from_file: None,
    };
    let (objects, _) = load(&input, Scope::Namespaces(&namespaces)).await?;
    let matrix = index_and_warn(&objects).matrix(args.port, Protocol::Tcp, &namespaces)?;
    let classes = matrix.classes();
    let sample = &classes[..classes.len().min(usize::from(args.max_pairs))];
    let agents = Agents::discover(client.clone(), &args.agent_namespace, &args.agent_selector).await;
    let probed: Vec<Probed> = futures::stream::iter(sample)
        .map(|pair| check_pair(&client, &agents, pair, args.port, args.timeout))
        .buffered(CONCURRENT_CHECKS)
        .collect()
        .await;
    let disagreements = probed
        .iter()
        .filter(|p| {
            matches!(
                p.agreement,
                Agreement::NotEnforced { .. } | Agreement::Blocked { .. }
            )
        })
        .count();
    Ok(Verified {
        namespaces,
        port: args.port,
        protocol: "TCP",
        pods: matrix.pods.len(),
        classes: classes.len(),
        not_probed: classes.len() - sample.len(),
        probed,
        disagreements,
    })
}

fn render_table(v: &Verified) -> String {
    let mut out = format!(
        "policy verify -n {}, port {}/TCP: {} pods, {} classes of pod pairs, {} probed\n",
        v.namespaces.join(" -n "),
        v.port,
        v.pods,
        v.classes,
        v.probed.len()
    );
    let width = |f: fn(&Probed) -> &str| v.probed.iter().map(|p| f(p).len()).max().unwrap_or(0).max(4);
    let (from_w, to_w) = (width(|p| &p.from), width(|p| &p.to));
    out += &format!("{:from_w$}  {:to_w$}  {:7}  RESULT\n", "FROM", "TO", "POLICY");
    for p in &v.probed {
        let result = match &p.agreement {
            Agreement::Agrees => match p.failing_layer {
                Some(_) => "agrees (the connection is denied)".to_string(),
                None => "agrees (the connection succeeds)".to_string(),
            },
            Agreement::NotServed { why } => format!("agrees (the flow gets through; {why})"),
            Agreement::NotEnforced { why } => format!("DISAGREES: {why}"),
            Agreement::Blocked { layer, why } => format!("DISAGREES: fails at {}: {why}", layer.id()),
            Agreement::NotTested { why } => format!("not tested: {why}"),
        };
        out += &format!("{:from_w$}  {:to_w$}  {:7}  {result}\n", p.from, p.to, p.policy);
    }
    if v.not_probed > 0 {
        out += &format!(
            "{} more classes not probed (--max-pairs {})\n",
            v.not_probed,
            v.probed.len()
        );
    }
    out += &match v.disagreements {
        0 => "every pair probed agrees with the evaluation\n".to_string(),
        n => format!("{n} pair(s) disagree with the evaluation\n"),
    };
    out
}

pub async fn run(args: VerifyArgs) -> ExitCode {
    let emit = args.output.emit();
    let verified = match verify(&args).await {
        Ok(verified) => verified,
        Err(err) => return err.to_cli().exit(emit),
    };
    let text = match args.output {
        OutputFormat::Table => render_table(&verified),
        OutputFormat::Json => serde_json::to_string_pretty(&verified)
            .map(|j| j + "\n")
            .unwrap_or_default(),
        OutputFormat::Yaml => serde_yaml_ng::to_string(&verified).unwrap_or_default(),
    };
    // A reader that went away (`| head`) has nothing left to be told.
    if let Err(err) = std::io::stdout().lock().write_all(text.as_bytes())
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        let message = format!("failed to write the output: {err}");
        return CliError::new(crate::errors::Reason::Failed, message).exit(emit);
    }
    ExitCode::from(verified.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag_engine::report::{Status, Step, Summary};

    /// A report failing at `failing` (none: reachable), its network-policy step coded `code`.
    fn report(verdict: Verdict, failing: Option<Layer>, code: Option<Code>) -> Report {
        let steps = Layer::ALL
            .iter()
            .map(|&layer| {
                let status = if Some(layer) == failing {
                    Status::Fail
                } else {
                    Status::Pass
                };
                let text = format!("{} says so", layer.id());
                Step {
                    layer,
                    status,
                    summary: Summary {
                        text,
                        code: if layer == Layer::NetworkPolicy { code } else { None },
                    },
                    evidence: vec![],
                }
            })
            .collect();
        Report {
            verdict,
            reachable: Some(verdict == Verdict::Reachable),
            failing_layer: failing,
            steps,
            fix: vec![],
            commands: vec![],
            hints: vec![],
            network_policy: None,
            duration_ms: 0,
            endpoints: vec![],
            families: vec![],
            withheld: false,
            repeat: None,
        }
    }

    #[test]
    fn the_live_answer_is_compared_with_the_evaluation() {
        let reachable = report(Verdict::Reachable, None, Some(Code::NetworkPolicyAllowed));
        assert_eq!(agreement(true, &reachable), Agreement::Agrees);
        let not_enforced = report(Verdict::Reachable, None, Some(Code::NetworkPolicyNotEnforced));
        assert_eq!(
            agreement(false, &not_enforced),
            Agreement::NotEnforced {
                why: "network-policy says so".into()
            }
        );
        let denied = report(Verdict::Unreachable, Some(Layer::NetworkPolicy), None);
        assert_eq!(agreement(false, &denied), Agreement::Agrees);
        // Allowed and through, but nothing serves the port: the evaluation holds. Denied, yet
        // the pod itself refused: the packets got past the policy.
        let refused = report(Verdict::Unreachable, Some(Layer::Application), None);
        assert_eq!(
            agreement(true, &refused),
            Agreement::NotServed {
                why: "application says so".into()
            }
        );
        assert!(matches!(
            agreement(false, &refused),
            Agreement::NotEnforced { .. }
        ));
        // Allowed, yet dropped between the nodes: a disagreement naming the layer.
        let dropped = report(Verdict::Unreachable, Some(Layer::PodNetwork), None);
        assert_eq!(
            agreement(true, &dropped),
            Agreement::Blocked {
                layer: Layer::PodNetwork,
                why: "pod-network says so".into()
            }
        );
        // Denied, but the source cannot send: policy was not tested.
        let no_source = report(Verdict::Unreachable, Some(Layer::Source), None);
        assert!(
            matches!(agreement(false, &no_source), Agreement::NotTested { why } if why.starts_with("source: "))
        );
    }

    #[test]
    fn the_exit_code_puts_unenforced_policy_first() {
        let probed = |agreement: Agreement| Probed {
            from: "shop/a".into(),
            to: "shop/b".into(),
            policy: "denied",
            verdict: Verdict::Reachable,
            failing_layer: None,
            agreement,
        };
        let verified = |probed: Vec<Probed>| Verified {
            namespaces: vec!["shop".into()],
            port: 80,
            protocol: "TCP",
            pods: 2,
            classes: probed.len(),
            probed,
            not_probed: 0,
            disagreements: 0,
        };
        let blocked = || Agreement::Blocked {
            layer: Layer::Application,
            why: "refused".into(),
        };
        let not_enforced = || Agreement::NotEnforced { why: "x".into() };
        assert_eq!(verified(vec![probed(Agreement::Agrees)]).exit_code(), 0);
        assert_eq!(
            verified(vec![probed(blocked()), probed(not_enforced())]).exit_code(),
            9
        );
        assert_eq!(verified(vec![probed(blocked())]).exit_code(), 17);
        let untested = Agreement::NotTested {
            why: "no agent".into(),
        };
        assert_eq!(
            verified(vec![probed(untested), probed(Agreement::Agrees)]).exit_code(),
            3
        );
    }
}
