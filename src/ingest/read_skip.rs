//! The read-skip cache: what this replica knows of each till, from the last
//! push of the till it wrote: its sync row and its latest sales that a void
//! may still name. Enough to write most pushes without reading first, in
//! one round trip (the group's) instead of two. Step 1 of a push without a
//! read ([`ReadSkip::guess`] gives the same [`Seen`] a read would), and step
//! 4, after the write: remembering what it left ([`ReadSkip::remember`]).
//!
//! A push qualifies when everything the read would bring back is known:
//! every sale's seq is above the till's highest seq (so no stored sale of
//! the till holds it), the till stores no seq above its contiguous prefix
//! (so the prefix walks over the batch alone), and every void names one of
//! the till's remembered sales (its target, as the read would find it) and
//! no sale of the push reuses that sale's id. A refund's
//! `refers_to_sale_id` is not checked against anything, so refunds qualify
//! like sales. The sale ids and the Idempotency-Key are not checked here:
//! the write itself refuses a push whose sale id or key is already stored,
//! as it refuses one whose sync row is no longer the one it was planned
//! against (`ingest_write` raises serialization_failure, nothing of the
//! push is written), and the push is then read and planned again as
//! before. So a wrong guess costs one failed write, never a wrong answer.
//!
//! Why the remembered sales are what a read would find: every push that
//! stores a sale changes the till's sync row (`sales_stored` counts them),
//! and a write is refused unless the row is still the one it was planned
//! against. The sales are remembered with the sync row they are current
//! for; a write planned against that row adds its own (and drops those its
//! voids name), a write planned against any other row (read first, after
//! another replica wrote the till) starts the list again from its own. So
//! a remembered sale is stored and not voided for as long as the row it is
//! remembered with is the till's, which is exactly when a guessed write of
//! the till can succeed.
//!
//! A guess goes wrong when another replica wrote the till's last push (a
//! balancer that does not keep a till on one replica), or when two pushes
//! of the till were in flight at once. After a wrong guess the till's
//! pushes read first for `READ_FIRST_FOR`, so a fleet behind a round-robin
//! balancer pays at most one failed write per till and replica in that
//! time (`tillsync_ingest_read_skipped_total{result="read_again"}`).
//!
//! moka bounds the memory (`BUDGET_BYTES` by the weigher's estimate, each
//! till forgotten after `FORGET_AFTER` without a push); a forgotten till
//! reads first once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use uuid::Uuid;

use super::Item;
use super::read::Seen;
use super::totals_check::TotalsCheck;
use crate::db::sync::SyncState;
use crate::domain::sale::{Sale, SaleKind, StoredSale};
use crate::domain::terminal::Terminal;

/// What the cache may hold, by the weigher's estimate of each entry's size.
const BUDGET_BYTES: u64 = 256 * 1024 * 1024;
/// The weigher's estimate: a till's entry, and each remembered sale.
const TILL_BYTES: u32 = 256;
const SALE_BYTES: u32 = 320;
/// The latest sales and refunds of a till that a void may name without a
/// read first. A till voids a recent sale (the wrong item, a customer who
/// changed their mind); a void of an older one reads its target first.
const VOIDABLE_KEPT: usize = 32;
/// A till not pushing for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// How long a till's pushes read first after a wrong guess.
const READ_FIRST_FOR: Duration = Duration::from_secs(10 * 60);

#[derive(Clone)]
enum Known {
    Synced(Arc<Synced>),
    /// A guess went wrong: read first until then.
    ReadFirst {
        until: Instant,
    },
}

/// The sync row as this replica's last write of the till left it, and the
/// till's latest sales no void names yet, current for that row.
struct Synced {
    sync: SyncState,
    /// Oldest first, at most `VOIDABLE_KEPT`, without their lines (neither
    /// a void's checks nor the totals it takes out read them).
    voidable: VecDeque<Arc<Sale>>,
}

/// What a qualifying push is planned against instead of a read.
struct Guess {
    sync: SyncState,
    /// The remembered sales the push's voids name.
    targets: Vec<Arc<Sale>>,
}

