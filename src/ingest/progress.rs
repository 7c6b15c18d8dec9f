//! A till's sync state after a push: highest seq, count, and the
//! contiguous prefix (every seq from 1 through it is stored), worked out
//! before the push is written, so the write stores it with the rest (and
//! the response can name it). Pure: the stored seqs it walks over were read
//! by the read step ([`super::read`]), which reads as many as the walk can
//! need ([`more_needed`]).
//!
//! The prefix moves only when the push holds the seq right after it: by
//! definition `contiguous + 1` was missing before. When it moves, it walks
//! forward over the push's accepted seqs and the seqs the till stored
//! earlier out of order. The read brings those a chunk at a time, so a
//! push costs reads proportional to how far the prefix moves, never to the
//! till's history. The reads see the till's rows as the write will find
//! them: the write checks that no push of the till came between.
//!
//! Seqs may be stored up to `i64::MAX` (rows older than the edge's bound):
//! "the seq after" is computed checked, so a prefix or a seq at the top of
//! the range ends the walk instead of overflowing.

use std::collections::BTreeSet;

use chrono::{SubsecRound, Utc};

use crate::db::sync::SyncState;

/// Stored seqs read per round trip while walking the prefix forward.
pub const WALK_CHUNK: i64 = 1000;

/// The sync state once `accepted_seqs` are stored and `settled_seqs`
/// settled (refused for good, or declared skipped: they will never hold a
/// sale, so the prefix walks over them). `stored_above` are the till's
/// stored or settled seqs above its prefix, ascending, as far as the read
/// brought them: enough for any walk over these seqs ([`more_needed`]).
pub fn advance(
    seen: &SyncState,
    stored_above: &[i64],
    accepted_seqs: &[i64],
    settled_seqs: &[i64],
) -> SyncState {
    let mut state = counted(seen, accepted_seqs, settled_seqs);
    let held: Vec<i64> = accepted_seqs.iter().chain(settled_seqs).copied().collect();
    if let Some(last) = walk(&state, stored_above, &held) {
        state.contiguous_through_seq = last;
    }
    state
}

/// Whether the read must bring more stored seqs for a push whose sales may
/// store `candidate_seqs`: when the stored seqs read so far end a full chunk
/// and a walk over them and every candidate reaches that end, the seq after
/// it may be stored too. Then the seq to read above. A walk over the seqs a
/// push accepts (some of the candidates) never goes further than this one,
/// so once this says no, [`advance`] has every seq it needs.
pub fn more_needed(seen: &SyncState, stored_above: &[i64], candidate_seqs: &[i64]) -> Option<i64> {
    let chunks_full = stored_above.len() as i64 % WALK_CHUNK == 0;
    let end = *stored_above.last()?;
    let reached = walk(seen, stored_above, candidate_seqs)?;
    (chunks_full && reached >= end).then_some(end)
}

/// Where the prefix ends once walked over `stored_above` and `seqs`, if
/// it moves.
fn walk(state: &SyncState, stored_above: &[i64], seqs: &[i64]) -> Option<i64> {
    if !moves_prefix(state, seqs) {
        return None;
    }
    let held: BTreeSet<i64> = seqs
        .iter()
        .chain(stored_above)
        .copied()
        .filter(|&s| s > state.contiguous_through_seq)
        .collect();
    let run = contiguous_run(state.contiguous_through_seq, &held);
    held.iter().take(run).next_back().copied()
}

/// The sync state with the push counted: highest seq (settled seqs
/// included), count (stored sales only), time.
fn counted(seen: &SyncState, accepted_seqs: &[i64], settled_seqs: &[i64]) -> SyncState {
    let mut state = seen.clone();
    if let Some(&max) = accepted_seqs.iter().chain(settled_seqs).max() {
        state.highest_seq = state.highest_seq.max(max);
    }
    // A count of rows: it cannot really reach i64::MAX, so saturating only
    // guards against a stored value that is already wrong.
    state.sales_stored = state
        .sales_stored
        .saturating_add(accepted_seqs.len() as i64);
    // To the microsecond, as Postgres keeps it: the row this replica
    // remembers (`known`) then equals the one a read brings back.
    state.last_batch_at = Some(Utc::now().trunc_subsecs(6));
    state
}

/// Whether the batch holds the seq right after the prefix.
fn moves_prefix(state: &SyncState, accepted_seqs: &[i64]) -> bool {
    let next = state.contiguous_through_seq.checked_add(1);
    next.is_some_and(|next| accepted_seqs.contains(&next))
}

