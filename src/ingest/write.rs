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
//! Admission is by groups ([`crate::health::Gate::run_grouped`]): a push
//! holds no slot of the health layer while it waits here; each group's
//! write takes one ([`Priority::Group`]). A push is admitted by how long it
//! would wait for its group ([`Committer::group_wait`]): the pushes and
//! sales queued ahead of it, in full groups shared by the writers, each
//! taking as long as groups lately took. Giving every push a slot for its
//! whole request (as before) made a fleet of 300 tills, each with a push
//! in flight, a queue of 150 requests for 150 slots at half of capacity,
//! and pushes were shed while the database kept up (docs/benchmarks.md,
//! issue 26).
//!
//! A request that goes away while its push waits here (its deadline passed,
//! its client hung up) is left out of the group if its group has not
//! formed yet; otherwise the group is written or not, and a replay of the
//! push finds out which.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::IngestError;
use crate::db::push::{self as db_push, PushRow};
use crate::db::unit::Kept;
use crate::db::{Database, DbError};
use crate::health::{Gate, Priority};

/// Most pushes in one group: written push by push (when one of them cannot
/// be written), each is a subtransaction, and Postgres keeps up to 64 of a
/// transaction's in shared memory (`PGPROC_MAX_CACHED_SUBXIDS`) before
/// every snapshot of every other session gets slower. A fleet whose tills
/// each keep a push in flight fills groups by their pushes, not their
/// sales: 300 tills at half of capacity pushed 4 to 12 sales at a time, and
/// with groups of at most 32 the queue of 300 pushes was judged a wait of
/// 150 ms and shed; with 64, the soak shed 100 pushes in two minutes
/// instead of 2 000 to 5 000 (docs/benchmarks.md, issue 26).
const MAX_GROUP: usize = 64;

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

/// How much of the last group's time the estimate of a group's time takes
/// in: a few groups are enough to follow a change of load.
const GROUP_TIME_WEIGHT: f64 = 0.2;

/// One push waiting for its group.
struct Job {
    row: PushRow,
    done: oneshot::Sender<Result<(), IngestError>>,
}

/// The handle requests queue their writes on.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Job>,
    pace: Arc<Pace>,
}

impl Committer {
    /// Starts the committer task; it ends when every handle is dropped.
    /// Each group's write runs through `gate` for a slot of its own.
    pub fn spawn(db: Database, gate: Gate) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let pace = Arc::new(Pace::default());
        crate::metrics::spawn(run(db, gate, jobs, pace.clone()));
        Self { queue, pace }
    }

    /// Writes a push with whatever group it falls into.
    pub async fn write(&self, row: PushRow) -> Result<(), IngestError> {
        let (done, answer) = oneshot::channel();
        let gone = || IngestError::Db(DbError::Unavailable(sqlx::Error::PoolClosed));
        let sales = row.sale_id.len();
        self.pace.queued(sales);
        if self.queue.send(Job { row, done }).await.is_err() {
            self.pace.taken(sales);
            return Err(gone());
        }
        answer.await.map_err(|_| gone())?
    }

    /// How long a push queued now would wait for its group's write to start.
    pub fn group_wait(&self) -> Duration {
        self.pace.group_wait()
    }
}

/// What the wait for a group is judged from: what is queued, and how long
/// groups lately took to write.
#[derive(Default)]
struct Pace {
    pushes: AtomicUsize,
    sales: AtomicUsize,
    /// A moving average of the groups' write times (their slot's wait
    /// included); none until a group has been written.
    group_time: StdMutex<Option<Duration>>,
}

impl Pace {
    fn queued(&self, sales: usize) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.sales.fetch_add(sales, Ordering::Relaxed);
    }

    fn taken(&self, sales: usize) {
        self.pushes.fetch_sub(1, Ordering::Relaxed);
        self.sales.fetch_sub(sales, Ordering::Relaxed);
    }

    /// Counts a job taken off the queue; the job, unless its request is
    /// gone: nobody waits for its answer, and its replay (if any) is
    /// written on its own.
    fn take(&self, job: Job) -> Option<Job> {
        self.taken(job.row.sale_id.len());
        (!job.done.is_closed()).then_some(job)
    }

    fn written(&self, took: Duration) {
        let mut time = self.group_time.lock().unwrap_or_else(|e| e.into_inner());
        *time = Some(match *time {
            Some(average) => {
                average.mul_f64(1.0 - GROUP_TIME_WEIGHT) + took.mul_f64(GROUP_TIME_WEIGHT)
            }
            None => took,
        });
    }

    fn group_wait(&self) -> Duration {
        let time = *self.group_time.lock().unwrap_or_else(|e| e.into_inner());
        let Some(group_time) = time else {
            return Duration::ZERO;
        };
        wait_for_group(
            self.pushes.load(Ordering::Relaxed),
            self.sales.load(Ordering::Relaxed),
            group_time,
        )
    }
}

