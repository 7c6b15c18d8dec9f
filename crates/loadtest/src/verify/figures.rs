//! The figures a till's held sales add up to, by the API's rules: the day
//! check of `GET /v1/sync?business_date=`, the report rows of `group_by=day`
//! and those of `group_by=tax`; and the store's report rows, its tills'
//! added up. Pure bookkeeping; which sales are held, and which void counts,
//! is decided in [`super::expect`].
//!
//! The rules, per till:
//! - a sale counts on its own business day and currency: `sales_count` +1,
//!   `gross` +total, `discounts` +discount, and its [`Split`] (tax, item
//!   sales, gift cards, tips, service charges, rounding, net sales) added;
//! - a refund on its own day: `refunds_count` +1, `refunds` +total, and its
//!   split taken back;
//! - a void counts `voids_count` +1 on its own day, and takes its sale out
//!   on the void's own day and till, with the sale's amounts (every member);
//! - the day check counts every fact stored (sales, refunds, voids) and a
//!   net of `gross - refunds`, and the same split;
//! - a tax row, per business day, currency and tax code, counts the sales
//!   and refunds naming the code and their tax (sales' less refunds'); a
//!   sale without `taxes` counts all of its tax under no code (`""`, rate
//!   0).
//!
//! The store's rows are its tills' added up: every fact, a void's
//! reversal too, counts on exactly one till of the store. The server keeps
//! them apart (store rows from the store totals and the deltas not folded
//! into them yet, till rows from the till totals), so the two are checked
//! apart.
//!
//! Sums of generated sales: a few thousand minor units each, far from any
//! bound of `i64`.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::ExpectedSale;
use crate::generator::{Kind, Money};

/// The money a back office splits receipts into, as sales add it and
/// refunds take it back: in the day check and in every report row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split {
    pub tax_minor: i64,
    pub item_sales_minor: i64,
    pub gift_card_sales_minor: i64,
    pub tips_minor: i64,
    pub service_charges_minor: i64,
    pub rounding_minor: i64,
    pub net_sales_minor: i64,
}

impl Split {
    /// `money` counted `times` times (-1 to take it back).
    pub fn of(money: &Money, times: i64) -> Self {
        Split {
            tax_minor: money.tax_minor * times,
            item_sales_minor: money.item_sales_minor * times,
            gift_card_sales_minor: money.gift_card_sales_minor * times,
            tips_minor: money.tip_minor * times,
            service_charges_minor: money.service_charge_minor * times,
            rounding_minor: money.rounding_minor * times,
            net_sales_minor: money.net_sales_minor() * times,
        }
    }

    fn add(&mut self, other: &Split) {
        self.tax_minor += other.tax_minor;
        self.item_sales_minor += other.item_sales_minor;
        self.gift_card_sales_minor += other.gift_card_sales_minor;
        self.tips_minor += other.tips_minor;
        self.service_charges_minor += other.service_charges_minor;
        self.rounding_minor += other.rounding_minor;
        self.net_sales_minor += other.net_sales_minor;
    }

    /// Each member with its name in the API.
    pub fn columns(&self) -> [(&'static str, i64); 7] {
        [
            ("tax_minor", self.tax_minor),
            ("item_sales_minor", self.item_sales_minor),
            ("gift_card_sales_minor", self.gift_card_sales_minor),
            ("tips_minor", self.tips_minor),
            ("service_charges_minor", self.service_charges_minor),
            ("rounding_minor", self.rounding_minor),
            ("net_sales_minor", self.net_sales_minor),
        ]
    }
}

/// The day check of `GET /v1/sync?business_date=`, per currency: facts
/// stored, their net, and the split.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct DayFigures {
    pub sales_count: i64,
    pub net_minor: i64,
    pub split: Split,
}

impl DayFigures {
    /// Each figure but the count with its name in the API.
    pub fn columns(&self) -> Vec<(&'static str, i64)> {
        let mut columns = vec![("net_minor", self.net_minor)];
        columns.extend(self.split.columns());
        columns
    }
}

/// A report row's columns (net is `gross - refunds`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Measures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub voids_count: i64,
    pub gross_minor: i64,
    pub refunds_minor: i64,
    pub discounts_minor: i64,
    pub split: Split,
}

impl Measures {
    fn add(&mut self, other: &Measures) {
        self.sales_count += other.sales_count;
        self.refunds_count += other.refunds_count;
        self.voids_count += other.voids_count;
        self.gross_minor += other.gross_minor;
        self.refunds_minor += other.refunds_minor;
        self.discounts_minor += other.discounts_minor;
        self.split.add(&other.split);
    }

    pub fn net_minor(&self) -> i64 {
        self.gross_minor - self.refunds_minor
    }

    /// Every column of a `group_by=day` row with its name in the API.
    pub fn columns(&self) -> Vec<(&'static str, i64)> {
        let mut columns = vec![
            ("sales_count", self.sales_count),
            ("refunds_count", self.refunds_count),
            ("voids_count", self.voids_count),
            ("gross_minor", self.gross_minor),
            ("refunds_minor", self.refunds_minor),
            ("discounts_minor", self.discounts_minor),
            ("net_minor", self.net_minor()),
        ];
        columns.extend(self.split.columns());
        columns
    }
}

