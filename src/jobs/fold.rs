//! The background fold of the totals deltas into the store totals and the
//! till's day, hour, tender and tax totals ([`crate::db::totals`]), every
//! second, with a failure kept to the store it comes from. Reports add the
//! deltas not folded yet, so how often it runs bounds how many deltas they
//! read, not their accuracy.
//!
//! Pushes and the resolver only append deltas; the fold is the one writer
//! of the totals rows. When each push upserted its till's four totals rows
//! a push was seven row writes, and a second writer of those rows (the
//! resolver's reversals) made pushes wait on its row locks: at twice C,
//! goodput fell from 0.37 to 0.27 of C (docs/benchmarks.md, "Issue 26").
//!
//! The fold moves deltas a chunk at a time, one statement across every
//! merchant. A store whose totals cannot take its deltas (a sum beyond
//! `i64`, from amounts stored before the edge bounded them) used to fail
//! that statement for everyone, every second, for good. Now a chunk that
//! fails because of the data, not the database, is folded again one store
//! at a time, and a store that fails alone is skipped: logged with its ids,
//! counted in `tillsync_fold_skipped_total`, left out of the chunks, and
//! tried again alone after a wait that doubles each time it fails (30 s up
//! to 10 min), so it costs one statement per wait, not one per second. Its
//! deltas stay where they are and reports add them, so totals stay exact
//! (or say they cannot be given) while it waits.
//!
//! A failure of the database itself (link, contention) ends the tick, as
//! before; the next tick tries again.
//!
//! Every replica ticks, but only one folds at a time: each statement takes
//! the fold's lock first ([`crate::db::leader`]), and a replica that finds it held
//! ends its tick there, so folds never contend with each other.
//!
//! A tick that leaves no foldable delta behind records the time it did
//! (`tillsync_fold_caught_up_timestamp_seconds`): the fold-lag alert.
//!
//! Every 10 s ([`super::Vacuuming`]) the fold also vacuums the deltas table
//! ([`crate::db::vacuum`]). Its rows live about a second, so it churns
//! its whole content every second, and the fold reads it from the head of
//! its key, where the deleted rows are. Autovacuum's default thresholds
//! look at a table once a minute at best; with autovacuum off (this
//! project's CI machine) never. A 10-minute soak at 11 000 sales/s left
//! 641 000 dead deltas in front of 2 500 live ones, every fold and store
//! report walking past them, and the fold's lag growing with the run
//! (docs/benchmarks.md, "Issue 26").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::{Job, Vacuuming};
use crate::db::totals::{self, StoreKey};
use crate::db::vacuum::Churned;
use crate::db::{Database, DbError};

/// How often the deltas are folded into the totals.
const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// Store deltas moved per statement.
pub const FOLD_CHUNK: i64 = 5000;
/// Chunks one tick moves at most, so a tick ends under any inflow (20 chunks
/// a second is far beyond what ingest writes).
const MAX_CHUNKS_PER_TICK: usize = 20;
/// How long a skipped store waits before it is tried again; the wait
/// doubles at each failure, up to `LONGEST_WAIT`.
const FIRST_WAIT: Duration = Duration::from_secs(30);
const LONGEST_WAIT: Duration = Duration::from_secs(600);

/// The fold as a background job: a tick a second, with the stores it skips.
#[derive(Debug, Default)]
pub struct Fold {
    quarantine: Quarantine,
    vacuuming: Vacuuming,
}

impl Job for Fold {
    const WHAT: &'static str = "fold totals";

    fn every(&self) -> Duration {
        FOLD_INTERVAL
    }

    async fn step(&mut self, db: &Database) -> Result<(), DbError> {
        let mut conn = db.acquire().await?;
        tick(&mut conn, &mut self.quarantine, Instant::now()).await?;
        self.vacuuming
            .when_due(&mut conn, Churned::StoreDeltas)
            .await
    }
}

/// The stores the fold skips, and when each is tried again.
#[derive(Debug, Default)]
pub struct Quarantine {
    held: HashMap<StoreKey, Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    retry_at: Instant,
    wait: Duration,
}

impl Quarantine {
    /// Every store skipped now, to leave out of chunks.
    fn stores(&self) -> Vec<StoreKey> {
        self.held.keys().copied().collect()
    }

    /// The skipped stores whose wait is over at `now`.
    fn due(&self, now: Instant) -> Vec<StoreKey> {
        let mut due: Vec<StoreKey> = self
            .held
            .iter()
            .filter(|(_, held)| held.retry_at <= now)
            .map(|(store, _)| *store)
            .collect();
        due.sort();
        due
    }

    /// Skips `store` from `now` on; returns how long it waits. A store
    /// skipped again waits twice as long as the last time.
    fn hold(&mut self, store: StoreKey, now: Instant) -> Duration {
        let wait = match self.held.get(&store) {
            Some(held) => (held.wait * 2).min(LONGEST_WAIT),
            None => FIRST_WAIT,
        };
        self.held.insert(
            store,
            Held {
                retry_at: now + wait,
                wait,
            },
        );
        wait
    }

    /// Folds `store` with the rest again; true if it was skipped.
    fn release(&mut self, store: StoreKey) -> bool {
        self.held.remove(&store).is_some()
    }
}

/// Whether a failure says something about one store's data rather than
/// about the database: only then is that store skipped and the rest folded.
fn is_the_datas(error: &DbError) -> bool {
    matches!(error, DbError::OutOfRange(_) | DbError::Other(_))
}

