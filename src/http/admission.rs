//! The admission step of the request path, after auth and the rate limit,
//! before the handler: the rest of the request runs as one piece of work
//! through the health layer (`Gate::run`), at the priority of its routes.
//! A refusal is answered here; the handler's answer tells the layer how the
//! database did, by its problem code.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::arrival::Arrived;
use crate::error::{ApiError, ProblemCode};
use crate::health::{Judged, Priority, Signal};

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
    let arrived = Arrived::of(&request);
    state
        .gate
        .run(priority, arrived, next.run(request))
        .await
        .unwrap_or_else(|refusal| ApiError::from(refusal).into_response())
}

/// What an answer says about the database: problems that speak of load or
/// link trouble teach the limit; client errors and bugs say nothing.
impl Judged for Response {
    fn signal(&self) -> Signal {
        match self.extensions().get::<ProblemCode>() {
            Some(ProblemCode::DatabaseUnavailable | ProblemCode::DeadlineExceeded) => {
                Signal::LinkFailure
            }
            Some(ProblemCode::Contention) => Signal::Contended,
            _ if self.status().is_server_error() => Signal::Silent,
            _ if self.status() == StatusCode::TOO_MANY_REQUESTS => Signal::Silent,
            _ => Signal::Healthy,
        }
    }
}
