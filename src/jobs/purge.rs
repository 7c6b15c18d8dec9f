//! The purge of stored batch responses past retention
//! (`TILLSYNC_IDEMPOTENCY_RETENTION`), every ten minutes. It deletes in
//! chunks, and only on the replica that leads it ([`crate::db::leader`]):
//! see [`idempotency::purge_older_than`]. Once a response is purged, a
//! replay of its push is answered by the per-sale deduplication.

use std::time::Duration;

use super::Job;
use crate::db::{Database, DbError, idempotency};

/// How often the purge runs.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// The purge as a background job.
#[derive(Debug)]
pub struct Purge {
    /// How long a stored response is kept.
    pub retention: Duration,
}

impl Job for Purge {
    const WHAT: &'static str = "purge stored batch responses";

    fn every(&self) -> Duration {
        PURGE_INTERVAL
    }

    async fn step(&mut self, db: &Database) -> Result<(), DbError> {
        let mut conn = db.acquire().await?;
        let purged = idempotency::purge_older_than(&mut conn, self.retention).await?;
        if purged > 0 {
            tracing::info!(
                purged,
                "purged {purged} stored batch responses past retention"
            );
        }
        Ok(())
    }
}
