//! Ingest of one sale batch: one transaction that claims the
//! Idempotency-Key, serialises the till's batches, stores the sales
//! (`store`: classified against what is stored, the new ones inserted in one
//! statement, conflicting payloads kept), adds to the report totals,
//! advances the till's sync state (`progress`) and stores the response
//! (`response`) for replay. A 200 is sent only after that commit.
//!
//! This module owns the transaction and its order of steps; each step is a
//! function named for what it does, so `try_push_batch` reads as the list.

pub mod classify;
mod progress;
mod response;
mod store;

use uuid::Uuid;

use crate::db::idempotency::{self, KeyState, StoredResponse};
use crate::db::{Database, DbError, sync, totals};
use crate::domain::sale::{Rejection, Sale};
use crate::domain::terminal::Terminal;
use crate::domain::totals::Deltas;
pub use response::Counts;
use store::StoredSales;

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
    loop {
        match try_push_batch(db, terminal, key, request_sha256, items, options).await {
            Err(IngestError::Db(DbError::Contention(e))) if attempt < MAX_TRANSACTION_ATTEMPTS => {
                tracing::debug!(terminal.id = %terminal.terminal_id, error = %e, attempt, "batch collided, retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn try_push_batch(
    db: &Database,
    terminal: &Terminal,
    key: Uuid,
    request_sha256: &[u8],
    items: &[Item],
    options: IngestOptions,
) -> Result<Pushed, IngestError> {
    let (merchant_id, terminal_id) = (terminal.merchant_id, terminal.terminal_id);
    let mut tx = db.begin().await?;
    let answered = match claim_key(&mut tx, terminal, key, request_sha256).await {
        Ok(None) => None,
        Ok(Some(replay)) => Some(Ok(replay)),
        Err(e @ (IngestError::InProgress | IngestError::KeyReused)) => Some(Err(e)),
        Err(e) => return Err(e),
    };
    if let Some(answer) = answered {
        // The key's lock lives as long as this transaction, and a dropped
        // transaction rolls back only when its connection is next used:
        // the till's next request with this key could come first and get a
        // 409 for a request no longer running.
        tx.rollback().await.map_err(DbError::from)?;
        return answer;
    }
    let held = sync::lock(&mut tx, merchant_id, terminal_id).await?;

    let batch_id = Uuid::now_v7();
    let stored = store::store_sales(&mut tx, terminal, batch_id, items).await?;
    store::save_conflicts(&mut tx, terminal, batch_id, items, &stored.verdicts).await?;
    if options.maintain_totals {
        add_to_totals(&mut tx, terminal, batch_id, items, &stored).await?;
    }
    let inserted_seqs: Vec<i64> = stored
        .inserted
        .iter()
        .map(|&i| items[i].valid_sale().seq)
        .collect();
    let state = progress::advance(&mut tx, terminal, held, &inserted_seqs).await?;

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
    idempotency::store(&mut tx, merchant_id, terminal_id, key, &response).await?;
    tx.commit().await.map_err(DbError::from)?;
    tracing::info!(
        terminal.id = %terminal_id, batch.id = %batch_id,
        accepted = counts.accepted, duplicates = counts.duplicates, rejected = counts.rejected,
        "stored batch {batch_id} from terminal {terminal_id}"
    );
    Ok(Pushed::Fresh {
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

/// Adds what the inserted sales change to the report totals. A void takes
/// its sale out, so that sale is looked up among this batch's and among the
/// stored ones the classification fetched.
async fn add_to_totals(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    batch_id: Uuid,
    items: &[Item],
    stored: &StoredSales,
) -> Result<(), DbError> {
    let new_sales: Vec<&Sale> = stored
        .inserted
        .iter()
        .map(|&i| items[i].valid_sale())
        .collect();
    let deltas = Deltas::of(&new_sales, terminal.timezone, |id| {
        new_sales
            .iter()
            .copied()
            .find(|s| s.sale_id == id)
            .or_else(|| stored.void_targets.get(&id))
    });
    totals::apply(
        tx,
        terminal.merchant_id,
        terminal.terminal_id,
        terminal.store_id,
        batch_id,
        &deltas,
    )
    .await
}
