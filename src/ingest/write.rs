//! Step 3 of a push, the write, with group commit: the writes of pushes
//! that are ready at the same moment, from any tills, go to Postgres
//! together, in one call of `ingest_write_group` ([`db_push::write_group`];
//! the function is in `src/db/schema.sql`): one round trip and one commit
//! (one WAL flush) for the group instead of one per push. The call writes
//! the whole group in one statement, and push by push (each in a block of
//! its own) only when one of them cannot be written, so each push still
//! succeeds or fails on its own and gets its own answer.
//!
//! There is no waiting for a group to fill: one of the committer's writers
//! takes whatever is queued once it is free. A lone push goes alone at
//! once; under load, pushes queue while the groups in flight commit, so
//! groups grow with the load and the commits per second stay flat: goodput
//! rises with load instead of the database drowning in tiny transactions.
//! This is the idea of Postgres's own `commit_delay` and of a Kafka
//! producer's batches, written here because it has to know what a push is
//! (its answer, its retry); no crate does it for sqlx.
//!
//! Each writer keeps its connection from one group to the next while pushes
//! keep coming ([`Kept`]): handing it back to the pool and taking it
//! again cost two round trips a group, as many as the group's write.
//!
//! A group also stops growing at `MAX_GROUP_SALES`, so the pushes queued
//! behind a group of large backlog batches (an offline queue replayed after
//! an outage) wait for tens of milliseconds, not most of a second: a till
//! selling now gets its answer while the backlog drains. (Two lanes, live
//! pushes always first, were tried: under ten times the load the backlog
//! starved and held the admitted slots; docs/benchmarks.md.)
//!
//! Within a group, pushes are written in (merchant, terminal) order, so two
//! groups in flight take their sync-row locks in the same order and cannot
//! deadlock on them. Two pushes of one till in one group are fine: the
//! second finds the sync row changed, is reported as contention, and its
//! request reads again.
//!
//! A request that goes away while its push waits here changes nothing: the
//! group is written or not, and a replay of the push finds out which.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::db::push::{self as db_push, PushRow};
use crate::db::unit::Kept;
use crate::db::{Database, DbError};

/// Most pushes in one group: written push by push (when one of them cannot
/// be written), each is a subtransaction, and Postgres keeps up to 64 of a
/// transaction's in shared memory before every snapshot of every other
/// session gets slower.
const MAX_GROUP: usize = 32;

/// A group takes no further push once it holds this many sales (the push
/// that crosses it is the last; one push alone holds up to the API's 500).
/// A stored sale costs about 60 us of Postgres time on the development
/// machine (the ingest grid at batch 100: 1.19 cores for 19 600 sales/s), so
/// a group stays near 60 ms; 32 backlog batches of 500 would take about a
/// second, and every live push queued behind them would wait for it.
const MAX_GROUP_SALES: usize = 1000;

/// Groups being written at once. While they are in flight the next group
/// fills; more than two would only split the load into smaller groups
/// (measured: four in flight were slower, docs/benchmarks.md). With kept
/// connections, one, three and four writers gave the same pushes/s as two
/// at 8 and 64 tills within the runs' noise; one used less Postgres CPU.
const GROUPS_IN_FLIGHT: usize = 2;

/// A writer with no group to write for this long hands its connection back
/// to the pool: a quiet fleet leaves the pool's connections to requests.
/// Shorter than the idle time after which the pool pings a connection
/// before handing it out (1 s: [`Database::connect_lazy`]), so a kept
/// connection is never used after a longer silence than a pooled one.
const KEEP_WHILE_IDLE: Duration = Duration::from_millis(500);

/// Pushes queued for the committer at most; past that a push waits to
/// queue (its request's deadline still bounds it).
const QUEUE: usize = 1024;

/// One push waiting for its group.
struct Job {
    row: PushRow,
    done: oneshot::Sender<Result<(), DbError>>,
}

