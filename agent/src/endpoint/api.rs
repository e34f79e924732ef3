//! The endpoint's HTTP API:
//! - `POST /v1/check` `{"from": "NS/POD", "to": "TARGET", "timeoutMs": N}` → the report
//!   `kubectl netdiag check -o json` prints (the same engine and serializer);
//! - `GET /probe?from=NS/POD&to=TARGET[&timeout=1s]` → the same check as Prometheus text;
//! - `POST /v1/probe` → this node's probes, for peer agents (`probes.netdiag.io`);
//! - `GET /healthz`.
//!
//! Every request but `/healthz` is authenticated from its head before its body is read
//! ([`gate`]), authorized ([`auth`]) and bounded ([`limits`]); every request is one audit line
//! ([`audit`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Query};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use netdiag_engine::CheckRequest;
use netdiag_engine::NamespacedName;
use netdiag_engine::Snapshot;
use netdiag_engine::read_agent_daemonset;
use netdiag_engine::{PodRef, Target, parse_timeout};
use netdiag_proto::{ProbeRequest, ProbeSource};
use serde::Deserialize;

use super::EndpointArgs;
use super::audit::{self, Note, noted};
use super::auth::{Access, AuthLimits, Authorizer, Caller, Denial};
use super::disclosure::{self, Checked, Ran, Shown};
use super::failure::Failure;
use super::gate::{self, Answer, Gate};
use super::limits::{FlightError, PerCaller, SingleFlight, Slot};
use super::probe_metrics;
use super::transport::{Peers, Transport};
use crate::accept::body::body_timeout;

/// The longest per-probe timeout a caller may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// At most one running check per (from, to, whether a hostNetwork source may be probed).
type Key = (String, String, bool);

pub struct State {
    auth: Arc<Authorizer>,
    client: Result<kube::Client, String>,
    peers: Arc<Peers>,
    per_caller: PerCaller,
    flights: SingleFlight<Key, Ran>,
}

impl State {
    pub fn new(args: &EndpointArgs, client: Result<kube::Client, String>, peers: Peers) -> Arc<Self> {
        Arc::new(State {
            auth: Arc::new(Authorizer::new(
                client.clone(),
                args.token_audiences.clone(),
                Duration::from_secs(args.auth_cache_seconds),
                &AuthLimits {
                    max_token_bytes: args.max_token_bytes,
                    reviews_in_flight: args.max_reviews_in_flight,
                    token_reviews_per_source_per_minute: args.token_reviews_per_source,
                },
            )),
            client,
            peers: Arc::new(peers),
            per_caller: PerCaller::new(args.max_checks_per_caller),
            flights: SingleFlight::new(args.max_checks),
        })
    }
}

