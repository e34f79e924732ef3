//! The endpoint's authentication middleware, in front of every route but `/healthz`: the bearer
//! token is checked ([`super::auth`]) from the request head alone, before any body is read, so a
//! caller without a good token holds nothing (no body read, no check slot). An authenticated
//! request is handed on with its [`Caller`] as an extension and protects its connection from
//! eviction ([`crate::accept::table`]), at most `max_per_caller` connections per caller, so that
//! no one caller can pin the connection table.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::audit::CallerName;
use super::auth::{Authorizer, Caller, bearer};
use super::failure::Failure;
use super::limits::PerCaller;
use crate::accept::ConnectionInfo;

/// How a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An `ApiError` JSON body.
    Json,
    /// `GET /probe`: Prometheus text when the check could not run (see
    /// [`Failure::into_probe_answer`]).
    Metrics,
}

/// The middleware's state.
#[derive(Clone)]
pub struct Gate {
    auth: Arc<Authorizer>,
    answer: Answer,
    protected: Arc<PerCaller>,
}

impl Gate {
    /// `protected` is shared by every route: connections protected per caller.
    pub fn new(auth: Arc<Authorizer>, answer: Answer, protected: Arc<PerCaller>) -> Self {
        Gate {
            auth,
            answer,
            protected,
        }
    }
}

/// Authenticates the request, or answers why not.
pub async fn authenticate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let connection = request.extensions().get::<ConnectionInfo>().cloned();
    let source = connection
        .as_ref()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.peer.ip());
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let outcome = match bearer(header) {
        Ok(token) => gate.auth.authenticate(token, source).await,
        Err(denial) => Err(denial),
    };
    let caller: Caller = match outcome {
        Ok(caller) => caller,
        Err(denial) => {
            let failure = Failure::from(denial);
            return match gate.answer {
                Answer::Json => failure.into_response(),
                Answer::Metrics => failure.into_probe_answer(started.elapsed().as_secs_f64()),
            };
        }
    };
    let _protection = connection.and_then(|c| {
        let slot = gate.protected.try_acquire(&caller.user)?;
        Some((slot, c.handle.protect()))
    });
    let user = caller.user.clone();
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(CallerName(user));
    response
}
