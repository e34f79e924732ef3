//! The HTTP API: `POST /v1/probe`, `GET /v1/info`, `/healthz`, `/readyz`, `/metrics`, and the
//! connection handling that keeps it answering under load.
//!
//! Bounded everywhere a client could hold the agent's resources:
//! - connections: at most `max_connections` at once; one more evicts the oldest connection that
//!   is not inside a request (a slowloris client still sending its headers, an idle keep-alive
//!   connection, a client not reading its answer), or is closed at once when all are busy;
//! - headers must arrive within `header_timeout` (also the idle keep-alive limit), bodies within
//!   `body_timeout` (408 `requestTimeout`) and be at most `max_body_bytes` (413 `tooLarge`);
//! - probe requests and their sockets are bounded by the [`Engine`] (503 `overloaded`).
//!
//! Every error is an [`ApiError`] JSON body.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use netdiag_proto::{ApiError, INFO_PATH, PROBE_PATH, ProbeRequest, error_code};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

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

/// Largest read buffer of a connection: the request line and headers must fit in it (431
/// otherwise), and a body is read through it in pieces.
const MAX_READ_BUFFER: usize = 16 * 1024;

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
/// status and duration. Kubelet's health probes and metrics scrapes are logged at debug, every
/// other request at info.
pub async fn audit(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(target: "netdiag_agent::audit", %method, %path, status, ms, "request");
    } else {
        tracing::info!(target: "netdiag_agent::audit", %method, %path, status, ms, "request");
    }
    response
}

/// Connections the kernel completes before the agent accepts them (capped by
/// `net.core.somaxconn`). Deep, so that a burst of connections does not overflow the queue and
/// make a health check's SYN wait for its one-second retransmission.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` with a deep accept queue.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Sends each write at once. With Nagle's algorithm on, the last segment of a response waits for
/// the ACK of the one before, which the peer delays (up to 40 ms on Linux): on every request.
pub fn no_delay(stream: &tokio::net::TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "cannot set TCP_NODELAY on a connection");
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
    let connections = Arc::new(Connections::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    no_delay(&stream);
                    stream
                }
                Err(err) => {
                    // EMFILE/ENFILE/ECONNABORTED: the connection stays in the backlog; try again
                    // shortly rather than spin.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Some(slot) = connections.admit() else {
            // Every connection is inside a request: this one is closed unanswered.
            continue;
        };
        if connections.full() {
            // Under a flood of connections, let the ones just accepted be read before accepting
            // more: a client that sent its request at once is then inside it, not evicted unread.
            tokio::task::yield_now().await;
        }
        let router = router.clone();
        let header_timeout = config.header_timeout;
        let activity = activity.clone();
        tokio::spawn(async move {
            let entry = slot.entry.clone();
            let service = hyper::service::service_fn(move |request| {
                let busy = BusyGuard::new(entry.clone());
                let router = router.clone();
                async move {
                    let _busy = busy;
                    router.oneshot(request).await
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_READ_BUFFER);
            let stream = Watched {
                inner: stream,
                connection: slot.entry.clone(),
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = slot.entry.evict.notified() => {}
            }
            drop(slot);
            activity.record();
        });
    }
}

/// The open connections, oldest first, and whether each is inside a request.
struct Connections {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
}

#[derive(Default)]
struct Connection {
    /// Requests of this connection being answered.
    busy: AtomicUsize,
    /// The client has sent bytes. A request arrives whole in one read, so a connection that sent
    /// bytes and is not busy is one whose client sends a request slowly, or is done with it.
    sent_bytes: AtomicBool,
    /// Notified to close the connection.
    evict: Notify,
}

impl Connection {
    /// Evictable: not inside a request, and (unless `silent_too`) sent bytes.
    fn idle(&self, silent_too: bool) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && (silent_too || self.sent_bytes.load(Ordering::Acquire))
    }
}

