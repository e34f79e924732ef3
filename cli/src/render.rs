//! Human output of a check: the checklist, the verdict, the evidence and the fix commands,
//! and the progress indicator shown on a terminal while probes run.
//!
//! The text carries ANSI styles; print it through `anstream`, which drops them when stdout is
//! not a terminal or `NO_COLOR` is set.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use anstyle::{AnsiColor, Style};

use crate::output::{wrap, wrap_command};
use netdiag_engine::report::{Code, EvidenceKind, PolicySuggestion, Report, Status, Step, Verdict};

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

fn mark(step: &Step) -> (char, Style) {
    match step.status {
        // It passes (the flow connects), but the isolation a policy promises does not hold.
        Status::Pass if not_enforced(step) => ('!', YELLOW),
        Status::Pass => ('✓', GREEN),
        Status::Fail => ('✗', RED),
        Status::Skip => ('·', DIM),
        Status::Undetermined => ('?', YELLOW),
    }
}

fn not_enforced(step: &Step) -> bool {
    step.summary.code == Some(Code::NetworkPolicyNotEnforced)
}

/// How human output is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Wrap to this many columns; `None` keeps every line whole (stdout is not a terminal).
    pub width: Option<usize>,
    /// `-o wide`: evidence under every step, and a table of the destination addresses.
    pub wide: bool,
}

/// Column where a step's summary starts: ` ✓ network-policy  `.
const SUMMARY_INDENT: &str = "                   ";
/// Column where an evidence line's text starts: `     evidence: `.
const EVIDENCE_INDENT: &str = "               ";

