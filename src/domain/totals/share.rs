//! What one fact adds to a till's totals, per hour, per tender and per tax
//! code, before [`Deltas`](super::Deltas) adds it (checked) to its deltas: a
//! sale or refund counted, a void counted in `voids_count`, or a void's
//! reversal of its sale.

use std::collections::BTreeMap;

use super::{
    CheckedSum, HourKey, Measures, OutOfRange, TaxKey, TaxMeasures, TenderKey, TenderMeasures,
};
use crate::domain::calendar::Calendar;
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

/// What one fact adds, per hour, per tender and per tax code.
#[derive(Default)]
pub(super) struct Share {
    pub(super) hours: BTreeMap<HourKey, Measures>,
    pub(super) tenders: BTreeMap<TenderKey, TenderMeasures>,
    pub(super) taxes: BTreeMap<TaxKey, TaxMeasures>,
}

impl Share {
    /// What a fact adds as it is stored: a sale or refund on its own day,
    /// hour, tenders and taxes; a void only its `voids_count` (what it takes
    /// out is [`Share::reversal`], once its sale is here).
    pub(super) fn of(sale: &Sale, calendar: &Calendar) -> Result<Self, OutOfRange> {
        let mut share = Share::default();
        match sale.kind {
            SaleKind::Sale | SaleKind::Refund => share.count(sale, sale, calendar, 1)?,
            SaleKind::Void => {
                let voids = Measures {
                    voids_count: 1,
                    ..Measures::default()
                };
                share.add_hour(sale.currency.clone(), sale, calendar, &voids)?;
            }
        }
        Ok(share)
    }

    /// A void's reversal of the sale (or refund) it voids: `target`'s
    /// amounts, tenders and taxes taken out (`sign` -1), or put back (`sign`
    /// 1, when another void turns out to be the one that counts), on the
    /// void's own business day and hour.
    pub(super) fn reversal(
        void: &Sale,
        target: &Sale,
        calendar: &Calendar,
        sign: i64,
    ) -> Result<Self, OutOfRange> {
        let mut share = Share::default();
        share.count(target, void, calendar, sign)?;
        Ok(share)
    }

    /// Adds (`sign` 1) or takes out (`sign` -1) a sale or refund, on the day
    /// and hour `at` occurred. A refund counts against the sales: its money
    /// in `refunds`, and its tax, item sales, gift cards, tips, service
    /// charge, rounding and net sales taken back.
    fn count(
        &mut self,
        sale: &Sale,
        at: &Sale,
        calendar: &Calendar,
        sign: i64,
    ) -> Result<(), OutOfRange> {
        let (items, gift_cards) = sale.line_sums().ok_or(OutOfRange)?;
        let net_sales = sale.net_sales_minor().ok_or(OutOfRange)?;
        // The receipt's split, as sales add it and refunds take it back.
        let direction = match sale.kind {
            SaleKind::Sale => sign,
            SaleKind::Refund => -sign,
            SaleKind::Void => return Ok(()),
        };
        let split = Measures {
            tax_minor: times(sale.tax_minor, direction)?,
            item_sales_minor: times(items, direction)?,
            gift_card_sales_minor: times(gift_cards, direction)?,
            tips_minor: times(sale.tip_minor, direction)?,
            service_charges_minor: times(sale.service_charge_minor, direction)?,
            rounding_minor: times(sale.rounding_minor, direction)?,
            net_sales_minor: times(net_sales, direction)?,
            ..Measures::default()
        };
        let measures = match sale.kind {
            SaleKind::Sale => Measures {
                sales_count: sign,
                gross_minor: times(sale.total_minor, sign)?,
                discounts_minor: times(sale.discount_minor, sign)?,
                ..split
            },
            _ => Measures {
                refunds_count: sign,
                refunds_minor: times(sale.total_minor, sign)?,
                ..split
            },
        };
        self.add_hour(sale.currency.clone(), at, calendar, &measures)?;

        let business_date = calendar.business_date(&at.occurred_at);
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
            let key = TenderKey {
                business_date,
                currency: sale.currency.clone(),
                method,
            };
            let entry = self.tenders.entry(key).or_default();
            *entry = entry.checked_add(&added)?;
        }

        // Per tax code: the sale's taxes, or all of its tax under no code
        // when it does not split it.
        let unsplit = [(String::new(), 0, sale.tax_minor)];
        let taxes: Vec<(String, i64, i64)> = if sale.taxes.is_empty() {
            unsplit.to_vec()
        } else {
            (sale.taxes.iter())
                .map(|t| (t.code.clone(), t.rate_bp, t.amount_minor))
                .collect()
        };
        for (code, rate_bp, amount) in taxes {
            let added = TaxMeasures {
                sales_count: if sale.kind == SaleKind::Sale { sign } else { 0 },
                refunds_count: if sale.kind == SaleKind::Refund {
                    sign
                } else {
                    0
                },
                tax_minor: times(amount, direction)?,
            };
            let key = TaxKey {
                business_date,
                currency: sale.currency.clone(),
                code,
                rate_bp,
            };
            let entry = self.taxes.entry(key).or_default();
            *entry = entry.checked_add(&added)?;
        }
        Ok(())
    }

    /// Adds `measures` in `currency` to the business day and hour `at`
    /// occurred.
    fn add_hour(
        &mut self,
        currency: String,
        at: &Sale,
        calendar: &Calendar,
        measures: &Measures,
    ) -> Result<(), OutOfRange> {
        let slot = calendar.slot(&at.occurred_at);
        let key = HourKey {
            business_date: slot.business_date,
            hour: slot.hour,
            currency,
        };
        let entry = self.hours.entry(key).or_default();
        *entry = entry.checked_add(measures)?;
        Ok(())
    }
}