impl Guess {
    /// What the read would have found: the sync row, the voids' targets as
    /// stored and not voided, no seq stored above the prefix, the totals
    /// checked by their deltas alone.
    fn into_seen(self, terminal: &Terminal) -> Seen {
        Seen {
            related: self
                .targets
                .iter()
                .map(|target| stored(terminal, target))
                .collect(),
            void_targets: self
                .targets
                .iter()
                .map(|target| (target.sale_id, Sale::clone(target)))
                .collect(),
            sync: self.sync,
            stored_above: Vec::new(),
            check: TotalsCheck::new(false),
        }
    }
}

/// A remembered sale of the till as the read would have found it: stored,
/// not voided. Its body is never compared: a push qualifies for a guess only
/// when none of its sales reuses a target's id.
fn stored(terminal: &Terminal, target: &Sale) -> StoredSale {
    StoredSale {
        sale_id: target.sale_id,
        terminal_id: terminal.terminal_id,
        seq: target.seq,
        kind: target.kind,
        currency: target.currency.clone(),
        total_minor: target.total_minor,
        tax_minor: target.tax_minor,
        discount_minor: target.discount_minor,
        body: serde_json::Value::Null,
        voided: false,
    }
}

/// The sync rows and voidable sales of the tills this replica wrote last.
#[derive(Clone)]
pub struct ReadSkip {
    tills: Cache<(Uuid, Uuid), Known>,
}

impl Default for ReadSkip {
    fn default() -> Self {
        Self {
            tills: Cache::builder()
                .max_capacity(BUDGET_BYTES)
                .weigher(|_, known: &Known| match known {
                    Known::Synced(till) => TILL_BYTES + SALE_BYTES * till.voidable.len() as u32,
                    Known::ReadFirst { .. } => TILL_BYTES,
                })
                .time_to_idle(FORGET_AFTER)
                .build(),
        }
    }
}

impl ReadSkip {
    /// What the push can be planned against without a read, if the till is
    /// known and the push qualifies.
    pub fn guess(&self, terminal: &Terminal, items: &[Item]) -> Option<Seen> {
        let Known::Synced(till) = self.tills.get(&key(terminal))? else {
            return None;
        };
        qualifies(&till, items).map(|guess| guess.into_seen(terminal))
    }

    /// Records what a write of this replica left: the sync row it was
    /// planned against (`seen`) and leaves (`next`), and the sales it
    /// stored, in order. Unless the till reads first for now.
    pub fn remember<'a>(
        &self,
        terminal: &Terminal,
        seen: &SyncState,
        next: SyncState,
        stored: impl Iterator<Item = &'a Sale>,
    ) {
        let now = Instant::now();
        let stored: Vec<&Sale> = stored.collect();
        self.tills.entry(key(terminal)).and_compute_with(|current| {
            let earlier = match current.map(|e| e.into_value()) {
                Some(Known::ReadFirst { until }) if until > now => {
                    return moka::ops::compute::Op::Nop;
                }
                // Still current only if this write followed it.
                Some(Known::Synced(till)) if till.sync == *seen => Some(till),
                _ => None,
            };
            let voidable = voidable_after(earlier.as_deref(), &stored);
            moka::ops::compute::Op::Put(Known::Synced(Arc::new(Synced {
                sync: next,
                voidable,
            })))
        });
    }

    /// A write planned from `guess` found the till's rows changed: its
    /// pushes read first for a while.
    pub fn guessed_wrong(&self, terminal: &Terminal) {
        let until = Instant::now() + READ_FIRST_FOR;
        self.tills.insert(key(terminal), Known::ReadFirst { until });
    }
}

fn key(terminal: &Terminal) -> (Uuid, Uuid) {
    (terminal.merchant_id, terminal.terminal_id)
}

/// Whether the read of a push against `till` would find only what is
/// remembered: see the module's opening comment.
fn qualifies(till: &Synced, items: &[Item]) -> Option<Guess> {
    let sync = &till.sync;
    if sync.highest_seq != sync.contiguous_through_seq {
        return None;
    }
    let sales: Vec<&Sale> = items
        .iter()
        .filter_map(|item| item.sale.as_ref().ok())
        .collect();
    if sales.iter().any(|sale| sale.seq <= sync.highest_seq) {
        return None;
    }
    let mut targets = Vec::new();
    for void in sales.iter().filter(|sale| sale.kind == SaleKind::Void) {
        let target_id = void.refers_to_sale_id?;
        let target = till.voidable.iter().find(|s| s.sale_id == target_id)?;
        if sales.iter().any(|sale| sale.sale_id == target_id) {
            return None;
        }
        if !targets.iter().any(|t: &Arc<Sale>| t.sale_id == target_id) {
            targets.push(Arc::clone(target));
        }
    }
    Some(Guess {
        sync: sync.clone(),
        targets,
    })
}

