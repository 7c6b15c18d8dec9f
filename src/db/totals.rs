//! Report totals: a push's deltas as the columns its group write
//! ([`super::push::write_group`]) adds to the till-day, till-hour, tender and
//! tax tables and appends to the store deltas; and the background fold of store
//! deltas into store totals, by chunk or one store at a time
//! ([`crate::jobs::fold`] says which). Ingest reads a till's stored totals
//! only to check a push whose totals the database refused as out of range.

use chrono::NaiveDate;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::DbError;
use super::leader::{self, Job};
use crate::domain::totals::{
    Deltas, HourKey, Measures, StoredTotals, TaxKey, TaxMeasures, TenderKey, TenderMeasures,
    method_named,
};

/// Column-major copies of a measure set, ready to bind as arrays.
#[derive(Default)]
pub struct Columns {
    pub sales_count: Vec<i64>,
    pub refunds_count: Vec<i64>,
    pub voids_count: Vec<i64>,
    pub gross_minor: Vec<i64>,
    pub refunds_minor: Vec<i64>,
    pub discounts_minor: Vec<i64>,
    pub tax_minor: Vec<i64>,
    pub item_sales_minor: Vec<i64>,
    pub gift_card_sales_minor: Vec<i64>,
    pub tips_minor: Vec<i64>,
    pub service_charges_minor: Vec<i64>,
    pub rounding_minor: Vec<i64>,
    pub net_sales_minor: Vec<i64>,
}

impl Columns {
    fn push(&mut self, m: &Measures) {
        self.sales_count.push(m.sales_count);
        self.refunds_count.push(m.refunds_count);
        self.voids_count.push(m.voids_count);
        self.gross_minor.push(m.gross_minor);
        self.refunds_minor.push(m.refunds_minor);
        self.discounts_minor.push(m.discounts_minor);
        self.tax_minor.push(m.tax_minor);
        self.item_sales_minor.push(m.item_sales_minor);
        self.gift_card_sales_minor.push(m.gift_card_sales_minor);
        self.tips_minor.push(m.tips_minor);
        self.service_charges_minor.push(m.service_charges_minor);
        self.rounding_minor.push(m.rounding_minor);
        self.net_sales_minor.push(m.net_sales_minor);
    }
}

/// Column-major tender measures.
#[derive(Default)]
pub struct TenderColumns {
    pub sales_count: Vec<i64>,
    pub refunds_count: Vec<i64>,
    pub gross_minor: Vec<i64>,
    pub refunds_minor: Vec<i64>,
}

/// Column-major tax measures.
#[derive(Default)]
pub struct TaxColumns {
    pub sales_count: Vec<i64>,
    pub refunds_count: Vec<i64>,
    pub tax_minor: Vec<i64>,
}

/// Totals deltas as the arrays a push's write ([`super::push`]) or [`add`]
/// adds to a till's day, hour, tender and tax totals and appends to its store's
/// deltas.
#[derive(Default)]
pub struct TotalsColumns {
    pub day_dates: Vec<NaiveDate>,
    pub day_currencies: Vec<String>,
    pub day: Columns,
    pub hour_dates: Vec<NaiveDate>,
    pub hours: Vec<i16>,
    pub hour_currencies: Vec<String>,
    pub hour: Columns,
    pub tender_dates: Vec<NaiveDate>,
    pub tender_currencies: Vec<String>,
    pub methods: Vec<String>,
    pub tender: TenderColumns,
    pub tax_dates: Vec<NaiveDate>,
    pub tax_currencies: Vec<String>,
    pub tax_codes: Vec<String>,
    pub tax_rates_bp: Vec<i64>,
    pub tax: TaxColumns,
}

impl TotalsColumns {
    pub fn of(deltas: &Deltas) -> Self {
        let mut c = Self::default();
        for ((date, currency), measures) in &deltas.days {
            c.day_dates.push(*date);
            c.day_currencies.push(currency.clone());
            c.day.push(measures);
        }
        for (key, measures) in &deltas.hours {
            c.hour_dates.push(key.business_date);
            c.hours.push(key.hour);
            c.hour_currencies.push(key.currency.clone());
            c.hour.push(measures);
        }
        for (key, measures) in &deltas.tenders {
            c.tender_dates.push(key.business_date);
            c.tender_currencies.push(key.currency.clone());
            c.methods.push(key.method.to_owned());
            c.tender.sales_count.push(measures.sales_count);
            c.tender.refunds_count.push(measures.refunds_count);
            c.tender.gross_minor.push(measures.gross_minor);
            c.tender.refunds_minor.push(measures.refunds_minor);
        }
        for (key, measures) in &deltas.taxes {
            c.tax_dates.push(key.business_date);
            c.tax_currencies.push(key.currency.clone());
            c.tax_codes.push(key.code.clone());
            c.tax_rates_bp.push(key.rate_bp);
            c.tax.sales_count.push(measures.sales_count);
            c.tax.refunds_count.push(measures.refunds_count);
            c.tax.tax_minor.push(measures.tax_minor);
        }
        c
    }
}

