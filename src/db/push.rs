//! A push's two round trips: [`read`] what it is checked against, and
//! write everything it stores ([`write_group`], with the pushes of other
//! tills that are ready at the same moment). Each is one statement, a call
//! of a plpgsql function (`ingest_read_v2`, and `ingest_write_group_v5` over
//! `ingest_write_set_v5`: read them as they live in `src/db/schema.sql`, the
//! dump of the migrated schema), in its own implicit transaction: no BEGIN or COMMIT of its own, no lock
//! held across round trips. The write checks that what `read` saw still
//! holds and reports [`DbError::Contention`] for a push where it does not,
//! writing nothing of it; the caller then reads again.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::DbError;
use super::idempotency::StoredResponse;
use super::sync::SyncState;
use super::totals::TotalsColumns;
use crate::domain::sale::StoredSale;
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

/// One row of `ingest_read_v2`: the sync row and key columns, repeated, and
/// one related sale if any.
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
    body: Option<serde_json::Value>,
}

impl ReadRow {
    fn related(self) -> Option<StoredSale> {
        Some(StoredSale {
            sale_id: self.sale_id?,
            terminal_id: self.sale_terminal_id?,
            seq: self.seq?,
            body: self.body?,
        })
    }
}

/// Reads what a push with these sale ids and seqs is checked against;
/// `settling` are the seqs it settles (refused for good, or skipped), which
/// may move the contiguous prefix as stored ones do.
pub async fn read(
    conn: &mut PgConnection,
    terminal: &Terminal,
    key: Uuid,
    sale_ids: &[Uuid],
    seqs: &[i64],
    settling: &[i64],
    walk_chunk: i64,
) -> Result<Seen, DbError> {
    let rows = sqlx::query_as!(
        ReadRow,
        r#"select highest_seq as "highest_seq!", contiguous_through_seq as "contiguous_through_seq!",
                  sales_stored as "sales_stored!", last_batch_at,
                  request_sha256, response_status, response_body, seqs_above,
                  sale_id, sale_terminal_id, seq, body
             from ingest_read_v2($1, $2, $3, $4, $5, $6, $7)"#,
        terminal.merchant_id,
        terminal.terminal_id,
        key,
        sale_ids,
        seqs,
        settling,
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
    /// Each sale as JSON text ([`sale_text`]), stored as `json`: checked,
    /// not parsed into a `jsonb` tree (migration `20261210000001`).
    pub body: Vec<String>,
}

/// A sale as JSON text, serialized straight from its struct: by way of a
/// `serde_json::Value` it was a map of owned strings built and torn down
/// per sale, a tenth of the service's time at batch 100 (perf, issue 26).
pub fn sale_text(sale: &impl serde::Serialize) -> String {
    serde_json::to_string(sale).expect("a sale always serializes")
}

/// A sale as `jsonb` (a conflicting payload, kept for review), serialized
/// straight from its struct as [`sale_text`] is.
pub type SaleJson = Json<Box<RawValue>>;

/// `sale` as [`SaleJson`].
pub fn sale_json(sale: &impl serde::Serialize) -> SaleJson {
    Json(serde_json::value::to_raw_value(sale).expect("a sale always serializes"))
}

/// Payloads rejected as `sale_id_conflict`, kept for review.
#[derive(Default)]
pub struct Conflicts {
    pub sale_id: Vec<Uuid>,
    pub payload: Vec<SaleJson>,
}

/// What a push lists for the back office, in column-major form: one entry
/// per (kind, subject), merged with what is listed already.
#[derive(Debug, Default)]
pub struct NewExceptions {
    pub kind: Vec<String>,
    pub subject: Vec<String>,
    /// Each exception's sale ids.
    pub sale_ids: Vec<Vec<Uuid>>,
    pub seq: Vec<Option<i64>>,
    pub code: Vec<Option<String>>,
    pub detail: Vec<String>,
    /// A refused payload, as JSON text.
    pub payload: Vec<Option<String>>,
}

/// Seqs a push settles: refused for good, or declared never used.
#[derive(Debug, Default)]
pub struct Settled {
    pub seq: Vec<i64>,
    pub reason: Vec<String>,
}

/// Everything one push stores, as the `ingest_push_v4` composite type of
/// `ingest_write_group_v5` (fields in the type's order; the type is in
/// `src/db/schema.sql`).
#[derive(sqlx::Type, Default)]
#[sqlx(type_name = "ingest_push_v4")]
pub struct PushRow {
    pub merchant_id: Uuid,
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    pub batch_id: Uuid,
    /// The sync row as `read` saw it...
    pub seen_highest_seq: i64,
    pub seen_contiguous: i64,
    pub seen_sales_stored: i64,
    pub seen_last_batch_at: Option<DateTime<Utc>>,
    /// ...and as this push leaves it.
    pub highest_seq: i64,
    pub contiguous: i64,
    pub sales_stored: i64,
    pub last_batch_at: Option<DateTime<Utc>>,
    pub idempotency_key: Uuid,
    pub request_sha256: Vec<u8>,
    pub response_status: i16,
    pub response_body: Vec<u8>,
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
    pub body: Vec<String>,
    pub conflict_id: Vec<Uuid>,
    pub conflict_sale_id: Vec<Uuid>,
    pub conflict_payload: Vec<SaleJson>,
    pub day_date: Vec<NaiveDate>,
    pub day_currency: Vec<String>,
    pub day_sales: Vec<i64>,
    pub day_refunds: Vec<i64>,
    pub day_voids: Vec<i64>,
    pub day_gross: Vec<i64>,
    pub day_refunded: Vec<i64>,
    pub day_discounts: Vec<i64>,
    pub day_tax: Vec<i64>,
    pub day_item_sales: Vec<i64>,
    pub day_gift_card_sales: Vec<i64>,
    pub day_tips: Vec<i64>,
    pub day_service_charges: Vec<i64>,
    pub day_rounding: Vec<i64>,
    pub day_net_sales: Vec<i64>,
    pub hour_date: Vec<NaiveDate>,
    pub hour: Vec<i16>,
    pub hour_currency: Vec<String>,
    pub hour_sales: Vec<i64>,
    pub hour_refunds: Vec<i64>,
    pub hour_voids: Vec<i64>,
    pub hour_gross: Vec<i64>,
    pub hour_refunded: Vec<i64>,
    pub hour_discounts: Vec<i64>,
    pub hour_tax: Vec<i64>,
    pub hour_item_sales: Vec<i64>,
    pub hour_gift_card_sales: Vec<i64>,
    pub hour_tips: Vec<i64>,
    pub hour_service_charges: Vec<i64>,
    pub hour_rounding: Vec<i64>,
    pub hour_net_sales: Vec<i64>,
    pub tender_date: Vec<NaiveDate>,
    pub tender_currency: Vec<String>,
    pub tender_method: Vec<String>,
    pub tender_sales: Vec<i64>,
    pub tender_refunds: Vec<i64>,
    pub tender_gross: Vec<i64>,
    pub tender_refunded: Vec<i64>,
    pub tax_date: Vec<NaiveDate>,
    pub tax_currency: Vec<String>,
    pub tax_code: Vec<String>,
    pub tax_rate_bp: Vec<i64>,
    pub tax_sales: Vec<i64>,
    pub tax_refunds: Vec<i64>,
    pub tax_amount: Vec<i64>,
    pub exception_kind: Vec<String>,
    pub exception_subject: Vec<String>,
    /// Each exception's sale ids, comma-separated.
    pub exception_sale_ids: Vec<String>,
    pub exception_seq: Vec<Option<i64>>,
    pub exception_code: Vec<Option<String>>,
    pub exception_detail: Vec<String>,
    pub exception_payload: Vec<Option<String>>,
    pub settled_seq: Vec<i64>,
    pub settled_reason: Vec<String>,
}

/// The parts of a push's write, assembled into its row.
pub struct Write<'a> {
    pub terminal: &'a Terminal,
    pub batch_id: Uuid,
    pub key: Uuid,
    pub seen: &'a SyncState,
    pub next: &'a SyncState,
    pub response: StoredResponse,
    pub sales: NewSales,
    pub conflicts: Conflicts,
    pub exceptions: NewExceptions,
    pub settled: Settled,
    pub totals: TotalsColumns,
}

