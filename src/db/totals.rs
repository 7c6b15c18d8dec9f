//! Report totals: a push's deltas as the columns its group write
//! ([`super::push::write_group`]) appends to the deltas, one row a business
//! day and currency carrying that day's hour, tender and tax deltas of the
//! till; the resolver's reversals, appended the same way ([`add`]); and the
//! background fold of the deltas into the store's totals and the till's
//! day, hour, tender and tax totals, by chunk or one store at a time
//! ([`crate::jobs::fold`] says which). The fold is the only writer of the
//! totals, so no push waits on another's (or the resolver's) row locks.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::DbError;
use super::leader::{self, Job};
use crate::domain::totals::{Deltas, Measures};

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
        c.append(deltas);
        c
    }

    /// Appends `deltas`' rows after the ones already here.
    fn append(&mut self, deltas: &Deltas) {
        let c = self;
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
    }
}

/// A till as the resolver's deltas name it: merchant, terminal, store.
pub type TillKey = (Uuid, Uuid, Uuid);

/// Where the resolver's rows go: the till of each day row, and for each
/// hour, tender and tax row the day row (1-based) it belongs to.
#[derive(Default)]
struct RowPlaces {
    merchants: Vec<Uuid>,
    terminals: Vec<Uuid>,
    stores: Vec<Uuid>,
    hour_days: Vec<i64>,
    tender_days: Vec<i64>,
    tax_days: Vec<i64>,
}

impl RowPlaces {
    fn extend(&mut self, (merchant_id, terminal_id, store_id): TillKey, deltas: &Deltas) {
        let first = self.merchants.len() as i64 + 1;
        let day_row = |date: &NaiveDate, currency: &String| {
            let at = deltas
                .days
                .keys()
                .position(|(d, c)| d == date && c == currency)
                .expect("every hour, tender and tax row has its day row");
            first + at as i64
        };
        for _ in &deltas.days {
            self.merchants.push(merchant_id);
            self.terminals.push(terminal_id);
            self.stores.push(store_id);
        }
        for key in deltas.hours.keys() {
            self.hour_days
                .push(day_row(&key.business_date, &key.currency));
        }
        for key in deltas.tenders.keys() {
            self.tender_days
                .push(day_row(&key.business_date, &key.currency));
        }
        for key in deltas.taxes.keys() {
            self.tax_days
                .push(day_row(&key.business_date, &key.currency));
        }
    }
}

