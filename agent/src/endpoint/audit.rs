//! The endpoint's audit log: one line per request on every route, `/healthz`, unknown paths and
//! wrong methods included (target `netdiag::audit`): the route, the client's address, the caller
//! (or `-`), the decision, the status, and for checks what was asked and the verdict. Handlers and
//! the authentication middleware add what they know as response extensions; this middleware
//! writes the line.

use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::accept::ConnectionInfo;

/// What a handler tells the audit line about its request.
#[derive(Debug, Clone, Default)]
pub struct Note {
    /// `check`, `probe` or `node-probe`.
    pub request: &'static str,
    pub from: String,
    pub to: String,
    pub verdict: &'static str,
}

/// Who called, as authenticated.
#[derive(Debug, Clone)]
pub struct CallerName(pub String);

/// Why a request failed, for operators only.
#[derive(Debug, Clone)]
pub struct Reason(pub String);

/// The decision where the status does not tell it (a `/probe` answered 200 for a check not run).
#[derive(Debug, Clone, Copy)]
pub struct Decision(pub &'static str);

/// `response` with `note` for its audit line.
pub fn noted(mut response: Response, note: Note) -> Response {
    response.extensions_mut().insert(note);
    response
}

/// The decision a status stands for.
fn decision(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "allowed",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "notFound",
        405 => "methodNotAllowed",
        408 => "timedOut",
        413 => "tooLarge",
        429 => "throttled",
        503 => "unavailable",
        400..=499 => "rejected",
        _ => "failed",
    }
}

/// The kind of request for a route without a [`Note`].
fn route(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/v1/check" => "check",
        "/probe" => "probe",
        netdiag_proto::PROBE_PATH => "node-probe",
        _ => "-",
    }
}

/// Writes the request's audit line once it is answered.
pub async fn audit(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let client = request
        .extensions()
        .get::<ConnectionInfo>()
        .map_or_else(|| "-".to_string(), |c| c.peer.to_string());
    let response = next.run(request).await;
    let found = response.extensions();
    let note = found.get::<Note>().cloned().unwrap_or_default();
    let caller = found.get::<CallerName>().map_or("-", |c| c.0.as_str());
    let status = response.status();
    let decision = found.get::<Decision>().map_or_else(|| decision(status), |d| d.0);
    let reason = found.get::<Reason>().map_or("-", |r| r.0.as_str());
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    tracing::info!(
        target: "netdiag::audit",
        request = if note.request.is_empty() { route(&path) } else { note.request },
        method,
        path,
        client,
        caller,
        from = or_dash(&note.from),
        to = or_dash(&note.to),
        status = status.as_u16(),
        decision,
        verdict = or_dash(note.verdict),
        reason,
        duration_ms = started.elapsed().as_millis() as u64,
        "audit"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_decisions() {
        assert_eq!(decision(StatusCode::OK), "allowed");
        assert_eq!(decision(StatusCode::UNAUTHORIZED), "unauthenticated");
        assert_eq!(decision(StatusCode::METHOD_NOT_ALLOWED), "methodNotAllowed");
        assert_eq!(decision(StatusCode::TOO_MANY_REQUESTS), "throttled");
        assert_eq!(decision(StatusCode::IM_A_TEAPOT), "rejected");
        assert_eq!(decision(StatusCode::INTERNAL_SERVER_ERROR), "failed");
    }
}