/// The checklist as text with ANSI styles, wrapped as `layout` says.
/// A repeated check's tallies: one line per probe, its attempts by outcome and the successful
/// attempts' latency.
fn repeat_block(repeat: &netdiag_engine::report::RepeatReport) -> String {
    let mut out = format!(" {BOLD}repeated {} rounds:{BOLD:#}\n", repeat.rounds);
    let width = repeat.probes.iter().map(|p| p.probe.len()).max().unwrap_or(0);
    for p in &repeat.probes {
        let ok = p.attempts - p.failures;
        let mut tally = format!("{ok}/{} ok", p.attempts);
        for (attempt, n) in p
            .outcomes
            .iter()
            .filter(|(a, _)| **a != netdiag_engine::repeat::Attempt::Ok)
        {
            let _ = write!(tally, ", {n} {}", attempt.words());
        }
        let style = if p.failures > 0 { YELLOW } else { Style::new() };
        let latency = p
            .latency_us
            .map(|l| {
                format!(
                    "  p50 {} p90 {} p99 {} max {}",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.max)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "   {:<width$}  {style}{tally}{style:#}{DIM}{latency}{DIM:#}",
            p.probe
        );
    }
    out
}

/// Microseconds as milliseconds, to a tenth.
fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

pub fn render_report(from: &str, to: &str, report: &Report, layout: Layout) -> String {
    let width = layout.width;
    let mut out = String::new();
    let _ = writeln!(out, "{BOLD}kubectl netdiag check --from {from} --to {to}{BOLD:#}");
    let _ = writeln!(out);
    for step in &report.steps {
        let (symbol, style) = mark(step);
        let text_style = if step.status == Status::Skip {
            DIM
        } else {
            Style::new()
        };
        let first = format!(
            " {style}{symbol}{style:#} {text_style}{:<15}{text_style:#} ",
            step.layer.id()
        );
        let summary = format!("{text_style}{}{text_style:#}", step.summary);
        let _ = writeln!(out, "{}", wrap(&summary, width, &first, SUMMARY_INDENT));
        let show = layout.wide || matches!(step.status, Status::Fail | Status::Undetermined);
        for line in &step.evidence {
            if show || line.kind == EvidenceKind::Disagreement {
                let first = format!("     {DIM}evidence:{DIM:#} ");
                let _ = writeln!(out, "{}", wrap(&line.text, width, &first, EVIDENCE_INDENT));
            }
        }
    }
    if layout.wide && !report.endpoints.is_empty() {
        let _ = writeln!(out);
        out.push_str(&endpoints_table(report));
    }
    if let Some(repeat) = &report.repeat {
        let _ = writeln!(out);
        out.push_str(&repeat_block(repeat));
    }
    let _ = writeln!(out);
    let verdict = match (report.verdict, report.failing_layer) {
        (Verdict::Reachable, _) if report.steps.iter().any(not_enforced) => {
            format!(
                "{GREEN}REACHABLE{GREEN:#}, {YELLOW}but NetworkPolicy that denies it is not enforced{YELLOW:#}"
            )
        }
        (Verdict::Reachable, _) => format!("{GREEN}REACHABLE{GREEN:#}"),
        (Verdict::Unreachable, Some(layer)) => format!("{RED}UNREACHABLE{RED:#} — {}", layer.id()),
        (Verdict::Unreachable, None) => format!("{RED}UNREACHABLE{RED:#}"),
        (Verdict::Undetermined, _) => {
            let reason = report
                .steps
                .iter()
                .find(|s| s.status == Status::Undetermined)
                .map(|s| match s.summary.code {
                    Some(Code::PodNetworkEgressNoAnswer) => {
                        " — the connection left the node; nothing beyond it answered".to_string()
                    }
                    _ => format!(" — {} could not be checked", s.layer.id()),
                })
                .unwrap_or_default();
            format!("{YELLOW}UNDETERMINED{YELLOW:#}{reason}")
        }
    };
    let _ = writeln!(
        out,
        " {BOLD}verdict:{BOLD:#} {verdict}  ({} ms)",
        report.duration_ms
    );
    if !report.families.is_empty() {
        let _ = writeln!(out, " {BOLD}families:{BOLD:#} {}", families_line(report));
    }
    if !report.hints.is_empty() {
        let _ = writeln!(out, " {BOLD}fix:{BOLD:#}");
        for hint in &report.hints {
            let _ = writeln!(out, "{}", wrap(hint, width, "   ", "     "));
        }
    }
    if !report.commands.is_empty() {
        let _ = writeln!(out, " {BOLD}commands:{BOLD:#}");
        for command in &report.commands {
            let _ = writeln!(out, "{}", wrap_command(command, width, "   "));
        }
    }
    if let Some(suggestion) = &report.network_policy {
        out.push_str(&policy_suggestion(suggestion, width));
    }
    out
}

/// Each family's verdict of a dual-stack target: `IPv4 reachable, IPv6 unreachable (pod-network)`.
fn families_line(report: &Report) -> String {
    report
        .families
        .iter()
        .map(|f| {
            let verdict = f.verdict.as_str();
            match f.failing_layer {
                Some(layer) => format!("{} {verdict} ({})", f.family.label(), layer.id()),
                None => format!("{} {verdict}", f.family.label()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The NetworkPolicy that admits the flow, as YAML to pipe into `kubectl apply -f -`.
fn policy_suggestion(suggestion: &PolicySuggestion, width: Option<usize>) -> String {
    let mut out = String::new();
    let verified = if suggestion.verified {
        format!(
            "verified with the cluster's policies: it admits {}",
            suggestion.admits.join(", ")
        )
    } else {
        "NOT verified: the evaluator still denies the flow with it added".to_string()
    };
    let _ = writeln!(
        out,
        " {BOLD}NetworkPolicy that admits this flow{BOLD:#} ({DIM}apply with kubectl apply -f -{DIM:#}):"
    );
    let _ = writeln!(out, "{}", wrap(&verified, width, "   # ", "   # "));
    for line in suggestion.yaml.lines() {
        let _ = writeln!(out, "   {line}");
    }
    out
}

/// `-o wide`: one row per destination address with its own verdict.
fn endpoints_table(report: &Report) -> String {
    let rows: Vec<[String; 5]> = report
        .endpoints
        .iter()
        .map(|e| {
            let status = e.status.as_str();
            [
                e.address.clone(),
                e.pod.clone().unwrap_or_else(|| "-".into()),
                e.node.clone().unwrap_or_else(|| "-".into()),
                e.failing_layer
                    .map(|l| format!("{status} ({})", l.id()))
                    .unwrap_or_else(|| status.to_string()),
                e.udp.clone().unwrap_or_else(|| e.tcp.clone()),
            ]
        })
        .collect();
    let probe = if report.endpoints.iter().any(|e| e.udp.is_some()) {
        "UDP"
    } else {
        "TCP"
    };
    let header = ["ADDRESS", "POD", "NODE", "STATUS", probe].map(String::from);
    crate::output::table(&[&[header][..], &rows].concat(), " ")
}

/// A spinner on stderr while probes run; shown only when stderr is a terminal.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(message: String) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut interval = tokio::time::interval(Duration::from_millis(80));
            for frame in FRAMES.iter().cycle() {
                interval.tick().await;
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{frame} {message}");
                let _ = err.flush();
            }
        });
        Progress { task: Some(task) }
    }

    /// Stops the spinner and clears its line.
    pub fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag_engine::report::{EvidenceLine, Layer, Step};

    fn report(verdict: Verdict, failing: Option<Layer>, statuses: &[(Layer, Status)]) -> Report {
        Report {
            verdict,
            reachable: None,
            failing_layer: failing,
            steps: statuses
                .iter()
                .map(|(layer, status)| Step {
                    layer: *layer,
                    status: *status,
                    summary: format!("{} summary", layer.id()).into(),
                    evidence: vec![format!("{} proof", layer.id()).into()],
                })
                .collect(),
            fix: vec!["kubectl -n shop get networkpolicy".into()],
            commands: vec!["kubectl -n shop get networkpolicy".into()],
            hints: vec![],
            network_policy: None,
            duration_ms: 7,
            endpoints: vec![],
            families: vec![],
            withheld: false,
            repeat: None,
        }
    }

    #[test]
    fn checklist_marks_each_layer_and_shows_evidence_only_for_the_failing_one() {
        let r = report(
            Verdict::Unreachable,
            Some(Layer::NetworkPolicy),
            &[
                (Layer::Source, Status::Pass),
                (Layer::NetworkPolicy, Status::Fail),
                (Layer::PodNetwork, Status::Skip),
            ],
        );
        let text = anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &r, Layout::default()))
            .to_string();
        assert!(text.contains(" ✓ source          source summary"), "{text}");
        assert!(
            text.contains(" ✗ network-policy  network-policy summary"),
            "{text}"
        );
        assert!(text.contains(" · pod-network     pod-network summary"), "{text}");
        assert!(text.contains("evidence: network-policy proof"), "{text}");
        assert!(!text.contains("source proof"), "{text}");
        assert!(text.contains("verdict: UNREACHABLE — network-policy"), "{text}");
        assert!(text.contains("   kubectl -n shop get networkpolicy"), "{text}");
    }

    #[test]
    fn a_disagreement_is_shown_under_a_passing_step_and_plain_evidence_is_not() {
        let mut r = report(Verdict::Reachable, None, &[(Layer::NetworkPolicy, Status::Pass)]);
        r.steps[0].evidence.push(EvidenceLine::disagreement(
            "shop/a → shop/b denied, yet TCP connected",
        ));
        let text = anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &r, Layout::default()))
            .to_string();
        assert!(
            text.contains("evidence: shop/a → shop/b denied, yet TCP connected"),
            "{text}"
        );
        assert!(!text.contains("network-policy proof"), "{text}");
        assert!(text.contains(" ✓ network-policy"), "{text}");
        assert!(text.contains("verdict: REACHABLE  ("), "{text}");
    }

    #[test]
    fn a_policy_that_is_not_enforced_is_marked_and_said_in_the_verdict() {
        let mut r = report(Verdict::Reachable, None, &[(Layer::NetworkPolicy, Status::Pass)]);
        r.steps[0].summary.code = Some(Code::NetworkPolicyNotEnforced);
        let text = anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &r, Layout::default()))
            .to_string();
        assert!(
            text.contains(" ! network-policy  network-policy summary"),
            "{text}"
        );
        assert!(
            text.contains("verdict: REACHABLE, but NetworkPolicy that denies it is not enforced"),
            "{text}"
        );
    }

    #[test]
    fn undetermined_verdict_names_the_layer_that_could_not_be_checked() {
        let r = report(
            Verdict::Undetermined,
            None,
            &[(Layer::Source, Status::Undetermined)],
        );
        let text = anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &r, Layout::default()))
            .to_string();
        assert!(text.contains(" ? source"), "{text}");
        assert!(
            text.contains("verdict: UNDETERMINED — source could not be checked"),
            "{text}"
        );
    }

    #[test]
    fn a_connection_that_left_the_cluster_unanswered_is_a_hand_off_in_the_verdict() {
        let mut r = report(
            Verdict::Undetermined,
            None,
            &[
                (Layer::Source, Status::Pass),
                (Layer::PodNetwork, Status::Undetermined),
            ],
        );
        r.steps[1].summary.code = Some(Code::PodNetworkEgressNoAnswer);
        let text = anstream::adapter::strip_str(&render_report(
            "shop/a",
            "198.51.100.10:443",
            &r,
            Layout::default(),
        ))
        .to_string();
        assert!(
            text.contains("verdict: UNDETERMINED — the connection left the node; nothing beyond it answered"),
            "{text}"
        );
    }

    #[test]
    fn styles_are_ansi_sequences_that_the_stripping_writer_removes() {
        let r = report(Verdict::Reachable, None, &[(Layer::Source, Status::Pass)]);
        let styled = render_report("shop/a", "svc/b:80", &r, Layout::default());
        assert!(styled.contains("\x1b["), "styled output carries ANSI codes");
        let plain = anstream::adapter::strip_str(&styled).to_string();
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("verdict: REACHABLE"));
    }

    /// A failing report as long as the real ones: a long summary, evidence, hints, commands
    /// pinned to a context, and a suggested policy.
    fn long_report() -> Report {
        let mut r = report(
            Verdict::Unreachable,
            Some(Layer::NetworkPolicy),
            &[
                (Layer::Source, Status::Pass),
                (Layer::NetworkPolicy, Status::Fail),
            ],
        );
        r.steps[1].summary = "ingress to shop/payments-0 (10.244.2.2:8080) denied: shop/payments-0 is isolated by shop/payments-ingress; no rule allows from shop/checkout on 8080/TCP (2/2 endpoints)".into();
        r.steps[1].evidence = vec![
            "shop/payments-0 (10.244.2.2:8080): ingress: shop/payments-0 is isolated by shop/payments-ingress; no rule allows from shop/checkout on 8080/TCP — TCP timed out after 1000 ms".to_string().into(),
        ];
        r.hints = vec!["allow ingress from pods with app=checkout in namespace shop to port 8080/TCP in shop/payments-ingress, or add a NetworkPolicy selecting app=payments in namespace shop that allows it".into()];
        r.commands = vec!["kubectl --kubeconfig=/home/oncall/.kube/prod-eu-west-1.yaml --context=prod-eu-west-1-admin -n shop get networkpolicy payments-ingress -o yaml".into()];
        r.network_policy = Some(PolicySuggestion {
            yaml: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n".into(),
            admits: vec!["shop/checkout → shop/payments-0:8080/TCP".into()],
            verified: true,
        });
        r
    }

    #[test]
    fn every_line_fits_80_and_120_columns_and_no_word_is_lost() {
        let r = long_report();
        let whole = anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &r, Layout::default()))
            .to_string();
        for width in [80, 120] {
            let layout = Layout {
                width: Some(width),
                wide: false,
            };
            let text =
                anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &r, layout)).to_string();
            for line in text.lines() {
                assert!(
                    line.chars().count() <= width,
                    "{} columns at width {width}: {line:?}",
                    line.chars().count()
                );
            }
            // Wrapping only moves words (continuing commands with `\`, comments with `#`).
            let words = |t: &str| {
                t.replace(" \\\n", " ")
                    .split_whitespace()
                    .filter(|w| *w != "#")
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            assert_eq!(words(&text), words(&whole), "width {width}");
        }
        // Piped: each fact stays on one line.
        assert!(
            whole
                .lines()
                .any(|l| l.contains("denied:") && l.contains("(2/2 endpoints)")),
            "{whole}"
        );
    }

    #[test]
    fn a_wrapped_summary_continues_under_its_own_column() {
        let layout = Layout {
            width: Some(80),
            wide: false,
        };
        let text = anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &long_report(), layout))
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(" ✗ network-policy  ingress"))
            .unwrap();
        assert!(lines[at + 1].starts_with(&" ".repeat(19)), "{text}");
        assert!(!lines[at + 1].starts_with(&" ".repeat(20)), "{text}");
    }

    #[test]
    fn hints_and_commands_are_separate_sections_and_the_policy_follows() {
        let text = anstream::adapter::strip_str(&render_report(
            "shop/a",
            "svc/b:80",
            &long_report(),
            Layout::default(),
        ))
        .to_string();
        let fix = text.find(" fix:").unwrap();
        let commands = text.find(" commands:").unwrap();
        let policy = text.find("NetworkPolicy that admits this flow").unwrap();
        assert!(fix < commands && commands < policy, "{text}");
        assert!(text.contains("   kind: NetworkPolicy"), "{text}");
    }

    #[test]
    fn wide_shows_every_steps_evidence_and_the_endpoint_table() {
        let mut r = report(Verdict::Reachable, None, &[(Layer::Source, Status::Pass)]);
        r.endpoints = vec![netdiag_engine::report::EndpointReport {
            address: "10.244.2.2:8080".into(),
            pod: Some("shop/payments-0".into()),
            node: Some("node-b".into()),
            status: Status::Pass,
            failing_layer: None,
            tcp: "connected in 0.2 ms".into(),
            udp: None,
            path_mtu: None,
        }];
        let layout = Layout {
            width: None,
            wide: true,
        };
        let text = anstream::adapter::strip_str(&render_report("shop/a", "svc/b:80", &r, layout)).to_string();
        assert!(text.contains("evidence: source proof"), "{text}");
        assert!(
            text.contains("ADDRESS") && text.contains("10.244.2.2:8080   shop/payments-0   node-b"),
            "{text}"
        );
    }
}

#[cfg(test)]
#[path = "render_disclose_tests.rs"]
mod disclose_tests;
