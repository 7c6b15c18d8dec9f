//! The append-only sales table: set-based reads and writes for ingest.
//! Reads come back as `domain::sale::StoredSale`, the view the classifier
//! takes; writes go in as `NewSales`, column arrays for one statement.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;
use crate::domain::sale::{SaleKind, StoredSale};

/// A row of `find_related`, before its kind is parsed.
struct RelatedRow {
    sale_id: Uuid,
    terminal_id: Uuid,
    seq: i64,
    kind: String,
    currency: String,
    total_minor: i64,
    tax_minor: i64,
    discount_minor: i64,
    body: serde_json::Value,
    voided: bool,
}

impl From<RelatedRow> for StoredSale {
    fn from(r: RelatedRow) -> Self {
        // The table's check constraint admits these three kinds only.
        let kind = match r.kind.as_str() {
            "sale" => SaleKind::Sale,
            "refund" => SaleKind::Refund,
            _ => SaleKind::Void,
        };
        Self {
            sale_id: r.sale_id,
            terminal_id: r.terminal_id,
            seq: r.seq,
            kind,
            currency: r.currency,
            total_minor: r.total_minor,
            tax_minor: r.tax_minor,
            discount_minor: r.discount_minor,
            body: r.body,
            voided: r.voided,
        }
    }
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

impl NewSales {
    pub fn len(&self) -> usize {
        self.sale_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sale_id.is_empty()
    }
}

/// Everything stored that a batch could collide with, in one round trip: the
/// sales with these ids (duplicates, conflicts, void targets) and this
/// terminal's sales holding these seqs, each with whether a void names it.
///
/// Written so that every plan Postgres may pick is one index probe per id
/// and per seq, even a plan cached while the table was nearly empty (a new
/// database taking its first flood before any analyze; autovacuum may be
/// off, as on the benchmark machine). The earlier form, one `where` with an
/// `or` and `= any`, and an `exists` column, was planned then as a scan of
/// all the merchant's sales plus a hash of all its voids, and kept for every
/// batch after (measured: 100-170 ms a batch at 80k rows, and growing). A
/// lateral subquery with `limit 1` cannot be flattened into a join the
/// planner might hash, and each one is an equality on a unique key. The seq
/// arm leaves out what the id arm finds, so no row comes back twice.
pub async fn find_related(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    sale_ids: &[Uuid],
    seqs: &[i64],
) -> Result<Vec<StoredSale>, DbError> {
    let rows = sqlx::query_as!(
        RelatedRow,
        r#"with related as (
               select s.* from unnest($2::uuid[]) as wanted(sale_id)
                cross join lateral (
                      select * from sales s
                       where s.merchant_id = $1 and s.sale_id = wanted.sale_id
                       limit 1) s
               union all
               select s.* from unnest($4::int8[]) as wanted(seq)
                cross join lateral (
                      select * from sales s
                       where s.merchant_id = $1 and s.terminal_id = $3 and s.seq = wanted.seq
                       limit 1) s
                where s.sale_id <> all($2::uuid[])
           )
           select r.sale_id as "sale_id!", r.terminal_id as "terminal_id!", r.seq as "seq!",
                  r.kind as "kind!", r.currency as "currency!", r.total_minor as "total_minor!",
                  r.tax_minor as "tax_minor!", r.discount_minor as "discount_minor!",
                  r.body as "body!", void.found is not null as "voided!"
             from related r
             left join lateral (
                  select 1 as found from sales v
                   where v.merchant_id = $1 and v.refers_to_sale_id = r.sale_id
                     and v.kind = 'void'
                   limit 1) void on true"#,
        merchant_id,
        sale_ids,
        terminal_id,
        seqs
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(StoredSale::from).collect())
}

/// Inserts the rows in one statement. Rows that collide with a sale committed
/// meanwhile by another transaction are skipped, not errors: the caller
/// classifies them again. Returns the ids actually inserted.
pub async fn insert(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    store_id: Uuid,
    batch_id: Uuid,
    rows: &NewSales,
) -> Result<Vec<Uuid>, DbError> {
    let inserted = sqlx::query_scalar!(
        r#"insert into sales (merchant_id, sale_id, terminal_id, store_id, seq, kind,
                              occurred_at, business_date, currency, total_minor, tax_minor,
                              discount_minor, refers_to_sale_id, body, batch_id)
           select $1, u.sale_id, $2, $3, u.seq, u.kind, u.occurred_at, u.business_date,
                  u.currency, u.total_minor, u.tax_minor, u.discount_minor,
                  u.refers_to_sale_id, u.body, $4
             from unnest($5::uuid[], $6::int8[], $7::text[], $8::timestamptz[], $9::date[],
                         $10::text[], $11::int8[], $12::int8[], $13::int8[], $14::uuid[],
                         $15::jsonb[])
                  as u(sale_id, seq, kind, occurred_at, business_date, currency,
                       total_minor, tax_minor, discount_minor, refers_to_sale_id, body)
           on conflict do nothing
           returning sale_id"#,
        merchant_id,
        terminal_id,
        store_id,
        batch_id,
        &rows.sale_id,
        &rows.seq,
        &rows.kind,
        &rows.occurred_at,
        &rows.business_date,
        &rows.currency,
        &rows.total_minor,
        &rows.tax_minor,
        &rows.discount_minor,
        &rows.refers_to_sale_id as &[Option<Uuid>],
        &rows.body
    )
    .fetch_all(conn)
    .await?;
    Ok(inserted)
}
