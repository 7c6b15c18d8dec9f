//! Ingest of one sale batch: one transaction that claims the
//! Idempotency-Key, serialises the till's batches, classifies every sale
//! against what is stored, inserts the new ones in one statement, keeps
//! conflicting payloads, advances the till's sync state and stores the
//! response for replay. A 200 is sent only after that commit.

pub mod classify;
mod progress;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use uuid::Uuid;

use crate::db::idempotency::{self, KeyState, StoredResponse};
use crate::db::sales::{self, NewSales};
use crate::db::{Database, DbError, conflicts, sync, totals};
use crate::domain::sale::{Rejection, Sale};
use crate::domain::terminal::Terminal;
use crate::domain::totals::Deltas;
use classify::{Stored, Verdict, classify};

/// Collisions with a concurrent transaction are resolved by classifying again;
/// this bounds how often, so a pathological race ends in a retryable error.
const MAX_CLASSIFY_ROUNDS: usize = 3;
/// Deadlocks and serialization failures are retried this often before the
/// client is asked to retry.
const MAX_TRANSACTION_ATTEMPTS: usize = 3;

/// One element of a batch after parsing: its sale, or why it is not one.
pub struct Item {
    /// The `sale_id` as sent, when one could be read (even from an invalid sale).
    pub sale_id: Option<Uuid>,
    pub sale: Result<Sale, Rejection>,
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

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

#[derive(Serialize)]
struct BatchResponse<'a> {
    batch_id: Uuid,
    results: Vec<SaleResult<'a>>,
    #[serde(flatten)]
    counts: Counts,
    contiguous_through_seq: i64,
}

#[derive(Serialize)]
struct SaleResult<'a> {
    sale_id: Option<Uuid>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
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
    match idempotency::claim(&mut tx, merchant_id, terminal_id, key).await? {
        KeyState::Busy => return Err(IngestError::InProgress),
        KeyState::Held {
            stored: Some(stored),
        } if stored.request_sha256 == request_sha256 => {
            return Ok(Pushed::Replayed { body: stored.body });
        }
        KeyState::Held { stored: Some(_) } => return Err(IngestError::KeyReused),
        KeyState::Held { stored: None } => {}
    }
    let held = sync::lock(&mut tx, merchant_id, terminal_id).await?;

    let batch_id = Uuid::now_v7();
    let stored = store_sales(&mut tx, terminal, batch_id, items).await?;
    let (verdicts, inserted) = (stored.verdicts, stored.inserted);
    save_conflicts(&mut tx, terminal, batch_id, items, &verdicts).await?;
    if options.maintain_totals {
        let new_sales: Vec<&Sale> = inserted.iter().map(|&i| sale_of(items, i)).collect();
        let deltas = Deltas::of(&new_sales, terminal.timezone, |id| {
            new_sales
                .iter()
                .copied()
                .find(|s| s.sale_id == id)
                .or_else(|| stored.void_targets.get(&id))
        });
        totals::apply(
            &mut tx,
            merchant_id,
            terminal_id,
            terminal.store_id,
            batch_id,
            &deltas,
        )
        .await?;
    }
    let inserted_seqs: Vec<i64> = inserted.iter().map(|&i| sale_of(items, i).seq).collect();
    let state = progress::advance(&mut tx, terminal, held, &inserted_seqs).await?;

    let (body, counts) = response_body(batch_id, items, &verdicts, state.contiguous_through_seq);
    let stored = StoredResponse {
        request_sha256: request_sha256.to_vec(),
        status: 200,
        body,
    };
    idempotency::store(&mut tx, merchant_id, terminal_id, key, &stored).await?;
    tx.commit().await.map_err(DbError::from)?;
    tracing::info!(
        terminal.id = %terminal_id, batch.id = %batch_id,
        accepted = counts.accepted, duplicates = counts.duplicates, rejected = counts.rejected,
        "stored batch {batch_id} from terminal {terminal_id}"
    );
    Ok(Pushed::Fresh {
        body: stored.body,
        counts,
    })
}

fn sale_of(items: &[Item], index: usize) -> &Sale {
    items[index]
        .sale
        .as_ref()
        .expect("only parsed sales are classified")
}

/// What storing a batch's sales came to.
struct StoredSales {
    /// Every item's verdict, in input order.
    verdicts: Vec<Verdict>,
    /// The indexes of the items this transaction inserted.
    inserted: Vec<usize>,
    /// Stored sales that voids of this batch name, for the totals.
    void_targets: HashMap<Uuid, Sale>,
}

