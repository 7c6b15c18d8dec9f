//! The checks that compare what the server says with what the journals
//! call for ([`super::expect`]). Pure: the caller fetches the server's
//! figures. Each adds to a [`Findings`]: here the sync state, the exception
//! list and the refusals; in `checks/rows.rs` the day check and the report
//! rows (a till's, and the store's), column by column.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::expect::{ExceptionKey, Presence};
use super::figures::{ReportRows, SyncExpected, TillExpected};
use super::observe::{ObservedRows, TillObservation};
use super::{Discrepancy, ExpectedTill, Fate, Fleet};
use crate::client::{ListedException, SyncView};

mod rows;

/// The code of a sale made after its till was retired.
const TERMINAL_RETIRED: &str = "terminal_retired";

/// What the checks found.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub lost: u64,
    pub duplicated: u64,
    pub mismatched_totals: u64,
    pub mismatched_report_rows: u64,
    pub mismatched_tax_rows: u64,
    pub sync_state_mismatch: bool,
    pub exceptions_missing: u64,
    pub exceptions_unexpected: u64,
    pub refused_unexpectedly: u64,
    pub accepted_after_retirement: u64,
    pub incidents_failed: u64,
    pub discrepancies: Vec<Discrepancy>,
}

/// Every check of one till.
pub(super) fn check_till(
    till: &ExpectedTill,
    wanted: &TillExpected,
    observed: &TillObservation,
) -> Findings {
    let mut findings = Findings::default();
    let terminal_id = till.terminal_id;
    findings.check_sync_state(terminal_id, &wanted.sync, &observed.sync);
    let none = BTreeMap::new();
    for day in &observed.days {
        let expected = wanted.days.get(&day.business_date).unwrap_or(&none);
        findings.compare_day(terminal_id, expected, day);
    }
    findings.compare_rows(Some(terminal_id), &wanted.rows, &observed.rows);
    findings
}

/// The store's report rows, which the server adds up apart from its tills'.
pub(super) fn check_store(wanted: &ReportRows, observed: &ObservedRows) -> Findings {
    let mut findings = Findings::default();
    findings.compare_rows(None, wanted, observed);
    findings
}

impl Findings {
    fn note(&mut self, terminal_id: Option<Uuid>, check: &'static str, detail: String) {
        self.discrepancies.push(Discrepancy {
            terminal_id,
            check,
            detail,
        });
    }

    pub(super) fn check_sync_state(
        &mut self,
        terminal_id: Uuid,
        wanted: &SyncExpected,
        view: &SyncView,
    ) {
        let have = SyncExpected {
            highest_seq: view.highest_seq,
            contiguous_through_seq: view.contiguous_through_seq,
            missing_seq_ranges: view.missing_seq_ranges.clone(),
            sales_stored: view.sales_stored,
        };
        if have != *wanted {
            self.sync_state_mismatch = true;
            self.note(
                Some(terminal_id),
                "sync_state",
                format!(
                    "expected highest {}, contiguous {}, missing {:?}, {} stored; server has \
                     highest {}, contiguous {}, missing {:?}, {} stored",
                    wanted.highest_seq,
                    wanted.contiguous_through_seq,
                    wanted.missing_seq_ranges,
                    wanted.sales_stored,
                    have.highest_seq,
                    have.contiguous_through_seq,
                    have.missing_seq_ranges,
                    have.sales_stored
                ),
            );
        }
    }
}

/// The store's exception list against the expected one, by kind and the
/// set of sales named. Open exceptions must be exactly the expected ones;
/// resolved ones may only be references whose sale arrived (the server
/// resolves those itself), since nobody resolves anything during a run.
pub(super) fn compare_exceptions(
    expected: &BTreeSet<ExceptionKey>,
    listed: &[ListedException],
) -> Findings {
    let mut findings = Findings::default();
    let mut open: BTreeMap<ExceptionKey, u64> = BTreeMap::new();
    for exception in listed {
        let mut ids = exception.sale_ids.clone();
        ids.sort_unstable();
        let key = (exception.kind.clone(), ids);
        match exception.status.as_str() {
            "open" => *open.entry(key).or_default() += 1,
            "resolved" if exception.kind == "unmatched_reference" => {}
            status => {
                findings.exceptions_unexpected += 1;
                findings.note(
                    None,
                    "exceptions",
                    format!("unexpected {status} {}", show(&key)),
                );
            }
        }
    }
    for key in expected.iter().filter(|k| !open.contains_key(*k)) {
        findings.exceptions_missing += 1;
        findings.note(None, "exceptions", format!("missing {}", show(key)));
    }
    for (key, count) in &open {
        let extra = count - u64::from(expected.contains(key));
        if extra > 0 {
            findings.exceptions_unexpected += extra;
            findings.note(None, "exceptions", format!("unexpected open {}", show(key)));
        }
    }
    findings
}

fn show((kind, ids): &ExceptionKey) -> String {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    format!("{kind} [{}]", ids.join(", "))
}

/// Refusals and retirement: the server refuses only sales made after
/// their till was retired (`terminal_retired`), and takes every sale made
/// before; a retirement the API would not do is a failed incident.
pub(super) fn refusals(fleet: &Fleet, presence: &Presence) -> Findings {
    let mut findings = Findings::default();
    for till in &fleet.tills {
        let terminal_id = Some(till.terminal_id);
        let retired_at = match till.retirement.as_ref().map(|r| &r.retired_at) {
            Some(Ok(at)) => Some(*at),
            Some(Err(why)) => {
                findings.incidents_failed += 1;
                findings.note(
                    terminal_id,
                    "retire",
                    format!("retiring the till failed: {why}"),
                );
                None
            }
            None => None,
        };
        let after_retirement =
            |sale: &super::ExpectedSale| retired_at.is_some_and(|at| sale.occurred_at >= at);
        for sale in &till.sales {
            if presence.refused.contains(&sale.sale_id) {
                let code = match &sale.fate {
                    Fate::Refused { code } => code.as_str(),
                    _ => "(listed as refused)",
                };
                if code != TERMINAL_RETIRED || !after_retirement(sale) {
                    findings.refused_unexpectedly += 1;
                    findings.note(
                        terminal_id,
                        "refused",
                        format!("seq {} ({}) refused: {code}", sale.seq, sale.sale_id),
                    );
                }
            } else if presence.stored.contains(&sale.sale_id) && after_retirement(sale) {
                findings.accepted_after_retirement += 1;
                findings.note(
                    terminal_id,
                    "retired",
                    format!(
                        "seq {} ({}) occurred at {}, after the retirement, and was taken",
                        sale.seq, sale.sale_id, sale.occurred_at
                    ),
                );
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests;
