//! One push of sales, read top to bottom:
//!
//! 1. **read** ([`read`]): what the push is checked against, in one round
//!    trip: the response stored under its Idempotency-Key (a replay is
//!    answered from it), the till's sync row, every stored sale it could
//!    collide with. Or, for a till whose last push this replica wrote, no
//!    read at all: the read-skip cache's guess of the same ([`read_skip`]);
//! 2. **decide** ([`decide`]), pure: classify the sales, sum and check the
//!    totals, advance the sync state, build the rows and the answer;
//! 3. **write** ([`write`](mod@write)): the rows, with the pushes of other tills ready
//!    at the same moment, in one statement (group commit), all or nothing
//!    for each push, after checking that what step 1 saw still holds;
//! 4. **remember** ([`read_skip`]): the sync row the write left, so the
//!    till's next push can skip step 1.
//!
//! Why not one transaction holding locks, as before: that cost ten round
//! trips a push (BEGIN, a key lock, the sync row lock, the collision read,
//! the insert, the totals, the prefix read, the sync update, the stored
//! response, COMMIT), and on this machine a round trip costs more than the
//! SQL in it. Nothing is locked across round trips now, so a request whose
//! client goes away cannot leave a transaction open half-way: its write
//! either happened whole (and a replay gets its stored response) or not.
//!
//! Concurrency is optimistic: when another push of the till, a request with
//! the same key, or a sale of another till with one of these ids committed
//! between steps 1 and 3, the write raises serialization_failure and stores
//! nothing, and the push goes through the steps again, read first
//! ([`Pipeline::push`]). A till's pushes still apply one after another, and
//! a second request with the same key gets the first one's stored response
//! instead of waiting.
//!
//! A push adds nothing to a total in place: its write appends one delta row
//! a business day and currency, which the fold adds to the till's and the
//! store's totals ([`crate::jobs::fold`]). A sale whose share alone would
//! take a delta beyond `i64` is rejected alone (`total_out_of_range`); a
//! total beyond it is the fold's to find, and the reports' to refuse.

pub mod classify;
mod decide;
mod progress;
mod read;
mod read_skip;
mod response;
mod write;

use std::time::Instant;

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::db::{Database, DbError};
use crate::domain::sale::{Rejection, Sale};
use crate::domain::terminal::Terminal;
use crate::health::{Gate, Judged, Priority, Refusal, Signal};
use read::{Read, Seen};
use read_skip::ReadSkip;
pub use response::Counts;
use write::Committer;

/// How often a batch is read and written again after another writer came
/// between its read and its write, before the client is asked to retry. A
/// till has at most a few requests in flight per replica
/// (`TILLSYNC_TERMINAL_CONCURRENCY`) and each round lets one of them
/// through, so this is rarely more than two.
const MAX_ATTEMPTS: usize = 8;

/// One element of a batch after parsing: its sale, or why it is not one.
pub struct Item {
    /// The `sale_id` as sent, when one could be read (even from an invalid sale).
    pub sale_id: Option<Uuid>,
    /// The `seq` as sent, when one could be read (even from an invalid sale).
    pub seq: Option<i64>,
    pub sale: Result<Sale, Rejection>,
    /// An invalid sale as it was sent, to keep for the back office: it is
    /// refused for good. (A valid sale that is refused is kept as parsed.)
    pub raw: Option<Box<RawValue>>,
}

impl Item {
    /// The sale of an item known to be valid: only those are classified,
    /// inserted and counted.
    fn valid_sale(&self) -> &Sale {
        self.sale
            .as_ref()
            .expect("only parsed sales are classified")
    }
}

/// How a batch is written.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// Keep the report totals current (off only to measure what they cost).
    pub maintain_totals: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("this Idempotency-Key was used with a different body")]
    KeyReused,
    #[error(transparent)]
    Db(#[from] DbError),
    /// The health layer did not run a step of it (its read, its group's
    /// write): the link is down, the database busy, or its deadline passed.
    #[error("the database did not take this push: {0:?}")]
    Refused(Refusal),
}

