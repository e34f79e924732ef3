//! The one accept loop of the agent's listeners (the control listener, the metrics listener and
//! the in-cluster endpoint), with one set of bounds:
//! - a connection table ([`table`]) of at most `max_connections`; once it is full, a newcomer
//!   evicts the connection that matters least (see [`table`]; an address holding
//!   `max_unauthenticated_per_source` connections that never authenticated evicts its own), or is
//!   refused (503 on plain HTTP) when every connection is inside an authenticated request;
//! - the TLS handshake and each request head within `header_timeout` (also the idle keep-alive
//!   limit), each body within `body_timeout` ([`body`], answered 408 by the handlers), heads within
//!   [`MAX_READ_BUFFER`] (431);
//! - warnings a client can cause (refusals, failed accepts) at most one per [`WARN_PERIOD`].
//!
//! Each request carries a [`ConnectionInfo`] extension: the client's address and a handle that an
//! authentication middleware uses to protect its connection from eviction.

pub mod body;
pub mod table;
pub mod throttle;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use self::body::TimedBody;
use self::table::{Handle, Slot, Table};
use self::throttle::Throttle;

/// Largest read buffer of a connection: the request line and headers must fit in it (431
/// otherwise), and a body is read through it in pieces.
pub const MAX_READ_BUFFER: usize = 16 * 1024;

/// At most one warning per this period for events a client causes at will.
pub const WARN_PERIOD: Duration = Duration::from_secs(10);

/// Refused connections answered 503 at once (plain HTTP); more are closed unanswered.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refused client has to take its 503 before it is closed.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections the kernel completes before the agent accepts them (capped by
/// `net.core.somaxconn`). Deep, so that a burst of connections does not overflow the queue and
/// make a health check's SYN wait for its one-second retransmission.
const LISTEN_BACKLOG: i32 = 4096;

/// Who counts as authenticated on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// Every request: reaching the listener is the authorization (the control listener behind
    /// `pods/portforward`, the metrics listener that serves only metrics).
    Listener,
    /// Requests an authentication middleware protects with [`Handle::protect`].
    Middleware,
}

/// A listener's bounds.
#[derive(Debug, Clone)]
pub struct Options {
    /// The listener's name in log lines.
    pub name: &'static str,
    pub max_connections: usize,
    pub max_unauthenticated_per_source: usize,
    /// For the TLS handshake, each request head, and an idle keep-alive connection.
    pub header_timeout: Duration,
    /// For a request body, from the end of its head.
    pub body_timeout: Duration,
    pub authentication: Authentication,
}

/// What a request knows of its connection (a request extension).
#[derive(Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub handle: Handle,
}

