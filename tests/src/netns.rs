//! The one place the lab enters network namespaces. `setns` changes only the calling thread, so
//! every function here runs its work on a fresh OS thread that entered the namespace first; sockets
//! created there stay in that namespace after the thread ends.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::CloneFlags;

/// Path of a named network namespace made by `ip netns add`.
pub fn named(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

/// Runs `f` on a new thread inside the network namespace at `path` and returns its result.
pub fn run_in<T, F>(path: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = std::fs::File::open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("failed to open network namespace {}: {e}", path.display()),
        )
    })?;
    let shown = path.display().to_string();
    std::thread::spawn(move || {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("failed to enter network namespace {shown}: {e}")))?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("thread inside a network namespace panicked"))?
}

/// A TCP connection to `addr` made from inside the namespace at `path`.
pub fn connect_tcp(path: &Path, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    run_in(path, move || TcpStream::connect_timeout(&addr, timeout))?
}

/// Writes each `(key, value)` of `settings` to `/proc/sys/<key with dots as slashes>` as seen from
/// inside the namespace at `path`.
pub fn sysctl(path: &Path, settings: &[(&str, &str)]) -> io::Result<()> {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    run_in(path, move || {
        for (key, value) in settings {
            let file = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&file, &value)
                .map_err(|e| io::Error::new(e.kind(), format!("failed to set {key}={value}: {e}")))?;
        }
        Ok(())
    })?
}

/// The HTTP status of `GET path` against `addr`, asked from inside the namespace at `netns`.
pub fn http_get_status(netns: &Path, addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<u16> {
    let mut stream = connect_tcp(netns, addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let text = String::from_utf8_lossy(&head[..len]);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an http response: {text:?}"),
            )
        })
}