impl Judged for IngestError {
    fn signal(&self) -> Signal {
        match self {
            IngestError::KeyReused => Signal::Healthy,
            IngestError::Db(e) => e.signal(),
            // Learned from where it was refused.
            IngestError::Refused(_) => Signal::Silent,
        }
    }
}

pub enum Pushed {
    /// Committed now; the body was also stored for replays.
    Fresh { body: Vec<u8>, counts: Counts },
    /// The stored response of an earlier request with the same key and body.
    Replayed { body: Vec<u8> },
}

/// What a push goes through: the database (each step through the health
/// layer's gate), the group committer, the read-skip cache, and the options.
#[derive(Clone)]
pub struct Pipeline {
    db: Database,
    gate: Gate,
    committer: Committer,
    read_skip: ReadSkip,
    options: IngestOptions,
}

/// One push as the till sent it.
pub struct Push<'a> {
    pub terminal: &'a Terminal,
    pub key: Uuid,
    pub request_sha256: &'a [u8],
    pub items: &'a [Item],
    /// Seqs the till declares it never used, each once, ascending.
    pub skipped: &'a [i64],
    /// When the request arrived: its read's deadline counts from here.
    pub arrived: Instant,
    /// Live or backlog: its read's place in the health layer's queue.
    pub priority: Priority,
}

impl Pipeline {
    /// Starts the group committer on `db`; every step's database work
    /// goes through `gate`.
    pub fn new(db: Database, gate: Gate, options: IngestOptions) -> Self {
        Self {
            committer: Committer::spawn(db.clone(), gate.clone()),
            db,
            gate,
            read_skip: ReadSkip::default(),
            options,
        }
    }

    /// How long a push queued now would wait for its group's write: what
    /// admission judges a push by ([`Gate::run_grouped`]).
    pub fn group_wait(&self) -> std::time::Duration {
        self.committer.group_wait()
    }

    /// Stores a push, or answers it from the response stored under its
    /// key: the four steps, again (read first) when another writer came
    /// between the read and the write, and once more against the stored
    /// totals when a total would go out of range.
    pub async fn push(&self, push: &Push<'_>) -> Result<Pushed, IngestError> {
        let mut attempt = 1;
        let mut guess = self
            .read_skip
            .guess(push.terminal, push.items, push.skipped);
        loop {
            let guessed = guess.is_some();
            match self.attempt(push, guess.take()).await {
                Err(IngestError::Db(DbError::Contention(e))) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(terminal.id = %push.terminal.terminal_id, error = %e, attempt, guessed, "batch collided, reading again");
                    if guessed {
                        metrics::counter!("tillsync_ingest_read_skipped_total", "result" => "read_again").increment(1);
                        self.read_skip.guessed_wrong(push.terminal);
                    }
                    attempt += 1;
                }
                result => {
                    if guessed && result.is_ok() {
                        metrics::counter!("tillsync_ingest_read_skipped_total", "result" => "written").increment(1);
                    }
                    return result;
                }
            }
        }
    }

    /// One attempt: read (unless `guessed` already says what a read would
    /// find), decide, write, remember.
    async fn attempt(&self, push: &Push<'_>, guessed: Option<Seen>) -> Result<Pushed, IngestError> {
        let seen = match guessed {
            Some(seen) => seen,
            None => {
                let read = read::read(&self.db, push);
                let read = self.gate.run(push.priority, push.arrived, read).await;
                match read.map_err(IngestError::Refused)?? {
                    Read::Replayed { body } => return Ok(Pushed::Replayed { body }),
                    Read::Seen(seen) => *seen,
                }
            }
        };
        let planned = decide::decide(push, &seen, self.options);
        let batch_id = planned.row.batch_id;
        let above = read_skip::above_after(&seen, &planned.next, &planned.row);
        self.committer.write(planned.row).await?;
        self.read_skip.remember(push.terminal, planned.next, above);
        let (terminal_id, counts) = (push.terminal.terminal_id, planned.counts);
        tracing::info!(
            terminal.id = %terminal_id, batch.id = %batch_id,
            accepted = counts.accepted, duplicates = counts.duplicates, rejected = counts.rejected,
            "stored batch {batch_id} from terminal {terminal_id}"
        );
        Ok(Pushed::Fresh {
            body: planned.body,
            counts,
        })
    }
}