/// What is remembered of a sale: all but its lines.
fn without_lines(sale: &Sale) -> Sale {
    Sale {
        sale_id: sale.sale_id,
        seq: sale.seq,
        kind: sale.kind,
        occurred_at: sale.occurred_at,
        currency: sale.currency.clone(),
        lines: Vec::new(),
        tenders: sale.tenders.clone(),
        total_minor: sale.total_minor,
        tax_minor: sale.tax_minor,
        discount_minor: sale.discount_minor,
        refers_to_sale_id: sale.refers_to_sale_id,
    }
}

/// The voidable sales after a write that stored `stored`: those remembered
/// (`earlier`, if still current) and the write's own sales and refunds,
/// less the ones its voids name, the latest `VOIDABLE_KEPT`.
fn voidable_after(earlier: Option<&Synced>, stored: &[&Sale]) -> VecDeque<Arc<Sale>> {
    let voided: HashSet<Uuid> = stored
        .iter()
        .filter(|sale| sale.kind == SaleKind::Void)
        .filter_map(|sale| sale.refers_to_sale_id)
        .collect();
    let fresh: Vec<&&Sale> = stored
        .iter()
        .filter(|sale| sale.kind != SaleKind::Void)
        .collect();
    let mut voidable: VecDeque<Arc<Sale>> = earlier
        .map(|till| till.voidable.iter().cloned().collect())
        .unwrap_or_default();
    voidable.extend(
        fresh[fresh.len().saturating_sub(VOIDABLE_KEPT)..]
            .iter()
            .map(|sale| Arc::new(without_lines(sale))),
    );
    voidable.retain(|sale| !voided.contains(&sale.sale_id));
    while voidable.len() > VOIDABLE_KEPT {
        voidable.pop_front();
    }
    voidable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sale::Rejection;
    use serde_json::json;

    fn till() -> Terminal {
        Terminal {
            merchant_id: Uuid::from_u128(1),
            terminal_id: Uuid::from_u128(2),
            store_id: Uuid::from_u128(3),
            timezone: chrono_tz::UTC,
        }
    }

    fn sale(id: u128, seq: i64, kind: &str, refers: Option<u128>) -> Sale {
        serde_json::from_value(json!({
            "sale_id": Uuid::from_u128(id), "seq": seq, "kind": kind,
            "occurred_at": "2026-11-20T10:00:00Z", "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1, "amount_minor": 500}],
            "tenders": [{"method": "cash", "amount_minor": 500}],
            "total_minor": 500, "tax_minor": 80, "discount_minor": 0,
            "refers_to_sale_id": refers.map(Uuid::from_u128),
        }))
        .unwrap()
    }

    /// A sale with id `1000 + seq`.
    fn item(seq: i64) -> Item {
        of(sale(1000 + seq as u128, seq, "sale", None))
    }

    fn of(sale: Sale) -> Item {
        Item {
            sale_id: Some(sale.sale_id),
            sale: Ok(sale),
        }
    }

    fn synced(highest: i64, contiguous: i64) -> SyncState {
        SyncState {
            highest_seq: highest,
            contiguous_through_seq: contiguous,
            sales_stored: contiguous,
            last_batch_at: None,
        }
    }

    /// Remembers a write from `seen` that stored `items`, in order.
    fn wrote(known: &ReadSkip, seen: &SyncState, items: &[Item]) -> SyncState {
        let mut next = seen.clone();
        for item in items {
            next.highest_seq = next.highest_seq.max(item.valid_sale().seq);
            next.contiguous_through_seq = next.highest_seq;
            next.sales_stored += 1;
        }
        known.remember(
            &till(),
            seen,
            next.clone(),
            items.iter().map(Item::valid_sale),
        );
        next
    }

    #[test]
    fn a_till_is_guessed_only_after_a_write_of_this_replica() {
        let known = ReadSkip::default();
        assert!(known.guess(&till(), &[item(1)]).is_none());
        known.remember(&till(), &synced(0, 0), synced(4, 4), std::iter::empty());
        let guess = known.guess(&till(), &[item(5), item(7)]).unwrap();
        assert_eq!(guess.sync.highest_seq, 4);
        assert!(guess.related.is_empty());
    }

    #[test]
    fn a_push_that_the_read_could_find_something_for_is_not_guessed() {
        let known = ReadSkip::default();
        known.remember(&till(), &synced(0, 0), synced(4, 4), std::iter::empty());
        // a seq the till may hold already
        assert!(known.guess(&till(), &[item(5), item(4)]).is_none());
        // a void of a sale this replica does not remember
        assert!(
            known
                .guess(&till(), &[of(sale(9, 5, "void", Some(3)))])
                .is_none()
        );
        // invalid items are rejected without a read
        let invalid = Item {
            sale_id: None,
            sale: Err(Rejection::new("invalid_sale", "no")),
        };
        assert!(known.guess(&till(), &[invalid, item(5)]).is_some());
        // seqs stored above the prefix: the walk needs them read
        known.remember(&till(), &synced(4, 4), synced(9, 4), std::iter::empty());
        assert!(known.guess(&till(), &[item(10)]).is_none());
    }

    #[test]
    fn a_refund_naming_any_sale_is_guessed_like_a_sale() {
        let known = ReadSkip::default();
        known.remember(&till(), &synced(0, 0), synced(4, 4), std::iter::empty());
        let refund = of(sale(9, 5, "refund", Some(3)));
        assert!(known.guess(&till(), &[refund]).is_some());
    }

    #[test]
    fn a_void_of_a_remembered_sale_is_guessed_with_its_target() {
        let known = ReadSkip::default();
        let after = wrote(&known, &synced(0, 0), &[item(1), item(2)]);
        let guess = known
            .guess(&till(), &[item(3), of(sale(9, 4, "void", Some(1001)))])
            .unwrap();
        assert_eq!(guess.sync, after);
        let targets: Vec<Uuid> = guess.related.iter().map(|t| t.sale_id).collect();
        assert_eq!(targets, [Uuid::from_u128(1001)]);
        let target = &guess.void_targets[&Uuid::from_u128(1001)];
        assert!(target.lines.is_empty(), "lines are not kept");
        // a sale of the push that reuses the target's id: read first
        let reused = of(sale(1001, 3, "sale", None));
        let void = of(sale(9, 4, "void", Some(1001)));
        assert!(known.guess(&till(), &[reused, void]).is_none());
    }

    #[test]
    fn a_voided_sale_is_forgotten_so_a_second_void_reads_first() {
        let known = ReadSkip::default();
        let after = wrote(&known, &synced(0, 0), &[item(1), item(2)]);
        wrote(&known, &after, &[of(sale(9, 3, "void", Some(1001)))]);
        let again = of(sale(10, 4, "void", Some(1001)));
        assert!(known.guess(&till(), &[again]).is_none());
        let other = of(sale(11, 4, "void", Some(1002)));
        assert!(known.guess(&till(), &[other]).is_some());
    }

    #[test]
    fn a_write_planned_against_another_row_starts_the_remembered_sales_again() {
        let known = ReadSkip::default();
        wrote(&known, &synced(0, 0), &[item(1), item(2)]);
        // another replica stored seq 3 (perhaps a void of 1001); this
        // replica's next write read the till first
        let read = synced(3, 3);
        wrote(&known, &read, &[item(4)]);
        let void = |target| of(sale(9, 5, "void", Some(target)));
        assert!(known.guess(&till(), &[void(1001)]).is_none());
        assert!(known.guess(&till(), &[void(1004)]).is_some());
    }

    #[test]
    fn only_the_latest_sales_are_remembered() {
        let known = ReadSkip::default();
        let items: Vec<Item> = (1..=40).map(item).collect();
        wrote(&known, &synced(0, 0), &items);
        let void = |target| of(sale(9, 41, "void", Some(target)));
        assert!(known.guess(&till(), &[void(1008)]).is_none());
        assert!(known.guess(&till(), &[void(1009)]).is_some());
        assert!(known.guess(&till(), &[void(1040)]).is_some());
    }

    #[test]
    fn after_a_wrong_guess_the_till_reads_first_even_once_written_again() {
        let known = ReadSkip::default();
        let after = wrote(&known, &synced(0, 0), &[item(1)]);
        known.guessed_wrong(&till());
        assert!(known.guess(&till(), &[item(2)]).is_none());
        wrote(&known, &after, &[item(2)]);
        assert!(known.guess(&till(), &[item(3)]).is_none());
    }
}
