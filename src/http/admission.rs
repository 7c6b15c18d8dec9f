//! The admission step of the request path: after auth and the rate limit,
//! before the handler. It asks the health layer for a slot, runs the rest of
//! the request under its deadline, and tells the layer how it ended so the
//! concurrency limit and the link state learn from real traffic.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::observe::Arrived;
use crate::error::{ApiError, ProblemCode};
use crate::health::admission::{Outcome, Priority};
use crate::health::{Interrupted, Refusal};

pub async fn ingest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    admit(&state, Priority::Ingest, request, next).await
}

pub async fn admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    admit(&state, Priority::Admin, request, next).await
}

pub async fn report(State(state): State<AppState>, request: Request, next: Next) -> Response {
    admit(&state, Priority::Report, request, next).await
}

async fn admit(state: &AppState, priority: Priority, request: Request, next: Next) -> Response {
    let mut admitted = match state.gate.admit(priority, Arrived::of(&request)).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal_response(refusal),
    };
    // Query latency is timed here, around the whole admitted section, not
    // per statement: every database-bound route passes this point (ingest,
    // provisioning, reports), it is the time the request holds a slot of the
    // adaptive limit (the latency the limit itself reacts to), and it needs
    // no timer in each repository function. It includes the acquire (also
    // recorded alone as `tillsync_db_acquire_seconds`) and the handler's own
    // parsing, which is small next to the round trips.
    let started = Instant::now();
    let response = match admitted.run(next.run(request)).await {
        Ok(response) => response,
        Err(interrupted) => interrupted_error(state, interrupted).into_response(),
    };
    metrics::histogram!("tillsync_db_query_seconds", "priority" => priority.as_str())
        .record(started.elapsed().as_secs_f64());
    let (outcome, link_failure) = judge(&response);
    state.gate.finish(admitted, outcome, link_failure);
    response
}

/// The answer for admitted work cut short; a retry is safe either way.
pub fn interrupted_error(state: &AppState, interrupted: Interrupted) -> ApiError {
    let retry_after_s = state.gate.retry_after_hint();
    match interrupted {
        Interrupted::DeadlineExceeded => ApiError::deadline_exceeded(retry_after_s),
        Interrupted::LinkDown => ApiError::unavailable_for(retry_after_s),
    }
}

pub fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Unavailable { retry_after_s } => ApiError::unavailable_for(retry_after_s),
        Refusal::Overloaded { retry_after_s } => ApiError::overloaded(retry_after_s),
    }
}

pub fn refusal_response(refusal: Refusal) -> Response {
    refusal_error(refusal).into_response()
}

/// What a response says about the database: failures that speak of load
/// or link trouble shrink the limit; client errors say nothing.
fn judge(response: &Response) -> (Outcome, bool) {
    let code = response.extensions().get::<ProblemCode>().copied();
    match code {
        Some(ProblemCode::DatabaseUnavailable | ProblemCode::DeadlineExceeded) => {
            (Outcome::Failure, true)
        }
        Some(ProblemCode::Contention) => (Outcome::Failure, false),
        _ if response.status().is_server_error() => (Outcome::Ignore, false),
        _ if response.status() == StatusCode::TOO_MANY_REQUESTS => (Outcome::Ignore, false),
        _ => (Outcome::Success, false),
    }
}
