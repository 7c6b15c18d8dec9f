//! Ingest of one sale batch, in two round trips to Postgres, each one
//! statement that is its own transaction (`db::push`):
//!
//! 1. `read`: the response stored under the Idempotency-Key (a replay is
//!    answered from it), the till's sync row, and every stored sale the
//!    batch could collide with;
//! 2. here, no I/O: classify the sales (`store`), sum and check the totals
//!    deltas, advance the sync state (`progress`), build the response
//!    (`response`);
//! 3. `write`: sales, conflicts, totals, sync row and stored response, all
//!    or nothing, after checking that what `read` saw still holds.
//!
//! Why not one transaction holding locks, as before: that cost ten round
//! trips a push (BEGIN, a key lock, the sync row lock, the collision read,
//! the insert, the totals, the prefix read, the sync update, the stored
//! response, COMMIT), and on this machine a round trip costs more than the
//! SQL in it. Nothing is locked across round trips now, so a request whose
//! client goes away cannot leave a transaction open half-way: its write
//! either happened whole (and a replay gets its stored response) or not.
//!
//! A push of new sales from a till whose last push this replica wrote
//! skips step 1: its sync row is known, nothing could collide, and the
//! sales its voids name are among the till's latest, remembered (`known`),
//! so it costs the one round trip of its group's write.
//!
//! Concurrency is optimistic: when another batch of the till, a request
//! with the same key, or a sale of another till with one of these ids
//! committed between read and write, the write raises serialization_failure
//! and stores nothing, and the batch is read and classified again. A till's
//! batches still apply one after another, and a second request with the
//! same key gets the first one's stored response instead of waiting.
//!
//! A sale that would take one of the till's totals beyond `i64` is rejected
//! alone (`total_out_of_range`): the database refuses the write, and the
//! batch is classified once more with its sales checked against the stored
//! totals (`totals_check`). A batch costs that read only then.

pub mod classify;
mod group;
mod known;
mod progress;
mod response;
mod store;
mod totals_check;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::idempotency::StoredResponse;
use crate::db::push::{self as db_push, PushRow};
use crate::db::sync::SyncState;
use crate::db::totals::TotalsColumns;
use crate::db::{Database, DbError};
use crate::domain::sale::{Rejection, Sale, StoredSale};
use crate::domain::terminal::Terminal;
use group::Committer;
use known::{Guess, KnownTills};
pub use response::Counts;
use totals_check::TotalsCheck;

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
    pub sale: Result<Sale, Rejection>,
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
}

pub enum Pushed {
    /// Committed now; the body was also stored for replays.
    Fresh { body: Vec<u8>, counts: Counts },
    /// The stored response of an earlier request with the same key and body.
    Replayed { body: Vec<u8> },
}

/// What a push goes through: the database, the group committer, what this
/// replica knows of its tills' sync rows, and the options.
#[derive(Clone)]
pub struct Pipeline {
    db: Database,
    committer: Committer,
    known: KnownTills,
    options: IngestOptions,
}

/// One push as the till sent it.
pub struct Push<'a> {
    pub terminal: &'a Terminal,
    pub key: Uuid,
    pub request_sha256: &'a [u8],
    pub items: &'a [Item],
}

impl Pipeline {
    /// Starts the group committer on `db`.
    pub fn new(db: Database, options: IngestOptions) -> Self {
        Self {
            committer: Committer::spawn(db.clone()),
            db,
            known: KnownTills::default(),
            options,
        }
    }

