//! Open exceptions, for the ops team's alert (`deploy/prometheus`): once a
//! minute, how many are open per kind, as `tillsync_exceptions_open{kind}`,
//! and how long the oldest open one has waited, as
//! `tillsync_exceptions_oldest_open_seconds`. An exception is a fact the
//! back office has to look at; one left open for days means nobody does.
//!
//! Fleet-wide, not per merchant (that would be one series per merchant on
//! every replica); `GET /v1/exceptions` names them. Every replica counts
//! and exports the same figures: alert on `max`.

use std::time::Duration;

use chrono::Utc;

use super::Job;
use crate::db::{Database, DbError, exceptions};
use crate::domain::exception::ExceptionKind;

/// How often the open exceptions are counted.
const COUNT_INTERVAL: Duration = Duration::from_secs(60);

/// The count as a background job.
#[derive(Debug, Default)]
pub struct OpenExceptions;

impl Job for OpenExceptions {
    const WHAT: &'static str = "count open exceptions";

    fn every(&self) -> Duration {
        COUNT_INTERVAL
    }

    async fn step(&mut self, db: &Database) -> Result<(), DbError> {
        let mut unit = db.unit().await?;
        let open = exceptions::open_by_kind(&mut unit).await?;
        unit.finish().await?;
        let now = Utc::now();
        for kind in ExceptionKind::ALL {
            let count = open
                .iter()
                .find(|(name, _, _)| name == kind.as_str())
                .map_or(0, |(_, count, _)| *count);
            metrics::gauge!("tillsync_exceptions_open", "kind" => kind.as_str()).set(count as f64);
        }
        let oldest = open.iter().map(|(_, _, since)| *since).min();
        let waited = oldest.map_or(0.0, |since| (now - since).num_seconds().max(0) as f64);
        metrics::gauge!("tillsync_exceptions_oldest_open_seconds").set(waited);
        Ok(())
    }
}