/// The routes; `max_per_caller` bounds the connections one caller's requests protect.
pub fn router(state: Arc<State>, max_body_bytes: usize, max_per_caller: usize) -> Router {
    let protected = Arc::new(PerCaller::new(max_per_caller));
    let gate = |answer| {
        let gate = Gate::new(state.auth.clone(), answer, protected.clone());
        from_fn_with_state(gate, gate::authenticate)
    };
    Router::new()
        .route("/v1/check", post(check_json).route_layer(gate(Answer::Json)))
        .route("/probe", get(check_metrics).route_layer(gate(Answer::Metrics)))
        .route(
            netdiag_proto::PROBE_PATH,
            post(node_probe).route_layer(gate(Answer::Json)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            Failure::new(StatusCode::NOT_FOUND, "notFound", "no such path".into()).into_response()
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(from_fn(audit::audit))
        .with_state(state)
}

/// What a check asks, before it is authorized.
struct Ask {
    from: NamespacedName,
    to: Target,
    to_text: String,
    timeout: Duration,
}

fn parse_ask(from: &str, to: &str, timeout: Option<Duration>) -> Result<Ask, Failure> {
    let pod: PodRef = from
        .parse()
        .map_err(|e| Failure::bad_request(format!("invalid from {from:?}: {e}")))?;
    let namespace = pod
        .namespace
        .ok_or_else(|| Failure::bad_request(format!("from {from:?} must be NAMESPACE/POD")))?;
    let target: Target = to
        .parse()
        .map_err(|e| Failure::bad_request(format!("invalid to {to:?}: {e}")))?;
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(Failure::bad_request(format!(
            "timeout must be between 1 ms and {} s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    Ok(Ask {
        from: NamespacedName::new(namespace, pod.name),
        to: target,
        to_text: to.to_string(),
        timeout,
    })
}

fn slot(state: &State, caller: &Caller) -> Result<Slot, Failure> {
    state.per_caller.try_acquire(&caller.user).ok_or_else(|| {
        Failure::too_many(format!(
            "user {} already has the most requests in flight this endpoint allows; retry shortly",
            caller.user
        ))
    })
}

/// Authorizes `ask` for `caller` and runs it, or joins the identical check already running; the
/// report is shown as the caller may see it ([`disclosure`]).
async fn run_check(state: &State, caller: &Caller, ask: Ask) -> Result<Shown, Failure> {
    let access = Access::create(
        "checks",
        Some(ask.from.namespace.clone()),
        Some(ask.from.name.clone()),
    );
    state.auth.authorize(caller, &access).await?;
    let _slot = slot(state, caller)?;
    let checked = match run_flight(state, &ask, false).await? {
        Ran::Checked(checked) => checked,
        // Nothing was probed: the grant is asked only of callers whose source needs it.
        Ran::HostNetworkSource => {
            let access = disclosure::host_network_access(&ask.from);
            state
                .auth
                .authorize(caller, &access)
                .await
                .map_err(|denial| disclosure::host_network_denial(denial, &ask.from))?;
            match run_flight(state, &ask, true).await? {
                Ran::Checked(checked) => checked,
                Ran::HostNetworkSource => return Err(lost()),
            }
        }
    };
    Ok(disclosure::disclose(&state.auth, caller, &checked).await)
}

fn lost() -> Failure {
    Failure::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the check ended without a report".into(),
    )
}

/// Runs the check of `ask` once for every caller asking it at the same time. Unless
/// `host_network` (the caller may check from a hostNetwork pod), a check whose source is one
/// stops before probing.
async fn run_flight(state: &State, ask: &Ask, host_network: bool) -> Result<Ran, Failure> {
    let client = state.client.clone().map_err(|why| {
        Failure::from(Denial::Unavailable(format!(
            "the agent has no kubernetes client: {why}"
        )))
    })?;
    let key = (ask.from.to_string(), ask.to_text.clone(), host_network);
    let request = CheckRequest {
        target_namespace: ask.from.namespace.clone(),
        from: ask.from.clone(),
        target: ask.to.clone(),
        to_text: ask.to_text.clone(),
        timeout: ask.timeout,
    };
    let peers = state.peers.clone();
    let work = async move {
        let started = Instant::now();
        let (snap, daemonset) = tokio::join!(
            Snapshot::read_with_agents(&client, &request, &peers.namespace, &peers.selector),
            read_agent_daemonset(&client, &peers.namespace)
        );
        if !host_network && disclosure::host_network_source(&snap, &request.from) {
            return Ran::HostNetworkSource;
        }
        let transport = Transport::new(peers, &snap, daemonset);
        let evidence = netdiag_engine::collect(&snap, &transport, &request).await;
        let report = netdiag_engine::verdict(&snap, &evidence, started.elapsed().as_millis() as u64);
        Ran::Checked(Arc::new(Checked::new(report, &evidence)))
    };
    match state.flights.run(key, work).await {
        Ok((ran, _joined)) => Ok(ran),
        Err(FlightError::Full) => Err(Failure::too_many(
            "the agent is running the most distinct checks it allows; retry shortly".into(),
        )),
        Err(FlightError::Lost) => Err(lost()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckBody {
    from: String,
    to: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn read_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, Failure> {
    let bytes = body.map_err(|rejection| {
        if let Some(limit) = body_timeout(&rejection) {
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                "requestTimeout",
                format!("the request body did not arrive within {} ms", limit.as_millis()),
            )
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "tooLarge",
                format!("request body is too large: {rejection}"),
            )
        } else {
            Failure::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Failure::bad_request(format!("invalid {what}: {e}")))
}

async fn check_json(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    Extension(who): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut note = Note {
        request: "check",
        ..Note::default()
    };
    let result = async {
        let body: CheckBody = read_body(body, "check request")?;
        (note.from, note.to) = (body.from.clone(), body.to.clone());
        let ask = parse_ask(&body.from, &body.to, body.timeout_ms.map(Duration::from_millis))?;
        run_check(&state, &who, ask).await
    }
    .await;
    match result {
        Ok(shown) => {
            let report = shown.report();
            note.verdict = report.verdict.as_str();
            let mut json = serde_json::to_string_pretty(report).expect("a report always serializes");
            json.push('\n');
            noted(
                ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                note,
            )
        }
        Err(failure) => noted(failure.into_response(), note),
    }
}

#[derive(Debug, Deserialize)]
struct ProbeQuery {
    from: Option<String>,
    to: Option<String>,
    timeout: Option<String>,
}

async fn check_metrics(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    Extension(who): Extension<Caller>,
    query: Result<Query<ProbeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let started = Instant::now();
    let mut note = Note {
        request: "probe",
        ..Note::default()
    };
    let result = async {
        let Query(q) = query.map_err(|e| Failure::bad_request(format!("invalid query: {e}")))?;
        let (Some(from), Some(to)) = (q.from, q.to) else {
            return Err(Failure::bad_request(
                "both from=NS/POD and to=TARGET are required".into(),
            ));
        };
        (note.from, note.to) = (from.clone(), to.clone());
        let timeout = match q.timeout.as_deref() {
            Some(t) => Some(parse_timeout(t).map_err(|e| Failure::bad_request(e.to_string()))?),
            None => None,
        };
        run_check(&state, &who, parse_ask(&from, &to, timeout)?).await
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(shown) => {
            let report = shown.report();
            note.verdict = report.verdict.as_str();
            let text = probe_metrics::encode(report, seconds);
            noted(
                ([(header::CONTENT_TYPE, probe_metrics::CONTENT_TYPE)], text).into_response(),
                note,
            )
        }
        Err(failure) => noted(failure.into_probe_answer(seconds), note),
    }
}

/// A peer agent's probes on this node: `create` on `probes.netdiag.io` (cluster-scoped, named by
/// this node), which only agents' ServiceAccount is granted. Sources are pod IPs or the node.
async fn node_probe(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    Extension(who): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut note = Note {
        request: "node-probe",
        to: format!("node {}", state.peers.node),
        ..Note::default()
    };
    let result = async {
        let request: ProbeRequest = read_body(body, "probe request")?;
        note.from = match &request.source {
            ProbeSource::PodIp { ip } => ip.to_string(),
            ProbeSource::Node => "node".into(),
            _ => {
                return Err(Failure::bad_request(
                    "probe sources over the endpoint are podIP or node only".into(),
                ));
            }
        };
        let access = Access::create("probes", None, Some(state.peers.node.clone()));
        state.auth.authorize(&who, &access).await?;
        let _slot = slot(&state, &who)?;
        state.peers.engine.run(&request).await.map_err(|err| {
            let (status, body) = err.to_api_error();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Failure::new(status, "probeFailed", body.message)
        })
    }
    .await;
    match result {
        Ok(report) => noted(Json(report).into_response(), note),
        Err(failure) => noted(failure.into_response(), note),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_needs_a_namespaced_source_a_target_and_a_bounded_timeout() {
        let ask = parse_ask("shop/checkout", "svc/payments:80", None)
            .map_err(|f| f.message)
            .unwrap();
        assert_eq!(ask.from, NamespacedName::new("shop", "checkout"));
        assert_eq!(ask.timeout, DEFAULT_TIMEOUT);
        for (from, to, timeout) in [
            ("checkout", "svc/payments:80", None),
            ("shop/checkout", "svc/payments", None),
            ("shop/checkout", "svc/payments:80", Some(Duration::from_secs(60))),
            ("shop/checkout", "svc/payments:80", Some(Duration::ZERO)),
        ] {
            let failure = parse_ask(from, to, timeout).err().expect("refused");
            assert_eq!(failure.status, StatusCode::BAD_REQUEST, "{}", failure.message);
        }
    }
}
