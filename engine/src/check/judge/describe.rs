//! Text and lookup helpers the layer judges share.

use netdiag_proto::{DnsOutcome, TcpOutcome, UdpOutcome};

use crate::check::evidence::{Fact, LiveFact};

pub(super) fn describe_tcp(outcome: &TcpOutcome) -> String {
    match outcome {
        TcpOutcome::Connected { rtt_us } => format!("connected in {}", fmt_us(*rtt_us)),
        TcpOutcome::Refused { .. } => "refused (RST)".into(),
        TcpOutcome::Timeout { after_ms } => format!("timed out after {after_ms} ms"),
        TcpOutcome::Unreachable { reason, detail, .. } => describe_unreachable(*reason, detail),
        TcpOutcome::Error { detail } => format!("probe error: {detail}"),
    }
}

/// `unreachable (admin-prohibited: ICMP type 3 code 13 from 10.0.0.1)`, for TCP and UDP alike.
pub(crate) fn describe_unreachable(reason: netdiag_proto::UnreachableReason, detail: &str) -> String {
    let reason = serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    if detail.is_empty() {
        format!("unreachable ({reason})")
    } else {
        format!("unreachable ({reason}: {detail})")
    }
}

/// Names of things that pass, shortened past `shown`: "a, b, c and 87 more". Lists of failing
/// things are never shortened (the summary must name each).
pub(super) fn passing_names(names: &[String], shown: usize) -> String {
    match names.len().checked_sub(shown) {
        Some(more) if more > 1 => format!("{} and {more} more", names[..shown].join(", ")),
        _ => names.join(", "),
    }
}

pub(super) fn fmt_us(us: u64) -> String {
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", us / 1000)
    }
}

pub(super) fn describe_dns(outcome: &DnsOutcome) -> String {
    match outcome {
        DnsOutcome::Resolved { addresses, .. } => {
            let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            format!("resolved to {}", list.join(", "))
        }
        DnsOutcome::Nxdomain => "NXDOMAIN".into(),
        DnsOutcome::Nodata => "no records (NODATA)".into(),
        DnsOutcome::Servfail => "SERVFAIL".into(),
        DnsOutcome::Refused => "REFUSED".into(),
        DnsOutcome::Timeout => "timed out".into(),
        DnsOutcome::Error { detail } => format!("error: {detail}"),
    }
}

/// The network did not deliver the SYN (or its answer): the symptoms of a path or policy drop.
pub(super) fn is_blocked(outcome: &TcpOutcome) -> bool {
    matches!(
        outcome,
        TcpOutcome::Timeout { .. } | TcpOutcome::Unreachable { .. }
    )
}

pub(super) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

pub(super) use crate::cluster::closest;

/// What a partial failure costs: `" — about 1 in 3 new connections fail"`, or nothing when
/// every address fails (or there is only one).
pub(super) fn connection_share(failing: usize, total: usize) -> String {
    if total > 1 && failing < total {
        format!(" — about {failing} in {total} new connections fail")
    } else {
        String::new()
    }
}

/// `"1 of 3 endpoints"`, or `"the endpoint"` when there is one.
pub(super) fn endpoints_of(failing: usize, total: usize) -> String {
    match total {
        1 => "the endpoint".into(),
        _ if failing == total => format!("all {total} endpoints"),
        _ => format!("{failing} of {total} endpoints"),
    }
}

pub(crate) fn describe_udp(outcome: &UdpOutcome) -> String {
    match outcome {
        UdpOutcome::Answered { rtt_us, bytes } => format!("answered ({bytes} bytes in {})", fmt_us(*rtt_us)),
        UdpOutcome::Refused { .. } => "refused (ICMP port unreachable)".into(),
        UdpOutcome::Unreachable { reason, detail, .. } => describe_unreachable(*reason, detail),
        UdpOutcome::Silent { after_ms } => format!("no answer and no ICMP error within {after_ms} ms"),
        UdpOutcome::Error { detail } => format!("probe error: {detail}"),
    }
}

/// What a live probe showed, in words: its outcome, or why it has none.
pub(crate) fn describe_live(live: &LiveFact) -> String {
    match live {
        LiveFact::Tcp(Fact::Known(o)) => describe_tcp(o),
        LiveFact::Udp(Fact::Known(o)) => describe_udp(o),
        LiveFact::Tcp(Fact::Unknown(why)) | LiveFact::Udp(Fact::Unknown(why)) => why.to_string(),
    }
}

/// `not probed (why)`, or the outcome when the probe ran.
pub(crate) fn not_probed(live: &LiveFact) -> String {
    match live.not_probed() {
        Some(why) => format!("not probed ({why})"),
        None => describe_live(live),
    }
}
