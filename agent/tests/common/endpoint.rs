//! For the in-cluster endpoint's tests: a fake API server on loopback that answers TokenReviews
//! and SubjectAccessReviews and counts them (it can hold them, or be down), the real agent
//! serving the endpoint against it, and a small HTTPS client that can connect from any loopback
//! address (127.0.0.0/8), so tests can play several client addresses.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{AGENT, Agent, Proc, unique};

/// The one token the fake API server accepts, as user [`GOOD_USER`].
pub const GOOD_TOKEN: &str = "good-token";
pub const GOOD_USER: &str = "system:serviceaccount:shop:ci";

/// Reviews of one kind: how many were asked, are waiting now, and waited at once at most.
#[derive(Default)]
pub struct Counter {
    pub total: AtomicUsize,
    pub now: AtomicUsize,
    pub max: AtomicUsize,
}

impl Counter {
    fn enter(&self) {
        self.total.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// What the fake API server saw, and switches for how it answers.
pub struct ApiState {
    pub token_reviews: Counter,
    pub access_reviews: Counter,
    /// Every request answers 503 while set.
    pub down: AtomicBool,
    hold_tokens: watch::Sender<bool>,
    hold_access: watch::Sender<bool>,
}

/// A fake API server on 127.0.0.1, stopped on drop.
pub struct FakeApi {
    pub addr: SocketAddr,
    pub state: Arc<ApiState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn held(hold: &watch::Sender<bool>) {
    let mut rx = hold.subscribe();
    let _ = rx.wait_for(|held| !*held).await;
}

fn status(code: u16, message: &str) -> Response {
    let body =
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

async fn token_review(State(api): State<Arc<ApiState>>, Json(review): Json<Value>) -> Response {
    if api.down.load(Ordering::SeqCst) {
        return status(503, "the fake api server is down");
    }
    api.token_reviews.enter();
    held(&api.hold_tokens).await;
    api.token_reviews.leave();
    let token = review.pointer("/spec/token").and_then(Value::as_str);
    let status = if token == Some(GOOD_TOKEN) {
        json!({"authenticated": true, "user": {"username": GOOD_USER, "uid": "u-1", "groups": ["system:serviceaccounts"]}})
    } else {
        json!({"authenticated": false, "error": "invalid bearer token"})
    };
    let answer = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "metadata": {}, "spec": review["spec"], "status": status});
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn access_review(State(api): State<Arc<ApiState>>, Json(review): Json<Value>) -> Response {
    if api.down.load(Ordering::SeqCst) {
        return status(503, "the fake api server is down");
    }
    api.access_reviews.enter();
    held(&api.hold_access).await;
    api.access_reviews.leave();
    let answer = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "metadata": {}, "spec": review["spec"], "status": {"allowed": true}});
    (StatusCode::CREATED, Json(answer)).into_response()
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let (hold_tokens, _) = watch::channel(false);
        let (hold_access, _) = watch::channel(false);
        let state = Arc::new(ApiState {
            token_reviews: Counter::default(),
            access_reviews: Counter::default(),
            down: AtomicBool::new(false),
            hold_tokens,
            hold_access,
        });
        let router = axum::Router::new()
            .route("/apis/authentication.k8s.io/v1/tokenreviews", post(token_review))
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(access_review),
            )
            .fallback(|| async { status(404, "the fake api server serves reviews only") })
            .with_state(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = axum::serve(listener, router) => {}
                    _ = stopped => {}
                }
            });
        });
        FakeApi {
            addr,
            state,
            stop: Some(stop),
        }
    }

    /// Holds (or releases) TokenReviews: they wait unanswered until released.
    pub fn hold_token_reviews(&self, hold: bool) {
        self.state.hold_tokens.send_replace(hold);
    }

    /// Holds (or releases) SubjectAccessReviews.
    pub fn hold_access_reviews(&self, hold: bool) {
        self.state.hold_access.send_replace(hold);
    }

    /// A kubeconfig pointing at this server, written to a file of its own.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique("ndk")));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             users:\n- name: agent\n  user:\n    token: agent-token\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: agent\n    namespace: netdiag\ncurrent-context: fake\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.hold_token_reviews(false);
        self.hold_access_reviews(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A real agent serving the endpoint on 127.0.0.1 against `api`.
pub struct EndpointAgent {
    pub agent: Agent,
    pub endpoint: SocketAddr,
    kubeconfig: std::path::PathBuf,
    /// The agent's stderr, when the test asked for it.
    pub log: Option<std::path::PathBuf>,
}

impl EndpointAgent {
    /// Starts the agent with `extra` flags and `RUST_LOG=rust_log`; its stderr goes to a file
    /// when `keep_log`.
    pub fn start(api: &FakeApi, extra: &[&str], rust_log: &str, keep_log: bool) -> EndpointAgent {
        let kubeconfig = api.kubeconfig();
        let log = keep_log.then(|| std::env::temp_dir().join(format!("{}.log", unique("ndl"))));
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let child = Command::new(AGENT)
            .args(["serve", "--listen", "127.0.0.1:0", "--node", "test-node"])
            .args(["--node-netns", "/proc/self/ns/net"])
            .args(["--endpoint-listen", "127.0.0.1:0", "--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start netdiag-agent");
        let mut proc = Proc { child };
        // One reader for both lines: the endpoint's comes first.
        let lines = proc.wait_for_lines("listening on");
        // The agent logs json, the announcements on stdout included: the address ends the message.
        let last_word = |needle: &str| {
            let line = lines.iter().find(|l| l.contains(needle)).expect(needle);
            let line: Value = serde_json::from_str(line).expect("a json log line");
            let message = line["fields"]["message"].as_str().expect("a message");
            message.rsplit(' ').next().unwrap().to_string()
        };
        let endpoint = last_word("endpoint on").parse().expect("endpoint address");
        let addr = last_word("listening on").parse().expect("listen address");
        EndpointAgent {
            agent: Agent { proc, addr },
            endpoint,
            kubeconfig,
            log,
        }
    }

    /// The agent's log lines so far (JSON objects).
    pub fn log_lines(&self) -> Vec<Value> {
        let path = self.log.as_ref().expect("started with keep_log");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for EndpointAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// A loopback address other than 127.0.0.1, for a client of its own.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A TCP connection to `addr` from `from` (any port).
pub fn tcp_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    Ok(socket.into())
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the endpoint from `from`, handshake done; its certificate is not checked.
pub fn tls_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<Tls> {
    let config = netdiag_agent::endpoint::tls::peer_client_config(None).expect("tls client config");
    let name = rustls::pki_types::ServerName::try_from("netdiag-agent").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = tcp_from(from, addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The head of a request: `Connection: close`, the token when given, `Content-Length` of `length`.
pub fn head(method: &str, path: &str, token: Option<&str>, length: usize) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: netdiag-agent\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

/// Reads an answer to its end: the status and the body.
pub fn answer(stream: &mut impl Read) -> std::io::Result<(u16, String)> {
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // The server may close without TLS close_notify once it has answered.
        Err(_) if !raw.is_empty() => {}
        Err(err) => return Err(err),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no http answer: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {head:?}")))?;
    Ok((status, body.to_string()))
}

/// One HTTPS request from `from`; the status and body.
pub fn https(
    from: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut tls = tls_from(from, addr)?;
    // The server may answer (e.g. 431) and close before reading everything: read the answer then.
    let _ = tls
        .write_all(head(method, path, token, body.len()).as_bytes())
        .and_then(|()| tls.write_all(body))
        .and_then(|()| tls.flush());
    answer(&mut tls)
}

/// `GET /healthz` over TLS from `from`: its status, or why there was none.
pub fn healthz(from: IpAddr, addr: SocketAddr) -> Result<u16, String> {
    https(from, addr, "GET", "/healthz", None, b"")
        .map(|(status, _)| status)
        .map_err(|e| e.to_string())
}

/// A node probe of nothing, as an authenticated caller would ask: 200 when served.
pub fn node_probe(from: IpAddr, addr: SocketAddr, token: &str) -> std::io::Result<(u16, String)> {
    let body = br#"{"source": {"kind": "node"}, "probes": [{"kind": "interfaces"}]}"#;
    https(from, addr, "POST", "/v1/probe", Some(token), body)
}
