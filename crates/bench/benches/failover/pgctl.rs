//! The fast variant (`DRILL_HA=pg_ctl`): the drill plays the HA tool. A
//! primary and a standby made with the test kit's clusters (synchronous,
//! or asynchronous with `DRILL_REPLICATION=async`), the primary stopped
//! with `pg_ctl stop -m immediate` and, after the delay an HA tool would
//! take to decide (`DRILL_PROMOTE_AFTER_MS`), the standby promoted with
//! `pg_ctl promote`. The same clusters and calls as `tests/api/failover.rs`.

use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::task::block_in_place;

use tillsync_testkit::cluster::{Cluster, Scratch};

use crate::Failover;

/// A new primary, started (blocking). The [`Pair`] borrows it: the test
/// kit's standby borrows its primary.
pub fn primary(scratch: &Scratch) -> Cluster<'_> {
    block_in_place(|| scratch.primary("primary"))
}

/// A primary and its standby, running.
pub struct Pair<'p> {
    primary: &'p Cluster<'p>,
    standby: Cluster<'p>,
    synchronous: bool,
}

impl<'p> Pair<'p> {
    /// Starts a standby of `primary`; with `synchronous`, waits until it
    /// counts as synchronous.
    pub async fn start(primary: &'p Cluster<'p>, synchronous: bool) -> Self {
        let standby = block_in_place(|| primary.standby("standby"));
        if synchronous {
            primary.make_synchronous().await;
        }
        Self {
            primary,
            standby,
            synchronous,
        }
    }

    /// libpq's multi-host form, as `pg_autoctl show uri` prints it.
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/tillsync?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }

    /// At `kill_at` after `started`, stops the primary; `promote_after`
    /// later, promotes the standby. An asynchronous standby is first cut
    /// off from the primary `cut_before` the kill, and the sales it then
    /// lacks are counted.
    pub async fn fail_over(
        &self,
        started: Instant,
        kill_at: Duration,
        promote_after: Duration,
        cut_before: Duration,
    ) -> Failover {
        let mut lines = Vec::new();
        if !self.synchronous {
            tokio::time::sleep(kill_at.saturating_sub(cut_before + started.elapsed())).await;
            // The standby stops receiving WAL: what the primary acknowledges
            // from now on is not on it.
            self.standby.cut_off_from_primary().await;
            tokio::time::sleep(kill_at.saturating_sub(started.elapsed())).await;
            let behind = sales_behind(self.primary, &self.standby).await;
            lines.push(format!(
                "asynchronous standby: {behind} sales committed on the primary were not on the standby when it was killed"
            ));
        }
        tokio::time::sleep(kill_at.saturating_sub(started.elapsed())).await;
        block_in_place(|| self.primary.stop());
        let killed = Instant::now();
        println!("primary killed at {:.1} s", started.elapsed().as_secs_f64());
        tokio::time::sleep(promote_after).await;
        let asked = Instant::now();
        block_in_place(|| self.standby.promote());
        let promoted = Instant::now();
        println!(
            "standby promoted {} ms after the kill",
            promoted.duration_since(killed).as_millis()
        );
        Failover {
            killed,
            promoted,
            lines,
            summary: vec![
                ("detect_ms", promote_after.as_millis().to_string()),
                (
                    "promote_ms",
                    promoted.duration_since(asked).as_millis().to_string(),
                ),
            ],
        }
    }
}

/// Sales stored on the primary that the standby lacks.
async fn sales_behind(primary: &Cluster<'_>, standby: &Cluster<'_>) -> i64 {
    let mut count = 0;
    for (cluster, sign) in [(primary, 1), (standby, -1)] {
        let mut conn = PgConnection::connect(&cluster.url("tillsync"))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("select count(*) from sales")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        count += sign * n;
        let _ = conn.close().await;
    }
    count
}
