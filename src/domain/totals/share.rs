//! What one fact adds to a till's totals, per hour and per tender, before
//! [`Deltas`](super::Deltas) adds it (checked) to its deltas: a sale or
//! refund counted, a void counted in `voids_count`, or a void's reversal of
//! its sale.

use std::collections::BTreeMap;

use chrono::Timelike;

use super::{CheckedSum, HourKey, Measures, OutOfRange, TenderKey, TenderMeasures};
use crate::domain::sale::{Sale, SaleKind, TenderMethod};

/// `amount` counted `sign` times (1 to add, -1 to take out).
fn times(amount: i64, sign: i64) -> Result<i64, OutOfRange> {
    amount.checked_mul(sign).ok_or(OutOfRange)
}

fn method_name(method: TenderMethod) -> &'static str {
    match method {
        TenderMethod::Cash => "cash",
        TenderMethod::Card => "card",
        TenderMethod::Voucher => "voucher",
        TenderMethod::Other => "other",
    }
}

/// What one sale adds, per hour and per tender, before it is added.
#[derive(Default)]
pub(super) struct Share {
    pub(super) hours: BTreeMap<HourKey, Measures>,
    pub(super) tenders: BTreeMap<TenderKey, TenderMeasures>,
}

impl Share {
    /// What a fact adds as it is stored: a sale or refund on its own day,
    /// hour and tenders; a void only its `voids_count` (what it takes out is
    /// [`Share::reversal`], once its sale is here).
    pub(super) fn of(sale: &Sale, timezone: chrono_tz::Tz) -> Result<Self, OutOfRange> {
        let mut share = Share::default();
        match sale.kind {
            SaleKind::Sale | SaleKind::Refund => share.count(sale, sale, timezone, 1)?,
            SaleKind::Void => {
                let voids = Measures {
                    voids_count: 1,
                    ..Measures::default()
                };
                share.add_hour(sale.currency.clone(), sale, timezone, &voids)?;
            }
        }
        Ok(share)
    }

    /// A void's reversal of the sale (or refund) it voids: `target`'s
    /// amounts and tenders taken out (`sign` -1), or put back (`sign` 1, when
    /// another void turns out to be the one that counts), on the void's own
    /// business day and hour.
    pub(super) fn reversal(
        void: &Sale,
        target: &Sale,
        timezone: chrono_tz::Tz,
        sign: i64,
    ) -> Result<Self, OutOfRange> {
        let mut share = Share::default();
        share.count(target, void, timezone, sign)?;
        Ok(share)
    }

    /// Adds (`sign` 1) or takes out (`sign` -1) a sale or refund, on the day
    /// and hour `at` occurred.
    fn count(
        &mut self,
        sale: &Sale,
        at: &Sale,
        timezone: chrono_tz::Tz,
        sign: i64,
    ) -> Result<(), OutOfRange> {
        let measures = match sale.kind {
            SaleKind::Sale => Measures {
                sales_count: sign,
                gross_minor: times(sale.total_minor, sign)?,
                discounts_minor: times(sale.discount_minor, sign)?,
                tax_minor: times(sale.tax_minor, sign)?,
                ..Measures::default()
            },
            SaleKind::Refund => Measures {
                refunds_count: sign,
                refunds_minor: times(sale.total_minor, sign)?,
                tax_minor: times(sale.tax_minor, -sign)?,
                ..Measures::default()
            },
            SaleKind::Void => return Ok(()),
        };
        self.add_hour(sale.currency.clone(), at, timezone, &measures)?;

        let business_date = at.business_date(timezone);
        let mut seen_methods: Vec<&'static str> = Vec::new();
        for tender in &sale.tenders {
            let method = method_name(tender.method);
            let first_time = !seen_methods.contains(&method);
            seen_methods.push(method);
            let count = if first_time { sign } else { 0 };
            let amount = times(tender.amount_minor, sign)?;
            let added = match sale.kind {
                SaleKind::Sale => TenderMeasures {
                    sales_count: count,
                    gross_minor: amount,
                    ..TenderMeasures::default()
                },
                _ => TenderMeasures {
                    refunds_count: count,
                    refunds_minor: amount,
                    ..TenderMeasures::default()
                },
            };
            let entry = self
                .tenders
                .entry(TenderKey {
                    business_date,
                    currency: sale.currency.clone(),
                    method,
                })
                .or_default();
            *entry = entry.checked_add(&added)?;
        }
        Ok(())
    }

    /// Adds `measures` in `currency` to the hour `at` occurred.
    fn add_hour(
        &mut self,
        currency: String,
        at: &Sale,
        timezone: chrono_tz::Tz,
        measures: &Measures,
    ) -> Result<(), OutOfRange> {
        let local = at.occurred_at.with_timezone(&timezone);
        let key = HourKey {
            business_date: local.date_naive(),
            hour: local.hour() as i16,
            currency,
        };
        let entry = self.hours.entry(key).or_default();
        *entry = entry.checked_add(measures)?;
        Ok(())
    }
}
