//! The process in every lab pod (`netdiag-lab pod-app`): listens where the scenario says and
//! answers each TCP connection with the pod's `namespace/name` line, then echoes; answers each UDP
//! datagram with that line followed by the datagram. With no listeners it only waits, like a pause
//! container.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

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
    let greeting = format!("{pod}\n");
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
    let mut threads = Vec::new();
    for listener in tcp {
        let greeting = greeting.clone();
        threads.push(std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let greeting = greeting.clone();
                std::thread::spawn(move || serve_tcp(conn, &greeting));
            }
        }));
    }
    for socket in udp {
        let greeting = greeting.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let mut reply = greeting.clone().into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, peer);
            }
        }));
    }
    if threads.is_empty() {
        loop {
            std::thread::park();
        }
    }
    for t in threads {
        let _ = t.join();
    }
    bail!("pod {pod}: every listener stopped")
}

fn serve_tcp(mut conn: TcpStream, greeting: &str) {
    if conn.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 16384];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
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

    #[test]
    fn tcp_connection_gets_the_pod_name_then_an_echo() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve_tcp(listener.accept().unwrap().0, "shop/pay-0\n"));
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"ping").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "shop/pay-0\nping");
    }
}
