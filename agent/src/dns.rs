//! The `dns` probe: resolve a name the way the pod's libc would.
//!
//! The pod's resolv.conf (read through `/proc/<pid>/root`) is parsed with hickory's resolv.conf
//! parser; the name is expanded with the search list and ndots exactly as glibc's `res_search` does
//! ([`Search`], pure); every candidate is sent to the nameservers in order as a plain DNS query built
//! with hickory-proto over UDP, retried over TCP when the answer is truncated. The queries are sent
//! by hand rather than through hickory's resolver because the probe must report each query's own
//! outcome, round-trip time and TC bit, which the resolver hides. No hosts file, no cache.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::ProtoError;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType as WireType};
use hickory_proto::serialize::binary::DecodeError;
use netdiag_proto::{
    DnsAnswer, DnsCandidate, DnsOutcome, DnsProbe, DnsResult, RecordType, ResolvConfSummary,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::podfile::{self, PodFileError};

#[derive(Debug, Error)]
pub enum ResolvConfError {
    #[error(transparent)]
    Read(#[from] PodFileError),
    #[error("cannot parse {path}: {detail}")]
    Parse { path: String, detail: String },
}

/// glibc's MAXNS: nameservers after the third are ignored.
const GLIBC_MAXNS: usize = 3;
/// glibc's RES_MAXNDOTS: a larger `ndots` option counts as this.
const GLIBC_MAXNDOTS: usize = 15;

/// Where a process's resolver configuration is, as the process sees it.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Reads and parses the resolv.conf of process `pid`, confined to its root and capped in size
/// (see [`crate::podfile`]). Blocking: call it on a namespace worker thread.
pub fn read_resolv_conf(pid: u32) -> Result<ResolvConfSummary, ResolvConfError> {
    let bytes = podfile::read_in_root(pid, RESOLV_CONF, podfile::RESOLV_CONF_MAX_BYTES)?;
    parse_resolv_conf(&resolv_conf_path(pid), &bytes)
}

/// The resolv.conf of process `pid` as the report names it.
pub fn resolv_conf_path(pid: u32) -> String {
    format!("/proc/{pid}/root{RESOLV_CONF}")
}

/// Parses resolv.conf bytes with hickory's parser into the summary the probe reports.
pub fn parse_resolv_conf(path: &str, bytes: &[u8]) -> Result<ResolvConfSummary, ResolvConfError> {
    let (config, opts) =
        hickory_resolver::system_conf::parse_resolv_conf(bytes).map_err(|e| ResolvConfError::Parse {
            path: path.into(),
            detail: e.to_string(),
        })?;
    let mut nameservers: Vec<SocketAddr> = config
        .name_servers()
        .iter()
        .map(|ns| SocketAddr::new(ns.ip, 53))
        .collect();
    nameservers.dedup();
    // glibc uses the first MAXNS (3) nameservers and ignores the rest.
    nameservers.truncate(GLIBC_MAXNS);
    let search = config
        .search()
        .iter()
        .map(|n| n.to_ascii().trim_end_matches('.').to_string())
        .collect();
    Ok(ResolvConfSummary {
        path: path.into(),
        nameservers,
        search,
        // glibc caps ndots at RES_MAXNDOTS (15).
        ndots: u8::try_from(opts.ndots.min(GLIBC_MAXNDOTS)).unwrap_or(u8::MAX),
    })
}

/// glibc's `res_search` as a state machine: [`Search::next_candidate`] gives the next fully qualified name to
/// ask, [`Search::record`] feeds back what it got, [`Search::answer`] gives what libc returns.
#[derive(Debug)]
pub struct Search {
    name: String,
    search: Vec<String>,
    trailing_dot: bool,
    phase: Phase,
    tried_as_is: bool,
    saved: Option<(String, DnsOutcome)>,
    got_nodata: bool,
    got_servfail: bool,
    last: Option<(String, DnsOutcome)>,
    resolved: Option<(String, DnsOutcome)>,
    /// The search-list candidate that no nameserver could be reached for, which ends everything.
    gave_up: Option<(String, DnsOutcome)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AsIsFirst,
    Searching(usize),
    AsIsLast,
    Done,
}

impl Search {
    pub fn new(name: &str, ndots: u8, search: &[String]) -> Self {
        let dots = name.matches('.').count();
        let trailing_dot = name.ends_with('.');
        let phase = if dots >= usize::from(ndots) || trailing_dot {
            Phase::AsIsFirst
        } else {
            Phase::Searching(0)
        };
        Search {
            name: name.trim_end_matches('.').to_string(),
            search: search
                .iter()
                .map(|d| d.trim_matches('.').to_string())
                .filter(|d| !d.is_empty())
                .collect(),
            trailing_dot,
            phase,
            tried_as_is: false,
            saved: None,
            got_nodata: false,
            got_servfail: false,
            last: None,
            resolved: None,
            gave_up: None,
        }
    }

    /// The next candidate to query, fully qualified with a trailing dot; `None` when done.
    pub fn next_candidate(&mut self) -> Option<String> {
        loop {
            match self.phase {
                Phase::AsIsFirst | Phase::AsIsLast => return Some(format!("{}.", self.name)),
                Phase::Searching(i) => match self.search.get(i) {
                    Some(domain) => return Some(format!("{}.{domain}.", self.name)),
                    None => self.phase = self.after_search(),
                },
                Phase::Done => return None,
            }
        }
    }

    fn after_search(&self) -> Phase {
        if self.tried_as_is {
            Phase::Done
        } else {
            Phase::AsIsLast
        }
    }

    /// Feeds back the outcome of the candidate last returned by [`Search::next_candidate`].
    pub fn record(&mut self, candidate: &str, outcome: DnsOutcome) {
        self.last = Some((candidate.to_string(), outcome.clone()));
        if outcome.is_resolved() {
            self.resolved = Some((candidate.to_string(), outcome));
            self.phase = Phase::Done;
            return;
        }
        self.phase = match self.phase {
            Phase::AsIsFirst if self.trailing_dot => Phase::Done,
            Phase::AsIsFirst => {
                self.tried_as_is = true;
                self.saved = Some((candidate.to_string(), outcome));
                Phase::Searching(0)
            }
            Phase::Searching(i) => match outcome {
                DnsOutcome::Nxdomain => Phase::Searching(i + 1),
                DnsOutcome::Nodata => {
                    self.got_nodata = true;
                    Phase::Searching(i + 1)
                }
                DnsOutcome::Servfail => {
                    self.got_servfail = true;
                    Phase::Searching(i + 1)
                }
                // Timeouts, REFUSED and other failures end the search list (glibc's "done").
                _ => self.after_search(),
            },
            Phase::AsIsLast | Phase::Done => Phase::Done,
        };
    }

    /// Feeds back a candidate for which no nameserver was reached at all: every one failed locally
    /// or answered with ICMP port-unreachable, with no reply and no timeout (`res_send`'s
    /// ECONNREFUSED). Within the search list glibc then gives up at once, the bare name
    /// included, and reports that failure; elsewhere it is an ordinary failure.
    pub fn record_unreached(&mut self, candidate: &str, outcome: DnsOutcome) {
        if let Phase::Searching(_) = self.phase {
            self.last = Some((candidate.to_string(), outcome.clone()));
            self.gave_up = Some((candidate.to_string(), outcome));
            self.phase = Phase::Done;
        } else {
            self.record(candidate, outcome);
        }
    }

    /// What libc reports: a search given up for want of a reachable nameserver, else the first
    /// resolved candidate, else the as-is attempt's failure if it was
    /// tried first, else NODATA if any candidate had no data, else SERVFAIL if any failed so, else
    /// the last failure.
    pub fn answer(self) -> DnsAnswer {
        let (name, outcome) = if let Some((name, outcome)) = self.gave_up.or(self.resolved) {
            (Some(name), outcome)
        } else if let Some((name, outcome)) = self.saved {
            (Some(name), outcome)
        } else if self.got_nodata {
            (None, DnsOutcome::Nodata)
        } else if self.got_servfail {
            (None, DnsOutcome::Servfail)
        } else if let Some((name, outcome)) = self.last {
            (Some(name), outcome)
        } else {
            (
                None,
                DnsOutcome::Error {
                    detail: "no query was sent".into(),
                },
            )
        };
        DnsAnswer { name, outcome }
    }
}

/// Runs one DNS probe on the calling thread's namespace with the given resolver configuration.
pub async fn probe(p: &DnsProbe, conf: ResolvConfSummary) -> DnsResult {
    let servers = match p.nameserver {
        Some(ns) => vec![ns.socket_addr()],
        None => conf.nameservers.clone(),
    };
    let timeout = Duration::from_millis(p.timeout_ms);
    let mut search = Search::new(&p.name, conf.ndots, &conf.search);
    let mut candidates = Vec::new();
    if servers.is_empty() {
        return DnsResult {
            name: p.name.clone(),
            record_type: p.record_type,
            answer: DnsAnswer {
                name: None,
                outcome: DnsOutcome::Error {
                    detail: format!("{} lists no nameserver", conf.path),
                },
            },
            resolv_conf: conf,
            candidates,
        };
    }
    while let Some(fqdn) = search.next_candidate() {
        let mut outcome = DnsOutcome::Error {
            detail: "no nameserver was asked".into(),
        };
        let mut reached_any = false;
        // Like res_send: the next server is asked only when one fails to answer decisively.
        for server in &servers {
            let asked = query(&fqdn, p.record_type, *server, timeout).await;
            reached_any |= asked.reached;
            candidates.push(DnsCandidate {
                name: fqdn.clone(),
                server: *server,
                outcome: asked.outcome.clone(),
                rtt_us: asked.rtt_us,
                truncated: asked.truncated,
                cnames: asked.cnames,
            });
            outcome = asked.outcome;
            if matches!(
                outcome,
                DnsOutcome::Resolved { .. } | DnsOutcome::Nxdomain | DnsOutcome::Nodata
            ) {
                break;
            }
        }
        if reached_any {
            search.record(&fqdn, outcome);
        } else {
            search.record_unreached(&fqdn, outcome);
        }
    }
    DnsResult {
        name: p.name.clone(),
        record_type: p.record_type,
        resolv_conf: conf,
        candidates,
        answer: search.answer(),
    }
}

/// What one query to one server gave.
struct Asked {
    outcome: DnsOutcome,
    rtt_us: u64,
    truncated: bool,
    cnames: Vec<String>,
    /// The server was reached: it answered, or the query at least waited out its timeout (glibc's
    /// `gotsomewhere`). False when sending failed or ICMP said nothing listens.
    reached: bool,
}

/// One query to one server: UDP, then TCP if the UDP answer was truncated.
async fn query(fqdn: &str, record_type: RecordType, server: SocketAddr, timeout: Duration) -> Asked {
    let start = Instant::now();
    let asked = |outcome, truncated, reached| Asked {
        outcome,
        rtt_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        truncated,
        reached,
        cnames: vec![],
    };
    let answered = |response: &Message, truncated| Asked {
        cnames: cname_chain(response),
        ..asked(classify_response(response, record_type), truncated, true)
    };
    let request = match build_query(fqdn, record_type) {
        Ok(r) => r,
        Err(err) => return asked(error(err), false, false),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let udp = tokio::time::timeout_at(deadline, exchange_udp(&request, server)).await;
    let response = match udp {
        Err(_) => return asked(DnsOutcome::Timeout, false, true),
        Ok(Err(err)) => return asked(error(err), false, false),
        Ok(Ok(response)) => response,
    };
    if !response.metadata.truncation {
        return answered(&response, false);
    }
    match tokio::time::timeout_at(deadline, exchange_tcp(&request, server)).await {
        Err(_) => asked(DnsOutcome::Timeout, true, true),
        Ok(Err(err)) => asked(
            DnsOutcome::Error {
                detail: format!("truncated over udp, tcp retry failed: {err}"),
            },
            true,
            true,
        ),
        Ok(Ok(response)) => answered(&response, true),
    }
}

/// Why one query to one server got no answer to classify; its text is the `error` outcome's.
#[derive(Debug, Error)]
enum QueryError {
    #[error("{name:?} is not a valid query name: {source}")]
    InvalidName { name: String, source: ProtoError },
    #[error("cannot encode the query: {0}")]
    Encode(#[source] ProtoError),
    #[error("cannot open a udp socket: {0}")]
    UdpSocket(#[source] std::io::Error),
    #[error("cannot send to {server}: {source}")]
    Send {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("nothing listens on udp {server} (icmp port unreachable)")]
    Refused { server: SocketAddr },
    #[error("receiving from {server} failed: {source}")]
    Receive {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("tcp to {server}: {source}")]
    TcpTo {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("query too long for tcp")]
    TooLongForTcp,
    #[error("tcp from {server}: {source}")]
    TcpFrom {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("undecodable answer from {server}: {source}")]
    Undecodable { server: SocketAddr, source: DecodeError },
    #[error("{server} answered another question over tcp")]
    AnotherQuestion { server: SocketAddr },
}

fn error(err: QueryError) -> DnsOutcome {
    DnsOutcome::Error {
        detail: err.to_string(),
    }
}

fn build_query(fqdn: &str, record_type: RecordType) -> Result<Message, QueryError> {
    let name = Name::from_ascii(fqdn).map_err(|source| QueryError::InvalidName {
        name: fqdn.to_string(),
        source,
    })?;
    let wire_type = match record_type {
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
    };
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, wire_type));
    Ok(message)
}

fn is_answer_to(response: &Message, request: &Message) -> bool {
    response.metadata.id == request.metadata.id && response.queries == request.queries
}

async fn exchange_udp(request: &Message, server: SocketAddr) -> Result<Message, QueryError> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
        SocketAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    let send = |source| QueryError::Send { server, source };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(QueryError::UdpSocket)?;
    socket.connect(server).await.map_err(send)?;
    let bytes = request.to_vec().map_err(QueryError::Encode)?;
    socket.send(&bytes).await.map_err(send)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::ConnectionRefused => QueryError::Refused { server },
                _ => QueryError::Receive { server, source },
            })?;
        // Stray or spoofed datagrams are ignored, as libc does.
        if let Ok(response) = Message::from_vec(&buf[..n])
            && is_answer_to(&response, request)
        {
            return Ok(response);
        }
    }
}