/// The wait of a push queued behind `pushes` pushes holding `sales` sales:
/// the groups ahead of it, as full as [`Group::full`] makes them (a
/// fraction for a group not full), shared by the writers, each taking
/// `group_time`.
fn wait_for_group(pushes: usize, sales: usize, group_time: Duration) -> Duration {
    let by_pushes = (pushes + 1) as f64 / MAX_GROUP as f64;
    let by_sales = sales as f64 / MAX_GROUP_SALES as f64;
    group_time.mul_f64(by_pushes.max(by_sales) / GROUPS_IN_FLIGHT as f64)
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
    fn fill_from(&mut self, jobs: &mut mpsc::Receiver<Job>, pace: &Pace) {
        while !self.full() {
            match jobs.try_recv() {
                Ok(job) => {
                    if let Some(job) = pace.take(job) {
                        self.add(job);
                    }
                }
                Err(_) => break,
            }
        }
    }
}

/// The committer: `GROUPS_IN_FLIGHT` writers taking groups off one queue.
async fn run(db: Database, gate: Gate, jobs: mpsc::Receiver<Job>, pace: Arc<Pace>) {
    let jobs = Arc::new(Mutex::new(jobs));
    let writers: Vec<_> = (0..GROUPS_IN_FLIGHT)
        .map(|_| {
            let writer = Writer {
                db: db.clone(),
                gate: gate.clone(),
                pace: pace.clone(),
            };
            crate::metrics::spawn(writer.run(jobs.clone()))
        })
        .collect();
    for writer in writers {
        let _ = writer.await;
    }
}

/// One of the committer's writers.
struct Writer {
    db: Database,
    gate: Gate,
    pace: Arc<Pace>,
}

