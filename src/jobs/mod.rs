//! Background work: every job of the service, and the one loop they all run
//! in. A job is a [`Job`]: a step, and how often it runs. [`spawn`] runs
//! its steps through the health layer at background priority, so a sick or
//! busy database only delays a job, and the limit does not learn from it
//! (see [`Priority::Background`]).
//!
//! The jobs:
//! - [`fold`]: store deltas folded into store totals, every second;
//! - [`resolve`]: voids and refunds resolved with their sale, every second;
//! - [`open_exceptions`]: the count of open exceptions, every minute;
//! - [`purge`]: stored batch responses past retention, every ten minutes;
//! - [`silent_tills`]: the count of tills gone silent, every minute;
//! - [`server_settings`]: the server's timeouts read back through the pool,
//!   every minute.
//!
//! Jobs that only one replica should run at a time (the fold, the purge,
//! the resolver) take their lock in the database ([`crate::db::leader`]). Jobs know no
//! HTTP state; in-memory housekeeping of the request path is handed in as a
//! closure ([`spawn_housekeeping`]). The health probe is not here: it is
//! the health layer's own ([`crate::health`]).

pub mod fold;
pub mod open_exceptions;
pub mod purge;
pub mod resolve;
pub mod server_settings;
pub mod silent_tills;

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::PgConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::vacuum::{Churned, vacuum};
use crate::db::{Database, DbError};
use crate::health::{Gate, Priority, Refusal};

/// How soon a step that failed or was put off is tried again, at most. At
/// start the health layer refuses background work until its first probe
/// answers: a job that runs once a minute should not wait a minute more.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// How often a job that empties a table as it goes (the fold, the
/// resolver) vacuums it ([`crate::db::vacuum`]): short enough that the rows
/// it deleted since are a few seconds' worth.
const VACUUM_EVERY: Duration = Duration::from_secs(10);

/// When a job last vacuumed the table it empties as it goes.
#[derive(Debug, Default)]
pub struct Vacuuming {
    last: Option<Instant>,
}

impl Vacuuming {
    /// Vacuums `table` on `conn` if `VACUUM_EVERY` has passed since the
    /// last time (at once the first time).
    pub async fn when_due(
        &mut self,
        conn: &mut PgConnection,
        table: Churned,
    ) -> Result<(), DbError> {
        let now = Instant::now();
        if self.last.is_some_and(|at| now - at < VACUUM_EVERY) {
            return Ok(());
        }
        self.last = Some(now);
        vacuum(conn, table).await
    }
}

/// A piece of background work that runs a step at a time: one `every`
/// after the last, and sooner after one that failed or was put off
/// (`RETRY_AFTER_FAILURE`).
pub trait Job: Send + 'static {
    /// What a step does, for logs: "fold totals".
    const WHAT: &'static str;

    /// How long after a step the next one runs.
    fn every(&self) -> Duration;

    /// One step. Its own success is its to report; a failure is logged by
    /// the loop.
    fn step(&mut self, db: &Database) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Whether the last step left due work behind (it took as much as one
    /// step may): then the next runs at once instead of `every` later,
    /// still through the gate, so under load it waits its turn like any
    /// background work. A job whose work can come faster than one step a
    /// period handles says so here, or it falls behind for good.
    fn behind(&self) -> bool {
        false
    }
}

/// Runs `job` until `stopping`: a step at once, then one `every` after the
/// last ended (at once after one that left work behind, at most
/// `RETRY_AFTER_FAILURE` after one that failed or was put off).
pub fn spawn<J: Job>(
    mut job: J,
    db: Database,
    gate: Gate,
    stopping: CancellationToken,
) -> JoinHandle<()> {
    crate::metrics::spawn(async move {
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stopping.cancelled() => return,
            }
            let ran = gate
                .run(Priority::Background, Instant::now(), job.step(&db))
                .await;
            match &ran {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not {}; will retry", J::WHAT),
                Err(refusal) => tracing::debug!(?refusal, "{} put off", J::WHAT),
            }
            wait = wait_after(&ran, job.every(), job.behind());
        }
    })
}

/// How long the loop waits after a step that ended as `ran`, for a job
/// that runs `every` and may have said it is `behind`.
fn wait_after(
    ran: &Result<Result<(), DbError>, Refusal>,
    every: Duration,
    behind: bool,
) -> Duration {
    match ran {
        Ok(Ok(())) if behind => Duration::ZERO,
        Ok(Ok(())) => every,
        Ok(Err(_)) | Err(_) => every.min(RETRY_AFTER_FAILURE),
    }
}

/// Runs `tidy` every `every` until `stopping`: upkeep of in-memory state
/// that touches no database (the per-terminal rate limits, the metrics
/// exporter's upkeep).
pub fn spawn_housekeeping(
    every: Duration,
    stopping: CancellationToken,
    mut tidy: impl FnMut() + Send + 'static,
) -> JoinHandle<()> {
    crate::metrics::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => tidy(),
                () = stopping.cancelled() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_step_that_left_work_behind_is_followed_at_once_and_a_failed_one_soon() {
        assert_eq!(wait_after(&Ok(Ok(())), MINUTE, false), MINUTE);
        assert_eq!(wait_after(&Ok(Ok(())), MINUTE, true), Duration::ZERO);
        let failed = Ok(Err(DbError::Unavailable(sqlx::Error::PoolTimedOut)));
        assert_eq!(wait_after(&failed, MINUTE, true), RETRY_AFTER_FAILURE);
        assert_eq!(
            wait_after(&Err(Refusal::Overloaded), MINUTE, false),
            RETRY_AFTER_FAILURE
        );
        let second = Duration::from_secs(1);
        assert_eq!(wait_after(&Err(Refusal::Overloaded), second, false), second);
    }
}
