//! The failover under pg_auto_failover (`DRILL_HA=pg_auto_failover`):
//! the primary's node killed, then watched from two sides until the
//! standby takes writes: the drill's own view of the standby (a fresh
//! session every 50 ms, as a client with `target_session_attrs=read-write`
//! would open one), and the monitor's log of state changes
//! (`pgautofailover.event`). The first gives the instant the drill
//! measures the replicas from; the second says where the time went.

use std::time::{Duration, Instant, SystemTime};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};
use tokio::task::block_in_place;

use crate::Failover;
use crate::autofailover::Formation;

/// Time between two looks at the standby.
const EVERY: Duration = Duration::from_millis(50);
/// How long the standby may take to become writable before the drill
/// gives up.
const PATIENCE: Duration = Duration::from_secs(180);

/// At `kill_at` after `started`, kills the primary's node, and returns
/// once the standby takes writes, with the steps between.
pub async fn fail_over(
    formation: &mut Formation<'_>,
    started: Instant,
    kill_at: Duration,
) -> Failover {
    let (old, new, standby_url) = {
        let (primary, standby) = formation.primary_and_standby().await;
        let (names, states) = formation.replication(primary).await;
        println!(
            "before the kill: {} is primary, synchronous_standby_names = {names}, its standby's sync_state: {states}",
            primary.name
        );
        assert!(
            !names.is_empty() && (states == "quorum" || states == "sync"),
            "the standby is not synchronous: a 200 would not mean committed on both"
        );
        (primary.name, standby.name, standby.url("postgres"))
    };
    tokio::time::sleep(kill_at.saturating_sub(started.elapsed())).await;
    let (killed, killed_at) = block_in_place(|| formation.kill(old));
    println!(
        "primary {old} killed at {:.1} s (every process of its node, keeper included: SIGKILL)",
        started.elapsed().as_secs_f64()
    );
    let promotion = watch_standby(&standby_url).await;
    let since_kill =
        |at: Instant| i64::try_from(at.duration_since(killed).as_millis()).unwrap_or(i64::MAX);
    let (promoted_ms, writable_ms) = (
        since_kill(promotion.promoted),
        since_kill(promotion.writable),
    );
    println!(
        "standby {new}: out of recovery (read-only) {promoted_ms} ms after the kill, read-write {writable_ms} ms after it"
    );
    // The keeper reports wait_primary right after it made the standby
    // writable: give the monitor a moment to log it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let since = killed_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let steps = steps(
        &events(&formation.monitor.url("pg_auto_failover"), since).await,
        killed_at,
        old,
        new,
    );
    let lines = vec![format!(
        "pg_auto_failover: primary given up by the health checks {}, failover decided {}, standby promoted read-only {}, \
         wait_primary reported {} after the kill; writable as the drill saw it {writable_ms} ms after the kill",
        ms(steps.unhealthy_ms),
        ms(steps.decided_ms),
        ms(steps.stop_replication_ms),
        ms(steps.wait_primary_ms),
    )];
    let summary = vec![
        (
            "detect_ms",
            steps.decided_ms.map_or("-".into(), |v| v.to_string()),
        ),
        (
            "promote_ms",
            steps
                .decided_ms
                .map_or("-".into(), |d| (writable_ms - d).to_string()),
        ),
        ("kill_to_writable_ms", writable_ms.to_string()),
        (
            "unhealthy_ms",
            steps.unhealthy_ms.map_or("-".into(), |v| v.to_string()),
        ),
        (
            "read_only_ms",
            steps
                .stop_replication_ms
                .map_or("-".into(), |v| v.to_string()),
        ),
    ];
    Failover {
        killed,
        promoted: promotion.writable,
        lines,
        summary,
    }
}

/// When the standby stopped being one, and when it took writes.
pub struct Promotion {
    /// `pg_is_in_recovery()` turned false: promoted, but still refusing
    /// writes (pg_auto_failover's `stop_replication` sets
    /// `default_transaction_read_only`).
    pub promoted: Instant,
    /// A new session is read-write: what `target_session_attrs=read-write`
    /// and tillsync's pool look for.
    pub writable: Instant,
}

