//! The admission step of the request path, after auth and the rate limit,
//! before the handler: the rest of the request runs as one piece of work
//! through the health layer ([`Gate::run`](crate::health::Gate::run)), at
//! the priority of its routes. A push is the exception: it is admitted by
//! the wait for its group's write
//! ([`Gate::run_grouped`](crate::health::Gate::run_grouped)), and its read
//! and its group's write each take a slot as they go ([`crate::ingest`]).
//! A refusal is answered here; the handler's answer tells the layer how the
//! database did, by its problem code.
//!
//! A till's push is live ingest or a backlog by the age of its newest sale
//! ([`push_priority`]), so live sales go first while a backlog drains. Its
//! age is known only once the body is read, so a push is judged twice: here
//! as it arrives, as live (nothing is spent reading a push the group queue
//! has no room for), and by its handler once its sales are parsed, as a
//! backlog with half the group wait ([`admit_backlog`]).
//!
//! Why not by size, as before: a busy till online sends large pushes too. A
//! soak of 300 tills pushing up to 100 fresh sales each saw most of its
//! pushes judged a backlog by size and shed (docs/benchmarks.md, issue 26).

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};

use super::arrival::Arrived;
use crate::error::{ApiError, ProblemCode};
use crate::health::{Judged, Priority, Refusal, Signal};
use crate::http::AppState;

/// A push whose newest sale occurred longer ago than this is a backlog
/// ([`Priority::Backlog`]). A till selling online pushes a sale within a
/// second or two of ringing it up, and its retries after a 503 add a
/// `Retry-After` of 1-2 s each; an offline queue replayed carries sales as
/// old as the outage, until the till has caught up. (A till whose clock runs
/// this far behind is judged a backlog too: only while the group queue is
/// between half and all of its bound, and nothing it sends is lost.)
pub const BACKLOG_AFTER: TimeDelta = TimeDelta::seconds(10);

pub async fn ingest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        // `GET /v1/sync`: a till asking what it still has to send, live.
        return admit(&state, Priority::Ingest, request, next).await;
    }
    // A push takes no slot of its own: it is admitted by the wait for its
    // group, and its read and its group's write take slots as they go.
    let arrived = Arrived::of(&request);
    let group_wait = state.ingest.group_wait();
    state
        .gate
        .run_grouped(Priority::Ingest, arrived, group_wait, next.run(request))
        .await
        .unwrap_or_else(|refusal| ApiError::from(refusal).into_response())
}

/// The second look at a push, once its sales are parsed: a backlog
/// ([`push_priority`]) may join the group queue only with half the wait a
/// live push may ([`Gate::admit_to_group`](crate::health::Gate::admit_to_group)).
/// Returns the priority its database work runs at.
pub fn admit_backlog(
    state: &AppState,
    newest_sale: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Priority, Refusal> {
    let priority = push_priority(newest_sale, now);
    if priority == Priority::Backlog {
        state
            .gate
            .admit_to_group(priority, state.ingest.group_wait())?;
    }
    Ok(priority)
}

/// Live, or a backlog when even its newest sale occurred more than
/// [`BACKLOG_AFTER`] ago. A push without a valid sale (only rejections or
/// skipped seqs) is live: it costs its group next to nothing.
fn push_priority(newest_sale: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Priority {
    match newest_sale {
        Some(occurred) if now - occurred > BACKLOG_AFTER => Priority::Backlog,
        _ => Priority::Ingest,
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
    use super::*;

    #[test]
    fn a_push_is_a_backlog_when_even_its_newest_sale_is_older_than_the_bound() {
        let now = Utc::now();
        assert_eq!(push_priority(Some(now), now), Priority::Ingest);
        let at_bound = now - BACKLOG_AFTER;
        assert_eq!(push_priority(Some(at_bound), now), Priority::Ingest);
        let older = at_bound - TimeDelta::milliseconds(1);
        assert_eq!(push_priority(Some(older), now), Priority::Backlog);
        // A till's clock ahead of the server's, or a push of rejections only.
        let ahead = now + TimeDelta::minutes(5);
        assert_eq!(push_priority(Some(ahead), now), Priority::Ingest);
        assert_eq!(push_priority(None, now), Priority::Ingest);
    }
}
