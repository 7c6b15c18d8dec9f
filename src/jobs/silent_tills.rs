//! Tills gone silent, for the ops team's alert (`deploy/prometheus`): once
//! a minute, the count of tills (every merchant's, not revoked) that have
//! pushed before and have not pushed for a day, and for three days, as
//! `tillsync_terminals_silent{over="1d"|"3d"}`.
//!
//! A till that stops pushing may be holding a day of sales in its offline
//! queue, or may have been taken out of service without being revoked:
//! either way someone should look. The count is fleet-wide, not a series
//! per till (that would be one series per till on every replica);
//! `GET /v1/terminals` names them. Every replica counts (one short read a
//! minute each) and exports the same figure: alert on `max`.
//!
//! Through the health layer at background priority: a sick database only
//! delays the count, and the last figure stays on the page meanwhile.

use std::time::Duration;

use super::Job;
use crate::db::{Database, DbError, tenancy};

/// How often the silent tills are counted.
const COUNT_INTERVAL: Duration = Duration::from_secs(60);

/// The count as a background job.
#[derive(Debug, Default)]
pub struct SilentTills;

impl Job for SilentTills {
    const WHAT: &'static str = "count silent tills";

    fn every(&self) -> Duration {
        COUNT_INTERVAL
    }

    async fn step(&mut self, db: &Database) -> Result<(), DbError> {
        let mut unit = db.unit().await?;
        let silent = tenancy::silent_terminals(&mut unit).await?;
        unit.finish().await?;
        metrics::gauge!("tillsync_terminals_silent", "over" => "1d").set(silent.over_1d as f64);
        metrics::gauge!("tillsync_terminals_silent", "over" => "3d").set(silent.over_3d as f64);
        Ok(())
    }
}
