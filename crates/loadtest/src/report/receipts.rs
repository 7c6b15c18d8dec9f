//! What kinds of receipts the tills rang up, counted from their journals:
//! both styles of tax, tips, service charges, gift cards, cash rounding, two
//! tax rates, and sales before the business day's cutoff. It shows the
//! money model was exercised; whether the server added it up right is the
//! verdict's (every column of every figure).

use std::fmt;

use serde::Serialize;

use crate::generator::{Kind, StoreDay};
use crate::verify::Fleet;

#[derive(Debug, Default, Serialize)]
pub struct Receipts {
    /// Sales and refunds (voids mirror a sale and are not counted again).
    pub receipts: u64,
    /// US style: the tax added on top of the lines.
    pub tax_on_top: u64,
    pub with_tip: u64,
    /// European style: the tax inside the prices.
    pub tax_inside: u64,
    pub cash_rounded: u64,
    pub with_service_charge: u64,
    pub loading_gift_card: u64,
    pub two_tax_rates: u64,
    /// Sales, refunds and voids whose business date is the day before their
    /// local date: they occurred before the business day's start.
    pub before_cutoff: u64,
    /// The cutoff, `HH:MM` local time.
    pub business_day_starts_at: String,
}

impl Receipts {
    pub fn of(fleet: &Fleet, day: &StoreDay) -> Self {
        let mut receipts = Receipts {
            business_day_starts_at: day.starts_at_text(),
            ..Receipts::default()
        };
        for sale in fleet.tills.iter().flat_map(|t| &t.sales) {
            if sale.business_date < day.local_date(&sale.occurred_at) {
                receipts.before_cutoff += 1;
            }
            if sale.kind == Kind::Void {
                continue;
            }
            let money = &sale.money;
            let count = |yes: bool| u64::from(yes);
            receipts.receipts += 1;
            receipts.tax_on_top += count(!money.tax_included);
            receipts.tax_inside += count(money.tax_included);
            receipts.with_tip += count(money.tip_minor > 0);
            receipts.cash_rounded += count(money.rounding_minor != 0);
            receipts.with_service_charge += count(money.service_charge_minor > 0);
            receipts.loading_gift_card += count(money.gift_card_sales_minor > 0);
            receipts.two_tax_rates += count(money.taxes.len() > 1);
        }
        receipts
    }
}

impl fmt::Display for Receipts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  receipts   {} sales and refunds: {} with the tax on top ({} with a tip), {} with it inside \
             ({} rounded in cash); {} with a service charge, {} loading a gift card, {} with two tax rates; \
             {} before the {} cutoff, on the previous business day",
            self.receipts,
            self.tax_on_top,
            self.with_tip,
            self.tax_inside,
            self.cash_rounded,
            self.with_service_charge,
            self.loading_gift_card,
            self.two_tax_rates,
            self.before_cutoff,
            self.business_day_starts_at
        )
    }
}