async fn exchange_tcp(request: &Message, server: SocketAddr) -> Result<Message, QueryError> {
    let to = |source| QueryError::TcpTo { server, source };
    let from = |source| QueryError::TcpFrom { server, source };
    let mut stream = tokio::net::TcpStream::connect(server).await.map_err(to)?;
    // Close with RST: no TIME_WAIT left behind in the pod's namespace.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    let bytes = request.to_vec().map_err(QueryError::Encode)?;
    let len = u16::try_from(bytes.len()).map_err(|_| QueryError::TooLongForTcp)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.map_err(to)?;
    let len = stream.read_u16().await.map_err(from)?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.map_err(from)?;
    let response = Message::from_vec(&buf).map_err(|source| QueryError::Undecodable { server, source })?;
    if !is_answer_to(&response, request) {
        return Err(QueryError::AnotherQuestion { server });
    }
    Ok(response)
}

/// The CNAME targets in a response's answer section, in the order the server gave them (the
/// chain from the asked name to the one holding the addresses).
pub fn cname_chain(response: &Message) -> Vec<String> {
    response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::CNAME(target) => Some(target.0.to_string().trim_end_matches('.').to_string()),
            _ => None,
        })
        .collect()
}

/// What a response says about the asked name and type.
pub fn classify_response(response: &Message, record_type: RecordType) -> DnsOutcome {
    match response.metadata.response_code {
        ResponseCode::NoError => {
            let mut addresses = Vec::new();
            let mut ttl = u32::MAX;
            for record in &response.answers {
                let ip = match (&record.data, record_type) {
                    (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
                    (RData::AAAA(a), RecordType::Aaaa) => IpAddr::V6(a.0),
                    _ => continue,
                };
                addresses.push(ip);
                ttl = ttl.min(record.ttl);
            }
            if addresses.is_empty() {
                DnsOutcome::Nodata
            } else {
                DnsOutcome::Resolved { addresses, ttl }
            }
        }
        ResponseCode::NXDomain => DnsOutcome::Nxdomain,
        ResponseCode::ServFail => DnsOutcome::Servfail,
        ResponseCode::Refused => DnsOutcome::Refused,
        other => DnsOutcome::Error {
            detail: format!("server answered rcode {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cname_chain_of_an_answer_is_kept_in_order_beside_its_addresses() {
        use hickory_proto::rr::Record;
        use hickory_proto::rr::rdata::{A, CNAME};
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let mut response = Message::query();
        response.add_answer(Record::from_rdata(
            name("partner.shop.svc.cluster.local."),
            5,
            RData::CNAME(CNAME(name("partner.example."))),
        ));
        response.add_answer(Record::from_rdata(
            name("partner.example."),
            30,
            RData::CNAME(CNAME(name("edge.cdn.example."))),
        ));
        response.add_answer(Record::from_rdata(
            name("edge.cdn.example."),
            30,
            RData::A(A("198.51.100.10".parse().unwrap())),
        ));
        assert_eq!(cname_chain(&response), ["partner.example", "edge.cdn.example"]);
        assert_eq!(
            classify_response(&response, RecordType::A),
            DnsOutcome::Resolved {
                addresses: vec!["198.51.100.10".parse().unwrap()],
                ttl: 30
            }
        );
    }

    #[test]
    fn a_failed_query_reads_as_it_always_did() {
        let server: SocketAddr = "10.96.0.10:53".parse().unwrap();
        let refused = error(QueryError::Refused { server });
        assert_eq!(
            refused,
            DnsOutcome::Error {
                detail: "nothing listens on udp 10.96.0.10:53 (icmp port unreachable)".into()
            }
        );
        assert_eq!(
            QueryError::AnotherQuestion { server }.to_string(),
            "10.96.0.10:53 answered another question over tcp"
        );
        let invalid = build_query("a..b", RecordType::A).unwrap_err().to_string();
        assert!(
            invalid.starts_with("\"a..b\" is not a valid query name: "),
            "{invalid}"
        );
    }

    fn search_list() -> Vec<String> {
        ["a.svc.cluster.local", "svc.cluster.local", "cluster.local"]
            .map(String::from)
            .to_vec()
    }

    /// Drives a search with canned per-name outcomes and returns the names asked and the answer.
    fn run(name: &str, ndots: u8, outcomes: &[(&str, DnsOutcome)]) -> (Vec<String>, DnsAnswer) {
        let mut search = Search::new(name, ndots, &search_list());
        let mut asked = Vec::new();
        while let Some(fqdn) = search.next_candidate() {
            let outcome = outcomes
                .iter()
                .find(|(n, _)| *n == fqdn)
                .map_or(DnsOutcome::Nxdomain, |(_, o)| o.clone());
            asked.push(fqdn.clone());
            search.record(&fqdn, outcome);
        }
        (asked, search.answer())
    }

    fn resolved() -> DnsOutcome {
        DnsOutcome::Resolved {
            addresses: vec!["10.96.0.7".parse().unwrap()],
            ttl: 5,
        }
    }

    #[test]
    fn short_name_walks_the_search_list_before_the_bare_name() {
        let (asked, answer) = run("web", 5, &[]);
        assert_eq!(
            asked,
            [
                "web.a.svc.cluster.local.",
                "web.svc.cluster.local.",
                "web.cluster.local.",
                "web."
            ]
        );
        assert_eq!(answer.outcome, DnsOutcome::Nxdomain);
    }

    #[test]
    fn search_stops_at_the_first_candidate_that_resolves() {
        let (asked, answer) = run("web.b", 5, &[("web.b.svc.cluster.local.", resolved())]);
        assert_eq!(asked, ["web.b.a.svc.cluster.local.", "web.b.svc.cluster.local."]);
        assert_eq!(answer.name.as_deref(), Some("web.b.svc.cluster.local."));
        assert!(answer.outcome.is_resolved());
    }

    #[test]
    fn names_with_enough_dots_are_tried_as_is_first() {
        let (asked, answer) = run("example.com", 1, &[("example.com.", resolved())]);
        assert_eq!(asked, ["example.com."]);
        assert!(answer.outcome.is_resolved());
        // Failing as-is first falls back to the search list; the as-is failure is what libc reports.
        let (asked, answer) = run("example.com", 1, &[("example.com.", DnsOutcome::Servfail)]);
        assert_eq!(asked.len(), 4);
        assert_eq!(answer.outcome, DnsOutcome::Servfail);
    }

    #[test]
    fn trailing_dot_asks_exactly_once() {
        let (asked, answer) = run("web.a.svc.cluster.local.", 5, &[]);
        assert_eq!(asked, ["web.a.svc.cluster.local."]);
        assert_eq!(answer.outcome, DnsOutcome::Nxdomain);
    }

    #[test]
    fn a_timeout_ends_the_search_list_but_the_bare_name_is_still_asked() {
        let (asked, answer) = run("web", 5, &[("web.a.svc.cluster.local.", DnsOutcome::Timeout)]);
        assert_eq!(asked, ["web.a.svc.cluster.local.", "web."]);
        assert_eq!(answer.outcome, DnsOutcome::Nxdomain);
    }

    #[test]
    fn no_reachable_nameserver_in_the_search_list_gives_up_without_the_bare_name() {
        let refused = DnsOutcome::Error {
            detail: "nothing listens on udp 10.96.0.10:53 (icmp port unreachable)".into(),
        };
        let mut search = Search::new("web", 5, &search_list());
        let first = search.next_candidate().unwrap();
        assert_eq!(first, "web.a.svc.cluster.local.");
        search.record_unreached(&first, refused.clone());
        assert_eq!(search.next_candidate(), None);
        let answer = search.answer();
        assert_eq!(answer.name.as_deref(), Some("web.a.svc.cluster.local."));
        assert_eq!(answer.outcome, refused);

        // Tried as-is first, the failure is ordinary and the search list follows; the give-up there
        // is what libc reports, not the as-is failure.
        let mut search = Search::new("example.com", 1, &search_list());
        let as_is = search.next_candidate().unwrap();
        search.record_unreached(&as_is, refused.clone());
        let next = search.next_candidate().unwrap();
        assert_eq!(next, "example.com.a.svc.cluster.local.");
        search.record_unreached(&next, DnsOutcome::Error { detail: "x".into() });
        assert_eq!(search.next_candidate(), None);
        assert_eq!(
            search.answer().name.as_deref(),
            Some("example.com.a.svc.cluster.local.")
        );
    }

    #[test]
    fn servfail_continues_and_is_reported_when_nothing_resolves() {
        let (asked, answer) = run("web", 5, &[("web.svc.cluster.local.", DnsOutcome::Servfail)]);
        assert_eq!(asked.len(), 4);
        assert_eq!(answer.outcome, DnsOutcome::Servfail);
        let (_, answer) = run(
            "web",
            5,
            &[
                ("web.svc.cluster.local.", DnsOutcome::Servfail),
                ("web.cluster.local.", DnsOutcome::Nodata),
            ],
        );
        assert_eq!(answer.outcome, DnsOutcome::Nodata);
    }

    #[test]
    fn resolv_conf_is_parsed_with_search_and_ndots() {
        let conf = parse_resolv_conf(
            "/x/resolv.conf",
            b"nameserver 10.96.0.10\nsearch a.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        )
        .unwrap();
        assert_eq!(
            conf.nameservers,
            vec!["10.96.0.10:53".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(conf.search, search_list());
        assert_eq!(conf.ndots, 5);
    }

    #[test]
    fn resolv_conf_keeps_glibcs_limits_of_three_nameservers_and_ndots_fifteen() {
        let conf = parse_resolv_conf(
            "/x/resolv.conf",
            b"nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n\
              options ndots:40\n",
        )
        .unwrap();
        let servers: Vec<String> = conf.nameservers.iter().map(ToString::to_string).collect();
        assert_eq!(servers, ["10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"]);
        assert_eq!(conf.ndots, 15);
    }
}
