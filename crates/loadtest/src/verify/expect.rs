//! What the server must hold, worked out from every till's journal. Pure:
//! the caller brings the journals and what the server said about seqs.
//!
//! First [`presence`]: which sales the server must hold. An acknowledged
//! sale, always; a sale refused for good, never (it is listed instead); a
//! sale never sent, never; a sale sent without an answer, if its seq is held
//! (the till would learn the same from `GET /v1/sync`), or, when its seq is
//! held by another of the till's sales too, if the server lists it.
//!
//! Then [`expected`]: from the held sales of every till, each till's sync
//! state, its business days, its report rows (by day and by tax code), the
//! store's report rows, and the store's exceptions, by the rules of the API
//! (voids take their sale out of the void's own day and till, with the
//! sale's amounts; how each fact counts is in [`super::figures`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::figures::{ReportRows, SyncExpected, TillExpected};
use super::observe::TillObservation;
use super::{ExpectedSale, ExpectedTill, Fate, Fleet};
use crate::client::{Failure, SyncView};
use crate::generator::{Kind, STORE_CURRENCY};

/// Which sales the server must hold, and what became of the rest.
#[derive(Debug, Default)]
pub(super) struct Presence {
    pub stored: HashSet<Uuid>,
    pub refused: HashSet<Uuid>,
    /// Sales never sent.
    pub never_sent: u64,
    /// Sales never sent, or sent without an answer and not held.
    pub still_queued: u64,
    /// Sales sent without an answer that the server holds.
    pub unanswered_stored: u64,
}

/// A kind of exception and the sales it names (sorted).
pub(super) type ExceptionKey = (String, Vec<Uuid>);

/// What the server must say about the store.
#[derive(Debug, Default)]
pub(super) struct Expected {
    /// In the fleet's order.
    pub tills: Vec<TillExpected>,
    /// The store's report rows: its tills' added up.
    pub store: ReportRows,
    pub exceptions: BTreeSet<ExceptionKey>,
}

/// Whether the server counts `seq` as settled (held, refused or skipped).
fn settled(view: &SyncView, seq: i64) -> bool {
    seq <= view.highest_seq
        && !view
            .missing_seq_ranges
            .iter()
            .any(|&[from, to]| (from..=to).contains(&seq))
}

/// Sales sent without an answer whose seq the server holds while another
/// sale of the till that may be held has the same seq: whether the server
/// holds this one, the seq cannot tell.
pub(super) fn ambiguous<'a>(till: &'a ExpectedTill, view: &SyncView) -> Vec<&'a ExpectedSale> {
    let maybe_held = |s: &ExpectedSale| matches!(s.fate, Fate::Acknowledged | Fate::SentUnanswered);
    let mut holders: HashMap<i64, usize> = HashMap::new();
    for sale in till.sales.iter().filter(|s| maybe_held(s)) {
        *holders.entry(sale.seq).or_default() += 1;
    }
    till.sales
        .iter()
        .filter(|s| s.fate == Fate::SentUnanswered && settled(view, s.seq))
        .filter(|s| holders.get(&s.seq).is_some_and(|&n| n > 1))
        .collect()
}

pub(super) fn presence(
    fleet: &Fleet,
    observed: &[Result<TillObservation, Failure>],
    refused_listed: &HashSet<Uuid>,
) -> Presence {
    let mut presence = Presence::default();
    for (till, observed) in fleet.tills.iter().zip(observed) {
        let observed = observed.as_ref().ok();
        let unclear: HashSet<Uuid> = observed
            .map(|o| ambiguous(till, &o.sync).iter().map(|s| s.sale_id).collect())
            .unwrap_or_default();
        for sale in &till.sales {
            match &sale.fate {
                Fate::Acknowledged => {
                    presence.stored.insert(sale.sale_id);
                }
                Fate::Refused { .. } => {
                    presence.refused.insert(sale.sale_id);
                }
                Fate::NeverSent => {
                    presence.never_sent += 1;
                    presence.still_queued += 1;
                }
                Fate::SentUnanswered if refused_listed.contains(&sale.sale_id) => {
                    presence.refused.insert(sale.sale_id);
                }
                Fate::SentUnanswered => {
                    let held = observed.is_some_and(|o| {
                        if unclear.contains(&sale.sale_id) {
                            o.listed.contains(&sale.sale_id)
                        } else {
                            settled(&o.sync, sale.seq)
                        }
                    });
                    if held {
                        presence.stored.insert(sale.sale_id);
                        presence.unanswered_stored += 1;
                    } else {
                        presence.still_queued += 1;
                    }
                }
            }
        }
    }
    presence
}

