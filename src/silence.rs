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

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::db::tenancy;
use crate::health::Priority;
use crate::http::AppState;

/// How often the silent tills are counted.
const COUNT_INTERVAL: Duration = Duration::from_secs(60);

/// Counts silent tills every minute until `stopping`.
pub async fn watch(state: AppState, stopping: CancellationToken) {
    let mut every = tokio::time::interval(COUNT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopping.cancelled() => return,
        }
        let count = async {
            let mut unit = state.db.unit().await?;
            let silent = tenancy::silent_terminals(&mut unit).await?;
            unit.finish().await?;
            Ok::<_, crate::db::DbError>(silent)
        };
        match state
            .gate
            .run(Priority::Background, Instant::now(), count)
            .await
        {
            Ok(Ok(silent)) => {
                metrics::gauge!("tillsync_terminals_silent", "over" => "1d")
                    .set(silent.over_1d as f64);
                metrics::gauge!("tillsync_terminals_silent", "over" => "3d")
                    .set(silent.over_3d as f64);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not count silent tills; will retry"),
            Err(refusal) => tracing::debug!(?refusal, "count of silent tills put off"),
        }
    }
}
