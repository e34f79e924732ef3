//! `netdiag-lab relay`: the host's way to the lab's API server. kube-apiserver listens inside the
//! underlay namespace (on the cluster address pods use); this forwards a loopback port of the
//! host to it, so kubectl and the plugin on the host reach it as `https://127.0.0.1:PORT`.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

/// Serves until killed: prints the loopback port it listens on, then relays every connection to
/// `to` as seen from inside the namespace at `netns`.
pub fn serve(netns: PathBuf, to: SocketAddr) -> Result<()> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to listen on a loopback port")?;
    let port = listener.local_addr()?.port();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{port}")?;
    stdout.flush()?;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let netns = netns.clone();
        std::thread::spawn(move || {
            if let Ok(upstream) = crate::netns::connect_tcp(&netns, to, Duration::from_secs(5)) {
                pipe(client, upstream);
            }
        });
    }
    Ok(())
}

/// Copies both ways until either side closes. Each piece goes on at once (`TCP_NODELAY`): with
/// Nagle's algorithm the last small piece of a response waited for the client's delayed ACK,
/// 40 ms on every API response, which no API server adds.
fn pipe(a: TcpStream, b: TcpStream) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let forward = std::thread::spawn(move || copy_then_close(a, b2));
    copy_then_close(b, a2);
    let _ = forward.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}
