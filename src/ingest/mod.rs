//! Ingest of one sale batch: one transaction that claims the
//! Idempotency-Key, serialises the till's batches, stores the sales
//! (`store`: classified against what is stored, the new ones inserted in one
//! statement, conflicting payloads kept), adds to the report totals,
//! advances the till's sync state (`progress`) and stores the response
//! (`response`) for replay. A 200 is sent only after that commit.
//!
//! A sale that would take one of the till's totals beyond `i64` is rejected
//! alone (`total_out_of_range`): the database refuses the batch's upsert,
//! the transaction is dropped, and the batch is pushed once more with its
//! sales checked against the stored totals (`totals_check`). Nothing
//! of the first attempt is kept, and a batch costs that read only then.
//!
//! This module owns the transaction and its order of steps; each step is a
//! function named for what it does, so `try_push_batch` reads as the list.

pub mod classify;
mod progress;
mod response;
mod store;
mod totals_check;

use uuid::Uuid;

use crate::db::idempotency::{self, KeyState, StoredResponse};
use crate::db::{Database, DbError, sync, totals};
use crate::domain::sale::{Rejection, Sale};
use crate::domain::terminal::Terminal;
pub use response::Counts;
use store::StoredSales;
use totals_check::TotalsCheck;

/// Deadlocks and serialization failures are retried this often before the
/// client is asked to retry.
const MAX_TRANSACTION_ATTEMPTS: usize = 3;

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
    #[error("a request with this Idempotency-Key is still running")]
    InProgress,
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
        match try_push_batch(db, terminal, key, request_sha256, items, options, check).await {
            Err(IngestError::Db(DbError::Contention(e))) if attempt < MAX_TRANSACTION_ATTEMPTS => {
                tracing::debug!(terminal.id = %terminal.terminal_id, error = %e, attempt, "batch collided, retrying");
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

/// One attempt, in one transaction. A failed attempt is rolled back before
/// it returns, not whenever the pool gets to it: the next attempt of this
/// same request runs on another connection and would find its own key's
/// advisory lock still held (a 409 to a request that is not running twice).
async fn try_push_batch(
    db: &Database,
    terminal: &Terminal,
    key: Uuid,
    request_sha256: &[u8],
    items: &[Item],
    options: IngestOptions,
    check: TotalsCheck,
) -> Result<Pushed, IngestError> {
    let mut tx = db.begin().await?;
    let written = write_batch(
        &mut tx,
        terminal,
        key,
        request_sha256,
        items,
        options,
        check,
    )
    .await;
    match written {
        // Nothing was written: the transaction only held the key. Its lock
        // lives as long as the transaction, and a dropped transaction rolls
        // back only when its connection is next used: the till's next
        // request with this key could come first and get a 409 for a
        // request no longer running.
        Ok(Written::Replayed(replay)) => {
            tx.rollback().await.map_err(DbError::from)?;
            Ok(replay)
        }
        Ok(Written::Fresh {
            batch_id,
            body,
            counts,
        }) => {
            tx.commit().await.map_err(DbError::from)?;
            let terminal_id = terminal.terminal_id;
            tracing::info!(
                terminal.id = %terminal_id, batch.id = %batch_id,
                accepted = counts.accepted, duplicates = counts.duplicates, rejected = counts.rejected,
                "stored batch {batch_id} from terminal {terminal_id}"
            );
            Ok(Pushed::Fresh { body, counts })
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(error = %rollback, "rolling back a failed batch failed; the pool closes its connection");
            }
            Err(e)
        }
    }
}

/// What a transaction wrote, before its commit.
enum Written {
    Replayed(Pushed),
    Fresh {
        batch_id: Uuid,
        body: Vec<u8>,
        counts: Counts,
    },
}

/// The steps of a batch, in order, inside its transaction.
async fn write_batch(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    key: Uuid,
    request_sha256: &[u8],
    items: &[Item],
    options: IngestOptions,
    mut check: TotalsCheck,
) -> Result<Written, IngestError> {
    let (merchant_id, terminal_id) = (terminal.merchant_id, terminal.terminal_id);
    if let Some(replay) = claim_key(tx, terminal, key, request_sha256).await? {
        return Ok(Written::Replayed(replay));
    }
    let held = sync::lock(tx, merchant_id, terminal_id).await?;

    let batch_id = Uuid::now_v7();
    let stored = store::store_sales(tx, terminal, batch_id, items, &mut check).await?;
    store::save_conflicts(tx, terminal, batch_id, items, &stored.verdicts).await?;
    if options.maintain_totals {
        add_to_totals(tx, terminal, batch_id, &stored).await?;
    }
    let inserted_seqs: Vec<i64> = stored
        .inserted
        .iter()
        .map(|&i| items[i].valid_sale().seq)
        .collect();
    let state = progress::advance(tx, terminal, held, &inserted_seqs).await?;

    let (body, counts) = response::body(
        batch_id,
        items,
        &stored.verdicts,
        state.contiguous_through_seq,
    );
    let response = StoredResponse {
        request_sha256: request_sha256.to_vec(),
        status: 200,
        body,
    };
    idempotency::store(tx, merchant_id, terminal_id, key, &response).await?;
    Ok(Written::Fresh {
        batch_id,
        body: response.body,
        counts,
    })
}

/// Takes the Idempotency-Key for this transaction. `Some` is the answer
/// when the key was used before: the first response again for the same
/// body; a different body or a request still running are errors.
async fn claim_key(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    key: Uuid,
    request_sha256: &[u8],
) -> Result<Option<Pushed>, IngestError> {
    match idempotency::claim(tx, terminal.merchant_id, terminal.terminal_id, key).await? {
        KeyState::Busy => Err(IngestError::InProgress),
        KeyState::Held {
            stored: Some(stored),
        } if stored.request_sha256 == request_sha256 => {
            Ok(Some(Pushed::Replayed { body: stored.body }))
        }
        KeyState::Held { stored: Some(_) } => Err(IngestError::KeyReused),
        KeyState::Held { stored: None } => Ok(None),
    }
}

/// Adds what the inserted sales change to the report totals (their deltas
/// were summed, checked, as they were accepted).
async fn add_to_totals(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    batch_id: Uuid,
    stored: &StoredSales,
) -> Result<(), DbError> {
    totals::apply(
        tx,
        terminal.merchant_id,
        terminal.terminal_id,
        terminal.store_id,
        batch_id,
        &stored.deltas,
    )
    .await
}
