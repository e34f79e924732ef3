//! Dual-stack targets: the evidence split per address family, each family judged on its own by
//! the checklist judge, and the verdicts combined so that a failure of one family is reported as
//! such ("IPv6 path to shop/payments fails, IPv4 works"). Pure.
//!
//! A single-family target (every IPv4 or IPv6-only check) goes to the judge unchanged.

use super::evidence::*;
use super::judge;
use super::report::{FamilyReport, Report, Status, Verdict};

/// Judges `ev`: per family when it has a second family, else as the checklist judge does.
pub fn judge(ev: &Evidence, duration_ms: u64) -> Report {
    let Some(secondary) = &ev.secondary else {
        return judge::judge(ev, duration_ms);
    };
    let reports = [secondary.family.other(), secondary.family]
        .map(|family| (family, judge::judge(&view(ev, family), duration_ms)));
    combine(&target_name(ev), &reports)
}

/// The evidence as one family sees it: that family's ClusterIP, DNS answer and expected
/// addresses, endpoints and witnesses; nothing of the other family.
pub fn view(ev: &Evidence, family: IpFamily) -> Evidence {
    let mut v = ev.clone();
    let secondary = v.secondary.take();
    if let Some(second) = secondary.filter(|s| s.family == family) {
        v.cluster_ip = second.cluster_ip;
        if let (Some(dns), Some(result)) = (v.dns.as_mut(), second.dns) {
            dns.result = result;
        }
        // The source node's rules witness is read for the primary ClusterIP only.
        v.witnesses.node_dataplane = None;
    }
    let ours = |ip: &std::net::IpAddr| IpFamily::of(*ip) == family;
    if let Some(dns) = v.dns.as_mut() {
        dns.expected.retain(ours);
    }
    if let EndpointsFacts::Known(list) = &mut v.endpoints {
        list.retain(|e| ours(&e.ip));
    }
    v.node_witnesses.retain(|w| ours(&w.ip));
    v.witnesses.path_mtu.retain(|w| ours(&w.ip));
    v.witnesses.captures.retain(|w| ours(&w.ip));
    v.witnesses.egress.retain(|w| ours(&w.ip));
    v
}

/// How the target is named in the family headline: the Service, or the target as typed.
fn target_name(ev: &Evidence) -> String {
    match &ev.service {
        ServiceFacts::Found(svc) => svc.key().to_string(),
        _ => ev.to.clone(),
    }
}

/// One report from the families' reports (primary first): the first failing family's (else the
/// first undetermined one's, else the primary's), its failing step headed by what each family
/// does, every family's endpoints, and each family's verdict.
pub fn combine(target: &str, reports: &[(IpFamily, Report); 2]) -> Report {
    let shown = reports
        .iter()
        .position(|(_, r)| r.verdict == Verdict::Unreachable)
        .or_else(|| {
            reports
                .iter()
                .position(|(_, r)| r.verdict == Verdict::Undetermined)
        })
        .unwrap_or(0);
    let (family, first) = &reports[shown];
    let (other_family, other) = &reports[1 - shown];
    let mut report = first.clone();
    let does = |verdict| match verdict {
        Verdict::Reachable => "works",
        Verdict::Unreachable => "fails",
        Verdict::Undetermined => "could not be checked",
    };
    let headline = match (first.verdict, other.verdict) {
        (Verdict::Reachable, _) => None,
        (Verdict::Unreachable, Verdict::Unreachable) => {
            Some(format!("both the IPv4 and the IPv6 path to {target} fail"))
        }
        (mine, theirs) => Some(format!(
            "{} path to {target} {}, {} {}",
            family.label(),
            does(mine),
            other_family.label(),
            does(theirs)
        )),
    };
    match headline {
        Some(headline) => {
            if let Some(step) = report
                .steps
                .iter_mut()
                .find(|s| matches!(s.status, Status::Fail | Status::Undetermined))
            {
                step.summary.text = format!("{headline}: {}", step.summary);
            }
        }
        None => add_other_family_lines(&mut report, *other_family, other),
    }
    report.endpoints = reports[shown]
        .1
        .endpoints
        .iter()
        .chain(&other.endpoints)
        .cloned()
        .collect();
    report.families = reports
        .iter()
        .map(|(family, r)| FamilyReport {
            family: *family,
            verdict: r.verdict,
            failing_layer: r.failing_layer,
            summary: r
                .steps
                .iter()
                .find(|s| matches!(s.status, Status::Fail | Status::Undetermined))
                .map(|s| s.summary.text.clone())
                .unwrap_or_default(),
        })
        .collect();
    report
}

/// A reachable target: each passing step also shows the other family's summary as evidence.
fn add_other_family_lines(report: &mut Report, family: IpFamily, other: &Report) {
    for step in &mut report.steps {
        let theirs = other
            .steps
            .iter()
            .find(|s| s.layer == step.layer && s.status == Status::Pass && s.summary != step.summary);
        if let Some(theirs) = theirs {
            step.evidence
                .push(format!("{}: {}", family.label(), theirs.summary).into());
        }
    }
}
