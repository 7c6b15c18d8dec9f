//! What facts add to the report totals: per (business date, hour, currency)
//! of the till, per day, and per tender method. Pure: ingest adds each fact
//! it accepts with [`Deltas::try_add`], the resolver adds a void's reversal
//! of its sale with [`Deltas::try_reverse`], and [`crate::db::totals`]
//! writes the deltas.
//!
//! A void adds to `voids_count` on its own business day as it is stored.
//! Once its sale is here (and it is the void that counts: see
//! [`super::references`]) it takes that sale's amounts and tenders out of
//! the totals of the void's own business day, hour and till, not the
//! sale's: a day's totals change only through facts that occurred on it,
//! so a day whose end-of-day report was printed stays as it was, and a void
//! on the sale's own day (the usual case) nets the sale out of that day.
//!
//! No sum here wraps: every addition is checked, and a sale whose share
//! would take a delta beyond `i64` is refused with `OutOfRange` and adds
//! nothing (ingest rejects it alone). A stored total plus its deltas is the
//! fold's to check ([`crate::jobs::fold`]): a store whose totals cannot
//! take them waits, and its reports say so.
//! A total is answered only if every JSON reader reads it exactly
//! (`exact`, `net`).

mod measures;
mod share;

use std::collections::BTreeMap;

use chrono::NaiveDate;

pub use measures::{CheckedSum, Measures, OutOfRange, TaxMeasures, TenderMeasures};
use share::Share;

use crate::domain::calendar::Calendar;
use crate::domain::sale::Sale;

/// The largest magnitude a total is answered with: 2^53 - 1, the largest
/// integer every JSON reader (an IEEE-754 double) holds exactly. Beyond it a
/// dashboard would show a rounded number, so the answer is a refusal.
pub const MAX_EXACT_TOTAL: i64 = (1 << 53) - 1;

/// `value`, if every JSON reader reads it exactly.
pub fn exact(value: i64) -> Result<i64, OutOfRange> {
    if (-MAX_EXACT_TOTAL..=MAX_EXACT_TOTAL).contains(&value) {
        Ok(value)
    } else {
        Err(OutOfRange)
    }
}

/// Net money: `gross - refunds`, exact or refused.
pub fn net(gross: i64, refunds: i64) -> Result<i64, OutOfRange> {
    exact(gross.checked_sub(refunds).ok_or(OutOfRange)?)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HourKey {
    pub business_date: NaiveDate,
    pub hour: i16,
    pub currency: String,
}

/// A business date and currency.
pub type DayKey = (NaiveDate, String);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TenderKey {
    pub business_date: NaiveDate,
    pub currency: String,
    pub method: &'static str,
}

/// A business date, currency and tax code (`""`: the tax of a sale that
/// does not split it by code) with its rate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaxKey {
    pub business_date: NaiveDate,
    pub currency: String,
    pub code: String,
    pub rate_bp: i64,
}

/// The deltas of one batch, one entry per key (sorted, so writes lock rows
/// in a stable order). `days` is `hours` rolled up per day.
#[derive(Debug, Clone, Default)]
pub struct Deltas {
    pub hours: BTreeMap<HourKey, Measures>,
    pub days: BTreeMap<DayKey, Measures>,
    pub tenders: BTreeMap<TenderKey, TenderMeasures>,
    pub taxes: BTreeMap<TaxKey, TaxMeasures>,
}

impl Deltas {
    /// Adds what `sale` adds as it is stored, unless that would take a
    /// delta beyond `i64`: then nothing is added. (A total plus its deltas
    /// is the fold's to check: [`crate::jobs::fold`].)
    pub fn try_add(&mut self, sale: &Sale, calendar: &Calendar) -> Result<(), OutOfRange> {
        self.try_add_share(&Share::of(sale, calendar)?)
    }

    /// Adds `void`'s reversal of `target` (or, `undo`, puts it back), with
    /// the same checks as [`Deltas::try_add`].
    pub fn try_reverse(
        &mut self,
        void: &Sale,
        target: &Sale,
        calendar: &Calendar,
        undo: bool,
    ) -> Result<(), OutOfRange> {
        let sign = if undo { 1 } else { -1 };
        self.try_add_share(&Share::reversal(void, target, calendar, sign)?)
    }

    fn try_add_share(&mut self, share: &Share) -> Result<(), OutOfRange> {
        let mut days: BTreeMap<DayKey, Measures> = BTreeMap::new();
        for (key, measures) in &share.hours {
            let day = days
                .entry((key.business_date, key.currency.clone()))
                .or_default();
            *day = day.checked_add(measures)?;
        }
        let hours = sum_each(&self.hours, &share.hours)?;
        let days = sum_each(&self.days, &days)?;
        let tenders = sum_each(&self.tenders, &share.tenders)?;
        let taxes = sum_each(&self.taxes, &share.taxes)?;
        self.hours.extend(hours);
        self.days.extend(days);
        self.tenders.extend(tenders);
        self.taxes.extend(taxes);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.tenders.is_empty() && self.taxes.is_empty()
    }
}

