//! The control listener's HTTP API: `POST /v1/probe`, `GET /v1/info`, `/healthz`, `/readyz`,
//! `/metrics`, and the metrics listener's routes.
//!
//! Bounded everywhere a client could hold the agent's resources:
//! - connections, head and body times: the shared accept loop ([`crate::accept`]); a body that
//!   does not arrive in time is answered 408 `requestTimeout`, one over `max_body_bytes` 413
//!   `tooLarge`, a connection beyond the table when all are inside requests 503 `overloaded`;
//! - probe requests and their sockets are bounded by the [`Engine`] (503 `overloaded`).
//!
//! Every error is an [`ApiError`] JSON body.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Limited};
use netdiag_proto::{ApiError, INFO_PATH, PROBE_PATH, ProbeRequest, error_code};
use tokio::net::TcpListener;

use crate::accept::body::body_timeout;
use crate::accept::{self, Authentication, ConnectionInfo};
use crate::engine::Engine;
use crate::memory;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// How often the agent gives freed memory back to the kernel when it has worked since.
const TRIM_PERIOD: Duration = Duration::from_secs(5);

struct AppState {
    engine: Engine,
    config: ServerConfig,
}

pub fn router(engine: Engine, config: &ServerConfig) -> Router {
    let state = Arc::new(AppState {
        engine,
        config: config.clone(),
    });
    Router::new()
        .route(PROBE_PATH, post(probe))
        .route(INFO_PATH, get(info))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            api_error(
                StatusCode::NOT_FOUND,
                error_code::NOT_FOUND,
                "no such path".into(),
            )
        })
        .with_state(state)
        .layer(axum::middleware::from_fn(audit))
}

/// The metrics listener's routes: `/metrics` (and `/healthz`) only, for Prometheus on the pod
/// IP; the probe API stays on the control listener, reachable only through `pods/portforward`.
pub fn metrics_router(metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics_response(&metrics) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            api_error(
                StatusCode::NOT_FOUND,
                error_code::NOT_FOUND,
                "only /metrics and /healthz are served here".into(),
            )
        })
        .layer(axum::middleware::from_fn(audit))
}

/// The audit log: one line per request (target `netdiag_agent::audit`) with its method, path,
/// client address, status and duration. Kubelet's health probes and metrics scrapes are logged at
/// debug, every other request at info.
pub async fn audit(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let client = request
        .extensions()
        .get::<ConnectionInfo>()
        .map_or_else(|| "-".to_string(), |c| c.peer.to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(target: "netdiag_agent::audit", %method, %path, %client, status, ms, "request");
    } else {
        tracing::info!(target: "netdiag_agent::audit", %method, %path, %client, status, ms, "request");
    }
    response
}

/// The control listener's bounds for `config`.
pub fn control_options(config: &ServerConfig) -> accept::Options {
    accept::Options {
        name: "control",
        max_connections: config.max_connections,
        // Every client is 127.0.0.1 behind `pods/portforward`: no share per address.
        max_unauthenticated_per_source: config.max_connections,
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        authentication: Authentication::Listener,
    }
}

/// The metrics listener's bounds: few connections (a Prometheus or two scrape it), the control
/// listener's times.
pub fn metrics_options(config: &ServerConfig) -> accept::Options {
    accept::Options {
        name: "metrics",
        max_connections: 64,
        max_unauthenticated_per_source: 16,
        ..control_options(config)
    }
}

/// Serves `engine` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    // Connections and probe workers come and go: give their freed memory back after them.
    let activity = engine.activity();
    tokio::spawn(memory::trim_after_work(activity.clone(), TRIM_PERIOD));
    let router = router(engine, &config);
    let options = control_options(&config);
    accept::serve(listener, None, router, options, shutdown, move || {
        activity.record()
    })
    .await;
}

fn api_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ApiError {
            code: code.into(),
            message,
        }),
    )
        .into_response()
}

/// Reads a request body within the size and time limits, or answers why not.
async fn read_body(headers: &HeaderMap, body: Body, config: &ServerConfig) -> Result<Vec<u8>, Response> {
    let too_large = |detail: String| {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::TOO_LARGE,
            format!("request body is too large: {detail}"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > config.max_body_bytes as u64
    {
        return Err(too_large(format!(
            "{declared} bytes declared, at most {} accepted",
            config.max_body_bytes
        )));
    }
    // The accept loop bounds the body's time (`crate::accept::body`).
    match Limited::new(body, config.max_body_bytes).collect().await {
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(format!("more than {} bytes", config.max_body_bytes)))
        }
        Err(err) => match body_timeout(err.as_ref()) {
            Some(limit) => Err(api_error(
                StatusCode::REQUEST_TIMEOUT,
                error_code::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {} ms", limit.as_millis()),
            )),
            None => Err(api_error(
                StatusCode::BAD_REQUEST,
                error_code::BAD_REQUEST,
                format!("cannot read the request body: {err}"),
            )),
        },
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
    }
}