impl Writer {
    /// Forms a group from what is queued once it is free (waiting for a
    /// free writer is when the queue grows), writes it, and keeps its
    /// connection for the next group while pushes keep coming ([`Kept`]).
    async fn run(self, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
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
                let Some(first) = self.pace.take(first) else {
                    continue;
                };
                let mut group = Group::of(first);
                group.fill_from(&mut queue, &self.pace);
                group
            };
            self.write(&mut kept, group.jobs).await;
        }
    }

    /// Writes a group in a slot of its own and answers each of its pushes.
    async fn write(&self, kept: &mut Option<Kept>, mut group: Vec<Job>) {
        group.sort_by_key(|job| (job.row.merchant_id, job.row.terminal_id));
        metrics::histogram!("tillsync_ingest_group_size").record(group.len() as f64);
        let (rows, answers): (Vec<PushRow>, Vec<_>) =
            group.into_iter().map(|job| (job.row, job.done)).unzip();
        let started = Instant::now();
        let written = self
            .gate
            .run(Priority::Group, started, write_group(&self.db, kept, &rows))
            .await;
        let outcomes = match written {
            Ok(Ok(outcomes)) if outcomes.len() == answers.len() => {
                self.pace.written(started.elapsed());
                outcomes
                    .into_iter()
                    .map(|outcome| outcome.map_err(IngestError::Db))
                    .collect()
            }
            Ok(Ok(outcomes)) => {
                tracing::error!(
                    pushes = answers.len(),
                    outcomes = outcomes.len(),
                    "ingest_write_group answered for {} of {} pushes",
                    outcomes.len(),
                    answers.len()
                );
                let wrong = || {
                    IngestError::Db(DbError::Other(sqlx::Error::Protocol(
                        "a group write answered for a different number of pushes".into(),
                    )))
                };
                answers.iter().map(|_| Err(wrong())).collect()
            }
            // Back through the pool's checks, which close it if it is
            // unsound (a write cut short left it mid-statement).
            Ok(Err(e)) => {
                *kept = None;
                answers
                    .iter()
                    .map(|_| Err(IngestError::Db(e.same_kind())))
                    .collect()
            }
            Err(refusal) => {
                *kept = None;
                answers
                    .iter()
                    .map(|_| Err(IngestError::Refused(refusal)))
                    .collect::<Vec<_>>()
            }
        };
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            // The request may be gone; its push is written all the same.
            let _ = answer.send(outcome);
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

    type Answer = oneshot::Receiver<Result<(), IngestError>>;

    fn job(sales: usize) -> (Job, Answer) {
        let row = PushRow {
            sale_id: vec![uuid::Uuid::nil(); sales],
            ..PushRow::default()
        };
        let (done, answer) = oneshot::channel();
        (Job { row, done }, answer)
    }

    /// A queue of pushes of these sizes, counted as queued by `pace`; the
    /// answers they wait on.
    fn queue_of(sizes: &[usize], pace: &Pace) -> (mpsc::Receiver<Job>, Vec<Answer>) {
        let (sender, jobs) = mpsc::channel(QUEUE);
        let mut answers = Vec::new();
        for &sales in sizes {
            let (job, answer) = job(sales);
            pace.queued(sales);
            sender.try_send(job).unwrap();
            answers.push(answer);
        }
        (jobs, answers)
    }

    #[test]
    fn a_group_stops_once_it_holds_enough_sales() {
        let pace = Pace::default();
        let (mut jobs, _answers) = queue_of(&[1, 1, 300, 300, 300, 300, 300], &pace);
        let (first, _first_answer) = job(1);
        let mut group = Group::of(first);
        group.fill_from(&mut jobs, &pace);
        let sizes: Vec<usize> = group.jobs.iter().map(|j| j.row.sale_id.len()).collect();
        assert_eq!(sizes, [1, 1, 1, 300, 300, 300, 300]);
        assert_eq!(group.sales, 1203);
        assert!(group.full());
        assert!(jobs.try_recv().is_ok(), "the rest waits for the next group");
        assert_eq!(pace.pushes.load(Ordering::Relaxed), 1);
        assert_eq!(pace.sales.load(Ordering::Relaxed), 300);
    }

    #[test]
    fn a_group_stops_at_its_most_pushes() {
        let pace = Pace::default();
        let (mut jobs, _answers) = queue_of(&[1; MAX_GROUP + 8], &pace);
        let (first, _first_answer) = job(1);
        let mut group = Group::of(first);
        group.fill_from(&mut jobs, &pace);
        assert_eq!(group.jobs.len(), MAX_GROUP);
        let mut left = 0;
        while jobs.try_recv().is_ok() {
            left += 1;
        }
        assert_eq!(
            left, 9,
            "the first and the queue's first MAX_GROUP - 1 went"
        );
    }

    #[test]
    fn a_push_whose_request_is_gone_is_left_out_of_its_group() {
        let pace = Pace::default();
        let (mut jobs, mut answers) = queue_of(&[1, 2, 3], &pace);
        drop(answers.remove(1));
        let (first, _first_answer) = job(5);
        let mut group = Group::of(first);
        group.fill_from(&mut jobs, &pace);
        let sizes: Vec<usize> = group.jobs.iter().map(|j| j.row.sale_id.len()).collect();
        assert_eq!(sizes, [5, 1, 3]);
        assert_eq!(pace.pushes.load(Ordering::Relaxed), 0, "nothing queued");
        assert_eq!(pace.sales.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_wait_for_a_group_counts_the_full_groups_ahead_shared_by_the_writers() {
        let group_time = Duration::from_millis(40);
        // Nothing queued: a fraction of a group's time.
        assert_eq!(
            wait_for_group(0, 0, group_time),
            group_time.mul_f64(1.0 / (MAX_GROUP * GROUPS_IN_FLIGHT) as f64)
        );
        // Four full groups of pushes ahead, two writers: two groups' time.
        let pushes = 4 * MAX_GROUP - 1;
        assert_eq!(
            wait_for_group(pushes, pushes, group_time),
            group_time.mul_f64(4.0 / GROUPS_IN_FLIGHT as f64)
        );
        // A few large pushes fill groups by their sales.
        assert_eq!(
            wait_for_group(3, 3 * MAX_GROUP_SALES, group_time),
            group_time.mul_f64(3.0 / GROUPS_IN_FLIGHT as f64)
        );
    }

    #[test]
    fn the_pace_is_unknown_until_a_group_is_written_then_follows_the_groups() {
        let pace = Pace::default();
        pace.queued(10);
        assert_eq!(pace.group_wait(), Duration::ZERO);
        pace.written(Duration::from_millis(100));
        let first = pace.group_wait();
        assert!(first > Duration::ZERO);
        for _ in 0..20 {
            pace.written(Duration::from_millis(10));
        }
        assert!(
            pace.group_wait() < first / 5,
            "faster groups, shorter waits"
        );
    }
}