/// Looks at the standby at `url` until a new session on it is read-write.
pub async fn watch_standby(url: &str) -> Promotion {
    let started = Instant::now();
    let mut promoted = None;
    loop {
        if let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(1), PgConnection::connect(url)).await
        {
            let state: Result<(bool, String), _> = sqlx::query_as(
                "select pg_is_in_recovery(), current_setting('transaction_read_only')",
            )
            .fetch_one(&mut conn)
            .await;
            let _ = conn.close().await;
            if let Ok((in_recovery, read_only)) = state {
                let now = Instant::now();
                if !in_recovery {
                    let promoted = *promoted.get_or_insert(now);
                    if read_only == "off" {
                        return Promotion {
                            promoted,
                            writable: now,
                        };
                    }
                }
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the standby was not writable {PATIENCE:?} after the kill"
        );
        tokio::time::sleep(EVERY).await;
    }
}

/// The failover's steps as the monitor logged them, in milliseconds after
/// the kill (`killed`, wall clock).
#[derive(Default)]
pub struct Steps {
    /// The health checks gave the primary up.
    pub unhealthy_ms: Option<i64>,
    /// The monitor decided to fail over (primary `draining`, standby
    /// `prepare_promotion`): detection.
    pub decided_ms: Option<i64>,
    /// The standby reported `stop_replication`: promoted, read-only.
    pub stop_replication_ms: Option<i64>,
    /// The standby reported `wait_primary`: taking writes.
    pub wait_primary_ms: Option<i64>,
}

/// Reads the steps out of the monitor's events, and prints those since
/// the kill.
pub fn steps(events: &[Event], killed: SystemTime, old_primary: &str, standby: &str) -> Steps {
    let killed_s = killed
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let after = |event: &Event| ((event.at_epoch_s - killed_s) * 1000.0).round() as i64;
    let mut steps = Steps::default();
    println!("pg_auto_failover's events since the kill (ms after it):");
    for event in events {
        let at = after(event);
        println!(
            "  {at:>+7} ms  {:<6} {:>17} -> {:<17} {}",
            event.node, event.reported, event.goal, event.description
        );
        let on = |node: &str| event.node == node;
        if on(old_primary) && event.description.contains("marked as unhealthy") {
            steps.unhealthy_ms.get_or_insert(at);
        }
        if on(standby) && event.goal == "prepare_promotion" {
            steps.decided_ms.get_or_insert(at);
        }
        if on(standby) && event.reported == "stop_replication" {
            steps.stop_replication_ms.get_or_insert(at);
        }
        if on(standby) && event.reported == "wait_primary" {
            steps.wait_primary_ms.get_or_insert(at);
        }
    }
    steps
}

/// `1234 ms`, or `-` when the step was not seen.
pub fn ms(value: Option<i64>) -> String {
    value.map_or("-".into(), |v| format!("{v} ms"))
}

/// One row of the monitor's `pgautofailover.event`.
pub struct Event {
    pub at_epoch_s: f64,
    pub node: String,
    pub reported: String,
    pub goal: String,
    pub description: String,
}

/// The monitor's log of state changes since `since` (epoch seconds).
async fn events(monitor: &str, since: f64) -> Vec<Event> {
    let mut conn = PgConnection::connect(monitor).await.unwrap();
    let rows = sqlx::query(
        "select extract(epoch from eventtime)::float8, nodename, reportedstate::text,
                goalstate::text, description
         from pgautofailover.event where eventtime >= to_timestamp($1) order by eventid",
    )
    .bind(since)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    rows.iter()
        .map(|row| Event {
            at_epoch_s: row.get(0),
            node: row.get(1),
            reported: row.get(2),
            goal: row.get(3),
            description: row.get(4),
        })
        .collect()
}
