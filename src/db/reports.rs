//! Reads for dashboards: totals from the totals tables (never the sales
//! table), completeness from the till sync state, sales pages, the fleet.
//!
//! They run in a `read_transaction`, planned for the values they run with:
//! their optional filters (`$4 is null or ...`) make Postgres's generic plan
//! for a prepared statement guess one row, and the sort it then picks took
//! 40 ms where the plan made for the actual values takes 11 ms (5 million
//! sales, a month of a 500-till merchant). Planning each time costs well
//! under a millisecond; ingest keeps its cached plans.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Database, DbError};

/// A read-only transaction whose statements are planned for their actual
/// parameter values, never from a cached generic plan.
pub async fn read_transaction(
    db: &Database,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, DbError> {
    let mut tx = db.begin().await?;
    sqlx::query("set transaction read only")
        .execute(&mut *tx)
        .await?;
    sqlx::query("set local plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// One totals row; the grouping columns not asked for are `None`.
#[derive(Debug, Clone)]
pub struct TotalsRow {
    pub business_date: Option<NaiveDate>,
    pub hour: Option<i16>,
    pub store_id: Option<Uuid>,
    pub terminal_id: Option<Uuid>,
    pub method: Option<String>,
    pub tax_code: Option<String>,
    pub rate_bp: Option<i64>,
    pub currency: String,
    pub sales_count: i64,
    pub refunds_count: i64,
    pub voids_count: i64,
    /// Not split by tax code: `None` in tax rows.
    pub gross_minor: Option<i64>,
    pub refunds_minor: Option<i64>,
    /// Not split by tender: `None` in tender rows (and in tax rows).
    pub discounts_minor: Option<i64>,
    /// `None` in tender rows.
    pub tax_minor: Option<i64>,
    /// The receipt's split: `None` in tender and tax rows.
    pub item_sales_minor: Option<i64>,
    pub gift_card_sales_minor: Option<i64>,
    pub tips_minor: Option<i64>,
    pub service_charges_minor: Option<i64>,
    pub rounding_minor: Option<i64>,
    pub net_sales_minor: Option<i64>,
}

/// Which rows to add up.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub merchant_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub store_id: Option<Uuid>,
    pub terminal_id: Option<Uuid>,
}

/// Totals grouped by nothing, day or store (`group` is `none`, `day` or
/// `store`) for a merchant or one store, from the store-day totals plus the
/// store deltas not folded into them yet: one row per store and day to add
/// up, and about a second's worth of deltas.
pub async fn store_totals(
    conn: &mut PgConnection,
    scope: &Scope,
    group: &str,
) -> Result<Vec<TotalsRow>, DbError> {
    let rows = sqlx::query_as!(
        TotalsRow,
        r#"select case when $5::text = 'day' then business_date end as business_date,
                  case when $5::text = 'store' then store_id end as store_id,
                  null::int2 as "hour?", null::uuid as "terminal_id?", null::text as "method?",
                  null::text as "tax_code?", null::int8 as "rate_bp?", currency as "currency!",
                  sum(sales_count)::int8 as "sales_count!", sum(refunds_count)::int8 as "refunds_count!",
                  sum(voids_count)::int8 as "voids_count!", sum(gross_minor)::int8 as "gross_minor?",
                  sum(refunds_minor)::int8 as "refunds_minor?", sum(discounts_minor)::int8 as "discounts_minor?",
                  sum(tax_minor)::int8 as "tax_minor?", sum(item_sales_minor)::int8 as "item_sales_minor?",
                  sum(gift_card_sales_minor)::int8 as "gift_card_sales_minor?",
                  sum(tips_minor)::int8 as "tips_minor?",
                  sum(service_charges_minor)::int8 as "service_charges_minor?",
                  sum(rounding_minor)::int8 as "rounding_minor?",
                  sum(net_sales_minor)::int8 as "net_sales_minor?"
             from (select business_date, store_id, currency, sales_count, refunds_count,
                    voids_count,
                          gross_minor, refunds_minor, discounts_minor, tax_minor, item_sales_minor,
                          gift_card_sales_minor, tips_minor, service_charges_minor, rounding_minor,
                          net_sales_minor
                     from store_day_totals
                    where merchant_id = $1 and business_date between $2 and $3
                      and ($4::uuid is null or store_id = $4)
                   union all
                   select business_date, store_id, currency, sales_count, refunds_count,
                          voids_count,
                          gross_minor, refunds_minor, discounts_minor, tax_minor, item_sales_minor,
                          gift_card_sales_minor, tips_minor, service_charges_minor, rounding_minor,
                          net_sales_minor
                     from store_day_deltas
                    where merchant_id = $1 and business_date between $2 and $3
                      and ($4::uuid is null or store_id = $4)) store_days
            group by 1, 2, currency
           having sum(sales_count) <> 0 or sum(refunds_count) <> 0 or sum(voids_count) <> 0
            order by 1, 2, currency"#,
        scope.merchant_id,
        scope.from,
        scope.to,
        scope.store_id,
        group
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Totals grouped by nothing, day, store or terminal (`group` is one of
/// `none`, `day`, `store`, `terminal`), from the till-day totals plus the
/// deltas not folded into them yet: for a terminal filter or per-terminal
/// rows.
pub async fn daily_totals(
    conn: &mut PgConnection,
    scope: &Scope,
    group: &str,
) -> Result<Vec<TotalsRow>, DbError> {
    let rows = sqlx::query_as!(
        TotalsRow,
        r#"select case when $6::text = 'day' then business_date end as business_date,
                  case when $6::text in ('store', 'terminal') then store_id end as store_id,
                  case when $6::text = 'terminal' then terminal_id end as terminal_id,
                  null::int2 as "hour?", null::text as "method?", null::text as "tax_code?",
                  null::int8 as "rate_bp?", currency as "currency!",
                  sum(sales_count)::int8 as "sales_count!", sum(refunds_count)::int8 as "refunds_count!",
                  sum(voids_count)::int8 as "voids_count!", sum(gross_minor)::int8 as "gross_minor?",
                  sum(refunds_minor)::int8 as "refunds_minor?", sum(discounts_minor)::int8 as "discounts_minor?",
                  sum(tax_minor)::int8 as "tax_minor?", sum(item_sales_minor)::int8 as "item_sales_minor?",
                  sum(gift_card_sales_minor)::int8 as "gift_card_sales_minor?",
                  sum(tips_minor)::int8 as "tips_minor?",
                  sum(service_charges_minor)::int8 as "service_charges_minor?",
                  sum(rounding_minor)::int8 as "rounding_minor?",
                  sum(net_sales_minor)::int8 as "net_sales_minor?"
             from (select business_date, store_id, terminal_id, currency, sales_count,
                    refunds_count, voids_count, gross_minor, refunds_minor,
                          discounts_minor, tax_minor, item_sales_minor, gift_card_sales_minor,
                          tips_minor, service_charges_minor, rounding_minor, net_sales_minor
                     from sales_day_totals
                    where merchant_id = $1 and business_date between $2 and $3
                      and ($4::uuid is null or store_id = $4)
                      and ($5::uuid is null or terminal_id = $5)
                   union all
                   select d.business_date, d.store_id, d.terminal_id, d.currency,
                          d.sales_count, d.refunds_count, d.voids_count, d.gross_minor,
                          d.refunds_minor,
                          d.discounts_minor, d.tax_minor, d.item_sales_minor, d.gift_card_sales_minor,
                          d.tips_minor, d.service_charges_minor, d.rounding_minor, d.net_sales_minor
                     from store_day_deltas d
                    where d.merchant_id = $1 and d.business_date between $2 and $3
                      and ($4::uuid is null or d.store_id = $4)
                      and ($5::uuid is null or d.terminal_id = $5)
                      and d.terminal_id is not null) till_rows
            group by 1, 2, 3, currency
           having sum(sales_count) <> 0 or sum(refunds_count) <> 0 or sum(voids_count) <> 0
            order by 1, 2, 3, currency"#,
        scope.merchant_id,
        scope.from,
        scope.to,
        scope.store_id,
        scope.terminal_id,
        group
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Totals per business date and hour of the day, from the hour totals plus
/// the deltas not folded yet.
pub async fn hourly_totals(
    conn: &mut PgConnection,
    scope: &Scope,
) -> Result<Vec<TotalsRow>, DbError> {
    let rows = sqlx::query_as!(
        TotalsRow,
        r#"select business_date as "business_date?", hour as "hour?", currency as "currency!",
                  null::uuid as "store_id?", null::uuid as "terminal_id?", null::text as "method?",
                  null::text as "tax_code?", null::int8 as "rate_bp?",
                  sum(sales_count)::int8 as "sales_count!", sum(refunds_count)::int8 as "refunds_count!",
                  sum(voids_count)::int8 as "voids_count!", sum(gross_minor)::int8 as "gross_minor?",
                  sum(refunds_minor)::int8 as "refunds_minor?", sum(discounts_minor)::int8 as "discounts_minor?",
                  sum(tax_minor)::int8 as "tax_minor?", sum(item_sales_minor)::int8 as "item_sales_minor?",
                  sum(gift_card_sales_minor)::int8 as "gift_card_sales_minor?",
                  sum(tips_minor)::int8 as "tips_minor?",
                  sum(service_charges_minor)::int8 as "service_charges_minor?",
                  sum(rounding_minor)::int8 as "rounding_minor?",
                  sum(net_sales_minor)::int8 as "net_sales_minor?"
             from (select business_date, hour, currency, sales_count, refunds_count,
                    voids_count, gross_minor, refunds_minor,
                          discounts_minor, tax_minor, item_sales_minor, gift_card_sales_minor,
                          tips_minor, service_charges_minor, rounding_minor, net_sales_minor
                     from sales_hour_totals
                    where merchant_id = $1 and business_date between $2 and $3
                      and ($4::uuid is null or store_id = $4)
                      and ($5::uuid is null or terminal_id = $5)
                   union all
                   select d.business_date, h.hour, d.currency, h.sales_count,
                          h.refunds_count, h.voids_count, h.gross_minor, h.refunds_minor,
                          h.discounts_minor, h.tax_minor, h.item_sales_minor, h.gift_card_sales_minor,
                          h.tips_minor, h.service_charges_minor, h.rounding_minor, h.net_sales_minor
                     from store_day_deltas d
                    cross join lateral unnest(d.hours) h
                    where d.merchant_id = $1 and d.business_date between $2 and $3
                      and ($4::uuid is null or d.store_id = $4)
                      and ($5::uuid is null or d.terminal_id = $5)
                      and d.terminal_id is not null) till_rows
            group by business_date, hour, currency
           having sum(sales_count) <> 0 or sum(refunds_count) <> 0 or sum(voids_count) <> 0
            order by business_date, hour, currency"#,
        scope.merchant_id,
        scope.from,
        scope.to,
        scope.store_id,
        scope.terminal_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Money per tender method, from the tender totals plus the deltas not
/// folded yet. A row whose counts net
/// to zero still shows when money moved: a till that voids another till's
/// sale of a method holds the reversal (count -1) beside its own sale.
pub async fn tender_totals(
    conn: &mut PgConnection,
    scope: &Scope,
) -> Result<Vec<TotalsRow>, DbError> {
    let rows = sqlx::query_as!(
        TotalsRow,
        r#"select method as "method?", currency as "currency!",
                  null::date as "business_date?", null::int2 as "hour?", null::uuid as "store_id?",
                  null::uuid as "terminal_id?", 0::int8 as "voids_count!",
                  null::int8 as "discounts_minor?", null::int8 as "tax_minor?",
                  null::text as "tax_code?", null::int8 as "rate_bp?",
                  null::int8 as "item_sales_minor?", null::int8 as "gift_card_sales_minor?",
                  null::int8 as "tips_minor?", null::int8 as "service_charges_minor?",
                  null::int8 as "rounding_minor?", null::int8 as "net_sales_minor?",
                  sum(sales_count)::int8 as "sales_count!", sum(refunds_count)::int8 as "refunds_count!",
                  sum(gross_minor)::int8 as "gross_minor?", sum(refunds_minor)::int8 as "refunds_minor?"
             from (select method, currency, sales_count, refunds_count, gross_minor, refunds_minor
                     from tender_day_totals
                    where merchant_id = $1 and business_date between $2 and $3
                      and ($4::uuid is null or store_id = $4)
                      and ($5::uuid is null or terminal_id = $5)
                   union all
                   select x.method, d.currency, x.sales_count, x.refunds_count, x.gross_minor, x.refunds_minor
                     from store_day_deltas d
                    cross join lateral unnest(d.tenders) x
                    where d.merchant_id = $1 and d.business_date between $2 and $3
                      and ($4::uuid is null or d.store_id = $4)
                      and ($5::uuid is null or d.terminal_id = $5)
                      and d.terminal_id is not null) till_rows
            group by method, currency
           having sum(sales_count) <> 0 or sum(refunds_count) <> 0
               or sum(gross_minor) <> 0 or sum(refunds_minor) <> 0
            order by method, currency"#,
        scope.merchant_id,
        scope.from,
        scope.to,
        scope.store_id,
        scope.terminal_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Tax per tax code and rate, from the tax totals plus the deltas not
/// folded yet: the facts that name each
/// code and their tax (a sale that does not split its tax counts under code
/// `""`); no other money is split by code. As with tenders, a row shows when
/// its counts net to zero but its tax does not.
pub async fn tax_totals(conn: &mut PgConnection, scope: &Scope) -> Result<Vec<TotalsRow>, DbError> {
    let rows = sqlx::query_as!(
        TotalsRow,
        r#"select tax_code as "tax_code?", rate_bp as "rate_bp?", currency as "currency!",
                  null::date as "business_date?", null::int2 as "hour?", null::uuid as "store_id?",
                  null::uuid as "terminal_id?", null::text as "method?", 0::int8 as "voids_count!",
                  null::int8 as "gross_minor?", null::int8 as "refunds_minor?",
                  null::int8 as "discounts_minor?",
                  null::int8 as "item_sales_minor?", null::int8 as "gift_card_sales_minor?",
                  null::int8 as "tips_minor?", null::int8 as "service_charges_minor?",
                  null::int8 as "rounding_minor?", null::int8 as "net_sales_minor?",
                  sum(sales_count)::int8 as "sales_count!", sum(refunds_count)::int8 as "refunds_count!",
                  sum(tax_minor)::int8 as "tax_minor?"
             from (select tax_code, rate_bp, currency, sales_count, refunds_count, tax_minor
                     from tax_day_totals
                    where merchant_id = $1 and business_date between $2 and $3
                      and ($4::uuid is null or store_id = $4)
                      and ($5::uuid is null or terminal_id = $5)
                   union all
                   select x.tax_code, x.rate_bp, d.currency, x.sales_count, x.refunds_count, x.tax_minor
                     from store_day_deltas d
                    cross join lateral unnest(d.taxes) x
                    where d.merchant_id = $1 and d.business_date between $2 and $3
                      and ($4::uuid is null or d.store_id = $4)
                      and ($5::uuid is null or d.terminal_id = $5)
                      and d.terminal_id is not null) till_rows
            group by currency, tax_code, rate_bp
           having sum(sales_count) <> 0 or sum(refunds_count) <> 0 or sum(tax_minor) <> 0
            order by currency, tax_code, rate_bp"#,
        scope.merchant_id,
        scope.from,
        scope.to,
        scope.store_id,
        scope.terminal_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

#[derive(Debug, Clone)]
pub struct Completeness {
    pub terminals: i64,
    pub terminals_with_gaps: i64,
    pub terminals_never_synced: i64,
    pub oldest_last_seen_at: Option<DateTime<Utc>>,
}

/// How complete totals are: the tills in scope (revoked ones left out), how
/// many have gaps, and the oldest last push among them.
pub async fn completeness(conn: &mut PgConnection, scope: &Scope) -> Result<Completeness, DbError> {
    let row = sqlx::query_as!(
        Completeness,
        r#"select count(*) as "terminals!",
                  count(*) filter (where ts.highest_seq > ts.contiguous_through_seq) as "terminals_with_gaps!",
                  count(*) filter (where ts.last_batch_at is null) as "terminals_never_synced!",
                  min(ts.last_batch_at) as oldest_last_seen_at
             from terminals t
             join terminal_sync ts on ts.merchant_id = t.merchant_id and ts.terminal_id = t.terminal_id
            where t.merchant_id = $1 and t.revoked_at is null
              and ($2::uuid is null or t.store_id = $2)
              and ($3::uuid is null or t.terminal_id = $3)"#,
        scope.merchant_id,
        scope.store_id,
        scope.terminal_id
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

#[derive(Debug, Clone)]
pub struct SaleRow {
    pub sale_id: Uuid,
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    pub business_date: NaiveDate,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, Copy)]
pub struct SalesPage {
    pub merchant_id: Uuid,
    pub store_id: Option<Uuid>,
    pub terminal_id: Option<Uuid>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Keyset cursor: the (occurred_at, sale_id) of the last row of the previous page.
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// One page of sales, newest first. Keyset pagination: a sale inserted while
/// a client pages never shifts the rows it has not seen yet.
pub async fn sales_page(
    conn: &mut PgConnection,
    page: &SalesPage,
) -> Result<Vec<SaleRow>, DbError> {
    let (before_at, before_id) = page.before.unzip();
    let rows = sqlx::query_as!(
        SaleRow,
        r#"select sale_id, terminal_id, store_id, business_date, occurred_at, received_at, body
             from sales
            where merchant_id = $1
              and ($2::uuid is null or store_id = $2)
              and ($3::uuid is null or terminal_id = $3)
              and ($4::date is null or business_date >= $4)
              and ($5::date is null or business_date <= $5)
              and ($6::timestamptz is null or (occurred_at, sale_id) < ($6, $7))
            order by occurred_at desc, sale_id desc
            limit $8"#,
        page.merchant_id,
        page.store_id,
        page.terminal_id,
        page.from,
        page.to,
        before_at,
        before_id,
        page.limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

#[derive(Debug, Clone)]
pub struct FleetRow {
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    pub name: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub highest_seq: i64,
    pub contiguous_through_seq: i64,
    pub sales_stored: i64,
    /// Seqs up to the highest that are neither stored nor settled.
    pub missing_count: i64,
}

pub async fn fleet(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    store_id: Option<Uuid>,
) -> Result<Vec<FleetRow>, DbError> {
    let rows = sqlx::query_as!(
        FleetRow,
        r#"select t.terminal_id, t.store_id, t.name, t.revoked_at, t.retired_at,
                  ts.last_batch_at as last_seen_at, ts.highest_seq, ts.contiguous_through_seq,
                  ts.sales_stored,
                  -- only a till with gaps costs a count, of its seqs above the prefix
                  case when ts.highest_seq > ts.contiguous_through_seq
                       then greatest(ts.highest_seq - ts.contiguous_through_seq
                            - (select count(*) from (
                                   select a.seq from sales a
                                    where a.merchant_id = t.merchant_id
                                      and a.terminal_id = t.terminal_id
                                      and a.seq > ts.contiguous_through_seq
                                   union
                                   select z.seq from settled_seqs z
                                    where z.merchant_id = t.merchant_id
                                      and z.terminal_id = t.terminal_id
                                      and z.seq > ts.contiguous_through_seq) held), 0)
                       else 0 end as "missing_count!"
             from terminals t
             join terminal_sync ts on ts.merchant_id = t.merchant_id and ts.terminal_id = t.terminal_id
            where t.merchant_id = $1 and ($2::uuid is null or t.store_id = $2)
            order by t.store_id, t.name, t.terminal_id"#,
        merchant_id,
        store_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