    /// Stores a push, or answers it from the response stored under its key.
    pub async fn push(&self, push: &Push<'_>) -> Result<Pushed, IngestError> {
        let mut attempt = 1;
        let mut against_stored = false;
        let mut guess = self.known.guess(push.terminal, push.items);
        loop {
            let check = TotalsCheck::new(against_stored);
            let guessed = guess.is_some();
            let pushed = match guess.take() {
                Some(guess) => self.write_guessed(push, guess).await,
                None => self.read_then_write(push, check).await,
            };
            match pushed {
                Err(IngestError::Db(DbError::Contention(e))) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(terminal.id = %push.terminal.terminal_id, error = %e, attempt, guessed, "batch collided, reading again");
                    if guessed {
                        metrics::counter!("tillsync_ingest_read_skipped_total", "result" => "read_again").increment(1);
                        self.known.guessed_wrong(push.terminal);
                    }
                    attempt += 1;
                }
                Err(IngestError::Db(DbError::OutOfRange(e))) if !against_stored => {
                    tracing::warn!(
                        terminal.id = %push.terminal.terminal_id, error = %e,
                        "a total of terminal {} would go out of range; checking its batch sale by sale",
                        push.terminal.terminal_id
                    );
                    against_stored = true;
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

    /// One attempt: read, decide, write. The connection of the reads goes
    /// back to the pool before the write waits for its group.
    async fn read_then_write(
        &self,
        push: &Push<'_>,
        check: TotalsCheck,
    ) -> Result<Pushed, IngestError> {
        // A unit of work: a plain connection, or a transaction behind a
        // transaction pooler (`db::unit`).
        let mut unit = self.db.unit().await?;
        let decided = decide(&mut unit, push, self.options, check).await?;
        unit.finish().await?;
        match decided {
            Decided::Replayed(pushed) => Ok(pushed),
            Decided::Write(planned) => self.write(push, *planned).await,
        }
    }

    /// One attempt without a read: the push planned against the sync row
    /// and the voidable sales this replica's last write of the till left
    /// (`known`).
    async fn write_guessed(&self, push: &Push<'_>, guess: Guess) -> Result<Pushed, IngestError> {
        let related = guess
            .targets
            .iter()
            .map(|target| known_target(push.terminal, target))
            .collect::<Vec<_>>();
        let void_targets = guess
            .targets
            .iter()
            .map(|target| (target.sale_id, Sale::clone(target)))
            .collect();
        let classified = store::classify(
            push.terminal,
            push.items,
            &related,
            &void_targets,
            &TotalsCheck::new(false),
        );
        let next =
            progress::advance_over_batch(&guess.sync, &accepted_seqs(push.items, &classified));
        let planned = plan(push, self.options, &guess.sync, classified, next);
        self.write(push, planned).await
    }

    /// Writes a planned push with its group, and remembers the sync row it
    /// leaves.
    async fn write(&self, push: &Push<'_>, planned: Planned) -> Result<Pushed, IngestError> {
        let Planned {
            row,
            seen,
            next,
            accepted,
            body,
            counts,
        } = planned;
        let batch_id = row.batch_id;
        self.committer.write(row).await?;
        let stored = accepted.iter().map(|&i| push.items[i].valid_sale());
        self.known.remember(push.terminal, &seen, next, stored);
        let terminal_id = push.terminal.terminal_id;
        tracing::info!(
            terminal.id = %terminal_id, batch.id = %batch_id,
            accepted = counts.accepted, duplicates = counts.duplicates, rejected = counts.rejected,
            "stored batch {batch_id} from terminal {terminal_id}"
        );
        Ok(Pushed::Fresh { body, counts })
    }
}

/// What reading a push decided.
enum Decided {
    /// The key was used before with this body: its stored answer.
    Replayed(Pushed),
    Write(Box<Planned>),
}

/// What to write, the sync row it leaves, and the answer once it is written.
struct Planned {
    row: PushRow,
    /// The sync row the push was planned against, and the one it leaves.
    seen: SyncState,
    next: SyncState,
    /// The indexes of the items it stores.
    accepted: Vec<usize>,
    body: Vec<u8>,
    counts: Counts,
}

/// Reads what the push is checked against and works out everything it
/// stores, without writing anything.
async fn decide(
    conn: &mut PgConnection,
    push: &Push<'_>,
    options: IngestOptions,
    mut check: TotalsCheck,
) -> Result<Decided, IngestError> {
    let valid: Vec<&Sale> = push
        .items
        .iter()
        .filter_map(|i| i.sale.as_ref().ok())
        .collect();
    let ids: Vec<Uuid> = valid
        .iter()
        .flat_map(|s| std::iter::once(s.sale_id).chain(s.refers_to_sale_id))
        .collect();
    let seqs: Vec<i64> = valid.iter().map(|s| s.seq).collect();
    let seen = db_push::read(
        conn,
        push.terminal,
        push.key,
        &ids,
        &seqs,
        progress::WALK_CHUNK,
    )
    .await?;
    if let Some(stored) = seen.stored {
        return if stored.request_sha256 == push.request_sha256 {
            Ok(Decided::Replayed(Pushed::Replayed { body: stored.body }))
        } else {
            Err(IngestError::KeyReused)
        };
    }

    let void_targets = store::void_targets(&valid, &seen.related);
    check
        .load(conn, push.terminal, &valid, &void_targets)
        .await?;
    let classified = store::classify(
        push.terminal,
        push.items,
        &seen.related,
        &void_targets,
        &check,
    );
    let next = progress::advance(
        conn,
        push.terminal,
        &seen.sync,
        seen.seqs_above,
        &accepted_seqs(push.items, &classified),
    )
    .await?;
    Ok(Decided::Write(Box::new(plan(
        push, options, &seen.sync, classified, next,
    ))))
}

/// The seqs of the sales the batch stores.
fn accepted_seqs(items: &[Item], classified: &store::Classified) -> Vec<i64> {
    classified
        .accepted
        .iter()
        .map(|&i| items[i].valid_sale().seq)
        .collect()
}

/// The push's row and answer, from its classified sales and the sync row
/// it was planned against (`seen`) and leaves (`next`).
fn plan(
    push: &Push<'_>,
    options: IngestOptions,
    seen: &SyncState,
    classified: store::Classified,
    next: SyncState,
) -> Planned {
    let batch_id = Uuid::now_v7();
    let (body, counts) = response::body(
        batch_id,
        push.items,
        &classified.verdicts,
        next.contiguous_through_seq,
    );
    let response = StoredResponse {
        request_sha256: push.request_sha256.to_vec(),
        status: 200,
        body,
    };
    let totals = if options.maintain_totals {
        TotalsColumns::of(&classified.deltas)
    } else {
        TotalsColumns::default()
    };
    let body = response.body.clone();
    let accepted = classified.accepted;
    let row = db_push::Write {
        terminal: push.terminal,
        batch_id,
        key: push.key,
        seen,
        next: &next,
        response,
        sales: store::new_rows(push.terminal, push.items, &accepted),
        conflicts: store::conflicts(push.items, &classified.verdicts),
        totals,
    }
    .into_row();
    Planned {
        row,
        seen: seen.clone(),
        next,
        accepted,
        body,
        counts,
    }
}

/// A remembered sale of the till as the read would have found it: stored,
/// not voided. Its body is never compared: a push qualifies for a guess only
/// when none of its sales reuses a target's id (`known`).
fn known_target(terminal: &Terminal, target: &Sale) -> StoredSale {
    StoredSale {
        sale_id: target.sale_id,
        terminal_id: terminal.terminal_id,
        seq: target.seq,
        kind: target.kind,
        currency: target.currency.clone(),
        total_minor: target.total_minor,
        tax_minor: target.tax_minor,
        discount_minor: target.discount_minor,
        body: serde_json::Value::Null,
        voided: false,
    }
}
