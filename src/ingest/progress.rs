//! A till's sync state after a batch: highest seq, count, and the
//! contiguous prefix (every seq from 1 through it is stored), worked out
//! before the batch is written, so `db::push::write` stores it with the
//! rest (and the response can name it).
//!
//! The prefix moves only when the batch holds the seq right after it: by
//! definition `contiguous + 1` was missing before. When it moves, it walks
//! forward over the batch's accepted seqs and the seqs the till stored
//! earlier out of order. `db::push::read` brings the first chunk of those
//! when the walk may need them; a walk that runs off the end of a chunk
//! reads the next, so a batch costs reads proportional to how far the
//! prefix moves, never to the till's history. The reads see the till's
//! rows as the write will find them: the write checks that no batch of the
//! till came between.
//!
//! Seqs may be stored up to `i64::MAX` (rows older than the edge's bound):
//! "the seq after" is computed checked, so a prefix or a seq at the top of
//! the range ends the walk instead of overflowing.

use std::collections::BTreeSet;

use chrono::{SubsecRound, Utc};
use sqlx::PgConnection;

use crate::db::DbError;
use crate::db::sync::{self, SyncState};
use crate::domain::terminal::Terminal;

/// Stored seqs read per round trip while walking the prefix forward.
pub const WALK_CHUNK: i64 = 1000;

/// The sync state once `accepted_seqs` are stored. `stored_above` is the
/// first chunk of the till's stored seqs above the prefix, when read.
pub async fn advance(
    conn: &mut PgConnection,
    terminal: &Terminal,
    seen: &SyncState,
    stored_above: Option<Vec<i64>>,
    accepted_seqs: &[i64],
) -> Result<SyncState, DbError> {
    let mut state = counted(seen, accepted_seqs);
    if !moves_prefix(&state, accepted_seqs) {
        return Ok(state);
    }
    let mut held: BTreeSet<i64> = accepted_seqs
        .iter()
        .copied()
        .filter(|&s| s > state.contiguous_through_seq)
        .collect();
    let mut chunk = stored_above.unwrap_or_default();
    loop {
        let chunk_was_full = chunk.len() as i64 >= WALK_CHUNK;
        let chunk_end = chunk.last().copied();
        held.extend(chunk);
        let run = contiguous_run(state.contiguous_through_seq, &held);
        if let Some(&last) = held.iter().take(run).next_back() {
            state.contiguous_through_seq = last;
        }
        // Only a walk that reached the end of a full chunk may go on
        // through stored seqs not read yet.
        match chunk_end {
            Some(end) if chunk_was_full && state.contiguous_through_seq >= end => {
                let after = state.contiguous_through_seq;
                held.retain(|&s| s > after);
                chunk = sync::seqs_above(
                    conn,
                    terminal.merchant_id,
                    terminal.terminal_id,
                    after,
                    WALK_CHUNK,
                )
                .await?;
            }
            _ => return Ok(state),
        }
    }
}

/// The sync state once `accepted_seqs` are stored, for a till known to
/// store no seq above its contiguous prefix (`known`): the prefix walks over
/// the batch's seqs alone, with no read.
pub fn advance_over_batch(seen: &SyncState, accepted_seqs: &[i64]) -> SyncState {
    let mut state = counted(seen, accepted_seqs);
    if moves_prefix(&state, accepted_seqs) {
        let held: BTreeSet<i64> = accepted_seqs
            .iter()
            .copied()
            .filter(|&s| s > state.contiguous_through_seq)
            .collect();
        let run = contiguous_run(state.contiguous_through_seq, &held);
        if let Some(&last) = held.iter().take(run).next_back() {
            state.contiguous_through_seq = last;
        }
    }
    state
}

/// The sync state with the batch counted: highest seq, count, time.
fn counted(seen: &SyncState, accepted_seqs: &[i64]) -> SyncState {
    let mut state = seen.clone();
    if let Some(&max) = accepted_seqs.iter().max() {
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
    use super::{SyncState, advance_over_batch, contiguous_run};

    fn synced_through(seq: i64) -> SyncState {
        SyncState {
            highest_seq: seq,
            contiguous_through_seq: seq,
            sales_stored: seq,
            last_batch_at: None,
        }
    }

    #[test]
    fn a_known_till_walks_its_prefix_over_the_batch_alone() {
        let next = advance_over_batch(&synced_through(5), &[7, 6, 9]);
        assert_eq!(next.contiguous_through_seq, 7);
        assert_eq!(next.highest_seq, 9);
        assert_eq!(next.sales_stored, 8);
        // to the microsecond, as Postgres keeps it
        let at = next.last_batch_at.unwrap();
        assert_eq!(at.timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn a_known_till_keeps_its_prefix_when_the_batch_leaves_a_gap_after_it() {
        let next = advance_over_batch(&synced_through(5), &[7, 8]);
        assert_eq!(next.contiguous_through_seq, 5);
        assert_eq!(next.highest_seq, 8);
        let nothing = advance_over_batch(&synced_through(5), &[]);
        assert_eq!(nothing.contiguous_through_seq, 5);
        assert_eq!(nothing.highest_seq, 5);
        assert_eq!(nothing.sales_stored, 5);
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