/// Adds `columns` to a till's totals and appends them to its store's
/// deltas, outside any push: what the resolver takes out or puts back when
/// it settles which void of a sale counts. One statement; the rows are
/// locked in key order, as a push locks them.
pub async fn add(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    store_id: Uuid,
    columns: &TotalsColumns,
) -> Result<(), DbError> {
    let (d, h, t, x) = (&columns.day, &columns.hour, &columns.tender, &columns.tax);
    sqlx::query!(
        r#"with deltas as (
               insert into store_day_deltas
                      (merchant_id, batch_id, store_id, business_date, currency,
                       sales_count, refunds_count, voids_count, gross_minor,
                       refunds_minor, discounts_minor, tax_minor, item_sales_minor,
                       gift_card_sales_minor, tips_minor, service_charges_minor,
                       rounding_minor, net_sales_minor)
               select $1, gen_random_uuid(), $3, d.*
                 from unnest($4::date[], $5::text[], $6::int8[], $7::int8[], $8::int8[],
                             $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[],
                             $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[]) as d
           ), days as (
               insert into sales_day_totals as t
                      (merchant_id, terminal_id, store_id, business_date, currency,
                       sales_count, refunds_count, voids_count, gross_minor,
                       refunds_minor, discounts_minor, tax_minor, item_sales_minor,
                       gift_card_sales_minor, tips_minor, service_charges_minor,
                       rounding_minor, net_sales_minor)
               select $1, $2, $3, d.*
                 from unnest($4::date[], $5::text[], $6::int8[], $7::int8[], $8::int8[],
                             $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[],
                             $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[]) as d
               on conflict (merchant_id, terminal_id, business_date, currency) do update set
                   sales_count = t.sales_count + excluded.sales_count,
                   refunds_count = t.refunds_count + excluded.refunds_count,
                   voids_count = t.voids_count + excluded.voids_count,
                   gross_minor = t.gross_minor + excluded.gross_minor,
                   refunds_minor = t.refunds_minor + excluded.refunds_minor,
                   discounts_minor = t.discounts_minor + excluded.discounts_minor,
                   tax_minor = t.tax_minor + excluded.tax_minor,
                   item_sales_minor = t.item_sales_minor + excluded.item_sales_minor,
                   gift_card_sales_minor = t.gift_card_sales_minor + excluded.gift_card_sales_minor,
                   tips_minor = t.tips_minor + excluded.tips_minor,
                   service_charges_minor = t.service_charges_minor + excluded.service_charges_minor,
                   rounding_minor = t.rounding_minor + excluded.rounding_minor,
                   net_sales_minor = t.net_sales_minor + excluded.net_sales_minor
           ), hours as (
               insert into sales_hour_totals as t
                      (merchant_id, terminal_id, store_id, business_date, hour, currency,
                       sales_count, refunds_count, voids_count, gross_minor,
                       refunds_minor, discounts_minor, tax_minor, item_sales_minor,
                       gift_card_sales_minor, tips_minor, service_charges_minor,
                       rounding_minor, net_sales_minor)
               select $1, $2, $3, h.*
                 from unnest($19::date[], $20::int2[], $21::text[], $22::int8[], $23::int8[],
                             $24::int8[], $25::int8[], $26::int8[], $27::int8[], $28::int8[],
                             $29::int8[], $30::int8[], $31::int8[], $32::int8[], $33::int8[],
                             $34::int8[]) as h
               on conflict (merchant_id, terminal_id, business_date, hour, currency) do update set
                   sales_count = t.sales_count + excluded.sales_count,
                   refunds_count = t.refunds_count + excluded.refunds_count,
                   voids_count = t.voids_count + excluded.voids_count,
                   gross_minor = t.gross_minor + excluded.gross_minor,
                   refunds_minor = t.refunds_minor + excluded.refunds_minor,
                   discounts_minor = t.discounts_minor + excluded.discounts_minor,
                   tax_minor = t.tax_minor + excluded.tax_minor,
                   item_sales_minor = t.item_sales_minor + excluded.item_sales_minor,
                   gift_card_sales_minor = t.gift_card_sales_minor + excluded.gift_card_sales_minor,
                   tips_minor = t.tips_minor + excluded.tips_minor,
                   service_charges_minor = t.service_charges_minor + excluded.service_charges_minor,
                   rounding_minor = t.rounding_minor + excluded.rounding_minor,
                   net_sales_minor = t.net_sales_minor + excluded.net_sales_minor
           ), taxes as (
               insert into tax_day_totals as t
                      (merchant_id, terminal_id, store_id, business_date, currency, tax_code,
                       rate_bp, sales_count, refunds_count, tax_minor)
               select $1, $2, $3, x.*
                 from unnest($42::date[], $43::text[], $44::text[], $45::int8[], $46::int8[],
                             $47::int8[], $48::int8[]) as x
               on conflict (merchant_id, terminal_id, business_date, currency, tax_code, rate_bp)
               do update set
                   sales_count = t.sales_count + excluded.sales_count,
                   refunds_count = t.refunds_count + excluded.refunds_count,
                   tax_minor = t.tax_minor + excluded.tax_minor
           )
           insert into tender_day_totals as t
                  (merchant_id, terminal_id, store_id, business_date, currency, method,
                   sales_count, refunds_count, gross_minor, refunds_minor)
           select $1, $2, $3, m.*
             from unnest($35::date[], $36::text[], $37::text[], $38::int8[], $39::int8[],
                         $40::int8[], $41::int8[]) as m
           on conflict (merchant_id, terminal_id, business_date, currency, method) do update set
               sales_count = t.sales_count + excluded.sales_count,
               refunds_count = t.refunds_count + excluded.refunds_count,
               gross_minor = t.gross_minor + excluded.gross_minor,
               refunds_minor = t.refunds_minor + excluded.refunds_minor"#,
        merchant_id,
        terminal_id,
        store_id,
        &columns.day_dates,
        &columns.day_currencies,
        &d.sales_count,
        &d.refunds_count,
        &d.voids_count,
        &d.gross_minor,
        &d.refunds_minor,
        &d.discounts_minor,
        &d.tax_minor,
        &d.item_sales_minor,
        &d.gift_card_sales_minor,
        &d.tips_minor,
        &d.service_charges_minor,
        &d.rounding_minor,
        &d.net_sales_minor,
        &columns.hour_dates,
        &columns.hours,
        &columns.hour_currencies,
        &h.sales_count,
        &h.refunds_count,
        &h.voids_count,
        &h.gross_minor,
        &h.refunds_minor,
        &h.discounts_minor,
        &h.tax_minor,
        &h.item_sales_minor,
        &h.gift_card_sales_minor,
        &h.tips_minor,
        &h.service_charges_minor,
        &h.rounding_minor,
        &h.net_sales_minor,
        &columns.tender_dates,
        &columns.tender_currencies,
        &columns.methods,
        &t.sales_count,
        &t.refunds_count,
        &t.gross_minor,
        &t.refunds_minor,
        &columns.tax_dates,
        &columns.tax_currencies,
        &columns.tax_codes,
        &columns.tax_rates_bp,
        &x.sales_count,
        &x.refunds_count,
        &x.tax_minor,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One row of any of the till's totals tables; `hour` is set for hour
/// rows, `method` for tender rows, `tax_code` and `rate_bp` for tax rows.
struct StoredRow {
    business_date: NaiveDate,
    hour: Option<i16>,
    currency: String,
    method: Option<String>,
    tax_code: Option<String>,
    rate_bp: Option<i64>,
    sales_count: i64,
    refunds_count: i64,
    voids_count: i64,
    gross_minor: i64,
    refunds_minor: i64,
    discounts_minor: i64,
    tax_minor: i64,
    item_sales_minor: i64,
    gift_card_sales_minor: i64,
    tips_minor: i64,
    service_charges_minor: i64,
    rounding_minor: i64,
    net_sales_minor: i64,
}

impl StoredRow {
    fn measures(&self) -> Measures {
        Measures {
            sales_count: self.sales_count,
            refunds_count: self.refunds_count,
            voids_count: self.voids_count,
            gross_minor: self.gross_minor,
            refunds_minor: self.refunds_minor,
            discounts_minor: self.discounts_minor,
            tax_minor: self.tax_minor,
            item_sales_minor: self.item_sales_minor,
            gift_card_sales_minor: self.gift_card_sales_minor,
            tips_minor: self.tips_minor,
            service_charges_minor: self.service_charges_minor,
            rounding_minor: self.rounding_minor,
            net_sales_minor: self.net_sales_minor,
        }
    }
}

/// The till's stored day, hour, tender and tax totals on these business
/// dates, in one round trip (rows only this till's batches write, so they
/// hold still while its sync row is locked).
pub async fn stored_on(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    dates: &[NaiveDate],
) -> Result<StoredTotals, DbError> {
    let rows = sqlx::query_as!(
        StoredRow,
        r#"select business_date as "business_date!", null::int2 as "hour?", currency as "currency!",
                  null::text as "method?", null::text as "tax_code?", null::int8 as "rate_bp?",
                  sales_count as "sales_count!", refunds_count as "refunds_count!",
                  voids_count as "voids_count!", gross_minor as "gross_minor!",
                  refunds_minor as "refunds_minor!", discounts_minor as "discounts_minor!",
                  tax_minor as "tax_minor!", item_sales_minor as "item_sales_minor!",
                  gift_card_sales_minor as "gift_card_sales_minor!", tips_minor as "tips_minor!",
                  service_charges_minor as "service_charges_minor!",
                  rounding_minor as "rounding_minor!", net_sales_minor as "net_sales_minor!"
             from sales_day_totals
            where merchant_id = $1 and terminal_id = $2 and business_date = any($3)
           union all
           select business_date, hour, currency, null, null, null, sales_count, refunds_count,
                  voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor,
                  item_sales_minor, gift_card_sales_minor, tips_minor, service_charges_minor,
                  rounding_minor, net_sales_minor
             from sales_hour_totals
            where merchant_id = $1 and terminal_id = $2 and business_date = any($3)
           union all
           select business_date, null, currency, method, null, null, sales_count, refunds_count,
                  0, gross_minor, refunds_minor, 0, 0, 0, 0, 0, 0, 0, 0
             from tender_day_totals
            where merchant_id = $1 and terminal_id = $2 and business_date = any($3)
           union all
           select business_date, null, currency, null, tax_code, rate_bp, sales_count,
                  refunds_count, 0, 0, 0, 0, tax_minor, 0, 0, 0, 0, 0, 0
             from tax_day_totals
            where merchant_id = $1 and terminal_id = $2 and business_date = any($3)"#,
        merchant_id,
        terminal_id,
        dates
    )
    .fetch_all(conn)
    .await?;
    let mut stored = StoredTotals::default();
    for r in rows {
        let measures = r.measures();
        match (r.hour, r.method.as_deref(), r.tax_code, r.rate_bp) {
            (Some(hour), _, _, _) => {
                let key = HourKey {
                    business_date: r.business_date,
                    hour,
                    currency: r.currency,
                };
                stored.hours.insert(key, measures);
            }
            (None, Some(method), _, _) => {
                // A method no sale can name again cannot be added to.
                let Some(method) = method_named(method) else {
                    continue;
                };
                let key = TenderKey {
                    business_date: r.business_date,
                    currency: r.currency,
                    method,
                };
                let tender = TenderMeasures {
                    sales_count: r.sales_count,
                    refunds_count: r.refunds_count,
                    gross_minor: r.gross_minor,
                    refunds_minor: r.refunds_minor,
                };
                stored.tenders.insert(key, tender);
            }
            (None, None, Some(code), Some(rate_bp)) => {
                let key = TaxKey {
                    business_date: r.business_date,
                    currency: r.currency,
                    code,
                    rate_bp,
                };
                let tax = TaxMeasures {
                    sales_count: r.sales_count,
                    refunds_count: r.refunds_count,
                    tax_minor: r.tax_minor,
                };
                stored.taxes.insert(key, tax);
            }
            _ => {
                stored.days.insert((r.business_date, r.currency), measures);
            }
        }
    }
    Ok(stored)
}

/// A store, as the fold names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey {
    pub merchant_id: Uuid,
    pub store_id: Uuid,
}

