//! Endpoints for operators and load balancers, and the answers for routes
//! that do not exist.

use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Liveness: the process answers. Never touches the database.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such resource")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this resource does not support that method",
    )
}
