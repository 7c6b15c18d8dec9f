//! Step 2 of a push, pure: from what the push is checked against
//! ([`Seen`]), everything it stores and answers. Each valid sale is
//! classified against the stored sales it could collide with and the push's
//! earlier sales ([`classify`]); each one the classifier would accept is
//! added to the push's totals deltas, checked ([`super::totals_check`]: one whose
//! share would take a delta, or a stored total when those were read, beyond
//! `i64` is rejected alone with `total_out_of_range`); the till's sync state
//! is advanced ([`progress`]); and the push's row and its answer are built
//! ([`response`]): the accepted sales as rows, payloads that conflict with a
//! stored sale kept for review.
//!
//! A sale of another till committed between the read and the write is not
//! seen here: the write then finds it, stores nothing, and the push is read
//! and decided again ([`super::Pipeline::push`]).

use uuid::Uuid;

use super::classify::{Stored, Verdict, classify_with};
use super::read::Seen;
use super::response::{self, Counts};
use super::totals_check::total_out_of_range;
use super::{IngestOptions, Item, Push, progress};
use crate::db::idempotency::StoredResponse;
use crate::db::push::{Conflicts, NewSales, PushRow, Write};
use crate::db::sync::SyncState;
use crate::db::totals::TotalsColumns;
use crate::domain::sale::Sale;
use crate::domain::totals::Deltas;

/// What to write, the sync row it leaves, and the answer once it is written.
pub struct Planned {
    pub row: PushRow,
    /// The sync row the push leaves.
    pub next: SyncState,
    /// The indexes of the items it stores, in input order.
    pub accepted: Vec<usize>,
    pub body: Vec<u8>,
    pub counts: Counts,
}

/// Decides everything `push` stores and answers, against `seen`.
pub fn decide(push: &Push<'_>, seen: &Seen, options: IngestOptions) -> Planned {
    let classified = classify(push, seen);
    let accepted_seqs: Vec<i64> = classified
        .accepted
        .iter()
        .map(|&i| push.items[i].valid_sale().seq)
        .collect();
    let next = progress::advance(&seen.sync, &seen.stored_above, &accepted_seqs);
    let batch_id = Uuid::now_v7();
    let (body, counts) = response::body(
        batch_id,
        push.items,
        &classified.verdicts,
        next.contiguous_through_seq,
    );
    let totals = if options.maintain_totals {
        TotalsColumns::of(&classified.deltas)
    } else {
        TotalsColumns::default()
    };
    let row = Write {
        terminal: push.terminal,
        batch_id,
        key: push.key,
        seen: &seen.sync,
        next: &next,
        response: StoredResponse {
            request_sha256: push.request_sha256.to_vec(),
            status: 200,
            body: body.clone(),
        },
        sales: new_rows(push, &classified.accepted),
        conflicts: conflicts(push.items, &classified.verdicts),
        totals,
    }
    .into_row();
    Planned {
        row,
        next,
        accepted: classified.accepted,
        body,
        counts,
    }
}

/// What classifying a push came to.
struct Classified {
    /// Every item's verdict, in input order.
    verdicts: Vec<Verdict>,
    /// The indexes of the items to insert, in input order.
    accepted: Vec<usize>,
    /// What the accepted sales add to the till's totals.
    deltas: Deltas,
}

/// Classifies the valid sales against what `seen` holds; invalid ones keep
/// the rejection parsing gave them.
fn classify(push: &Push<'_>, seen: &Seen) -> Classified {
    let terminal = push.terminal;
    let mut verdicts: Vec<Verdict> = push
        .items
        .iter()
        .map(|item| match &item.sale {
            Ok(_) => Verdict::Accept,
            Err(rejection) => Verdict::Reject(rejection.clone()),
        })
        .collect();
    let valid: Vec<usize> = (0..push.items.len())
        .filter(|&i| push.items[i].sale.is_ok())
        .collect();
    let sales: Vec<&Sale> = valid.iter().map(|&i| push.items[i].valid_sale()).collect();
    let mut deltas = Deltas::default();
    let classified = classify_with(
        terminal.terminal_id,
        &sales,
        &Stored::new(terminal.terminal_id, &seen.related),
        |sale, batch_target| {
            let target = sale
                .refers_to_sale_id
                .and_then(|id| batch_target.or_else(|| seen.void_targets.get(&id)));
            deltas
                .try_add(sale, target, terminal.timezone, seen.check.stored())
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

/// The accepted sales as rows to insert.
fn new_rows(push: &Push<'_>, accepted: &[usize]) -> NewSales {
    let mut rows = NewSales::default();
    for sale in accepted.iter().map(|&i| push.items[i].valid_sale()) {
        rows.sale_id.push(sale.sale_id);
        rows.seq.push(sale.seq);
        rows.kind.push(sale.kind.as_str().to_owned());
        rows.occurred_at.push(sale.occurred_at.to_utc());
        rows.business_date
            .push(sale.business_date(push.terminal.timezone));
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
fn conflicts(items: &[Item], verdicts: &[Verdict]) -> Conflicts {
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
