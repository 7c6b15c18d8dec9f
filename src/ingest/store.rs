//! What a batch stores: each valid sale classified against the stored
//! sales it could collide with (read by `db::push::read`) and the batch's
//! earlier sales; the accepted ones as rows to insert; payloads that
//! conflict with a stored sale kept for review.
//!
//! Each sale the classifier would accept is also added to the batch's
//! totals deltas (`TotalsCheck`), checked: one whose share would take a
//! delta, or (when the stored totals were read) a stored total, beyond
//! `i64` is rejected alone with `total_out_of_range`, before anything of it
//! is stored.
//!
//! A sale of another till committed between the read and the write is not
//! seen here: the write then finds it, stores nothing, and the batch is
//! read and classified again (`ingest::push_batch`).

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::Item;
use super::classify::{Stored, Verdict, classify_with};
use super::totals_check::{TotalsCheck, total_out_of_range};
use crate::db::push::{Conflicts, NewSales};
use crate::domain::sale::{Sale, StoredSale};
use crate::domain::terminal::Terminal;
use crate::domain::totals::Deltas;

/// What classifying a batch came to.
pub(super) struct Classified {
    /// Every item's verdict, in input order.
    pub verdicts: Vec<Verdict>,
    /// The indexes of the items to insert, in input order.
    pub accepted: Vec<usize>,
    /// What the accepted sales add to the till's totals.
    pub deltas: Deltas,
}

/// Classifies the valid sales against `related`; invalid ones keep the
/// rejection parsing gave them. `void_targets` are the stored sales the
/// batch's voids name (`void_targets`), and `check` has loaded what it
/// checks against (`TotalsCheck::load`).
pub(super) fn classify(
    terminal: &Terminal,
    items: &[Item],
    related: &[StoredSale],
    void_targets: &HashMap<Uuid, Sale>,
    check: &TotalsCheck,
) -> Classified {
    let mut verdicts: Vec<Verdict> = items
        .iter()
        .map(|item| match &item.sale {
            Ok(_) => Verdict::Accept,
            Err(rejection) => Verdict::Reject(rejection.clone()),
        })
        .collect();
    let valid: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].sale.is_ok())
        .collect();
    let sales: Vec<&Sale> = valid.iter().map(|&i| items[i].valid_sale()).collect();
    let mut deltas = Deltas::default();
    let classified = classify_with(
        terminal.terminal_id,
        &sales,
        &Stored::new(terminal.terminal_id, related),
        |sale, batch_target| {
            let target = sale
                .refers_to_sale_id
                .and_then(|id| batch_target.or_else(|| void_targets.get(&id)));
            deltas
                .try_add(sale, target, terminal.timezone, check.stored())
                .map_err(|_| total_out_of_range())
        },
    );
    let mut accepted = Vec::new();
    for (index, verdict) in valid.into_iter().zip(classified) {
        if verdict == Verdict::Accept {
            accepted.push(index);
        }
        verdicts[index] = verdict;
    }
    Classified {
        verdicts,
        accepted,
        deltas,
    }
}

/// Stored sales that the batch's voids name, parsed, for the totals.
pub(super) fn void_targets(sales: &[&Sale], related: &[StoredSale]) -> HashMap<Uuid, Sale> {
    let targets: HashSet<Uuid> = sales.iter().filter_map(|s| s.refers_to_sale_id).collect();
    related
        .iter()
        .filter(|r| targets.contains(&r.sale_id))
        .filter_map(|r| {
            serde_json::from_value::<Sale>(r.body.clone())
                .ok()
                .map(|target| (r.sale_id, target))
        })
        .collect()
}

/// The accepted sales as rows to insert.
pub(super) fn new_rows(terminal: &Terminal, items: &[Item], accepted: &[usize]) -> NewSales {
    let mut rows = NewSales::default();
    for sale in accepted.iter().map(|&i| items[i].valid_sale()) {
        rows.sale_id.push(sale.sale_id);
        rows.seq.push(sale.seq);
        rows.kind.push(sale.kind.as_str().to_owned());
        rows.occurred_at.push(sale.occurred_at.to_utc());
        rows.business_date
            .push(sale.business_date(terminal.timezone));
        rows.currency.push(sale.currency.clone());
        rows.total_minor.push(sale.total_minor);
        rows.tax_minor.push(sale.tax_minor);
        rows.discount_minor.push(sale.discount_minor);
        rows.refers_to_sale_id.push(sale.refers_to_sale_id);
        rows.body
            .push(serde_json::to_value(sale).expect("a sale always serializes"));
    }
    rows
}

/// The payloads rejected as `sale_id_conflict`, so a person can see what
/// the till sent under an id that was already taken.
pub(super) fn conflicts(items: &[Item], verdicts: &[Verdict]) -> Conflicts {
    let mut conflicts = Conflicts::default();
    for sale in items
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, Verdict::Reject(r) if r.code == "sale_id_conflict"))
        .filter_map(|(item, _)| item.sale.as_ref().ok())
    {
        conflicts.sale_id.push(sale.sale_id);
        conflicts
            .payload
            .push(serde_json::to_value(sale).expect("a sale always serializes"));
    }
    conflicts
}