/// Classifies and inserts the valid sales.
async fn store_sales(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    batch_id: Uuid,
    items: &[Item],
) -> Result<StoredSales, DbError> {
    let mut verdicts: Vec<Verdict> = items
        .iter()
        .map(|item| match &item.sale {
            Ok(_) => Verdict::Accept,
            Err(rejection) => Verdict::Reject(rejection.clone()),
        })
        .collect();
    let mut pending: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].sale.is_ok())
        .collect();
    let mut inserted: Vec<usize> = Vec::new();
    let mut void_targets: HashMap<Uuid, Sale> = HashMap::new();

    for _round in 0..MAX_CLASSIFY_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let sales: Vec<&Sale> = pending.iter().map(|&i| sale_of(items, i)).collect();
        let ids: Vec<Uuid> = sales
            .iter()
            .flat_map(|s| std::iter::once(s.sale_id).chain(s.refers_to_sale_id))
            .collect();
        let seqs: Vec<i64> = sales.iter().map(|s| s.seq).collect();
        let rows = sales::find_related(tx, terminal.merchant_id, terminal.terminal_id, &ids, &seqs)
            .await?;
        let targets: HashSet<Uuid> = sales.iter().filter_map(|s| s.refers_to_sale_id).collect();
        for row in rows.iter().filter(|r| targets.contains(&r.sale_id)) {
            if let Ok(target) = serde_json::from_value::<Sale>(row.body.clone()) {
                void_targets.insert(row.sale_id, target);
            }
        }
        let round = classify(
            terminal.terminal_id,
            &sales,
            &Stored::new(terminal.terminal_id, &rows),
        );

        let new_rows = new_rows(terminal, &sales, &round);
        let stored_now: HashSet<Uuid> = if new_rows.is_empty() {
            HashSet::new()
        } else {
            sales::insert(
                tx,
                terminal.merchant_id,
                terminal.terminal_id,
                terminal.store_id,
                batch_id,
                &new_rows,
            )
            .await?
            .into_iter()
            .collect()
        };

        // A sale that was new but not inserted collided with a transaction
        // that committed meanwhile: everything not yet stored is classified
        // again against the rows that now exist.
        let collided = round
            .iter()
            .zip(&sales)
            .any(|(o, s)| *o == Verdict::Accept && !stored_now.contains(&s.sale_id));
        let mut still_pending = Vec::new();
        for (index, verdict) in pending.iter().copied().zip(round) {
            if verdict == Verdict::Accept && stored_now.contains(&sale_of(items, index).sale_id) {
                inserted.push(index);
                verdicts[index] = Verdict::Accept;
            } else if collided {
                still_pending.push(index);
            } else {
                verdicts[index] = verdict;
            }
        }
        pending = still_pending;
    }
    if pending.is_empty() {
        Ok(StoredSales {
            verdicts,
            inserted,
            void_targets,
        })
    } else {
        Err(DbError::Contention(sqlx::Error::Protocol(
            "sales kept colliding with concurrent batches".into(),
        )))
    }
}

fn new_rows(terminal: &Terminal, sales: &[&Sale], verdicts: &[Verdict]) -> NewSales {
    let mut rows = NewSales::default();
    for (sale, _) in sales
        .iter()
        .zip(verdicts)
        .filter(|(_, o)| **o == Verdict::Accept)
    {
        rows.sale_id.push(sale.sale_id);
        rows.seq.push(sale.seq);
        rows.kind.push(sale.kind.as_str().to_owned());
        rows.occurred_at.push(sale.occurred_at.to_utc());
        rows.business_date
            .push(sale.business_date(terminal.timezone));
        rows.currency.push(sale.currency.clone());
        rows.total_minor.push(sale.total_minor);
        rows.tax_minor.push(sale.tax_minor);
        rows.discount_minor.push(sale.discount_minor);
        rows.refers_to_sale_id.push(sale.refers_to_sale_id);
        rows.body
            .push(serde_json::to_value(sale).expect("a sale always serializes"));
    }
    rows
}

async fn save_conflicts(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    batch_id: Uuid,
    items: &[Item],
    verdicts: &[Verdict],
) -> Result<(), DbError> {
    let conflicting: Vec<&Sale> = items
        .iter()
        .zip(verdicts)
        .filter(|(_, o)| matches!(o, Verdict::Reject(r) if r.code == "sale_id_conflict"))
        .filter_map(|(item, _)| item.sale.as_ref().ok())
        .collect();
    if conflicting.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = conflicting.iter().map(|s| s.sale_id).collect();
    let payloads: Vec<serde_json::Value> = conflicting
        .iter()
        .map(|s| serde_json::to_value(s).expect("a sale always serializes"))
        .collect();
    conflicts::insert(
        tx,
        terminal.merchant_id,
        terminal.terminal_id,
        batch_id,
        &ids,
        &payloads,
    )
    .await
}

fn response_body(
    batch_id: Uuid,
    items: &[Item],
    verdicts: &[Verdict],
    contiguous_through_seq: i64,
) -> (Vec<u8>, Counts) {
    let mut counts = Counts::default();
    let results = items
        .iter()
        .zip(verdicts)
        .map(|(item, verdict)| {
            let (status, rejection) = match verdict {
                Verdict::Accept => {
                    counts.accepted += 1;
                    ("accepted", None)
                }
                Verdict::Duplicate => {
                    counts.duplicates += 1;
                    ("duplicate", None)
                }
                Verdict::Reject(r) => {
                    counts.rejected += 1;
                    ("rejected", Some(r))
                }
            };
            SaleResult {
                sale_id: item.sale_id,
                status,
                code: rejection.map(|r| r.code),
                detail: rejection.map(|r| r.detail.as_str()),
            }
        })
        .collect();
    let response = BatchResponse {
        batch_id,
        results,
        counts,
        contiguous_through_seq,
    };
    let body = serde_json::to_vec(&response).expect("a batch response always serializes");
    (body, counts)
}