/// The handle requests queue their writes on.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer task; it ends when every handle is dropped.
    pub fn spawn(db: Database) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        crate::metrics::spawn(run(db, jobs));
        Self { queue }
    }

    /// Writes a push with whatever group it falls into.
    pub async fn write(&self, row: PushRow) -> Result<(), DbError> {
        let (done, answer) = oneshot::channel();
        let gone = || DbError::Unavailable(sqlx::Error::PoolClosed);
        self.queue
            .send(Job { row, done })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// A group being filled.
struct Group {
    jobs: Vec<Job>,
    sales: usize,
}

impl Group {
    fn of(first: Job) -> Self {
        let mut group = Self {
            jobs: Vec::with_capacity(MAX_GROUP),
            sales: 0,
        };
        group.add(first);
        group
    }

    fn add(&mut self, job: Job) {
        self.sales += job.row.sale_id.len();
        self.jobs.push(job);
    }

    fn full(&self) -> bool {
        self.jobs.len() >= MAX_GROUP || self.sales >= MAX_GROUP_SALES
    }

    /// Adds what is queued now, until the group is full.
    fn fill_from(&mut self, jobs: &mut mpsc::Receiver<Job>) {
        while !self.full() {
            match jobs.try_recv() {
                Ok(job) => self.add(job),
                Err(_) => break,
            }
        }
    }
}

/// The committer: `GROUPS_IN_FLIGHT` writers taking groups off one queue.
async fn run(db: Database, jobs: mpsc::Receiver<Job>) {
    let jobs = Arc::new(Mutex::new(jobs));
    let writers: Vec<_> = (0..GROUPS_IN_FLIGHT)
        .map(|_| crate::metrics::spawn(writer(db.clone(), jobs.clone())))
        .collect();
    for writer in writers {
        let _ = writer.await;
    }
}

/// One writer: forms a group from what is queued once it is free (waiting
/// for a free writer is when the queue grows), writes it, and keeps its
/// connection for the next group while pushes keep coming ([`Kept`]).
async fn writer(db: Database, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut kept: Option<Kept> = None;
    loop {
        let group = {
            let mut queue = jobs.lock().await;
            let first = match kept {
                Some(_) => match tokio::time::timeout(KEEP_WHILE_IDLE, queue.recv()).await {
                    Ok(first) => first,
                    Err(_) => {
                        kept = None;
                        queue.recv().await
                    }
                },
                None => queue.recv().await,
            };
            let Some(first) = first else {
                return;
            };
            let mut group = Group::of(first);
            group.fill_from(&mut queue);
            group
        };
        write(&db, &mut kept, group.jobs).await;
    }
}

async fn write(db: &Database, kept: &mut Option<Kept>, mut group: Vec<Job>) {
    group.sort_by_key(|job| (job.row.merchant_id, job.row.terminal_id));
    metrics::histogram!("tillsync_ingest_group_size").record(group.len() as f64);
    let (rows, answers): (Vec<PushRow>, Vec<_>) =
        group.into_iter().map(|job| (job.row, job.done)).unzip();
    let written = write_group(db, kept, &rows).await;
    if written.is_err() {
        // Back through the pool's checks, which close it if it is unsound.
        *kept = None;
    }
    match written {
        Ok(outcomes) if outcomes.len() == answers.len() => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                // The request may be gone; its push is written all the same.
                let _ = answer.send(outcome);
            }
        }
        Ok(outcomes) => {
            tracing::error!(
                pushes = answers.len(),
                outcomes = outcomes.len(),
                "ingest_write_group answered for {} of {} pushes",
                outcomes.len(),
                answers.len()
            );
            for answer in answers {
                let _ = answer.send(Err(DbError::Other(sqlx::Error::Protocol(
                    "a group write answered for a different number of pushes".into(),
                ))));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(e.same_kind()));
            }
        }
    }
}

/// The group's one statement, on a unit of work ([`crate::db::unit`]) on the kept
/// connection: its own implicit transaction, or, behind a transaction
/// pooler, an explicit one.
async fn write_group(
    db: &Database,
    kept: &mut Option<Kept>,
    rows: &[PushRow],
) -> Result<Vec<Result<(), DbError>>, DbError> {
    if kept.as_ref().is_some_and(|k| !db.still_keeps(k)) {
        *kept = None;
    }
    let conn = match kept {
        Some(conn) => conn,
        None => kept.insert(db.keep().await?),
    };
    let mut unit = conn.unit().await?;
    let outcomes = db_push::write_group(&mut unit, rows).await?;
    unit.finish().await?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sales: usize) -> Job {
        let row = PushRow {
            sale_id: vec![uuid::Uuid::nil(); sales],
            ..PushRow::default()
        };
        Job {
            row,
            done: oneshot::channel().0,
        }
    }

    fn queue_of(sizes: &[usize]) -> mpsc::Receiver<Job> {
        let (sender, jobs) = mpsc::channel(QUEUE);
        for &sales in sizes {
            sender.try_send(job(sales)).unwrap();
        }
        jobs
    }

    #[test]
    fn a_group_stops_once_it_holds_enough_sales() {
        let mut jobs = queue_of(&[1, 1, 300, 300, 300, 300, 300]);
        let mut group = Group::of(job(1));
        group.fill_from(&mut jobs);
        let sizes: Vec<usize> = group.jobs.iter().map(|j| j.row.sale_id.len()).collect();
        assert_eq!(sizes, [1, 1, 1, 300, 300, 300, 300]);
        assert_eq!(group.sales, 1203);
        assert!(group.full());
        assert!(jobs.try_recv().is_ok(), "the rest waits for the next group");
    }

    #[test]
    fn a_group_stops_at_its_most_pushes() {
        let mut jobs = queue_of(&[1; 40]);
        let mut group = Group::of(job(1));
        group.fill_from(&mut jobs);
        assert_eq!(group.jobs.len(), MAX_GROUP);
        let mut left = 0;
        while jobs.try_recv().is_ok() {
            left += 1;
        }
        assert_eq!(left, 40 - (MAX_GROUP - 1));
    }
}
