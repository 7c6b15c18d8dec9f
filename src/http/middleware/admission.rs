//! The admission step of the request path, after auth and the rate limit,
//! before the handler: the rest of the request runs as one piece of work
//! through the health layer ([`Gate::run`](crate::health::Gate::run)), at
//! the priority of its routes. A push is the exception: it is admitted by
//! the wait for its group's write
//! ([`Gate::run_grouped`](crate::health::Gate::run_grouped)), and its read
//! and its group's write each take a slot as they go ([`crate::ingest`]).
//! A refusal is answered here; the handler's answer tells the layer how the
//! database did, by its problem code. A till's push is live ingest or a
//! backlog by its size: live sales go first while a backlog drains.

use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::arrival::Arrived;
use crate::error::{ApiError, ProblemCode};
use crate::health::{Judged, Priority, Signal};
use crate::http::AppState;

/// The largest push body still served as live ingest; larger ones are a
/// backlog ([`Priority::Backlog`]). About 15 sales shaped as the simulator
/// makes them (three lines, one tender, some 500 bytes each): more than a
/// till selling online sends at once, far less than an offline queue
/// replayed in batches of up to 500.
pub const LIVE_PUSH_MAX_BYTES: u64 = 8 * 1024;

pub async fn ingest(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let priority = ingest_priority(&request);
    if request.method() != Method::POST {
        return admit(&state, priority, request, next).await;
    }
    // A push takes no slot of its own: it is admitted by the wait for its
    // group, and its read and its group's write take slots as they go.
    let arrived = Arrived::of(&request);
    request.extensions_mut().insert(priority);
    let group_wait = state.ingest.group_wait();
    state
        .gate
        .run_grouped(priority, arrived, group_wait, next.run(request))
        .await
        .unwrap_or_else(|refusal| ApiError::from(refusal).into_response())
}

/// Live or backlog, told apart by the declared body size before the body
/// is read (admission comes before the handler). A push of unknown size
/// (chunked) counts as a backlog; reads (`GET /v1/sync`) are live.
fn ingest_priority(request: &Request) -> Priority {
    if request.method() == Method::GET {
        return Priority::Ingest;
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(bytes) if bytes <= LIVE_PUSH_MAX_BYTES => Priority::Ingest,
        _ => Priority::Backlog,
    }
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

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn push_of(declared: Option<u64>) -> Request {
        let mut builder = Request::post("/v1/sales/batches");
        if let Some(bytes) = declared {
            builder = builder.header(CONTENT_LENGTH, bytes);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn small_pushes_and_sync_reads_are_live_and_large_or_unsized_pushes_a_backlog() {
        assert_eq!(ingest_priority(&push_of(Some(600))), Priority::Ingest);
        assert_eq!(
            ingest_priority(&push_of(Some(LIVE_PUSH_MAX_BYTES))),
            Priority::Ingest
        );
        assert_eq!(
            ingest_priority(&push_of(Some(LIVE_PUSH_MAX_BYTES + 1))),
            Priority::Backlog
        );
        assert_eq!(ingest_priority(&push_of(None)), Priority::Backlog);
        let sync = Request::get("/v1/sync").body(Body::empty()).unwrap();
        assert_eq!(ingest_priority(&sync), Priority::Ingest);
    }
}