/// A connection's stream that marks the connection once a read gave bytes.
struct Watched {
    inner: tokio::net::TcpStream,
    connection: Arc<Connection>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.connection.sent_bytes.store(true, Ordering::Release);
        }
        read
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connections {
    fn new(max: usize) -> Self {
        Connections {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::default(),
        }
    }

    fn full(&self) -> bool {
        self.open.lock().is_ok_and(|open| open.len() >= self.max)
    }

    /// A slot for a new connection, evicting the oldest idle one when all are taken; `None` when
    /// every connection is inside a request. A connection that has not sent bytes yet is spared
    /// while one that did is idle: its request may be on its way whole (a health check arriving in
    /// a flood of slow clients), while the other's is being sent slowly or is done.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.lock().expect("connection table lock");
        if open.len() >= self.max {
            let oldest_idle = |silent_too| open.iter().find(|(_, c)| c.idle(silent_too)).map(|(id, _)| *id);
            let idle = oldest_idle(false).or_else(|| oldest_idle(true))?;
            if let Some(evicted) = open.remove(&idle) {
                evicted.evict.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Connection::default());
        open.insert(id, entry.clone());
        Some(Slot {
            connections: self.clone(),
            id,
            entry,
        })
    }
}

/// A connection's place in [`Connections`], given back when the connection ends.
struct Slot {
    connections: Arc<Connections>,
    id: u64,
    entry: Arc<Connection>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.connections.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// Marks a connection as inside a request while it lives.
struct BusyGuard(Arc<Connection>);

impl BusyGuard {
    fn new(connection: Arc<Connection>) -> Self {
        connection.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(connection)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
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
    let limited = Limited::new(body, config.max_body_bytes);
    match tokio::time::timeout(config.body_timeout, limited.collect()).await {
        Err(_) => Err(api_error(
            StatusCode::REQUEST_TIMEOUT,
            error_code::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                config.body_timeout.as_millis()
            ),
        )),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(format!("more than {} bytes", config.max_body_bytes)))
        }
        Ok(Err(err)) => Err(api_error(
            StatusCode::BAD_REQUEST,
            error_code::BAD_REQUEST,
            format!("cannot read the request body: {err}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
    }
}

/// Decodes a `POST /v1/probe` body; the error is the 400 answer's message.
pub fn decode_request(body: &[u8]) -> Result<ProbeRequest, String> {
    serde_json::from_slice(body).map_err(|err| format!("invalid probe request: {err}"))
}

async fn probe(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let metrics = state.engine.metrics();
    let body = match read_body(&headers, body, &state.config).await {
        Ok(body) => body,
        Err(response) => {
            let code = match response.status() {
                StatusCode::PAYLOAD_TOO_LARGE => error_code::TOO_LARGE,
                StatusCode::REQUEST_TIMEOUT => error_code::REQUEST_TIMEOUT,
                _ => error_code::BAD_REQUEST,
            };
            metrics.request(code);
            return response;
        }
    };
    let request = match decode_request(&body) {
        Ok(r) => r,
        Err(message) => {
            metrics.request(error_code::BAD_REQUEST);
            return api_error(StatusCode::BAD_REQUEST, error_code::BAD_REQUEST, message);
        }
    };
    drop(body);
    match state.engine.run(&request).await {
        Ok(report) => {
            metrics.request("ok");
            Json(report).into_response()
        }
        Err(err) => {
            let (status, body) = err.to_api_error();
            metrics.request(&body.code);
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
    use futures::FutureExt;

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

    fn open_ids(connections: &Connections) -> Vec<u64> {
        connections.open.lock().unwrap().keys().copied().collect()
    }

    #[test]
    fn a_full_table_evicts_its_oldest_idle_connection_and_never_a_busy_one() {
        let connections = Arc::new(Connections::new(2));
        let first = connections.admit().unwrap();
        let second = connections.admit().unwrap();
        let busy = BusyGuard::new(first.entry.clone());
        let third = connections
            .admit()
            .expect("the idle second connection makes room");
        assert_eq!(open_ids(&connections), vec![first.id, third.id]);
        assert!(
            second.entry.evict.notified().now_or_never().is_some(),
            "second was told to close"
        );
        let _busy_too = BusyGuard::new(third.entry.clone());
        assert!(
            connections.admit().is_none(),
            "every connection is inside a request"
        );
        drop(busy);
        assert!(connections.admit().is_some());
    }

    #[test]
    fn a_connection_that_sent_bytes_is_evicted_before_an_older_one_that_sent_none() {
        let connections = Arc::new(Connections::new(2));
        let unread = connections.admit().unwrap();
        let read = connections.admit().unwrap();
        read.entry.sent_bytes.store(true, Ordering::Release);
        let newest = connections.admit().unwrap();
        assert_eq!(open_ids(&connections), vec![unread.id, newest.id]);
    }
}