/// Each entry of `added` plus its current delta: the new deltas, each of
/// which fits.
fn sum_each<K: Ord + Clone, M: CheckedSum>(
    current: &BTreeMap<K, M>,
    added: &BTreeMap<K, M>,
) -> Result<Vec<(K, M)>, OutOfRange> {
    added
        .iter()
        .map(|(key, measures)| {
            let delta = current
                .get(key)
                .copied()
                .unwrap_or_default()
                .checked_add(measures)?;
            Ok((key.clone(), delta))
        })
        .collect()
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

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    #[test]
    fn a_void_counts_on_its_day_and_takes_its_sale_out_of_its_own_day_not_the_sales() {
        let tz = &Calendar::fixed(chrono_tz::Europe::Berlin);
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
        let mut deltas = Deltas::default();
        deltas.try_add(&sold, tz).unwrap();
        deltas.try_add(&void, tz).unwrap();
        let day_of_void = deltas.days[&(date(21), "EUR".into())];
        assert_eq!(
            day_of_void,
            Measures {
                voids_count: 1,
                ..Measures::default()
            },
            "stored, a void counts only itself"
        );

        deltas.try_reverse(&void, &sold, tz, false).unwrap();
        let day_of_sale = deltas.days[&(date(20), "EUR".into())];
        assert_eq!(day_of_sale.sales_count, 1, "a closed day stays as it was");
        assert_eq!(day_of_sale.gross_minor, 1000);
        let day_of_void = deltas.days[&(date(21), "EUR".into())];
        assert_eq!(day_of_void.voids_count, 1);
        assert_eq!(
            day_of_void.sales_count, -1,
            "the sale is taken out on the void's day"
        );
        assert_eq!(day_of_void.gross_minor, -1000);
        assert_eq!(day_of_void.discounts_minor, -5);
        assert_eq!(day_of_void.tax_minor, -100);
        let cash = deltas
            .tenders
            .iter()
            .find(|(k, _)| k.method == "cash" && k.business_date == date(21))
            .expect("the sale's tenders leave the void's day");
        assert_eq!(cash.1.gross_minor, -400);

        deltas.try_reverse(&void, &sold, tz, true).unwrap();
        assert_eq!(
            deltas.days[&(date(21), "EUR".into())],
            Measures {
                voids_count: 1,
                ..Measures::default()
            },
            "undone, the reversal is gone"
        );
    }

    #[test]
    fn a_void_on_its_sales_day_nets_the_sale_out_of_that_day() {
        let tz = &Calendar::fixed(chrono_tz::UTC);
        let sold = sale(1, "sale", "2026-11-20T10:00:00Z", 1000, card(1000), None);
        let void = sale(2, "void", "2026-11-20T10:05:00Z", 1000, card(1000), Some(1));
        let mut deltas = Deltas::default();
        for fact in [&sold, &void] {
            deltas.try_add(fact, tz).unwrap();
        }
        deltas.try_reverse(&void, &sold, tz, false).unwrap();
        assert_eq!(
            day(&deltas),
            Measures {
                voids_count: 1,
                ..Measures::default()
            }
        );
        assert!(
            deltas
                .tenders
                .values()
                .all(|t| *t == TenderMeasures::default())
        );
    }

    #[test]
    fn refunds_subtract_tax_and_split_tenders_count_once_per_method() {
        let tz = &Calendar::fixed(chrono_tz::UTC);
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
        let mut deltas = Deltas::default();
        for fact in [&sold, &refund] {
            deltas.try_add(fact, tz).unwrap();
        }
        let day = deltas.days[&(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(), "EUR".into())];
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

    #[test]
    fn a_net_is_exact_or_refused() {
        assert_eq!(net(1000, 300), Ok(700));
        assert_eq!(net(MAX_EXACT_TOTAL, 0), Ok(MAX_EXACT_TOTAL));
        assert_eq!(net(-MAX_EXACT_TOTAL, 0), Ok(-MAX_EXACT_TOTAL));
        assert_eq!(
            net(MAX_EXACT_TOTAL, -1),
            Err(OutOfRange),
            "exact in i64, not for JSON"
        );
        assert_eq!(net(i64::MAX, -1), Err(OutOfRange), "beyond i64");
        assert_eq!(net(0, i64::MIN), Err(OutOfRange));
    }

    fn day(deltas: &Deltas) -> Measures {
        deltas.days[&(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(), "EUR".into())]
    }

    fn card(total: i64) -> serde_json::Value {
        json!([{"method": "card", "amount_minor": total}])
    }

    #[test]
    fn a_sale_that_would_overflow_a_delta_is_refused_and_adds_nothing() {
        let tz = &Calendar::fixed(chrono_tz::UTC);
        let mut deltas = Deltas::default();
        let big = sale(
            1,
            "sale",
            "2026-11-20T10:00:00Z",
            i64::MAX - 100,
            card(i64::MAX - 100),
            None,
        );
        deltas.try_add(&big, tz).unwrap();
        let before = deltas.clone();
        // Another hour, so the hour delta fits: the day's roll-up does not.
        let more = sale(2, "sale", "2026-11-20T11:00:00Z", 1000, card(1000), None);
        assert_eq!(deltas.try_add(&more, tz), Err(OutOfRange));
        assert_eq!(
            (deltas.days, deltas.hours, deltas.tenders),
            (before.days, before.hours, before.tenders)
        );
    }

    #[test]
    fn taking_out_a_stored_sale_of_the_smallest_amount_is_refused_not_wrapped() {
        let tz = &Calendar::fixed(chrono_tz::UTC);
        let mut odd = sale(1, "sale", "2026-11-20T10:00:00Z", 10, card(10), None);
        odd.total_minor = i64::MIN;
        let void = sale(2, "void", "2026-11-20T10:00:00Z", 10, card(10), Some(1));
        let mut deltas = Deltas::default();
        assert_eq!(deltas.try_reverse(&void, &odd, tz, false), Err(OutOfRange));
        assert!(deltas.is_empty());
    }
}
