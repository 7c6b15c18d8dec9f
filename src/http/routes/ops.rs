//! Endpoints for operators, load balancers and tills' status lights, and
//! the answers for routes that do not exist. None of them touches the
//! database: they report what the health layer knows. `/metrics` renders
//! the application's own recorder ([`crate::metrics`]), with the gauges
//! read from live state (link, admission, pool) refreshed first, so the hot
//! path does not update them.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::db::leader::Job;
use crate::domain::exception::ExceptionKind;
use crate::error::{ApiError, ProblemCode};
use crate::health::link::LinkState;
use crate::health::{Priority, ServiceState};
use crate::http::AppState;

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

/// The Prometheus exposition, with the gauges read from live state
/// refreshed first.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let link = state.gate.link();
    for link_state in [LinkState::Ok, LinkState::Degraded, LinkState::Unavailable] {
        let value = if link.state == link_state { 1.0 } else { 0.0 };
        metrics::gauge!("tillsync_db_state", "state" => link_state.as_str()).set(value);
    }
    let load = state.gate.load();
    metrics::gauge!("tillsync_admission_limit").set(load.limit as f64);
    metrics::gauge!("tillsync_admission_min_limit").set(load.min_limit as f64);
    metrics::gauge!("tillsync_admission_in_flight").set(load.in_flight as f64);
    metrics::gauge!("tillsync_admission_queued").set(load.queued as f64);
    metrics::gauge!("tillsync_db_pool_size").set(state.db.pool().size() as f64);
    metrics::gauge!("tillsync_db_pool_idle").set(state.db.pool().num_idle() as f64);
    let text = state.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Puts every series whose labels are known in advance on the page, at 0,
/// so an alert on `rate(...)`, `increase(...)` or a gauge has a series to
/// read on a healthy service, before the first refusal or failure ever
/// happens. Called once, in the application's metrics scope.
pub fn export_known_series() {
    for reason in ["database_unavailable", "overloaded", "expired_in_queue"] {
        for priority in Priority::ALL {
            metrics::counter!("tillsync_requests_shed_total", "reason" => reason, "priority" => priority.as_str())
                .increment(0);
        }
    }
    for reason in ["rate_limited", "terminal_concurrency"] {
        metrics::counter!("tillsync_requests_shed_total", "reason" => reason, "priority" => "ingest")
            .increment(0);
    }
    for link_state in [LinkState::Ok, LinkState::Degraded, LinkState::Unavailable] {
        metrics::counter!("tillsync_db_state_changes_total", "to" => link_state.as_str())
            .increment(0);
    }
    metrics::counter!("tillsync_db_probe_failures_total").increment(0);
    metrics::counter!("tillsync_body_budget_refusals_total").increment(0);
    metrics::counter!("tillsync_connections_refused_total").increment(0);
    metrics::gauge!("tillsync_body_budget_used_bytes").set(0.0);
    metrics::gauge!("tillsync_connections_open").set(0.0);
    metrics::counter!("tillsync_db_primary_moves_total").increment(0);
    for result in ["accepted", "duplicate", "rejected"] {
        metrics::counter!("tillsync_sales_total", "result" => result).increment(0);
    }
    for job in Job::ALL {
        metrics::counter!("tillsync_background_led_elsewhere_total", "job" => job.as_str())
            .increment(0);
    }
    metrics::gauge!("tillsync_fold_caught_up_timestamp_seconds").set(0.0);
    for over in ["1d", "3d"] {
        metrics::gauge!("tillsync_terminals_silent", "over" => over).set(0.0);
    }
    for kind in ExceptionKind::ALL {
        metrics::gauge!("tillsync_exceptions_open", "kind" => kind.as_str()).set(0.0);
    }
    metrics::gauge!("tillsync_exceptions_oldest_open_seconds").set(0.0);
    metrics::counter!("tillsync_references_resolved_total").increment(0);
    metrics::counter!("tillsync_fold_skipped_total").increment(0);
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
