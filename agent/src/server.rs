//! The HTTP API: `POST /v1/probe`, `GET /v1/info`, `/healthz`, `/readyz`, `/metrics`.
//!
//! Bodies are limited in size (413 `tooLarge`), concurrent probe requests are bounded (503
//! `overloaded` beyond the bound, answered at once rather than queued), and every error is an
//! [`ApiError`] JSON body.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use netdiag_proto::{ApiError, INFO_PATH, PROBE_PATH, ProbeRequest};

use crate::engine::Engine;

pub struct ServerConfig {
    pub max_body_bytes: usize,
}

struct AppState {
    engine: Engine,
}

pub fn router(engine: Engine, config: &ServerConfig) -> Router {
    let state = Arc::new(AppState { engine });
    Router::new()
        .route(PROBE_PATH, post(probe))
        .route(INFO_PATH, get(info))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "notFound", "no such path".into()) })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

fn api_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ApiError {
            code: code.into(),
            message,
        }),
    )
        .into_response()
}

async fn probe(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let metrics = state.engine.metrics();
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            metrics.request("tooLarge");
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "tooLarge",
                format!("request body is too large: {rejection}"),
            );
        }
        Err(rejection) => {
            metrics.request("badRequest");
            return api_error(
                StatusCode::BAD_REQUEST,
                "badRequest",
                format!("cannot read the request body: {rejection}"),
            );
        }
    };
    let request: ProbeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(err) => {
            metrics.request("badRequest");
            return api_error(
                StatusCode::BAD_REQUEST,
                "badRequest",
                format!("invalid probe request: {err}"),
            );
        }
    };
    match state.engine.run(&request).await {
        Ok(report) => {
            metrics.request("ok");
            Json(report).into_response()
        }
        Err(err) => {
            let (status, body) = err.to_api_error();
            metrics.request(&body.code);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(body)).into_response()
        }
    }
}

async fn info(State(state): State<Arc<AppState>>) -> Response {
    Json(state.engine.info()).into_response()
}

/// Ready when the node namespace can be opened (probes of kind `node` would work).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let path = state.engine.info().node_netns;
    match std::fs::File::open(&path) {
        Ok(_) => "ok\n".into_response(),
        Err(err) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "notReady",
            format!("cannot open the node network namespace {path}: {err}"),
        ),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics().encode(),
    )
        .into_response()
}
