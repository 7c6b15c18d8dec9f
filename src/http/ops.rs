//! Endpoints for operators, load balancers and tills' status lights, and
//! the answers for routes that do not exist. None of them touches the
//! database: they report what the health layer knows.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::error::{ApiError, ProblemCode};
use crate::health::ServiceState;

/// Liveness: the process answers. Never touches the database.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 while the database answers and nothing is being shed.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let link = state.gate.link();
    match state.gate.not_ready_reason() {
        None => Json(json!({"status": "ready", "database": link.state})).into_response(),
        Some(reason) => {
            let body = json!({"status": "not_ready", "reason": reason, "database": link.state, "since": link.since});
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(state.gate.retry_after_hint()),
            );
            response
        }
    }
}

/// For tills' status lights: ok, degraded or unavailable, and since when.
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let (service, since) = state.gate.service_state();
    let mut body = json!({"status": service.as_str(), "since": since});
    if service == ServiceState::Unavailable {
        body["retry_after_s"] = json!(state.gate.retry_after_hint());
    }
    Json(body)
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = crate::metrics::render(&state.metrics, &state.gate, &state.db);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(ProblemCode::NotFound, "no such resource")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ProblemCode::MethodNotAllowed,
        "this resource does not support that method",
    )
}
