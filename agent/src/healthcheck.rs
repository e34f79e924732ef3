//! `netdiag-agent healthcheck`: a tiny HTTP/1.1 GET for the DaemonSet's exec probes, so the image
//! needs no curl.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HealthError {
    #[error("health url {0:?} is not of the form http://HOST:PORT/PATH")]
    BadUrl(String),
    #[error("cannot reach {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} answered {status_line:?}")]
    NotReady { url: String, status_line: String },
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
pub fn split_url(url: &str) -> Result<(&str, &str), HealthError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HealthError::BadUrl(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(HealthError::BadUrl(url.into()));
    }
    Ok((authority, path))
}

/// Succeeds when `url` answers 200.
pub fn check(url: &str, timeout: Duration) -> Result<(), HealthError> {
    let (authority, path) = split_url(url)?;
    let io = |source| HealthError::Io {
        url: url.into(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HealthError::BadUrl(url.into()))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(io)?;
    let text = String::from_utf8_lossy(&head[..n]);
    let status_line = text.lines().next().unwrap_or_default().to_string();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(HealthError::NotReady {
            url: url.into(),
            status_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:9808/readyz").unwrap(),
            ("127.0.0.1:9808", "/readyz")
        );
        assert_eq!(
            split_url("http://127.0.0.1:9808").unwrap(),
            ("127.0.0.1:9808", "/")
        );
        assert!(split_url("https://x:1/").is_err());
        assert!(split_url("http://nohost/").is_err());
    }
}
