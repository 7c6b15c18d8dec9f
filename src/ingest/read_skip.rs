//! The read-skip cache: what this replica knows of each till, from the last
//! push of the till it wrote: the till's sync row as that write left it.
//! Enough to write most pushes without reading first, in one round trip
//! (the group's) instead of two. Step 1 of a push without a read
//! ([`ReadSkip::guess`] gives the same [`Seen`] a read would), and step 4,
//! after the write: remembering what it left ([`ReadSkip::remember`]).
//!
//! A push qualifies when everything the read would bring back is known:
//! every valid sale's seq is above the till's highest seq (so no stored sale
//! of the till holds it), and either the till stores no seq above its
//! contiguous prefix (so the prefix walks over the push alone), or the push
//! leaves the gap above the prefix as it is: nothing of it (a sale, a
//! refused sale's seq, a seq declared skipped) at or below the highest seq,
//! so the prefix cannot move and the seqs stored above it, which only a
//! read knows, are not needed. A till whose prefix has a gap (a sale held
//! back on the till while later ones go ahead: a void sent before its sale,
//! a batch refused and sent again later) pushes without reads above it.
//! The push that fills the gap qualifies too when this replica knows every
//! seq stored or settled above the prefix ([`above_after`]: none once the
//! gap closes, then each write's own seqs) and the push holds none of them
//! and nothing at or below the prefix: the prefix then walks over that list
//! and the push, as over a read's. (Requiring no gap at all, 97 % of the
//! pushes of the simulator's fleet at twice capacity read first: its tills
//! send a void ahead of its sale still queued, and every void opens a gap
//! that the next push fills.) What a void or refund names is never read at
//! push time, so they qualify like sales. The sale
//! ids and the Idempotency-Key are not checked here: the write itself
//! refuses a push whose sale id or key is already stored, as it refuses one
//! whose sync row is no longer the one it was planned against
//! (`ingest_write_set_v3` stores nothing of it, and the group reports
//! serialization_failure for it), and the push is then read and planned
//! again as before. So a wrong guess costs one failed write, never a wrong
//! answer.
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

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use uuid::Uuid;

use super::Item;
use super::read::Seen;
use crate::db::push::PushRow;
use crate::db::sync::SyncState;
use crate::domain::terminal::Terminal;

/// What the cache may hold, by the weigher's estimate of each entry's size.
const BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// The weigher's estimate of a till's entry.
const TILL_BYTES: u32 = 256;
/// A till not pushing for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// Most seqs above a till's prefix remembered; a till with more reads the
/// pushes that fill its gap.
const MAX_ABOVE: usize = 128;
/// How long a till's pushes read first after a wrong guess.
const READ_FIRST_FOR: Duration = Duration::from_secs(10 * 60);

#[derive(Clone)]
enum Known {
    /// The sync row this replica's last write of the till left, and every
    /// seq stored or settled above its prefix, ascending, when known (see
    /// [`above_after`]).
    Synced {
        sync: SyncState,
        above: Option<Vec<i64>>,
    },
    /// A guess went wrong: read first until then.
    ReadFirst { until: Instant },
}

/// The sync rows of the tills this replica wrote last.
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
                    Known::Synced {
                        above: Some(above), ..
                    } => TILL_BYTES + 8 * above.len() as u32,
                    _ => TILL_BYTES,
                })
                .time_to_idle(FORGET_AFTER)
                .build(),
        }
    }
}

impl ReadSkip {
    /// What the push can be planned against without a read, if the till is
    /// known and the push qualifies: the sync row, nothing stored to collide
    /// with, the seqs stored above the prefix as this replica knows them,
    /// the totals checked by their deltas alone.
    pub fn guess(&self, terminal: &Terminal, items: &[Item], skipped: &[i64]) -> Option<Seen> {
        let Known::Synced { sync, above } = self.tills.get(&key(terminal))? else {
            return None;
        };
        let qualified = qualifies(&sync, items, skipped)
            || above
                .as_deref()
                .is_some_and(|above| fills_gap(&sync, above, items, skipped));
        qualified.then(|| Seen {
            sync,
            related: Vec::new(),
            stored_above_complete: above.is_some(),
            stored_above: above.unwrap_or_default(),
        })
    }

