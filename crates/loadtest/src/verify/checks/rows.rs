//! The figures compared column by column: the day check per business date
//! and currency, and the report rows of a till or of the store
//! (`group_by=day` per date and currency, `group_by=tax` per date, currency
//! and code). A group the server leaves out counts as all zeros; a member
//! it leaves out or sends as `null` where a number is due differs from any
//! number. Each group that differs is one line naming every column that
//! does ("tips_minor expected 250, server 0"), under its till, or under the
//! store (no till) for the store's rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use uuid::Uuid;

use super::Findings;
use crate::client::{BusinessDay, TaxRow, TotalsRow};
use crate::verify::figures::{DayFigures, Measures, ReportRows, TaxFigures, TaxKey};
use crate::verify::observe::ObservedRows;

/// A column as the server answered it.
type Have = (&'static str, Option<i64>);

impl Findings {
    /// The day check: fewer facts than expected are lost, more are
    /// duplicated, and a different net or split is a mismatched total.
    pub(in crate::verify) fn compare_day(
        &mut self,
        terminal_id: Uuid,
        expected: &BTreeMap<String, DayFigures>,
        day: &BusinessDay,
    ) {
        let stored: BTreeMap<&str, (i64, Vec<Have>)> = day
            .totals
            .iter()
            .map(|t| {
                let mut columns = vec![("net_minor", Some(t.net_minor))];
                columns.extend(t.split.columns());
                (t.currency.as_str(), (t.sales_count, columns))
            })
            .collect();
        let currencies: BTreeSet<&str> = expected
            .keys()
            .map(String::as_str)
            .chain(stored.keys().copied())
            .collect();
        for currency in currencies {
            let want = expected.get(currency).copied().unwrap_or_default();
            let (have_count, have) = match stored.get(currency) {
                Some((count, columns)) => (*count, columns.clone()),
                None => (0, all_some(DayFigures::default().columns())),
            };
            let differing = differing(&want.columns(), &have);
            if want.sales_count == have_count && differing.is_empty() {
                continue;
            }
            let difference = have_count - want.sales_count;
            if difference < 0 {
                self.lost += difference.unsigned_abs();
            } else {
                self.duplicated += difference.unsigned_abs();
            }
            self.mismatched_totals += 1;
            let mut detail = format!(
                "{} {currency}: expected {} facts, server has {}",
                day.business_date, want.sales_count, have_count
            );
            if !differing.is_empty() {
                detail = format!("{detail}; {}", differing.join(", "));
            }
            self.note(Some(terminal_id), "business_day", detail);
        }
    }

    /// The report rows of a till (`whose` is its id) or of the store
    /// (`None`), every column of every row.
    pub(in crate::verify) fn compare_rows(
        &mut self,
        whose: Option<Uuid>,
        expected: &ReportRows,
        observed: &ObservedRows,
    ) {
        self.compare_totals(whose, &expected.totals, &observed.totals);
        self.compare_taxes(whose, &expected.taxes, &observed.taxes);
    }

    /// Every column of every (day, currency) row.
    fn compare_totals(
        &mut self,
        whose: Option<Uuid>,
        expected: &BTreeMap<(NaiveDate, String), Measures>,
        rows: &[TotalsRow],
    ) {
        let stored: BTreeMap<(NaiveDate, String), Vec<Have>> = rows
            .iter()
            .map(|row| {
                let key = (row.group.business_date, row.currency.clone());
                (key, day_row_columns(row))
            })
            .collect();
        let keys: BTreeSet<&(NaiveDate, String)> = expected.keys().chain(stored.keys()).collect();
        for key in keys {
            let want = expected.get(key).copied().unwrap_or_default();
            let have = (stored.get(key).cloned())
                .unwrap_or_else(|| all_some(Measures::default().columns()));
            let columns = differing(&want.columns(), &have);
            if columns.is_empty() {
                continue;
            }
            self.mismatched_report_rows += 1;
            self.note(
                whose,
                "report_totals",
                format!("{} {}: {}", key.0, key.1, columns.join(", ")),
            );
        }
    }

    /// Every `group_by=tax` row of each day: the counts and tax per
    /// currency and code, 0 voids, and `null` in every other money member.
    fn compare_taxes(
        &mut self,
        whose: Option<Uuid>,
        expected: &BTreeMap<TaxKey, TaxFigures>,
        days: &BTreeMap<NaiveDate, Vec<TaxRow>>,
    ) {
        let mut stored: BTreeMap<TaxKey, &TaxRow> = BTreeMap::new();
        for (&date, rows) in days {
            for row in rows {
                let code = row.group.tax_code.clone();
                let key = (date, row.currency.clone(), code, row.group.rate_bp);
                stored.insert(key, row);
            }
        }
        let keys: BTreeSet<&TaxKey> = expected.keys().chain(stored.keys()).collect();
        for key in keys {
            let want = expected.get(key).copied().unwrap_or_default();
            let have = match stored.get(key) {
                Some(row) => vec![
                    ("sales_count", Some(row.sales_count)),
                    ("refunds_count", Some(row.refunds_count)),
                    ("voids_count", Some(row.voids_count)),
                    ("tax_minor", row.tax_minor),
                ],
                None => all_some(TaxFigures::default().columns()),
            };
            let mut columns = differing(&want.columns(), &have);
            if let Some(row) = stored.get(key) {
                columns.extend(
                    (row.not_split_by_code().iter())
                        .filter_map(|(name, have)| have.map(|h| (name, h)))
                        .map(|(name, have)| format!("{name} expected null, server {have}")),
                );
            }
            if columns.is_empty() {
                continue;
            }
            self.mismatched_tax_rows += 1;
            let (date, currency, code, rate_bp) = key;
            let code = if code.is_empty() { "(no code)" } else { code };
            self.note(
                whose,
                "tax_totals",
                format!(
                    "{date} {currency} {code} at {rate_bp} bp: {}",
                    columns.join(", ")
                ),
            );
        }
    }
}

/// A `group_by=day` row's columns, named as [`Measures::columns`] names them.
fn day_row_columns(row: &TotalsRow) -> Vec<Have> {
    let mut columns = vec![
        ("sales_count", Some(row.sales_count)),
        ("refunds_count", Some(row.refunds_count)),
        ("voids_count", Some(row.voids_count)),
        ("gross_minor", Some(row.gross_minor)),
        ("refunds_minor", Some(row.refunds_minor)),
        ("discounts_minor", row.discounts_minor),
        ("net_minor", Some(row.net_minor)),
    ];
    columns.extend(row.split.columns());
    columns
}

fn all_some(columns: impl IntoIterator<Item = (&'static str, i64)>) -> Vec<Have> {
    columns
        .into_iter()
        .map(|(name, v)| (name, Some(v)))
        .collect()
}

/// "name expected X, server Y" for each wanted column the server answers
/// differently (`null` for a member it left out or sent as null).
fn differing(want: &[(&'static str, i64)], have: &[Have]) -> Vec<String> {
    want.iter()
        .filter_map(|&(name, want)| {
            let have = have.iter().find(|(n, _)| *n == name).and_then(|(_, v)| *v);
            (have != Some(want)).then(|| match have {
                Some(have) => format!("{name} expected {want}, server {have}"),
                None => format!("{name} expected {want}, server null"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
