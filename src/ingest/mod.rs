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
mod progress;
mod response;
mod store;
mod totals_check;

use uuid::Uuid;

use sqlx::PgConnection;

use crate::db::idempotency::StoredResponse;
use crate::db::push::{self, PushRow};
use crate::db::totals::TotalsColumns;
use crate::db::{Database, DbError};
use crate::domain::sale::{Rejection, Sale};
use crate::domain::terminal::Terminal;
pub use group::Committer;
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

pub async fn push_batch(
    db: &Database,
    committer: &Committer,
    terminal: &Terminal,
    key: Uuid,
    request_sha256: &[u8],
    items: &[Item],
    options: IngestOptions,
) -> Result<Pushed, IngestError> {
    let mut attempt = 1;
    let mut against_stored = false;
    loop {
        let check = TotalsCheck::new(against_stored);
        let pushed = try_push_batch(
            db,
            committer,
            terminal,
            key,
            request_sha256,
            items,
            options,
            check,
        );
        match pushed.await {
            Err(IngestError::Db(DbError::Contention(e))) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(terminal.id = %terminal.terminal_id, error = %e, attempt, "batch collided, reading again");
                attempt += 1;
            }
            Err(IngestError::Db(DbError::OutOfRange(e))) if !against_stored => {
                tracing::warn!(
                    terminal.id = %terminal.terminal_id, error = %e,
                    "a total of terminal {} would go out of range; checking its batch sale by sale",
                    terminal.terminal_id
                );
                against_stored = true;
            }
            result => return result,
        }
    }
}

/// One attempt: read, decide, write. The connection of the reads goes back
/// to the pool before the write waits for its group.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, passed through once"
)]
async fn try_push_batch(
    db: &Database,
    committer: &Committer,
    terminal: &Terminal,
    key: Uuid,
    request_sha256: &[u8],
    items: &[Item],
    options: IngestOptions,
    check: TotalsCheck,
) -> Result<Pushed, IngestError> {
    // A unit of work: a plain connection, or a transaction behind a
    // transaction pooler (`db::unit`).
    let mut unit = db.unit().await?;
    let decided = decide(
        &mut unit,
        terminal,
        key,
        request_sha256,
        items,
        options,
        check,
    )
    .await?;
    unit.finish().await?;
    let (row, body, counts) = match decided {
        Decided::Replayed(pushed) => return Ok(pushed),
        Decided::Write { row, body, counts } => (row, body, counts),
    };
    let batch_id = row.batch_id;
    committer.write(*row).await?;
    let terminal_id = terminal.terminal_id;
    tracing::info!(
        terminal.id = %terminal_id, batch.id = %batch_id,
        accepted = counts.accepted, duplicates = counts.duplicates, rejected = counts.rejected,
        "stored batch {batch_id} from terminal {terminal_id}"
    );
    Ok(Pushed::Fresh { body, counts })
}

/// What reading a push decided.
enum Decided {
    /// The key was used before with this body: its stored answer.
    Replayed(Pushed),
    /// What to write, and the answer once it is written.
    Write {
        row: Box<PushRow>,
        body: Vec<u8>,
        counts: Counts,
    },
}

/// Reads what the push is checked against and works out everything it
/// stores, without writing anything.
async fn decide(
    conn: &mut PgConnection,
    terminal: &Terminal,
    key: Uuid,
    request_sha256: &[u8],
    items: &[Item],
    options: IngestOptions,
    mut check: TotalsCheck,
) -> Result<Decided, IngestError> {
    let valid: Vec<&Sale> = items.iter().filter_map(|i| i.sale.as_ref().ok()).collect();
    let ids: Vec<Uuid> = valid
        .iter()
        .flat_map(|s| std::iter::once(s.sale_id).chain(s.refers_to_sale_id))
        .collect();
    let seqs: Vec<i64> = valid.iter().map(|s| s.seq).collect();
    let seen = push::read(conn, terminal, key, &ids, &seqs, progress::WALK_CHUNK).await?;
    if let Some(stored) = seen.stored {
        return if stored.request_sha256 == request_sha256 {
            Ok(Decided::Replayed(Pushed::Replayed { body: stored.body }))
        } else {
            Err(IngestError::KeyReused)
        };
    }

    let batch_id = Uuid::now_v7();
    let classified = store::classify(conn, terminal, items, &seen.related, &mut check).await?;
    let accepted_seqs: Vec<i64> = classified
        .accepted
        .iter()
        .map(|&i| items[i].valid_sale().seq)
        .collect();
    let next =
        progress::advance(conn, terminal, &seen.sync, seen.seqs_above, &accepted_seqs).await?;
    let (body, counts) = response::body(
        batch_id,
        items,
        &classified.verdicts,
        next.contiguous_through_seq,
    );
    let response = StoredResponse {
        request_sha256: request_sha256.to_vec(),
        status: 200,
        body,
    };
    let totals = if options.maintain_totals {
        TotalsColumns::of(&classified.deltas)
    } else {
        TotalsColumns::default()
    };
    let body = response.body.clone();
    let row = push::Write {
        terminal,
        batch_id,
        key,
        seen: &seen.sync,
        next: &next,
        response,
        sales: store::new_rows(terminal, items, &classified.accepted),
        conflicts: store::conflicts(items, &classified.verdicts),
        totals,
    }
    .into_row();
    Ok(Decided::Write {
        row: Box::new(row),
        body,
        counts,
    })
}
