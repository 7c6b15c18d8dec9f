//! Per-terminal limits, before anything costs the database: a rate (GCRA,
//! via `governor`), so a till stuck in a retry loop gets 429 `rate_limited`,
//! and a count of requests in flight, so one till (or one leaked token)
//! opening many connections cannot take a fleet's share of the slots. A
//! till pushes its batches one at a time; a few in flight leave room for a
//! sync read beside a push and a retry whose first try is still finishing.
//!
//! The in-flight count is a map of counters written here: it is a few
//! lines, and no keyed-semaphore crate is in common use.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use super::auth::Principal;
use crate::error::{ApiError, ProblemCode};
use crate::http::AppState;

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

/// Requests in flight per terminal, at most `limit` each.
#[derive(Clone)]
pub struct TerminalConcurrency {
    limit: u32,
    in_flight: Arc<Mutex<HashMap<Uuid, u32>>>,
}

/// One request of a terminal in flight; dropping it ends it.
struct InFlight {
    counts: Arc<Mutex<HashMap<Uuid, u32>>>,
    terminal_id: Uuid,
}

impl TerminalConcurrency {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            in_flight: Arc::default(),
        }
    }

    fn counts(counts: &Mutex<HashMap<Uuid, u32>>) -> std::sync::MutexGuard<'_, HashMap<Uuid, u32>> {
        // Every update is one statement: a panic cannot leave it half done.
        counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, terminal_id: Uuid) -> Option<InFlight> {
        let mut counts = Self::counts(&self.in_flight);
        let count = counts.entry(terminal_id).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(InFlight {
            counts: self.in_flight.clone(),
            terminal_id,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = TerminalConcurrency::counts(&self.counts);
        if let Some(count) = counts.get_mut(&self.terminal_id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.terminal_id);
            }
        }
    }
}

fn refused(reason: &'static str, detail: &str, retry_after_s: u32) -> Response {
    metrics::counter!("tillsync_requests_shed_total", "reason" => reason, "priority" => "ingest")
        .increment(1);
    ApiError::new(ProblemCode::RateLimited, detail)
        .retry_after(retry_after_s)
        .into_response()
}

pub async fn per_terminal(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(Principal::Terminal(till)) = request.extensions().get::<Principal>() else {
        return next.run(request).await;
    };
    if let Err(retry_after_s) = state.rate_limit.check(till.terminal_id) {
        return refused(
            "rate_limited",
            "this terminal is sending more requests than its rate limit allows",
            retry_after_s,
        );
    }
    let Some(_in_flight) = state.terminal_concurrency.enter(till.terminal_id) else {
        return refused(
            "terminal_concurrency",
            "this terminal has as many requests in flight as it may; send the next when one is answered",
            1,
        );
    };
    next.run(request).await
}
