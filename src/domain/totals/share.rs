//! What one sale adds to a till's totals, per hour and per tender, before
//! [`Deltas::try_add`](super::Deltas::try_add) adds it (checked) to the batch's deltas.

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
    pub(super) fn of(
        sale: &Sale,
        target: Option<&Sale>,
        timezone: chrono_tz::Tz,
    ) -> Result<Self, OutOfRange> {
        let mut share = Share::default();
        match sale.kind {
            SaleKind::Sale | SaleKind::Refund => share.count(sale, timezone, 1)?,
            SaleKind::Void => {
                let voids = Measures {
                    voids_count: 1,
                    ..Measures::default()
                };
                share.add_hour(sale, timezone, &voids)?;
                match target {
                    Some(target) => share.count(target, timezone, -1)?,
                    // Ingest accepts a void only with its target at hand.
                    None => {
                        tracing::error!(sale.id = %sale.sale_id, "void accepted without its target; totals not reversed")
                    }
                }
            }
        }
        Ok(share)
    }

    /// Adds (`sign` 1) or takes out (`sign` -1) a sale or refund.
    fn count(&mut self, sale: &Sale, timezone: chrono_tz::Tz, sign: i64) -> Result<(), OutOfRange> {
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
        self.add_hour(sale, timezone, &measures)?;

        let business_date = sale.business_date(timezone);
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

    fn add_hour(
        &mut self,
        sale: &Sale,
        timezone: chrono_tz::Tz,
        measures: &Measures,
    ) -> Result<(), OutOfRange> {
        let local = sale.occurred_at.with_timezone(&timezone);
        let key = HourKey {
            business_date: local.date_naive(),
            hour: local.hour() as i16,
            currency: sale.currency.clone(),
        };
        let entry = self.hours.entry(key).or_default();
        *entry = entry.checked_add(measures)?;
        Ok(())
    }
}