/// Column-major copies of store keys, to bind as arrays.
fn columns(stores: &[StoreKey]) -> (Vec<Uuid>, Vec<Uuid>) {
    stores.iter().map(|s| (s.merchant_id, s.store_id)).unzip()
}

/// Moves up to `limit` store deltas of every store but those in `skip`
/// into the store totals, in one statement. Returns how many were moved, or
/// `None` if another replica leads the fold now ([`super::leader`]).
pub async fn fold_store_deltas(
    conn: &mut PgConnection,
    limit: i64,
    skip: &[StoreKey],
) -> Result<Option<u64>, DbError> {
    fold(conn, limit, skip, None).await
}

/// Moves up to `limit` deltas of one store, in a statement of its own: a
/// store whose totals cannot take its deltas fails alone. `None` if another
/// replica leads the fold now.
pub async fn fold_deltas_of(
    conn: &mut PgConnection,
    store: StoreKey,
    limit: i64,
) -> Result<Option<u64>, DbError> {
    fold(conn, limit, &[], Some(store)).await
}

/// The stores that have deltas among the first `limit` not in `skip` (the
/// ones a chunk of the fold would take), each once.
pub async fn stores_with_deltas(
    conn: &mut PgConnection,
    limit: i64,
    skip: &[StoreKey],
) -> Result<Vec<StoreKey>, DbError> {
    let (skip_merchants, skip_stores) = columns(skip);
    let stores = sqlx::query_as!(
        StoreKey,
        r#"select distinct merchant_id as "merchant_id!", store_id as "store_id!"
             from (select merchant_id, store_id
                     from store_day_deltas
                    where (merchant_id, store_id) not in
                          (select * from unnest($2::uuid[], $3::uuid[]))
                    order by merchant_id, batch_id
                    limit $1) pending
            order by 1, 2"#,
        limit,
        &skip_merchants,
        &skip_stores
    )
    .fetch_all(conn)
    .await?;
    Ok(stores)
}

