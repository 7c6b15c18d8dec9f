//! What a batch adds to the report totals: per (business date, hour,
//! currency) of the till, and per tender method. Pure: ingest computes the
//! deltas of the sales it inserted and `db::totals` writes them in the
//! batch's transaction.
//!
//! A void adds to `voids_count` on its own business day and takes the sale
//! it voids out of that sale's own day, whenever that was.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Timelike};

use crate::domain::sale::{Sale, SaleKind, TenderMethod};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub voids_count: i64,
    pub gross_minor: i64,
    pub refunds_minor: i64,
    pub discounts_minor: i64,
    pub tax_minor: i64,
}

impl Measures {
    fn add(&mut self, other: &Measures) {
        self.sales_count += other.sales_count;
        self.refunds_count += other.refunds_count;
        self.voids_count += other.voids_count;
        self.gross_minor += other.gross_minor;
        self.refunds_minor += other.refunds_minor;
        self.discounts_minor += other.discounts_minor;
        self.tax_minor += other.tax_minor;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenderMeasures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub gross_minor: i64,
    pub refunds_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HourKey {
    pub business_date: NaiveDate,
    pub hour: i16,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TenderKey {
    pub business_date: NaiveDate,
    pub currency: String,
    pub method: &'static str,
}

/// The deltas of one batch, one entry per key (sorted, so writes lock rows
/// in a stable order).
#[derive(Debug, Default)]
pub struct Deltas {
    pub hours: BTreeMap<HourKey, Measures>,
    pub tenders: BTreeMap<TenderKey, TenderMeasures>,
}

fn method_name(method: TenderMethod) -> &'static str {
    match method {
        TenderMethod::Cash => "cash",
        TenderMethod::Card => "card",
        TenderMethod::Voucher => "voucher",
        TenderMethod::Other => "other",
    }
}

impl Deltas {
    /// The deltas of `inserted`; `target_of` finds the sale a void names.
    pub fn of<'a>(
        inserted: &[&'a Sale],
        timezone: chrono_tz::Tz,
        target_of: impl Fn(uuid::Uuid) -> Option<&'a Sale>,
    ) -> Self {
        let mut deltas = Deltas::default();
        for sale in inserted {
            match sale.kind {
                SaleKind::Sale | SaleKind::Refund => deltas.count(sale, timezone, 1),
                SaleKind::Void => {
                    let voids = Measures {
                        voids_count: 1,
                        ..Measures::default()
                    };
                    deltas.add_hour(sale, timezone, &voids);
                    let target = sale.refers_to_sale_id.and_then(&target_of);
                    match target {
                        Some(target) => deltas.count(target, timezone, -1),
                        // Ingest accepts a void only with its target at hand.
                        None => {
                            tracing::error!(sale.id = %sale.sale_id, "void accepted without its target; totals not reversed")
                        }
                    }
                }
            }
        }
        deltas
    }

    /// Adds (`sign` 1) or takes out (`sign` -1) a sale or refund.
    fn count(&mut self, sale: &Sale, timezone: chrono_tz::Tz, sign: i64) {
        let measures = match sale.kind {
            SaleKind::Sale => Measures {
                sales_count: sign,
                gross_minor: sign * sale.total_minor,
                discounts_minor: sign * sale.discount_minor,
                tax_minor: sign * sale.tax_minor,
                ..Measures::default()
            },
            SaleKind::Refund => Measures {
                refunds_count: sign,
                refunds_minor: sign * sale.total_minor,
                tax_minor: -sign * sale.tax_minor,
                ..Measures::default()
            },
            SaleKind::Void => return,
        };
        self.add_hour(sale, timezone, &measures);

        let business_date = sale.business_date(timezone);
        let mut seen_methods: Vec<&'static str> = Vec::new();
        for tender in &sale.tenders {
            let method = method_name(tender.method);
            let entry = self
                .tenders
                .entry(TenderKey {
                    business_date,
                    currency: sale.currency.clone(),
                    method,
                })
                .or_default();
            let first_time = !seen_methods.contains(&method);
            seen_methods.push(method);
            match sale.kind {
                SaleKind::Sale => {
                    entry.gross_minor += sign * tender.amount_minor;
                    entry.sales_count += if first_time { sign } else { 0 };
                }
                _ => {
                    entry.refunds_minor += sign * tender.amount_minor;
                    entry.refunds_count += if first_time { sign } else { 0 };
                }
            }
        }
    }

    fn add_hour(&mut self, sale: &Sale, timezone: chrono_tz::Tz, measures: &Measures) {
        let local = sale.occurred_at.with_timezone(&timezone);
        let key = HourKey {
            business_date: local.date_naive(),
            hour: local.hour() as i16,
            currency: sale.currency.clone(),
        };
        self.hours.entry(key).or_default().add(measures);
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.tenders.is_empty()
    }

    /// The hourly deltas rolled up per day.
    pub fn days(&self) -> BTreeMap<(NaiveDate, String), Measures> {
        let mut days: BTreeMap<(NaiveDate, String), Measures> = BTreeMap::new();
        for (key, measures) in &self.hours {
            days.entry((key.business_date, key.currency.clone()))
                .or_default()
                .add(measures);
        }
        days
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn sale(
        id: u128,
        kind: &str,
        at: &str,
        total: i64,
        tenders: serde_json::Value,
        refers: Option<u128>,
    ) -> Sale {
        serde_json::from_value(json!({
            "sale_id": Uuid::from_u128(id), "seq": id, "kind": kind, "occurred_at": at,
            "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "amount_minor": total}],
            "tenders": tenders, "total_minor": total, "tax_minor": total / 10, "discount_minor": 5,
            "refers_to_sale_id": refers.map(Uuid::from_u128),
        }))
        .unwrap()
    }

    #[test]
    fn a_void_counts_on_its_day_and_takes_its_sale_out_of_the_sale_day() {
        let tz = chrono_tz::Europe::Berlin;
        let sold = sale(
            1,
            "sale",
            "2026-11-20T10:00:00+01:00",
            1000,
            json!([{"method": "card", "amount_minor": 600}, {"method": "cash", "amount_minor": 400}]),
            None,
        );
        let void = sale(
            2,
            "void",
            "2026-11-21T09:00:00+01:00",
            1000,
            json!([{"method": "card", "amount_minor": 1000}]),
            Some(1),
        );
        let deltas = Deltas::of(&[&sold, &void], tz, |id| {
            (id == sold.sale_id).then_some(&sold)
        });
        let days = deltas.days();
        let day_of_sale = &days[&(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(), "EUR".into())];
        assert_eq!(
            *day_of_sale,
            Measures::default(),
            "the voided sale counts nowhere"
        );
        let day_of_void = &days[&(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(), "EUR".into())];
        assert_eq!(day_of_void.voids_count, 1);
        assert_eq!(day_of_void.gross_minor, 0);
        assert!(
            deltas
                .tenders
                .values()
                .all(|t| *t == TenderMeasures::default())
        );
    }

    #[test]
    fn refunds_subtract_tax_and_split_tenders_count_once_per_method() {
        let tz = chrono_tz::UTC;
        let sold = sale(
            1,
            "sale",
            "2026-11-20T10:00:00Z",
            1000,
            json!([{"method": "card", "amount_minor": 600}, {"method": "card", "amount_minor": 400}]),
            None,
        );
        let refund = sale(
            2,
            "refund",
            "2026-11-20T11:30:00Z",
            300,
            json!([{"method": "cash", "amount_minor": 300}]),
            None,
        );
        let deltas = Deltas::of(&[&sold, &refund], tz, |_| None);
        let day = deltas.days()[&(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(), "EUR".into())];
        assert_eq!((day.sales_count, day.refunds_count), (1, 1));
        assert_eq!(
            (
                day.gross_minor,
                day.refunds_minor,
                day.tax_minor,
                day.discounts_minor
            ),
            (1000, 300, 100 - 30, 5)
        );
        assert_eq!(deltas.hours.len(), 2, "10:00 and 11:00");
        let card = deltas
            .tenders
            .iter()
            .find(|(k, _)| k.method == "card")
            .unwrap()
            .1;
        assert_eq!((card.sales_count, card.gross_minor), (1, 1000));
    }
}
