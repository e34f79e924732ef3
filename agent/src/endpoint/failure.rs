//! An endpoint answer other than a report: a status and an [`ApiError`] body, whose message is
//! for the caller; what only operators should read (why the API server could not be asked) goes
//! to the audit line as its `reason`, never into the answer. Pure.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use netdiag_proto::ApiError;

use super::audit::{Decision, Reason};
use super::auth::Denial;
use super::probe_metrics;

/// What a 503 says to the caller, whoever they are.
pub const UNAVAILABLE: &str = "the agent cannot ask the API server now; retry later";

#[derive(Debug)]
pub struct Failure {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// For the audit line only.
    pub(super) reason: Option<String>,
}

impl Failure {
    pub fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Failure {
            status,
            code,
            message,
            reason: None,
        }
    }

    pub fn bad_request(message: String) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, "badRequest", message)
    }

    pub fn too_many(message: String) -> Self {
        Failure::new(StatusCode::TOO_MANY_REQUESTS, "tooManyRequests", message)
    }

    /// A 503 that tells the caller only [`UNAVAILABLE`]; `reason` goes to the log.
    pub fn unavailable(reason: String) -> Self {
        Failure {
            reason: Some(reason),
            ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", UNAVAILABLE.into())
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether the agent, not the caller's request, kept the check from running (a bound, the
    /// API server, an internal error).
    fn check_not_run(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error()
    }

    /// `GET /probe`'s answer: a check the agent could not run is `probe_success 0` with the
    /// reason, so the series an alert watches never goes missing; the caller's own mistakes
    /// (401, 403, 400) stay errors.
    pub fn into_probe_answer(self, seconds: f64) -> Response {
        if !self.check_not_run() {
            return self.into_response();
        }
        let mut response = (
            [(header::CONTENT_TYPE, probe_metrics::CONTENT_TYPE)],
            probe_metrics::encode_not_run(self.code, seconds),
        )
            .into_response();
        let decision = if self.status == StatusCode::TOO_MANY_REQUESTS {
            "throttled"
        } else {
            "unavailable"
        };
        response.extensions_mut().insert(Decision(decision));
        response
            .extensions_mut()
            .insert(Reason(self.reason.unwrap_or(self.message)));
        response
    }
}

impl From<Denial> for Failure {
    fn from(denial: Denial) -> Self {
        match denial {
            Denial::Unauthenticated(m) => Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", m),
            Denial::Forbidden(m) => Failure::new(StatusCode::FORBIDDEN, "forbidden", m),
            Denial::Throttled(m) => Failure::too_many(m),
            Denial::Unavailable(why) => Failure::unavailable(why),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = Json(ApiError {
            code: self.code.into(),
            message: self.message,
        });
        let mut response = match self.status {
            StatusCode::UNAUTHORIZED => {
                (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            StatusCode::TOO_MANY_REQUESTS => {
                (self.status, [(header::RETRY_AFTER, "1")], body).into_response()
            }
            _ => (self.status, body).into_response(),
        };
        if let Some(reason) = self.reason {
            response.extensions_mut().insert(Reason(reason));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_map_to_401_403_429_and_503() {
        let status = |d| Failure::from(d).status;
        assert_eq!(
            status(Denial::Unauthenticated("x".into())),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status(Denial::Forbidden("x".into())), StatusCode::FORBIDDEN);
        assert_eq!(
            status(Denial::Throttled("x".into())),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(Denial::Unavailable("x".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn an_unavailable_api_server_is_told_to_the_log_never_to_the_caller() {
        let why = "failed to create a tokenreview: tcp connect error: 10.96.0.1:443: connection refused";
        let failure = Failure::from(Denial::Unavailable(why.into()));
        assert_eq!(failure.message, UNAVAILABLE);
        let response = failure.into_response();
        assert_eq!(
            response.extensions().get::<Reason>().map(|r| r.0.as_str()),
            Some(why)
        );
    }

    #[test]
    fn a_probe_not_run_is_probe_success_0_and_a_caller_mistake_stays_an_error() {
        let not_run = Failure::unavailable("down".into()).into_probe_answer(0.1);
        assert_eq!(not_run.status(), StatusCode::OK);
        let busy = Failure::too_many("busy".into()).into_probe_answer(0.1);
        assert_eq!(busy.status(), StatusCode::OK);
        let refused = Failure::from(Denial::Unauthenticated("no token".into())).into_probe_answer(0.1);
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
}