impl Write<'_> {
    pub fn into_row(self) -> PushRow {
        let (s, c, t) = (self.sales, self.conflicts, self.totals);
        let (x, z) = (self.exceptions, self.settled);
        PushRow {
            merchant_id: self.terminal.merchant_id,
            terminal_id: self.terminal.terminal_id,
            store_id: self.terminal.store_id,
            batch_id: self.batch_id,
            seen_highest_seq: self.seen.highest_seq,
            seen_contiguous: self.seen.contiguous_through_seq,
            seen_sales_stored: self.seen.sales_stored,
            seen_last_batch_at: self.seen.last_batch_at,
            highest_seq: self.next.highest_seq,
            contiguous: self.next.contiguous_through_seq,
            sales_stored: self.next.sales_stored,
            last_batch_at: self.next.last_batch_at,
            idempotency_key: self.key,
            request_sha256: self.response.request_sha256,
            response_status: self.response.status as i16,
            response_body: self.response.body,
            sale_id: s.sale_id,
            seq: s.seq,
            kind: s.kind,
            occurred_at: s.occurred_at,
            business_date: s.business_date,
            currency: s.currency,
            total_minor: s.total_minor,
            tax_minor: s.tax_minor,
            discount_minor: s.discount_minor,
            refers_to_sale_id: s.refers_to_sale_id,
            body: s.body,
            conflict_id: c.sale_id.iter().map(|_| Uuid::now_v7()).collect(),
            conflict_sale_id: c.sale_id,
            conflict_payload: c.payload,
            day_date: t.day_dates,
            day_currency: t.day_currencies,
            day_sales: t.day.sales_count,
            day_refunds: t.day.refunds_count,
            day_voids: t.day.voids_count,
            day_gross: t.day.gross_minor,
            day_refunded: t.day.refunds_minor,
            day_discounts: t.day.discounts_minor,
            day_tax: t.day.tax_minor,
            day_item_sales: t.day.item_sales_minor,
            day_gift_card_sales: t.day.gift_card_sales_minor,
            day_tips: t.day.tips_minor,
            day_service_charges: t.day.service_charges_minor,
            day_rounding: t.day.rounding_minor,
            day_net_sales: t.day.net_sales_minor,
            hour_date: t.hour_dates,
            hour: t.hours,
            hour_currency: t.hour_currencies,
            hour_sales: t.hour.sales_count,
            hour_refunds: t.hour.refunds_count,
            hour_voids: t.hour.voids_count,
            hour_gross: t.hour.gross_minor,
            hour_refunded: t.hour.refunds_minor,
            hour_discounts: t.hour.discounts_minor,
            hour_tax: t.hour.tax_minor,
            hour_item_sales: t.hour.item_sales_minor,
            hour_gift_card_sales: t.hour.gift_card_sales_minor,
            hour_tips: t.hour.tips_minor,
            hour_service_charges: t.hour.service_charges_minor,
            hour_rounding: t.hour.rounding_minor,
            hour_net_sales: t.hour.net_sales_minor,
            tender_date: t.tender_dates,
            tender_currency: t.tender_currencies,
            tender_method: t.methods,
            tender_sales: t.tender.sales_count,
            tender_refunds: t.tender.refunds_count,
            tender_gross: t.tender.gross_minor,
            tender_refunded: t.tender.refunds_minor,
            tax_date: t.tax_dates,
            tax_currency: t.tax_currencies,
            tax_code: t.tax_codes,
            tax_rate_bp: t.tax_rates_bp,
            tax_sales: t.tax.sales_count,
            tax_refunds: t.tax.refunds_count,
            tax_amount: t.tax.tax_minor,
            exception_kind: x.kind,
            exception_subject: x.subject,
            exception_sale_ids: x
                .sale_ids
                .iter()
                .map(|ids| {
                    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                    ids.join(",")
                })
                .collect(),
            exception_seq: x.seq,
            exception_code: x.code,
            exception_detail: x.detail,
            exception_payload: x.payload,
            settled_seq: z.seq,
            settled_reason: z.reason,
        }
    }
}

/// SQLSTATE of a push that `ingest_write_group_v5` wrote.
const WRITTEN: &str = "00000";

/// Writes several pushes in one transaction, each all or nothing on its
/// own, and says how each ended: [`DbError::Contention`] when what [`read`]
/// saw changed meanwhile (nothing of that push was written). An `Err` is the
/// whole group's (the link, the statement timeout): nothing of it was
/// written, or, if the link broke during the commit,
/// possibly all of it; either way a replay of each push finds out.
pub async fn write_group(
    conn: &mut PgConnection,
    rows: &[PushRow],
) -> Result<Vec<Result<(), DbError>>, DbError> {
    // A runtime query: the macros cannot check a composite-type array
    // parameter against a struct of ours.
    let results: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("select error_code, error_message from ingest_write_group_v5($1)")
            .bind(rows)
            .fetch_all(conn)
            .await?;
    Ok(results
        .into_iter()
        .map(|(code, message)| match code.as_deref() {
            Some(WRITTEN) => Ok(()),
            code => Err(DbError::from_sqlstate(
                code.unwrap_or_default(),
                message.unwrap_or_default(),
            )),
        })
        .collect())
}