/// A `POST /v1/probe` body that is not a probe request; its text is the 400 answer's message.
#[derive(Debug, thiserror::Error)]
#[error("invalid probe request: {0}")]
pub struct InvalidBody(#[source] serde_json::Error);

/// Decodes a `POST /v1/probe` body.
pub fn decode_request(body: &[u8]) -> Result<ProbeRequest, InvalidBody> {
    serde_json::from_slice(body).map_err(InvalidBody)
}

/// `POST /v1/probe`, counted in flight while it runs and then by the status it answered.
async fn probe(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let metrics = state.engine.metrics();
    let in_flight = metrics.in_flight();
    let response = answer_probe(&state, &headers, body).await;
    metrics.request(response.status().as_u16());
    drop(in_flight);
    response
}

async fn answer_probe(state: &AppState, headers: &HeaderMap, body: Body) -> Response {
    let body = match read_body(headers, body, &state.config).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request = match decode_request(&body) {
        Ok(r) => r,
        Err(err) => {
            return api_error(StatusCode::BAD_REQUEST, error_code::BAD_REQUEST, err.to_string());
        }
    };
    drop(body);
    match state.engine.run(&request).await {
        Ok(report) => Json(report).into_response(),
        Err(err) => {
            let (status, body) = err.to_api_error();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(body)).into_response()
        }
    }
}

async fn info(State(state): State<Arc<AppState>>) -> Response {
    Json(state.engine.info()).into_response()
}

/// Ready when the node namespace can be opened (probes of kind `node` would work).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let path = state.engine.info().node_netns;
    match std::fs::File::open(&path) {
        Ok(_) => "ok\n".into_response(),
        Err(err) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            error_code::NOT_READY,
            format!("cannot open the node network namespace {path}: {err}"),
        ),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    metrics_response(state.engine.metrics())
}

fn metrics_response(metrics: &crate::metrics::Metrics) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tower::ServiceExt;

    use super::*;

    /// A writer the test reads back: what a log subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn status_of(router: Router, path: &str) -> StatusCode {
        let request = axum::http::Request::get(path).body(Body::empty()).unwrap();
        router.oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn every_request_writes_one_audit_line_with_method_path_and_status() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let router = Router::new()
            .route(INFO_PATH, get(|| async { "info" }))
            .layer(axum::middleware::from_fn(audit));
        assert_eq!(status_of(router.clone(), INFO_PATH).await, StatusCode::OK);
        assert_eq!(status_of(router, "/nope").await, StatusCode::NOT_FOUND);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["target"], "netdiag_agent::audit");
        assert_eq!(lines[0]["fields"]["path"], INFO_PATH);
        assert_eq!(lines[0]["fields"]["method"], "GET");
        assert_eq!(lines[0]["fields"]["status"], 200);
        assert_eq!(lines[1]["fields"]["status"], 404);
    }

    fn test_engine() -> Engine {
        use crate::access::{Access, SourceKind};
        use crate::engine::EngineConfig;
        let identity = netdiag_proto::AgentIdentity {
            node: "test-node".into(),
            version: "0.0.0".into(),
            pod: None,
        };
        let config = EngineConfig {
            node_netns: "/proc/self/ns/net".into(),
            max_concurrent: 1,
            socket_budget: 1,
            access: Access::new(&[SourceKind::PodIp], &[]).unwrap(),
        };
        let metrics = Arc::new(crate::metrics::Metrics::default());
        Engine::new(identity, Default::default(), metrics, config)
    }

    #[tokio::test]
    async fn probe_requests_are_counted_by_http_status_code_and_leave_no_request_in_flight() {
        let engine = test_engine();
        let metrics = engine.metrics_handle();
        let config = ServerConfig {
            max_body_bytes: 16,
            max_connections: 4,
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
        };
        let router = router(engine, &config);
        for body in ["{not json", "{\"far\": \"more than sixteen bytes\"}"] {
            let request = axum::http::Request::post(PROBE_PATH)
                .body(Body::from(body))
                .unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let text = metrics.encode();
        assert!(
            text.contains("netdiag_agent_requests_total{code=\"400\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("netdiag_agent_requests_total{code=\"413\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("netdiag_agent_requests_in_flight 0\n"), "{text}");
        assert!(!text.contains("code=\"badRequest\""), "{text}");
    }

    #[tokio::test]
    async fn the_metrics_listener_serves_metrics_and_never_the_probe_api() {
        let router = metrics_router(Arc::new(crate::metrics::Metrics::default()));
        assert_eq!(status_of(router.clone(), "/metrics").await, StatusCode::OK);
        assert_eq!(status_of(router.clone(), INFO_PATH).await, StatusCode::NOT_FOUND);
        let probe = axum::http::Request::post(PROBE_PATH)
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(
            router.oneshot(probe).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
}