/// A listening socket on `addr` with a deep accept queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
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
pub fn no_delay(stream: &TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "cannot set TCP_NODELAY on a connection");
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` completes;
/// `after_connection` runs when each connection ends.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    options: Options,
    shutdown: impl Future<Output = ()>,
    after_connection: impl Fn() + Clone + Send + Sync + 'static,
) {
    let table = Arc::new(Table::new(
        options.max_connections,
        options.max_unauthenticated_per_source,
        tls.is_none(),
    ));
    let refusals = Refusals::new(&options, tls.is_none());
    let accept_log = Throttle::new(WARN_PERIOD);
    let options = Arc::new(options);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE/ENFILE/ECONNABORTED: the connection stays in the backlog; try again
                    // shortly rather than spin.
                    if let Some(left_out) = accept_log.allow(Instant::now()) {
                        tracing::warn!(listener = options.name, %err, left_out, "cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        no_delay(&stream);
        let Ok(slot) = table.admit(peer.ip()) else {
            refusals.refuse(stream, peer);
            continue;
        };
        if table.full() {
            // Under a flood of connections, let the ones just accepted be read before accepting
            // more: a client that sent its request at once is then inside it, not evicted unread.
            tokio::task::yield_now().await;
        }
        let connection = Connection {
            router: router.clone(),
            options: options.clone(),
            peer,
        };
        let (tls, after) = (tls.clone(), after_connection.clone());
        tokio::spawn(async move {
            connection.run(stream, slot, tls).await;
            after();
        });
    }
}

/// What becomes of connections the table refuses: a warning (one per [`WARN_PERIOD`]) and, on
/// plain HTTP, a 503 answer (at most [`MAX_REFUSALS_IN_FLIGHT`] at once; more are closed).
struct Refusals {
    name: &'static str,
    max: usize,
    /// The raw answer, on plain HTTP only.
    answer: Option<Arc<[u8]>>,
    in_flight: Arc<Semaphore>,
    log: Throttle,
}

impl Refusals {
    fn new(options: &Options, plain: bool) -> Self {
        Refusals {
            name: options.name,
            max: options.max_connections,
            answer: plain.then(|| overloaded_answer(options.max_connections)),
            in_flight: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
            log: Throttle::new(WARN_PERIOD),
        }
    }

    fn refuse(&self, stream: TcpStream, peer: SocketAddr) {
        if let Some(left_out) = self.log.allow(Instant::now()) {
            tracing::warn!(
                listener = self.name,
                %peer,
                left_out,
                "refusing connections: all {} are inside authenticated requests",
                self.max
            );
        }
        if let Some(answer) = self.answer.clone()
            && let Ok(permit) = self.in_flight.clone().try_acquire_owned()
        {
            tokio::spawn(async move {
                refuse(stream, &answer, REFUSAL_TIMEOUT).await;
                drop(permit);
            });
        }
    }
}

/// The raw 503 answer of a refused plain-HTTP connection.
fn overloaded_answer(max: usize) -> Arc<[u8]> {
    let body = serde_json::to_string(&netdiag_proto::ApiError {
        code: netdiag_proto::error_code::OVERLOADED.into(),
        message: format!("all {max} connections of the agent are inside requests; retry shortly"),
    })
    .unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

/// Answers `answer` without reading the request, then reads what the client sent until it closes
/// (within `limit`), so that closing does not reset the connection before the answer is read.
async fn refuse(mut stream: TcpStream, answer: &[u8], limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    router: Router,
    options: Arc<Options>,
    peer: SocketAddr,
}

impl Connection {
    /// Serves the connection until it ends, times out or is evicted.
    async fn run(self, stream: TcpStream, slot: Slot, tls: Option<TlsAcceptor>) {
        let stream = Watched {
            inner: stream,
            entry: slot.handle(),
        };
        let evicted = slot.entry.clone();
        let served = async {
            match tls {
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(self.options.header_timeout, handshake).await {
                        Ok(Ok(tls)) => {
                            slot.step();
                            self.http(tls, slot.handle()).await;
                        }
                        Ok(Err(err)) => tracing::debug!(peer = %self.peer, "tls handshake failed: {err}"),
                        Err(_) => tracing::debug!(peer = %self.peer, "tls handshake timed out"),
                    }
                }
                None => self.http(stream, slot.handle()).await,
            }
        };
        tokio::select! {
            () = served => {}
            () = evicted.evict.notified() => {}
        }
        drop(slot);
    }

    /// HTTP/1.1 on `io` with the listener's bounds.
    async fn http<I>(&self, io: I, handle: Handle)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let authenticated = self.options.authentication == Authentication::Listener;
        let body_timeout = self.options.body_timeout;
        let (router, peer) = (self.router.clone(), self.peer);
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let guard = handle.request(authenticated);
            let info = ConnectionInfo {
                peer,
                handle: handle.clone(),
            };
            let router = router.clone();
            async move {
                let _guard = guard;
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(info);
                let body = axum::body::Body::new(TimedBody::new(body, body_timeout));
                router.oneshot(axum::http::Request::from_parts(parts, body)).await
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.header_timeout)
            .max_buf_size(MAX_READ_BUFFER);
        if let Err(err) = builder.serve_connection(TokioIo::new(io), service).await {
            tracing::debug!(listener = self.options.name, peer = %self.peer, "connection ended with an error: {err}");
        }
    }
}

/// A connection's stream that marks the connection once a read gave bytes.
struct Watched {
    inner: TcpStream,
    entry: Handle,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.entry.sent_bytes();
        }
        read
    }
}

impl AsyncWrite for Watched {
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
