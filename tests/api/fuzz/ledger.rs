//! What the accepted sales imply for a till's report totals, computed here
//! from the sales as sent (docs/reports.md: voided sales count nowhere, a
//! void counts on its own day), and the totals as the database holds them.
//! Rows are keyed by their key columns joined with `|`.

use std::collections::{BTreeMap, HashSet};

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
    /// The totals `accepted` (one till's, in any order) imply.
    pub fn implied_by(accepted: &[Sent]) -> Self {
        let voided: HashSet<Uuid> = (accepted.iter())
            .filter(|s| s.kind == "void")
            .filter_map(|s| s.refers_to_sale_id)
            .collect();
        let mut totals = Totals::default();
        for sale in accepted {
            let local = sale.occurred_at.with_timezone(&chrono_tz::Europe::Berlin);
            let (date, currency) = (local.date_naive(), &sale.currency);
            let (t, x, d) = (sale.total_minor, sale.tax_minor, sale.discount_minor);
            let measures = match sale.kind.as_str() {
                "void" => [0, 0, 1, 0, 0, 0, 0],
                _ if voided.contains(&sale.sale_id) => continue,
                "sale" => [1, 0, 0, t, 0, d, x],
                _ => [0, 1, 0, 0, t, 0, -x],
            };
            let hour = local.hour();
            add(
                &mut totals.hours,
                format!("{date}|{hour}|{currency}"),
                &measures,
            );
            add(&mut totals.days, format!("{date}|{currency}"), &measures);
            if sale.kind == "void" {
                continue;
            }
            let mut seen = HashSet::new();
            for tender in &sale.tenders {
                let first = i64::from(seen.insert(&tender.method));
                let a = tender.amount_minor;
                let m = if sale.kind == "sale" {
                    [first, 0, a, 0]
                } else {
                    [0, first, 0, a]
                };
                let key = format!("{date}|{currency}|{}", tender.method);
                add(&mut totals.tenders, key, &m);
            }
        }
        Totals {
            hours: without_zeros(totals.hours),
            days: without_zeros(totals.days),
            tenders: without_zeros(totals.tenders),
        }
    }

    /// A till's totals as its own totals tables hold them.
    pub async fn of_till(db: &PgPool, terminal_id: Uuid) -> Self {
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
