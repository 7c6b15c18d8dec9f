//! What this replica knows of each till's sync row, from the last push of
//! the till it wrote: enough to write a push of new sales without reading
//! first, in one round trip (the group's) instead of two.
//!
//! A push qualifies when everything the read would bring back is known to
//! be nothing: every sale's seq is above the till's highest seq (so no
//! stored sale of the till holds it), the till stores no seq above its
//! contiguous prefix (so the prefix walks over the batch alone), and no
//! sale names another (a void or refund needs its target read). The sale
//! ids and the Idempotency-Key are not checked here: the write itself
//! refuses a push whose sale id or key is already stored, as it refuses one
//! whose sync row is no longer the one it was planned against
//! (`ingest_write` raises serialization_failure, nothing of the push is
//! written), and the push is then read and planned again as before. So a
//! wrong guess costs one failed write, never a wrong answer.
//!
//! A guess goes wrong when another replica wrote the till's last push (a
//! balancer that does not keep a till on one replica), or when two pushes
//! of the till were in flight at once. After a wrong guess the till's
//! pushes read first for `READ_FIRST_FOR`, so a fleet behind a round-robin
//! balancer pays at most one failed write per till and replica in that
//! time (`tillsync_ingest_read_skipped_total{result="read_again"}`).
//!
//! moka bounds the memory (`CAPACITY` tills, each forgotten after
//! `FORGET_AFTER` without a push); a forgotten till reads first once.

use std::time::{Duration, Instant};

use moka::sync::Cache;
use uuid::Uuid;

use super::Item;
use crate::db::sync::SyncState;
use crate::domain::terminal::Terminal;

/// Tills remembered at most (about 150 bytes each).
const CAPACITY: u64 = 200_000;
/// A till not pushing for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// How long a till's pushes read first after a wrong guess.
const READ_FIRST_FOR: Duration = Duration::from_secs(10 * 60);

#[derive(Clone)]
enum Known {
    /// The sync row as this replica's last write of the till left it.
    Synced(SyncState),
    /// A guess went wrong: read first until then.
    ReadFirst { until: Instant },
}

/// The sync rows of the tills this replica wrote last.
#[derive(Clone)]
pub struct KnownTills {
    tills: Cache<(Uuid, Uuid), Known>,
}

impl Default for KnownTills {
    fn default() -> Self {
        Self {
            tills: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(FORGET_AFTER)
                .build(),
        }
    }
}

impl KnownTills {
    /// The till's sync row, if known and if this push qualifies for being
    /// written without a read.
    pub fn guess(&self, terminal: &Terminal, items: &[Item]) -> Option<SyncState> {
        let Known::Synced(sync) = self.tills.get(&key(terminal))? else {
            return None;
        };
        qualifies(&sync, items).then_some(sync)
    }

    /// Records the sync row a write of this replica left, unless the till
    /// reads first for now.
    pub fn remember(&self, terminal: &Terminal, sync: SyncState) {
        let now = Instant::now();
        self.tills.entry(key(terminal)).and_compute_with(|current| {
            match current.map(|e| e.into_value()) {
                Some(Known::ReadFirst { until }) if until > now => moka::ops::compute::Op::Nop,
                _ => moka::ops::compute::Op::Put(Known::Synced(sync)),
            }
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

/// Whether the read of a push against `sync` would find nothing: see the
/// module's opening comment.
fn qualifies(sync: &SyncState, items: &[Item]) -> bool {
    sync.highest_seq == sync.contiguous_through_seq
        && items
            .iter()
            .filter_map(|item| item.sale.as_ref().ok())
            .all(|sale| sale.seq > sync.highest_seq && sale.refers_to_sale_id.is_none())
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

    fn item(seq: i64, refers: Option<u128>) -> Item {
        let kind = if refers.is_some() { "void" } else { "sale" };
        let sale = serde_json::from_value(json!({
            "sale_id": Uuid::now_v7(), "seq": seq, "kind": kind,
            "occurred_at": "2026-11-20T10:00:00Z", "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1, "amount_minor": 500}],
            "tenders": [{"method": "cash", "amount_minor": 500}],
            "total_minor": 500, "tax_minor": 80, "discount_minor": 0,
            "refers_to_sale_id": refers.map(Uuid::from_u128),
        }))
        .unwrap();
        Item {
            sale_id: None,
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

    #[test]
    fn a_till_is_guessed_only_after_a_write_of_this_replica() {
        let known = KnownTills::default();
        assert!(known.guess(&till(), &[item(1, None)]).is_none());
        known.remember(&till(), synced(4, 4));
        let guess = known
            .guess(&till(), &[item(5, None), item(7, None)])
            .unwrap();
        assert_eq!(guess.highest_seq, 4);
    }

    #[test]
    fn a_push_that_the_read_could_find_something_for_is_not_guessed() {
        let known = KnownTills::default();
        known.remember(&till(), synced(4, 4));
        // a seq the till may hold already
        assert!(
            known
                .guess(&till(), &[item(5, None), item(4, None)])
                .is_none()
        );
        // a void needs its target read
        assert!(known.guess(&till(), &[item(5, Some(9))]).is_none());
        // invalid items are rejected without a read
        let invalid = Item {
            sale_id: None,
            sale: Err(Rejection::new("invalid_sale", "no")),
        };
        assert!(known.guess(&till(), &[invalid, item(5, None)]).is_some());
        // seqs stored above the prefix: the walk needs them read
        known.remember(&till(), synced(9, 4));
        assert!(known.guess(&till(), &[item(10, None)]).is_none());
    }

    #[test]
    fn after_a_wrong_guess_the_till_reads_first_even_once_written_again() {
        let known = KnownTills::default();
        known.remember(&till(), synced(4, 4));
        known.guessed_wrong(&till());
        assert!(known.guess(&till(), &[item(5, None)]).is_none());
        known.remember(&till(), synced(5, 5));
        assert!(known.guess(&till(), &[item(6, None)]).is_none());
    }
}
