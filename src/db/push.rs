//! A pushed batch's two round trips: `read` what it is checked against, and
//! `write` everything it stores. Each is one statement, a call of a plpgsql
//! function of `migrations/20261129000001_ingest_write.sql`, in its own
//! implicit transaction: no BEGIN or COMMIT of its own, no lock held across
//! round trips. `write` checks that what `read` saw still holds and raises
//! serialization_failure (`DbError::Contention`) when it does not, writing
//! nothing; the caller then reads again.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;
use super::idempotency::StoredResponse;
use super::sync::SyncState;
use super::totals::TotalsColumns;
use crate::domain::sale::{SaleKind, StoredSale};
use crate::domain::terminal::Terminal;

/// What a push is checked against, read from one snapshot.
pub struct Seen {
    pub sync: SyncState,
    /// The response stored under the push's key, if it was pushed before.
    pub stored: Option<StoredResponse>,
    /// Stored sales the batch could collide with (none read when `stored` is set).
    pub related: Vec<StoredSale>,
    /// The till's first stored seqs above its contiguous prefix, ascending,
    /// at most the walk chunk: read only when the batch holds the seq right
    /// after the prefix and the till has gaps above it.
    pub seqs_above: Option<Vec<i64>>,
}

/// One row of `ingest_read`: the sync row and key columns, repeated, and one
/// related sale if any.
struct ReadRow {
    highest_seq: i64,
    contiguous_through_seq: i64,
    sales_stored: i64,
    last_batch_at: Option<DateTime<Utc>>,
    request_sha256: Option<Vec<u8>>,
    response_status: Option<i16>,
    response_body: Option<Vec<u8>>,
    seqs_above: Option<Vec<i64>>,
    sale_id: Option<Uuid>,
    sale_terminal_id: Option<Uuid>,
    seq: Option<i64>,
    kind: Option<String>,
    currency: Option<String>,
    total_minor: Option<i64>,
    tax_minor: Option<i64>,
    discount_minor: Option<i64>,
    body: Option<serde_json::Value>,
    voided: bool,
}

impl ReadRow {
    fn related(self) -> Option<StoredSale> {
        // The table's check constraint admits these three kinds only.
        let kind = match self.kind?.as_str() {
            "sale" => SaleKind::Sale,
            "refund" => SaleKind::Refund,
            _ => SaleKind::Void,
        };
        Some(StoredSale {
            sale_id: self.sale_id?,
            terminal_id: self.sale_terminal_id?,
            seq: self.seq?,
            kind,
            currency: self.currency?,
            total_minor: self.total_minor?,
            tax_minor: self.tax_minor?,
            discount_minor: self.discount_minor?,
            body: self.body?,
            voided: self.voided,
        })
    }
}

/// Reads what a push with these sale ids and seqs is checked against.
pub async fn read(
    conn: &mut PgConnection,
    terminal: &Terminal,
    key: Uuid,
    sale_ids: &[Uuid],
    seqs: &[i64],
    walk_chunk: i64,
) -> Result<Seen, DbError> {
    let rows = sqlx::query_as!(
        ReadRow,
        r#"select highest_seq as "highest_seq!", contiguous_through_seq as "contiguous_through_seq!",
                  sales_stored as "sales_stored!", last_batch_at,
                  request_sha256, response_status, response_body, seqs_above,
                  sale_id, sale_terminal_id, seq, kind, currency, total_minor, tax_minor,
                  discount_minor, body, voided as "voided!"
             from ingest_read($1, $2, $3, $4, $5, $6)"#,
        terminal.merchant_id,
        terminal.terminal_id,
        key,
        sale_ids,
        seqs,
        walk_chunk
    )
    .fetch_all(conn)
    .await?;
    let Some(first) = rows.first() else {
        // Every terminal has its sync row from the moment it is created.
        return Err(DbError::Other(sqlx::Error::RowNotFound));
    };
    let sync = SyncState {
        highest_seq: first.highest_seq,
        contiguous_through_seq: first.contiguous_through_seq,
        sales_stored: first.sales_stored,
        last_batch_at: first.last_batch_at,
    };
    let stored = match (
        &first.request_sha256,
        first.response_status,
        &first.response_body,
    ) {
        (Some(request_sha256), Some(status), Some(body)) => Some(StoredResponse {
            request_sha256: request_sha256.clone(),
            status: status as u16,
            body: body.clone(),
        }),
        _ => None,
    };
    let seqs_above = first.seqs_above.clone();
    let related = rows.into_iter().filter_map(ReadRow::related).collect();
    Ok(Seen {
        sync,
        stored,
        related,
        seqs_above,
    })
}