    /// Records the sync row a write of this replica left, and the seqs
    /// stored above its prefix when known ([`above_after`]), unless the
    /// till reads first for now.
    pub fn remember(&self, terminal: &Terminal, next: SyncState, above: Option<Vec<i64>>) {
        let now = Instant::now();
        let above = above.filter(|above| above.len() <= MAX_ABOVE);
        self.tills.entry(key(terminal)).and_compute_with(|current| {
            match current.map(|e| e.into_value()) {
                Some(Known::ReadFirst { until }) if until > now => moka::ops::compute::Op::Nop,
                _ => moka::ops::compute::Op::Put(Known::Synced { sync: next, above }),
            }
        });
    }

    /// A write planned from a guess found the till's rows changed: its
    /// pushes read first for a while.
    pub fn guessed_wrong(&self, terminal: &Terminal) {
        let until = Instant::now() + READ_FIRST_FOR;
        self.tills.insert(key(terminal), Known::ReadFirst { until });
    }
}

fn key(terminal: &Terminal) -> (Uuid, Uuid) {
    (terminal.merchant_id, terminal.terminal_id)
}

/// Every seq stored or settled above the prefix once `row` is written
/// against `seen`, when known: none above a prefix without a gap; else the
/// ones `seen` knew (all of them, read or remembered) and those the push
/// stores or settles, above where the prefix ends (`next`).
pub fn above_after(seen: &Seen, next: &SyncState, row: &PushRow) -> Option<Vec<i64>> {
    if next.highest_seq == next.contiguous_through_seq {
        return Some(Vec::new());
    }
    if !seen.stored_above_complete {
        return None;
    }
    let above: BTreeSet<i64> = seen
        .stored_above
        .iter()
        .chain(&row.seq)
        .chain(&row.settled_seq)
        .copied()
        .filter(|&seq| seq > next.contiguous_through_seq)
        .collect();
    Some(above.into_iter().collect())
}

/// Whether a push can be planned against `above`, every seq stored or
/// settled above the prefix: nothing of it (a sale, a refused sale's seq, a
/// seq declared skipped) is at or below the prefix or already held above
/// it, so no stored sale holds its seqs and the prefix walks over `above`
/// and the push alone.
fn fills_gap(sync: &SyncState, above: &[i64], items: &[Item], skipped: &[i64]) -> bool {
    let free = |seq: i64| seq > sync.contiguous_through_seq && above.binary_search(&seq).is_err();
    // Every valid sale's seq is its item's `seq`; an invalid one's, when it
    // could be read, is settled by the push.
    items.iter().filter_map(|item| item.seq).all(free) && skipped.iter().all(|&seq| free(seq))
}

