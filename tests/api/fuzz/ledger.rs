//! What the accepted sales imply for a till's report totals, computed here
//! from the sales as sent (docs/reports.md: every fact counts on its own
//! day; a void counts in voids_count, and the first void of a sale takes
//! that sale's amounts out on the void's own day, hour and till), and the
//! totals as the database holds them. Rows are keyed by their key columns
//! joined with `|`.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, FixedOffset, Timelike};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

/// The members of an accepted sale the totals depend on. An accepted sale
/// was read by the server's own rules, so it reads here too.
#[derive(Deserialize)]
pub struct Sent {
    pub sale_id: Uuid,
    pub seq: i64,
    kind: String,
    occurred_at: DateTime<FixedOffset>,
    currency: String,
    tenders: Vec<SentTender>,
    total_minor: i64,
    tax_minor: i64,
    discount_minor: i64,
    refers_to_sale_id: Option<Uuid>,
}

#[derive(Deserialize)]
struct SentTender {
    method: String,
    amount_minor: i64,
}

/// Key -> measures, rows of zeros left out.
pub type Rows = BTreeMap<String, Vec<i64>>;

/// sales, refunds and voids counts; gross, refunds, discounts, tax.
const MEASURES: &str = "array[sales_count, refunds_count, voids_count, gross_minor, \
                        refunds_minor, discounts_minor, tax_minor]";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// business date|hour|currency
    pub hours: Rows,
    /// business date|currency
    pub days: Rows,
    /// business date|currency|method: sales and refunds counts, gross, refunds
    pub tenders: Rows,
}

fn add(rows: &mut Rows, key: String, measures: &[i64]) {
    let row = rows.entry(key).or_insert_with(|| vec![0; measures.len()]);
    for (a, b) in row.iter_mut().zip(measures) {
        *a += b;
    }
}

fn without_zeros(mut rows: Rows) -> Rows {
    rows.retain(|_, m| m.iter().any(|&v| v != 0));
    rows
}

impl Totals {
    /// The totals one till's accepted facts (`mine`) imply, whose voids may
    /// name a sale of any till (`all`: every accepted fact of the merchant).
    pub fn implied_by(mine: &[Sent], all: &[Sent]) -> Self {
        let by_id: HashMap<Uuid, &Sent> = all.iter().map(|s| (s.sale_id, s)).collect();
        // The void of each sale that counts: the first by (occurred_at, id),
        // of the voids of every till.
        let mut counting: HashMap<Uuid, &Sent> = HashMap::new();
        for void in all.iter().filter(|s| s.kind == "void") {
            let Some(target) = void.refers_to_sale_id.and_then(|id| by_id.get(&id)) else {
                continue;
            };
            if target.kind == "void" {
                continue;
            }
            let order = |s: &Sent| (s.occurred_at.to_utc(), s.sale_id);
            counting
                .entry(target.sale_id)
                .and_modify(|first| {
                    if order(void) < order(first) {
                        *first = void;
                    }
                })
                .or_insert(void);
        }
        let mine_ids: HashSet<Uuid> = mine.iter().map(|s| s.sale_id).collect();
        let mut totals = Totals::default();
        for fact in mine {
            totals.count(fact, fact, 1);
        }
        for (target, void) in &counting {
            if mine_ids.contains(&void.sale_id) {
                totals.count(by_id[target], void, -1);
            }
        }
        Totals {
            hours: without_zeros(totals.hours),
            days: without_zeros(totals.days),
            tenders: without_zeros(totals.tenders),
        }
    }

    /// Adds (`sign` 1) or takes out (`sign` -1) what `fact` counts, on the
    /// day and hour `at` occurred; a void counts only in voids_count.
    fn count(&mut self, fact: &Sent, at: &Sent, sign: i64) {
        let local = at.occurred_at.with_timezone(&chrono_tz::Europe::Berlin);
        let (date, currency) = (local.date_naive(), &fact.currency);
        let (t, x, d) = (fact.total_minor, fact.tax_minor, fact.discount_minor);
        let measures = match fact.kind.as_str() {
            "void" => [0, 0, 1, 0, 0, 0, 0],
            "sale" => [1, 0, 0, t, 0, d, x],
            _ => [0, 1, 0, 0, t, 0, -x],
        }
        .map(|m| m * sign);
        let hour = local.hour();
        add(
            &mut self.hours,
            format!("{date}|{hour}|{currency}"),
            &measures,
        );
        add(&mut self.days, format!("{date}|{currency}"), &measures);
        if fact.kind == "void" {
            return;
        }
        let mut seen = HashSet::new();
        for tender in &fact.tenders {
            let first = i64::from(seen.insert(&tender.method));
            let a = tender.amount_minor;
            let m = if fact.kind == "sale" {
                [first, 0, a, 0]
            } else {
                [0, first, 0, a]
            }
            .map(|m| m * sign);
            let key = format!("{date}|{currency}|{}", tender.method);
            add(&mut self.tenders, key, &m);
        }
    }

    /// A till's totals as its own totals tables hold them, once the fold
    /// has moved its deltas there (within seconds).
    pub async fn of_till(db: &PgPool, terminal_id: Uuid) -> Self {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while sqlx::query_scalar::<_, i64>(
            "select count(*) from store_day_deltas where terminal_id = $1",
        )
        .bind(terminal_id)
        .fetch_one(db)
        .await
        .unwrap()
            > 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the till's deltas were never folded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let rows = async |sql: String| -> Rows {
            let rows: Vec<(String, Vec<i64>)> = sqlx::query_as(&sql)
                .bind(terminal_id)
                .fetch_all(db)
                .await
                .unwrap();
            without_zeros(rows.into_iter().collect())
        };
        Totals {
            hours: rows(format!(
                "select concat_ws('|', business_date, hour, currency), {MEASURES} \
                 from sales_hour_totals where terminal_id = $1"
            ))
            .await,
            days: rows(format!(
                "select concat_ws('|', business_date, currency), {MEASURES} \
                 from sales_day_totals where terminal_id = $1"
            ))
            .await,
            tenders: rows(
                "select concat_ws('|', business_date, currency, method), \
                 array[sales_count, refunds_count, gross_minor, refunds_minor] \
                 from tender_day_totals where terminal_id = $1"
                    .to_owned(),
            )
            .await,
        }
    }

    /// A store's day totals: its folded rows plus the deltas not yet folded
    /// (what a report adds up).
    pub async fn store_days(db: &PgPool, store_id: Uuid) -> Rows {
        let columns = "business_date, currency, sales_count, refunds_count, voids_count, \
                       gross_minor, refunds_minor, discounts_minor, tax_minor";
        let sql = format!(
            "select concat_ws('|', business_date, currency), \
                    array[sum(sales_count), sum(refunds_count), sum(voids_count), \
                          sum(gross_minor), sum(refunds_minor), sum(discounts_minor), \
                          sum(tax_minor)]::int8[] \
               from (select {columns} from store_day_totals where store_id = $1 \
                     union all \
                     select {columns} from store_day_deltas where store_id = $1) t \
              group by business_date, currency"
        );
        let rows: Vec<(String, Vec<i64>)> = sqlx::query_as(&sql)
            .bind(store_id)
            .fetch_all(db)
            .await
            .unwrap();
        without_zeros(rows.into_iter().collect())
    }
}