/// Everything the server must say, given which sales it holds.
pub(super) fn expected(fleet: &Fleet, presence: &Presence) -> Expected {
    let mut expected = Expected {
        tills: fleet
            .tills
            .iter()
            .map(|_| TillExpected::default())
            .collect(),
        store: ReportRows::default(),
        exceptions: BTreeSet::new(),
    };
    let mut by_id: HashMap<Uuid, &ExpectedSale> = HashMap::new();
    for sale in fleet.tills.iter().flat_map(|t| &t.sales) {
        by_id.insert(sale.sale_id, sale);
    }
    let held = |id: &Uuid| presence.stored.contains(id);
    for (till, wanted) in fleet.tills.iter().zip(&mut expected.tills) {
        wanted.sync = sync_state(till, presence);
        for sale in till.sales.iter().filter(|s| held(&s.sale_id)) {
            wanted.count(sale);
            // Its sale is not here (never sent, or refused): it waits, listed.
            if sale.refers_to_sale_id.is_some_and(|t| !held(&t)) {
                expected
                    .exceptions
                    .insert(("unmatched_reference".into(), vec![sale.sale_id]));
            }
            // Counted in its own currency's rows, and flagged.
            if sale.currency != STORE_CURRENCY {
                expected
                    .exceptions
                    .insert(("currency_mismatch".into(), vec![sale.sale_id]));
            }
        }
        let mut by_seq: BTreeMap<i64, Vec<Uuid>> = BTreeMap::new();
        for sale in till.sales.iter().filter(|s| held(&s.sale_id)) {
            by_seq.entry(sale.seq).or_default().push(sale.sale_id);
        }
        for (_, mut ids) in by_seq.into_iter().filter(|(_, ids)| ids.len() > 1) {
            ids.sort_unstable();
            expected.exceptions.insert(("seq_reused".into(), ids));
        }
    }
    for &id in &presence.refused {
        expected.exceptions.insert(("refused".into(), vec![id]));
    }
    // Voids, by the sale they name: the first by (occurred_at, sale_id)
    // takes a held sale out, on the void's own till and day.
    let mut voids: BTreeMap<Uuid, Vec<(usize, &ExpectedSale)>> = BTreeMap::new();
    for (number, till) in fleet.tills.iter().enumerate() {
        for void in till
            .sales
            .iter()
            .filter(|s| s.kind == Kind::Void && held(&s.sale_id))
        {
            if let Some(target) = void.refers_to_sale_id.filter(|t| held(t)) {
                voids.entry(target).or_default().push((number, void));
            }
        }
    }
    for (target, mut of_target) in voids {
        of_target.sort_by_key(|(_, v)| (v.occurred_at, v.sale_id));
        let sale = by_id[&target];
        let mut rest = of_target.iter();
        let Some(&(number, first)) = rest.next() else {
            continue;
        };
        if sale.kind == Kind::Void {
            for (_, void) in &of_target {
                let mut ids = vec![void.sale_id, target];
                ids.sort_unstable();
                expected.exceptions.insert(("void_of_void".into(), ids));
            }
            continue;
        }
        expected.tills[number].take_out(first, sale);
        for (_, later) in rest {
            let mut ids = vec![later.sale_id, target];
            ids.sort_unstable();
            expected.exceptions.insert(("duplicate_void".into(), ids));
        }
    }
    expected.store = ReportRows::of_store(&expected.tills);
    expected
}

/// The sync state of a till holding its held sales, with the seqs of its
/// refused ones settled too.
fn sync_state(till: &ExpectedTill, presence: &Presence) -> SyncExpected {
    let held = |s: &&ExpectedSale| presence.stored.contains(&s.sale_id);
    let refused = |s: &&ExpectedSale| presence.refused.contains(&s.sale_id);
    let settled: BTreeSet<i64> = till
        .sales
        .iter()
        .filter(|s| held(s) || refused(s))
        .map(|s| s.seq)
        .collect();
    let mut sync = SyncExpected {
        highest_seq: settled.last().copied().unwrap_or(0),
        sales_stored: till.sales.iter().filter(held).count() as i64,
        ..SyncExpected::default()
    };
    let mut previous = 0;
    for &seq in &settled {
        if seq > previous + 1 {
            sync.missing_seq_ranges.push([previous + 1, seq - 1]);
        }
        previous = seq;
    }
    sync.contiguous_through_seq = sync
        .missing_seq_ranges
        .first()
        .map_or(sync.highest_seq, |[from, _]| from - 1);
    sync
}

#[cfg(test)]
mod tests;