/// Appends each till's `changes` to the deltas as the till's own, outside
/// any push, in one statement: what the resolver takes out or puts back
/// when it settles which void of a sale counts. The fold adds them to the
/// till's totals and its store's, as it does a push's ([`fold`]); one row
/// a till, business day and currency, each with that day's hour, tender
/// and tax deltas. Appends lock no totals row, so this never waits on a
/// push, nor a push on it.
pub async fn add(
    conn: &mut PgConnection,
    changes: &BTreeMap<TillKey, Deltas>,
) -> Result<(), DbError> {
    let mut columns = TotalsColumns::default();
    let mut places = RowPlaces::default();
    for (&till, deltas) in changes {
        columns.append(deltas);
        places.extend(till, deltas);
    }
    let (d, h, t, x) = (&columns.day, &columns.hour, &columns.tender, &columns.tax);
    sqlx::query!(
        r#"insert into store_day_deltas
                  (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                   refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor,
                   tax_minor, item_sales_minor, gift_card_sales_minor, tips_minor,
                   service_charges_minor, rounding_minor, net_sales_minor, terminal_id, hours,
                   tenders, taxes)
           select d.merchant_id, gen_random_uuid(), d.store_id, d.business_date, d.currency,
                  d.sales, d.refunds, d.voids, d.gross, d.refunded, d.discounts, d.tax,
                  d.item_sales, d.gift_card_sales, d.tips, d.service_charges, d.rounding,
                  d.net_sales, d.terminal_id,
                  array(select row(h.hour, h.sales, h.refunds, h.voids, h.gross, h.refunded,
                                   h.discounts, h.tax, h.item_sales, h.gift_card_sales, h.tips,
                                   h.service_charges, h.rounding, h.net_sales)::till_hour_delta
                          from unnest($19::int8[], $20::int2[], $21::int8[], $22::int8[],
                                      $23::int8[], $24::int8[], $25::int8[], $26::int8[],
                                      $27::int8[], $28::int8[], $29::int8[], $30::int8[],
                                      $31::int8[], $32::int8[], $33::int8[])
                               as h(day_row, hour, sales, refunds, voids, gross, refunded,
                                    discounts, tax, item_sales, gift_card_sales, tips,
                                    service_charges, rounding, net_sales)
                         where h.day_row = d.day_row),
                  array(select row(m.method, m.sales, m.refunds, m.gross,
                                   m.refunded)::till_tender_delta
                          from unnest($34::int8[], $35::text[], $36::int8[], $37::int8[],
                                      $38::int8[], $39::int8[])
                               as m(day_row, method, sales, refunds, gross, refunded)
                         where m.day_row = d.day_row),
                  array(select row(x.code, x.rate_bp, x.sales, x.refunds,
                                   x.amount)::till_tax_delta
                          from unnest($40::int8[], $41::text[], $42::int8[], $43::int8[],
                                      $44::int8[], $45::int8[])
                               as x(day_row, code, rate_bp, sales, refunds, amount)
                         where x.day_row = d.day_row)
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::date[], $5::text[],
                         $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                         $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[],
                         $16::int8[], $17::int8[], $18::int8[]) with ordinality
                  as d(merchant_id, terminal_id, store_id, business_date, currency, sales,
                       refunds, voids, gross, refunded, discounts, tax, item_sales,
                       gift_card_sales, tips, service_charges, rounding, net_sales, day_row)"#,
        &places.merchants,
        &places.terminals,
        &places.stores,
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
        &places.hour_days,
        &columns.hours,
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
        &places.tender_days,
        &columns.methods,
        &t.sales_count,
        &t.refunds_count,
        &t.gross_minor,
        &t.refunds_minor,
        &places.tax_days,
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
               select ctid
                 from store_day_deltas
                where (merchant_id, store_id) not in
                      (select * from unnest($2::uuid[], $3::uuid[]))
                  and ($4::uuid is null or (merchant_id = $4 and store_id = $5))
                order by merchant_id, batch_id
                limit $1
                  for update skip locked
           ), moved as (
               -- By ctid: a join on the key was planned, without
               -- statistics, as a scan of all of a merchant's deltas of
               -- the day per row picked (27 s for 5 000 of 30 000).
               delete from store_day_deltas
                where ctid = any(array(select ctid from picked))
            returning *
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
           ), till_days as (
               insert into sales_day_totals as t
                      (merchant_id, terminal_id, store_id, business_date, currency, sales_count,
                       refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor,
                       tax_minor, item_sales_minor, gift_card_sales_minor, tips_minor,
                       service_charges_minor, rounding_minor, net_sales_minor)
               select merchant_id, terminal_id, (array_agg(store_id))[1], business_date,
                      currency, sum(sales_count), sum(refunds_count), sum(voids_count),
                      sum(gross_minor), sum(refunds_minor), sum(discounts_minor), sum(tax_minor),
                      sum(item_sales_minor), sum(gift_card_sales_minor), sum(tips_minor),
                      sum(service_charges_minor), sum(rounding_minor), sum(net_sales_minor)
                 from moved
                where terminal_id is not null
                group by merchant_id, terminal_id, business_date, currency
                order by merchant_id, terminal_id, business_date, currency
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
           ), till_hours as (
               insert into sales_hour_totals as t
                      (merchant_id, terminal_id, store_id, business_date, hour, currency,
                       sales_count, refunds_count, voids_count, gross_minor, refunds_minor,
                       discounts_minor, tax_minor, item_sales_minor, gift_card_sales_minor,
                       tips_minor, service_charges_minor, rounding_minor, net_sales_minor)
               select m.merchant_id, m.terminal_id, (array_agg(m.store_id))[1], m.business_date,
                      h.hour, m.currency, sum(h.sales_count), sum(h.refunds_count),
                      sum(h.voids_count), sum(h.gross_minor), sum(h.refunds_minor),
                      sum(h.discounts_minor), sum(h.tax_minor), sum(h.item_sales_minor),
                      sum(h.gift_card_sales_minor), sum(h.tips_minor),
                      sum(h.service_charges_minor), sum(h.rounding_minor), sum(h.net_sales_minor)
                 from moved m
                cross join lateral unnest(m.hours) h
                where m.terminal_id is not null
                group by m.merchant_id, m.terminal_id, m.business_date, h.hour, m.currency
                order by m.merchant_id, m.terminal_id, m.business_date, h.hour, m.currency
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
           ), till_tenders as (
               insert into tender_day_totals as t
                      (merchant_id, terminal_id, store_id, business_date, currency, method,
                       sales_count, refunds_count, gross_minor, refunds_minor)
               select m.merchant_id, m.terminal_id, (array_agg(m.store_id))[1], m.business_date,
                      m.currency, x.method, sum(x.sales_count), sum(x.refunds_count),
                      sum(x.gross_minor), sum(x.refunds_minor)
                 from moved m
                cross join lateral unnest(m.tenders) x
                where m.terminal_id is not null
                group by m.merchant_id, m.terminal_id, m.business_date, m.currency, x.method
                order by m.merchant_id, m.terminal_id, m.business_date, m.currency, x.method
               on conflict (merchant_id, terminal_id, business_date, currency, method) do update set
                   sales_count = t.sales_count + excluded.sales_count,
                   refunds_count = t.refunds_count + excluded.refunds_count,
                   gross_minor = t.gross_minor + excluded.gross_minor,
                   refunds_minor = t.refunds_minor + excluded.refunds_minor
           ), till_taxes as (
               insert into tax_day_totals as t
                      (merchant_id, terminal_id, store_id, business_date, currency, tax_code,
                       rate_bp, sales_count, refunds_count, tax_minor)
               select m.merchant_id, m.terminal_id, (array_agg(m.store_id))[1], m.business_date,
                      m.currency, x.tax_code, x.rate_bp, sum(x.sales_count),
                      sum(x.refunds_count), sum(x.tax_minor)
                 from moved m
                cross join lateral unnest(m.taxes) x
                where m.terminal_id is not null
                group by m.merchant_id, m.terminal_id, m.business_date, m.currency, x.tax_code,
                         x.rate_bp
                order by m.merchant_id, m.terminal_id, m.business_date, m.currency, x.tax_code,
                         x.rate_bp
               on conflict (merchant_id, terminal_id, business_date, currency, tax_code, rate_bp)
               do update set
                   sales_count = t.sales_count + excluded.sales_count,
                   refunds_count = t.refunds_count + excluded.refunds_count,
                   tax_minor = t.tax_minor + excluded.tax_minor
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