/// Moves up to `limit` store deltas (of `only`, or of every store not in
/// `skip`) into the store totals in one statement, so a report never sees
/// them in both places or in neither. A total that cannot take its deltas
/// fails the statement ([`DbError::OutOfRange`]), never wraps.
///
/// Replicas fold one at a time: the statement runs in a transaction that
/// first takes the fold's lock ([`super::leader`]), and returns `None` without
/// moving anything if another replica holds it. Two folds at once used to
/// upsert the same totals rows in different orders and deadlock now and
/// then; the upserts also go in key order, so even two folds that somehow
/// ran together would take their row locks in the same order.
async fn fold(
    conn: &mut PgConnection,
    limit: i64,
    skip: &[StoreKey],
    only: Option<StoreKey>,
) -> Result<Option<u64>, DbError> {
    let mut tx = conn.begin().await?;
    if !leader::lead(&mut tx, Job::Fold).await? {
        return Ok(None);
    }
    let (skip_merchants, skip_stores) = columns(skip);
    let moved = sqlx::query_scalar!(
        r#"with picked as (
               select merchant_id, batch_id, business_date, currency
                 from store_day_deltas
                where (merchant_id, store_id) not in
                      (select * from unnest($2::uuid[], $3::uuid[]))
                  and ($4::uuid is null or (merchant_id = $4 and store_id = $5))
                order by merchant_id, batch_id
                limit $1
                  for update skip locked
           ), moved as (
               delete from store_day_deltas d
                using picked p
                where d.merchant_id = p.merchant_id and d.batch_id = p.batch_id
                  and d.business_date = p.business_date and d.currency = p.currency
            returning d.*
           ), folded as (
               insert into store_day_totals as t
                      (merchant_id, store_id, business_date, currency, sales_count, refunds_count,
                       voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor,
                       item_sales_minor, gift_card_sales_minor, tips_minor,
                       service_charges_minor, rounding_minor, net_sales_minor)
               select merchant_id, store_id, business_date, currency, sum(sales_count),
                      sum(refunds_count), sum(voids_count), sum(gross_minor), sum(refunds_minor),
                      sum(discounts_minor), sum(tax_minor), sum(item_sales_minor),
                      sum(gift_card_sales_minor), sum(tips_minor), sum(service_charges_minor),
                      sum(rounding_minor), sum(net_sales_minor)
                 from moved
                group by merchant_id, store_id, business_date, currency
                order by merchant_id, store_id, business_date, currency
               on conflict (merchant_id, store_id, business_date, currency) do update set
                   sales_count = t.sales_count + excluded.sales_count,
                   refunds_count = t.refunds_count + excluded.refunds_count,
                   voids_count = t.voids_count + excluded.voids_count,
                   gross_minor = t.gross_minor + excluded.gross_minor,
                   refunds_minor = t.refunds_minor + excluded.refunds_minor,
                   discounts_minor = t.discounts_minor + excluded.discounts_minor,
                   tax_minor = t.tax_minor + excluded.tax_minor,
                   item_sales_minor = t.item_sales_minor + excluded.item_sales_minor,
                   gift_card_sales_minor = t.gift_card_sales_minor + excluded.gift_card_sales_minor,
                   tips_minor = t.tips_minor + excluded.tips_minor,
                   service_charges_minor = t.service_charges_minor + excluded.service_charges_minor,
                   rounding_minor = t.rounding_minor + excluded.rounding_minor,
                   net_sales_minor = t.net_sales_minor + excluded.net_sales_minor
           )
           select count(*) as "moved!" from moved"#,
        limit,
        &skip_merchants,
        &skip_stores,
        only.map(|s| s.merchant_id),
        only.map(|s| s.store_id)
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(moved as u64))
}