/// Whether the read of a push against `sync` would find nothing but the
/// sync row: see the module's opening comment.
fn qualifies(sync: &SyncState, items: &[Item], skipped: &[i64]) -> bool {
    let above = |seq: i64| seq > sync.highest_seq;
    let sales_above = items
        .iter()
        .filter_map(|item| item.sale.as_ref().ok())
        .all(|sale| above(sale.seq));
    if sync.highest_seq == sync.contiguous_through_seq {
        return sales_above;
    }
    // A gap: every seq the push stores or settles stays above it.
    sales_above
        && items.iter().filter_map(|item| item.seq).all(above)
        && skipped.iter().all(|&seq| above(seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::Calendar;
    use crate::domain::sale::{Rejection, Sale};
    use serde_json::json;

    fn till() -> Terminal {
        Terminal {
            merchant_id: Uuid::from_u128(1),
            terminal_id: Uuid::from_u128(2),
            store_id: Uuid::from_u128(3),
            calendar: Calendar::fixed(chrono_tz::UTC),
            currency: "EUR".into(),
            retired_at: None,
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
            seq: Some(sale.seq),
            sale: Ok(sale),
            raw: None,
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

    #[test]
    fn a_till_is_guessed_only_after_a_write_of_this_replica() {
        let known = ReadSkip::default();
        assert!(known.guess(&till(), &[item(1)], &[]).is_none());
        known.remember(&till(), synced(4, 4), None);
        let guess = known.guess(&till(), &[item(5), item(7)], &[]).unwrap();
        assert_eq!(guess.sync.highest_seq, 4);
        assert!(guess.related.is_empty() && guess.stored_above.is_empty());
    }

    #[test]
    fn a_push_that_the_read_could_find_something_for_is_not_guessed() {
        let known = ReadSkip::default();
        known.remember(&till(), synced(4, 4), None);
        // a seq the till may hold already
        assert!(known.guess(&till(), &[item(5), item(4)], &[]).is_none());
        // invalid items are rejected without a read
        let invalid = Item {
            sale_id: None,
            seq: Some(2),
            sale: Err(Rejection::new("invalid_sale", "no")),
            raw: None,
        };
        assert!(known.guess(&till(), &[invalid, item(5)], &[]).is_some());
    }

    #[test]
    fn a_till_with_a_gap_is_guessed_for_pushes_that_leave_the_gap_as_it_is() {
        let known = ReadSkip::default();
        // Seqs 1-4 stored, 5 missing, up to 9 stored.
        known.remember(&till(), synced(9, 4), None);
        assert!(known.guess(&till(), &[item(10), item(11)], &[12]).is_some());
        // A sale filling the gap moves the prefix over seqs only a read knows.
        assert!(known.guess(&till(), &[item(5), item(10)], &[]).is_none());
        // So does a refused sale's seq in the gap (it is settled) ...
        let invalid = Item {
            sale_id: None,
            seq: Some(5),
            sale: Err(Rejection::new("invalid_sale", "no")),
            raw: None,
        };
        assert!(known.guess(&till(), &[invalid, item(10)], &[]).is_none());
        // ... and a seq declared skipped there.
        assert!(known.guess(&till(), &[item(10)], &[5]).is_none());
        // A seq the till may hold already.
        assert!(known.guess(&till(), &[item(7)], &[]).is_none());
    }

    #[test]
    fn a_push_filling_a_gap_is_guessed_when_the_seqs_above_it_are_known() {
        let known = ReadSkip::default();
        // Seqs 1-4 stored, 5 missing, 6-9 stored, all written here.
        known.remember(&till(), synced(9, 4), Some(vec![6, 7, 8, 9]));
        let guess = known.guess(&till(), &[item(5), item(10)], &[]).unwrap();
        assert_eq!(guess.stored_above, [6, 7, 8, 9]);
        assert!(guess.stored_above_complete);
        // A seq held above the prefix, or at or below it, needs the read.
        assert!(known.guess(&till(), &[item(5), item(7)], &[]).is_none());
        assert!(known.guess(&till(), &[item(4), item(5)], &[]).is_none());
        assert!(known.guess(&till(), &[item(10)], &[8]).is_none());
        // Not known: the push filling the gap reads.
        known.remember(&till(), synced(9, 4), None);
        assert!(known.guess(&till(), &[item(5)], &[]).is_none());
    }

    #[test]
    fn the_seqs_above_the_prefix_are_known_after_a_write_against_a_known_list() {
        let seen = |above: Vec<i64>, complete: bool| Seen {
            sync: synced(9, 4),
            related: Vec::new(),
            stored_above: above,
            stored_above_complete: complete,
        };
        let row = |seq: Vec<i64>, settled_seq: Vec<i64>| PushRow {
            seq,
            settled_seq,
            ..PushRow::default()
        };
        // 5 stored: the prefix walks to 9, nothing above it.
        let closed = above_after(
            &seen(vec![6, 7, 8, 9], true),
            &synced(9, 9),
            &row(vec![5], vec![]),
        );
        assert_eq!(closed, Some(vec![]));
        // 11 stored and 12 skipped above a gap that stays.
        let open = above_after(
            &seen(vec![6, 7, 8, 9], true),
            &synced(12, 4),
            &row(vec![11], vec![12]),
        );
        assert_eq!(open, Some(vec![6, 7, 8, 9, 11, 12]));
        // A read that did not bring every seq above the prefix: unknown.
        let unknown = above_after(&seen(vec![], false), &synced(12, 4), &row(vec![11], vec![]));
        assert_eq!(unknown, None);
    }

    #[test]
    fn voids_and_refunds_naming_any_sale_are_guessed_like_sales() {
        let known = ReadSkip::default();
        known.remember(&till(), synced(4, 4), None);
        let refund = of(sale(9, 5, "refund", Some(3)));
        let void = of(sale(10, 6, "void", Some(77)));
        assert!(known.guess(&till(), &[refund, void], &[]).is_some());
    }

    #[test]
    fn after_a_wrong_guess_the_till_reads_first_even_once_written_again() {
        let known = ReadSkip::default();
        known.remember(&till(), synced(1, 1), None);
        known.guessed_wrong(&till());
        assert!(known.guess(&till(), &[item(2)], &[]).is_none());
        known.remember(&till(), synced(2, 2), None);
        assert!(known.guess(&till(), &[item(3)], &[]).is_none());
    }
}