/// How many of `seqs` (ascending) continue the run that ends at `after`.
fn contiguous_run<'a>(after: i64, seqs: impl IntoIterator<Item = &'a i64>) -> usize {
    seqs.into_iter()
        .scan(after, |last, &seq| {
            (last.checked_add(1) == Some(seq)).then(|| *last = seq)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::{SyncState, WALK_CHUNK, advance, contiguous_run, more_needed};

    fn synced_through(seq: i64) -> SyncState {
        SyncState {
            highest_seq: seq,
            contiguous_through_seq: seq,
            sales_stored: seq,
            last_batch_at: None,
        }
    }

    #[test]
    fn a_till_with_nothing_stored_above_walks_its_prefix_over_the_push_alone() {
        let next = advance(&synced_through(5), &[], &[7, 6, 9], &[]);
        assert_eq!(next.contiguous_through_seq, 7);
        assert_eq!(next.highest_seq, 9);
        assert_eq!(next.sales_stored, 8);
        // to the microsecond, as Postgres keeps it
        let at = next.last_batch_at.unwrap();
        assert_eq!(at.timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn the_prefix_stays_when_the_push_leaves_a_gap_after_it() {
        let next = advance(&synced_through(5), &[], &[7, 8], &[]);
        assert_eq!(next.contiguous_through_seq, 5);
        assert_eq!(next.highest_seq, 8);
        let nothing = advance(&synced_through(5), &[], &[], &[]);
        assert_eq!(nothing.contiguous_through_seq, 5);
        assert_eq!(nothing.highest_seq, 5);
        assert_eq!(nothing.sales_stored, 5);
    }

    #[test]
    fn the_prefix_walks_over_seqs_stored_out_of_order() {
        let seen = SyncState {
            highest_seq: 10,
            ..synced_through(5)
        };
        let next = advance(&seen, &[7, 8, 10], &[6], &[]);
        assert_eq!(next.contiguous_through_seq, 8);
        assert_eq!(next.highest_seq, 10);
    }

    #[test]
    fn settled_seqs_move_the_prefix_and_the_highest_seq_but_not_the_count() {
        let next = advance(&synced_through(5), &[], &[6], &[7, 8]);
        assert_eq!(next.contiguous_through_seq, 8);
        assert_eq!(next.highest_seq, 8);
        assert_eq!(next.sales_stored, 6, "only the stored sale counts");
        let skipped_only = advance(&synced_through(5), &[], &[], &[6]);
        assert_eq!(skipped_only.contiguous_through_seq, 6);
        assert_eq!(skipped_only.sales_stored, 5);
    }

    #[test]
    fn more_stored_seqs_are_read_only_when_a_walk_can_reach_the_end_of_a_full_chunk() {
        let seen = synced_through(5);
        let full: Vec<i64> = (7..7 + WALK_CHUNK).collect();
        // seq 6 bridges to the whole chunk: the seq after it may be stored
        assert_eq!(more_needed(&seen, &full, &[6]), full.last().copied());
        // without seq 6 the prefix does not move at all
        assert_eq!(more_needed(&seen, &full, &[9]), None);
        // a chunk that is not full is the end of what is stored
        assert_eq!(more_needed(&seen, &full[..10], &[6]), None);
        // a gap inside the chunk stops the walk before its end
        let gapped: Vec<i64> = (7..8 + WALK_CHUNK).filter(|&s| s != 20).collect();
        assert_eq!(more_needed(&seen, &gapped, &[6]), None);
        // two full chunks read: the walk over both decides
        let two: Vec<i64> = (7..7 + 2 * WALK_CHUNK).collect();
        assert_eq!(more_needed(&seen, &two, &[6]), two.last().copied());
    }

    #[test]
    fn a_run_stops_at_the_first_gap() {
        assert_eq!(contiguous_run(3, &[4, 5, 6, 8]), 3);
        assert_eq!(contiguous_run(3, &[5, 6]), 0);
        assert_eq!(contiguous_run(0, &[]), 0);
        assert_eq!(contiguous_run(0, &[1, 2, 3]), 3);
    }

    #[test]
    fn a_run_may_end_at_the_largest_seq_without_overflowing() {
        assert_eq!(contiguous_run(i64::MAX - 2, &[i64::MAX - 1, i64::MAX]), 2);
        assert_eq!(contiguous_run(i64::MAX, &[]), 0);
        assert_eq!(contiguous_run(i64::MAX, &[1]), 0);
    }
}