/// A `group_by=tax` row: the facts naming a tax code, and its tax.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaxFigures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub tax_minor: i64,
}

impl TaxFigures {
    fn add(&mut self, other: &TaxFigures) {
        self.sales_count += other.sales_count;
        self.refunds_count += other.refunds_count;
        self.tax_minor += other.tax_minor;
    }

    /// Every column of a tax row with its name in the API (voids are
    /// counted in no tax row).
    pub fn columns(&self) -> [(&'static str, i64); 4] {
        [
            ("sales_count", self.sales_count),
            ("refunds_count", self.refunds_count),
            ("voids_count", 0),
            ("tax_minor", self.tax_minor),
        ]
    }
}

/// A tax row's key: business date, currency, tax code, rate in basis
/// points.
pub(super) type TaxKey = (NaiveDate, String, String, i64);

/// The report rows of a till, or of the whole store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ReportRows {
    /// The `group_by=day` rows, per business date and currency.
    pub totals: BTreeMap<(NaiveDate, String), Measures>,
    /// The `group_by=tax` rows of each business date.
    pub taxes: BTreeMap<TaxKey, TaxFigures>,
}

impl ReportRows {
    /// The rows of a store of these tills.
    pub fn of_store<'a>(tills: impl IntoIterator<Item = &'a TillExpected>) -> Self {
        let mut store = ReportRows::default();
        for till in tills {
            for (key, measures) in &till.rows.totals {
                store.totals.entry(key.clone()).or_default().add(measures);
            }
            for (key, figures) in &till.rows.taxes {
                store.taxes.entry(key.clone()).or_default().add(figures);
            }
        }
        store
    }

    fn measures(&mut self, date: NaiveDate, currency: &str) -> &mut Measures {
        self.totals.entry((date, currency.to_owned())).or_default()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SyncExpected {
    pub highest_seq: i64,
    pub contiguous_through_seq: i64,
    pub missing_seq_ranges: Vec<[i64; 2]>,
    pub sales_stored: i64,
}

/// Everything the server must say about one till.
#[derive(Debug, Default)]
pub(super) struct TillExpected {
    pub sync: SyncExpected,
    /// The day check, per business date and currency.
    pub days: BTreeMap<NaiveDate, BTreeMap<String, DayFigures>>,
    /// The report rows of `terminal_id=` the till.
    pub rows: ReportRows,
}

impl TillExpected {
    /// A held fact, on its own day.
    pub fn count(&mut self, sale: &ExpectedSale) {
        self.day(sale.business_date, sale.currency).sales_count += 1;
        match sale.kind {
            Kind::Sale | Kind::Refund => self.add(sale, sale.business_date, 1),
            Kind::Void => {
                let row = self.rows.measures(sale.business_date, sale.currency);
                row.voids_count += 1;
            }
        }
    }

    /// `void` takes `sale` out, on the void's day, with the sale's amounts.
    pub fn take_out(&mut self, void: &ExpectedSale, sale: &ExpectedSale) {
        self.add(sale, void.business_date, -1);
    }

    /// Adds a sale or refund (`sign` 1), or takes it out (`sign` -1), on
    /// `date`.
    fn add(&mut self, sale: &ExpectedSale, date: NaiveDate, sign: i64) {
        let money = &sale.money;
        // Sales add their split, refunds take theirs back.
        let direction = match sale.kind {
            Kind::Sale => sign,
            Kind::Refund => -sign,
            Kind::Void => return,
        };
        let split = Split::of(money, direction);
        let totals = self.rows.measures(date, sale.currency);
        totals.split.add(&split);
        match sale.kind {
            Kind::Sale => {
                totals.sales_count += sign;
                totals.gross_minor += money.total_minor * sign;
                totals.discounts_minor += money.discount_minor * sign;
            }
            _ => {
                totals.refunds_count += sign;
                totals.refunds_minor += money.total_minor * sign;
            }
        }
        let day = self.day(date, sale.currency);
        day.net_minor += money.total_minor * direction;
        day.split.add(&split);
        let unsplit = [(String::new(), 0, money.tax_minor)];
        let taxes: Vec<(String, i64, i64)> = if money.taxes.is_empty() {
            unsplit.to_vec()
        } else {
            (money.taxes.iter())
                .map(|t| (t.code.to_owned(), t.rate_bp, t.amount_minor))
                .collect()
        };
        for (code, rate_bp, amount) in taxes {
            let key = (date, sale.currency.to_owned(), code, rate_bp);
            let row = self.rows.taxes.entry(key).or_default();
            match sale.kind {
                Kind::Sale => row.sales_count += sign,
                _ => row.refunds_count += sign,
            }
            row.tax_minor += amount * direction;
        }
    }

    fn day(&mut self, date: NaiveDate, currency: &str) -> &mut DayFigures {
        self.days
            .entry(date)
            .or_default()
            .entry(currency.to_owned())
            .or_default()
    }
}

#[cfg(test)]
mod tests;
