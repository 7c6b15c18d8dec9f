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
//! state, its business days, its report totals, and the store's exceptions,
//! by the rules of the API (voids take their sale out of the void's own day
//! and till, with the sale's amounts).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use uuid::Uuid;

use super::observe::TillObservation;
use super::{ExpectedSale, ExpectedTill, Fate, Fleet};
use crate::client::{Failure, SyncView};
use crate::generator::Kind;

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
    pub exceptions: BTreeSet<ExceptionKey>,
}

#[derive(Debug, Default)]
pub(super) struct TillExpected {
    pub sync: SyncExpected,
    /// The day check, per business date and currency.
    pub days: BTreeMap<NaiveDate, BTreeMap<String, DayFigures>>,
    /// The report totals, per business date and currency.
    pub totals: BTreeMap<(NaiveDate, String), Measures>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SyncExpected {
    pub highest_seq: i64,
    pub contiguous_through_seq: i64,
    pub missing_seq_ranges: Vec<[i64; 2]>,
    pub sales_stored: i64,
}

/// The day check of `GET /v1/sync?business_date=`: facts stored, and net.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct DayFigures {
    pub sales_count: i64,
    pub net_minor: i64,
}

/// A report row's columns (net is `gross - refunds`). Sums of generated
/// sales: a few thousand minor units each, far from any bound of `i64`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Measures {
    pub sales_count: i64,
    pub refunds_count: i64,
    pub voids_count: i64,
    pub gross_minor: i64,
    pub refunds_minor: i64,
    pub discounts_minor: i64,
    pub tax_minor: i64,
}

impl Measures {
    pub fn net_minor(&self) -> i64 {
        self.gross_minor - self.refunds_minor
    }
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
    expected
}

impl TillExpected {
    /// A held fact on its own day, hour and till.
    fn count(&mut self, sale: &ExpectedSale) {
        let day = self.day(sale.business_date, sale.currency);
        day.sales_count += 1;
        let totals = self.measures(sale.business_date, sale.currency);
        match sale.kind {
            Kind::Sale => {
                totals.sales_count += 1;
                totals.gross_minor += sale.total_minor;
                totals.discounts_minor += sale.discount_minor;
                totals.tax_minor += sale.tax_minor;
            }
            Kind::Refund => {
                totals.refunds_count += 1;
                totals.refunds_minor += sale.total_minor;
                totals.tax_minor -= sale.tax_minor;
            }
            Kind::Void => totals.voids_count += 1,
        }
        let net = match sale.kind {
            Kind::Sale => sale.total_minor,
            Kind::Refund => -sale.total_minor,
            Kind::Void => 0,
        };
        self.day(sale.business_date, sale.currency).net_minor += net;
    }

    /// `void` takes `sale` out of the void's day, with the sale's amounts.
    fn take_out(&mut self, void: &ExpectedSale, sale: &ExpectedSale) {
        let totals = self.measures(void.business_date, sale.currency);
        let net = match sale.kind {
            Kind::Sale => {
                totals.sales_count -= 1;
                totals.gross_minor -= sale.total_minor;
                totals.discounts_minor -= sale.discount_minor;
                totals.tax_minor -= sale.tax_minor;
                -sale.total_minor
            }
            Kind::Refund => {
                totals.refunds_count -= 1;
                totals.refunds_minor -= sale.total_minor;
                totals.tax_minor += sale.tax_minor;
                sale.total_minor
            }
            Kind::Void => 0,
        };
        self.day(void.business_date, sale.currency).net_minor += net;
    }

    fn day(&mut self, date: NaiveDate, currency: &str) -> &mut DayFigures {
        self.days
            .entry(date)
            .or_default()
            .entry(currency.to_owned())
            .or_default()
    }

    fn measures(&mut self, date: NaiveDate, currency: &str) -> &mut Measures {
        self.totals.entry((date, currency.to_owned())).or_default()
    }
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