/// One tick of the fold: skipped stores whose wait is over are tried alone,
/// then the deltas of every other store move in chunks.
pub async fn tick(
    conn: &mut PgConnection,
    quarantine: &mut Quarantine,
    now: Instant,
) -> Result<(), DbError> {
    for store in quarantine.due(now) {
        match totals::fold_deltas_of(conn, store, FOLD_CHUNK).await {
            Ok(None) => {
                led_elsewhere();
                return Ok(());
            }
            Ok(Some(_)) => {
                quarantine.release(store);
                tracing::info!(
                    merchant.id = %store.merchant_id, store.id = %store.store_id,
                    "store totals of store {} fold again", store.store_id
                );
            }
            Err(e) if is_the_datas(&e) => skip(quarantine, store, &e, now),
            Err(e) => return Err(e),
        }
    }
    let mut one_by_one = false;
    for _ in 0..MAX_CHUNKS_PER_TICK {
        match totals::fold_store_deltas(conn, FOLD_CHUNK, &quarantine.stores()).await {
            Ok(None) => {
                led_elsewhere();
                return Ok(());
            }
            Ok(Some(moved)) if moved < FOLD_CHUNK as u64 => {
                caught_up();
                return Ok(());
            }
            Ok(Some(_)) => {}
            // Once a tick: a chunk that fails again after its stores were
            // folded one by one waits for the next tick.
            Err(e) if is_the_datas(&e) && !one_by_one => {
                one_by_one = true;
                fold_one_by_one(conn, quarantine, now).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The stores of the next chunk, each folded in a statement of its own;
/// those that fail are skipped and the others are folded.
async fn fold_one_by_one(
    conn: &mut PgConnection,
    quarantine: &mut Quarantine,
    now: Instant,
) -> Result<(), DbError> {
    // In a transaction of its own, like every other statement of the fold:
    // behind a transaction pooler a statement outside one may be parsed on
    // one server connection and bound on another ([`crate::db::unit`]). This path
    // is rare, so the BEGIN and COMMIT cost nothing that matters.
    let mut tx = conn.begin().await?;
    let stores = totals::stores_with_deltas(&mut tx, FOLD_CHUNK, &quarantine.stores()).await?;
    tx.commit().await?;
    for store in stores {
        match totals::fold_deltas_of(conn, store, FOLD_CHUNK).await {
            Ok(None) => {
                led_elsewhere();
                return Ok(());
            }
            Ok(Some(_)) => {}
            Err(e) if is_the_datas(&e) => skip(quarantine, store, &e, now),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every delta that can be folded is: the time goes to
/// `tillsync_fold_caught_up_timestamp_seconds`, which the ops team's
/// fold-lag alert reads (the newest over every replica: only the one that
/// leads the fold sets it).
fn caught_up() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    metrics::gauge!("tillsync_fold_caught_up_timestamp_seconds").set(now.as_secs_f64());
}

/// Another replica folds now: this one ends its tick.
fn led_elsewhere() {
    tracing::debug!("another replica folds store totals now; tick skipped");
}

fn skip(quarantine: &mut Quarantine, store: StoreKey, error: &DbError, now: Instant) {
    let wait = quarantine.hold(store, now);
    metrics::counter!("tillsync_fold_skipped_total").increment(1);
    tracing::warn!(
        merchant.id = %store.merchant_id, store.id = %store.store_id, error = %error,
        retry_in_s = wait.as_secs(),
        "store totals of store {} cannot take its deltas; skipped, tried again in {} s",
        store.store_id, wait.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn store(n: u128) -> StoreKey {
        StoreKey {
            merchant_id: Uuid::from_u128(n),
            store_id: Uuid::from_u128(n + 100),
        }
    }

    #[test]
    fn a_skipped_store_waits_longer_each_time_it_fails_up_to_a_bound() {
        let mut quarantine = Quarantine::default();
        let start = Instant::now();
        let waits: Vec<u64> = (0..8)
            .map(|_| quarantine.hold(store(1), start).as_secs())
            .collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600, 600]);
    }

    #[test]
    fn a_skipped_store_is_due_again_only_after_its_wait_and_folds_once_released() {
        let mut quarantine = Quarantine::default();
        let start = Instant::now();
        quarantine.hold(store(1), start);
        quarantine.hold(store(2), start + Duration::from_secs(20));
        assert_eq!(quarantine.stores().len(), 2);
        assert!(quarantine.due(start + Duration::from_secs(29)).is_empty());
        assert_eq!(quarantine.due(start + Duration::from_secs(30)), [store(1)]);
        assert_eq!(
            quarantine.due(start + Duration::from_secs(50)),
            [store(1), store(2)]
        );
        assert!(quarantine.release(store(1)));
        assert!(!quarantine.release(store(1)));
        assert_eq!(quarantine.stores(), [store(2)]);
        assert_eq!(
            quarantine.hold(store(1), start).as_secs(),
            30,
            "released, it starts over"
        );
    }

    #[test]
    fn only_failures_of_the_data_skip_a_store() {
        let overflow = DbError::OutOfRange(sqlx::Error::Protocol("22003".into()));
        let link = DbError::Unavailable(sqlx::Error::PoolTimedOut);
        let collided = DbError::Contention(sqlx::Error::Protocol("40P01".into()));
        assert!(is_the_datas(&overflow));
        assert!(!is_the_datas(&link));
        assert!(!is_the_datas(&collided));
    }
}
