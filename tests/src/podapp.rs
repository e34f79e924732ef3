//! The process in every lab pod (`netdiag-lab pod-app`): listens where the scenario says and
//! answers each TCP connection with the pod's `namespace/name` line, then echoes; answers each UDP
//! datagram with that line followed by the datagram. With no listeners it only waits, like a pause
//! container.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;

    /// `tcp:0.0.0.0:8080` or `udp:127.0.0.1:53`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (proto, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("listen spec {s:?} is not PROTO:ADDR:PORT"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("listen spec {s:?} has a bad ADDR:PORT"))?;
        match proto {
            "tcp" => Ok(Listen::Tcp(addr)),
            "udp" => Ok(Listen::Udp(addr)),
            _ => Err(format!(
                "listen spec {s:?} has protocol {proto:?}; expected tcp or udp"
            )),
        }
    }
}

pub fn run(pod: &str, listen: &[Listen], ready_file: Option<PathBuf>) -> Result<()> {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for l in listen {
        match l {
            Listen::Tcp(a) => {
                tcp.push(TcpListener::bind(a).with_context(|| format!("failed to listen on tcp {a}"))?)
            }
            Listen::Udp(a) => {
                udp.push(UdpSocket::bind(a).with_context(|| format!("failed to listen on udp {a}"))?)
            }
        }
    }
    if let Some(path) = ready_file {
        std::fs::write(&path, b"")
            .with_context(|| format!("failed to write ready file {}", path.display()))?;
    }
    // One thread serves every connection, as an event-driven server does: a thread per
    // connection made each of a check's hundreds of probes cost a thread's creation in the pod.
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("failed to start the pod's runtime")?
        .block_on(serve(Arc::from(format!("{pod}\n")), tcp, udp))?;
    bail!("pod {pod}: every listener stopped")
}

/// Serves the bound sockets until every one of them fails; with none, waits forever.
async fn serve(greeting: Arc<str>, tcp: Vec<TcpListener>, udp: Vec<UdpSocket>) -> Result<()> {
    let mut listeners = tokio::task::JoinSet::new();
    for listener in tcp {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        listeners.spawn(accept_tcp(listener, greeting.clone()));
    }
    for socket in udp {
        socket.set_nonblocking(true)?;
        listeners.spawn(answer_udp(
            tokio::net::UdpSocket::from_std(socket)?,
            greeting.clone(),
        ));
    }
    if listeners.is_empty() {
        std::future::pending::<()>().await;
    }
    while listeners.join_next().await.is_some() {}
    Ok(())
}

async fn accept_tcp(listener: tokio::net::TcpListener, greeting: Arc<str>) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(serve_tcp(conn, greeting.clone()));
            }
            // Out of descriptors or a connection reset before it was accepted: try again soon.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Answers each datagram with the greeting followed by the datagram.
async fn answer_udp(socket: tokio::net::UdpSocket, greeting: Arc<str>) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        let mut reply = greeting.as_bytes().to_vec();
        reply.extend_from_slice(&buf[..n]);
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// The greeting, then an echo of whatever the peer sends until it closes.
async fn serve_tcp(mut conn: tokio::net::TcpStream, greeting: Arc<str>) {
    if conn.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 16384];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_spec_parses_protocol_address_and_port() {
        assert_eq!(
            "tcp:0.0.0.0:8080".parse(),
            Ok(Listen::Tcp("0.0.0.0:8080".parse().unwrap()))
        );
        assert_eq!(
            "udp:127.0.0.1:53".parse(),
            Ok(Listen::Udp("127.0.0.1:53".parse().unwrap()))
        );
        assert!(
            "sctp:0.0.0.0:1"
                .parse::<Listen>()
                .unwrap_err()
                .contains("expected tcp or udp")
        );
        assert_eq!(
            "tcp:[::]:8080".parse(),
            Ok(Listen::Tcp("[::]:8080".parse().unwrap()))
        );
        assert!("tcp:nope".parse::<Listen>().is_err());
    }

    #[tokio::test]
    async fn tcp_connection_gets_the_pod_name_then_an_echo() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_tcp(listener, Arc::from("shop/pay-0\n")));
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        c.shutdown().await.unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "shop/pay-0\nping");
    }

    #[tokio::test]
    async fn udp_datagram_gets_the_pod_name_then_the_datagram() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(answer_udp(socket, Arc::from("shop/dns-0\n")));
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"query", addr).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"shop/dns-0\nquery");
    }
}
