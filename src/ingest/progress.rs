//! Advancing a till's sync state after a batch: highest seq, count, and the
//! contiguous prefix (every seq from 1 through it is stored).
//!
//! The prefix moves only when the batch stored the seq right after it: by
//! definition `contiguous + 1` was missing before. When it moves, it walks
//! forward over the seqs now stored (this batch's and earlier out-of-order
//! ones) in index order, a chunk at a time, so a batch costs reads
//! proportional to how far the prefix moves, never to the till's history.
//!
//! Seqs may be stored up to `i64::MAX` (rows older than the edge's bound):
//! "the seq after" is computed checked, so a prefix or a seq at the top of
//! the range ends the walk instead of overflowing.

use chrono::Utc;
use sqlx::PgConnection;

use crate::db::DbError;
use crate::db::sync::{self, SyncState};
use crate::domain::terminal::Terminal;

/// Stored seqs read per round trip while walking the prefix forward.
const WALK_CHUNK: i64 = 1000;

pub async fn advance(
    conn: &mut PgConnection,
    terminal: &Terminal,
    mut state: SyncState,
    inserted_seqs: &[i64],
) -> Result<SyncState, DbError> {
    if let Some(&max) = inserted_seqs.iter().max() {
        state.highest_seq = state.highest_seq.max(max);
    }
    // A count of rows: it cannot really reach i64::MAX, so saturating only
    // guards against a stored value that is already wrong.
    state.sales_stored = state
        .sales_stored
        .saturating_add(inserted_seqs.len() as i64);
    state.last_batch_at = Some(Utc::now());

    let next = state.contiguous_through_seq.checked_add(1);
    if next.is_some_and(|next| inserted_seqs.contains(&next)) {
        let mut chunk = (inserted_seqs.len() as i64 + 1).min(WALK_CHUNK);
        loop {
            let seqs = sync::seqs_above(
                conn,
                terminal.merchant_id,
                terminal.terminal_id,
                state.contiguous_through_seq,
                chunk,
            )
            .await?;
            let run = contiguous_run(state.contiguous_through_seq, &seqs);
            let walked_whole_chunk = run == seqs.len();
            if let Some(&last) = seqs[..run].last() {
                state.contiguous_through_seq = last;
            }
            if !walked_whole_chunk || seqs.len() < chunk as usize {
                break;
            }
            chunk = WALK_CHUNK;
        }
    }
    sync::save(conn, terminal.merchant_id, terminal.terminal_id, &state).await?;
    Ok(state)
}

/// How many of `seqs` (ascending) continue the run that ends at `after`.
fn contiguous_run(after: i64, seqs: &[i64]) -> usize {
    seqs.iter()
        .scan(after, |last, &seq| {
            (last.checked_add(1) == Some(seq)).then(|| *last = seq)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::contiguous_run;

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