/// New rows in column-major form, ready to bind as `unnest` arrays.
#[derive(Debug, Default)]
pub struct NewSales {
    pub sale_id: Vec<Uuid>,
    pub seq: Vec<i64>,
    pub kind: Vec<String>,
    pub occurred_at: Vec<DateTime<Utc>>,
    pub business_date: Vec<NaiveDate>,
    pub currency: Vec<String>,
    pub total_minor: Vec<i64>,
    pub tax_minor: Vec<i64>,
    pub discount_minor: Vec<i64>,
    pub refers_to_sale_id: Vec<Option<Uuid>>,
    pub body: Vec<serde_json::Value>,
}

/// Payloads rejected as `sale_id_conflict`, kept for review.
#[derive(Default)]
pub struct Conflicts {
    pub sale_id: Vec<Uuid>,
    pub payload: Vec<serde_json::Value>,
}

/// Everything one push stores.
pub struct Write<'a> {
    pub terminal: &'a Terminal,
    pub batch_id: Uuid,
    pub key: Uuid,
    /// The sync row as `read` saw it, and as this push leaves it.
    pub seen: &'a SyncState,
    pub next: &'a SyncState,
    pub response: &'a StoredResponse,
    pub sales: &'a NewSales,
    pub conflicts: &'a Conflicts,
    pub totals: &'a TotalsColumns,
}

/// Stores a push, or nothing: `DbError::Contention` when what `read` saw
/// changed meanwhile (another batch of the till, the same key, or a sale of
/// another till with one of these ids).
pub async fn write(conn: &mut PgConnection, w: &Write<'_>) -> Result<(), DbError> {
    let conflict_ids: Vec<Uuid> = w.conflicts.sale_id.iter().map(|_| Uuid::now_v7()).collect();
    let (t, s) = (w.totals, w.sales);
    sqlx::query!(
        r#"select ingest_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                               $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28,
                               $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41,
                               $42, $43, $44, $45, $46, $47, $48, $49, $50, $51, $52, $53, $54,
                               $55, $56) as "written: ()""#,
        w.terminal.merchant_id,
        w.terminal.terminal_id,
        w.terminal.store_id,
        w.batch_id,
        w.seen.highest_seq,
        w.seen.contiguous_through_seq,
        w.seen.sales_stored,
        w.seen.last_batch_at,
        w.next.highest_seq,
        w.next.contiguous_through_seq,
        w.next.sales_stored,
        w.next.last_batch_at,
        w.key,
        w.response.request_sha256,
        w.response.status as i16,
        w.response.body,
        &s.sale_id,
        &s.seq,
        &s.kind,
        &s.occurred_at,
        &s.business_date,
        &s.currency,
        &s.total_minor,
        &s.tax_minor,
        &s.discount_minor,
        &s.refers_to_sale_id as &[Option<Uuid>],
        &s.body,
        &conflict_ids,
        &w.conflicts.sale_id,
        &w.conflicts.payload,
        &t.day_dates,
        &t.day_currencies,
        &t.day.sales_count,
        &t.day.refunds_count,
        &t.day.voids_count,
        &t.day.gross_minor,
        &t.day.refunds_minor,
        &t.day.discounts_minor,
        &t.day.tax_minor,
        &t.hour_dates,
        &t.hours,
        &t.hour_currencies,
        &t.hour.sales_count,
        &t.hour.refunds_count,
        &t.hour.voids_count,
        &t.hour.gross_minor,
        &t.hour.refunds_minor,
        &t.hour.discounts_minor,
        &t.hour.tax_minor,
        &t.tender_dates,
        &t.tender_currencies,
        &t.methods,
        &t.tender.sales_count,
        &t.tender.refunds_count,
        &t.tender.gross_minor,
        &t.tender.refunds_minor
    )
    .execute(conn)
    .await?;
    Ok(())
}
