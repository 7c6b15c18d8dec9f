//! Per-terminal rate limit (GCRA, via `governor`): a till stuck in a retry
//! loop gets 429 `rate_limited` before it costs the database anything.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use super::AppState;
use super::auth::Principal;
use crate::error::{ApiError, ProblemCode};

#[derive(Clone)]
pub struct TerminalRateLimit {
    limiter: Option<Arc<DefaultKeyedRateLimiter<Uuid>>>,
}

impl TerminalRateLimit {
    /// `per_second` 0 switches the limit off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Arc::new(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self { limiter }
    }

    /// Forgets terminals that have been quiet long enough to be full again.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn check(&self, terminal_id: Uuid) -> Result<(), u32> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&terminal_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u32
        })
    }
}

pub async fn per_terminal(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(Principal::Terminal(till)) = request.extensions().get::<Principal>() {
        if let Err(retry_after_s) = state.rate_limit.check(till.terminal_id) {
            metrics::counter!("tillsync_requests_shed_total", "reason" => "rate_limited", "priority" => "ingest").increment(1);
            return ApiError::new(
                ProblemCode::RateLimited,
                "this terminal is sending more requests than its rate limit allows",
            )
            .retry_after(retry_after_s)
            .into_response();
        }
    }
    next.run(request).await
}
