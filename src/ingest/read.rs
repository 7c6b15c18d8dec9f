//! Step 1 of a push: what it is checked against, read from the database in
//! one round trip ([`db_push::read`], one statement, its own implicit
//! transaction): the response stored under its Idempotency-Key (a replay is
//! answered from it), the till's sync row, every stored sale the push could
//! collide with (its sale ids on any till of the merchant, the till's sales
//! holding its seqs), and the first chunk of the till's seqs stored or
//! settled above its contiguous prefix when the prefix may move.
//!
//! Everything the decision needs is read here, so deciding is pure
//! ([`super::decide`]): a prefix that could walk past the first chunk reads
//! the next ones ([`progress::more_needed`]), which is rare and costs a
//! round trip each.
//!
//! The connection goes back to the pool before the push waits for its
//! group's write.

use uuid::Uuid;

use super::progress::{self, WALK_CHUNK};
use super::{IngestError, Push};
use crate::db::Database;
use crate::db::push as db_push;
use crate::db::sync::{self, SyncState};
use crate::domain::bounds::MAX_SEQ;
use crate::domain::sale::{Sale, StoredSale};

/// What a push is checked against: read, or guessed from what this replica
/// remembers ([`super::read_skip`]).
pub struct Seen {
    /// The till's sync row the push is planned against; the write stores
    /// nothing unless it is still the till's.
    pub sync: SyncState,
    /// Stored sales the push could collide with.
    pub related: Vec<StoredSale>,
    /// The till's stored or settled seqs above its prefix, ascending, as far
    /// as a walk of the prefix over this push can need them.
    pub stored_above: Vec<i64>,
    /// Whether `stored_above` is every seq stored or settled above the
    /// prefix (the read-skip cache keeps such a list up to date).
    pub stored_above_complete: bool,
}

/// What reading a push found.
pub enum Read {
    /// The key was used before with this body: its stored answer.
    Replayed { body: Vec<u8> },
    /// A push to decide.
    Seen(Box<Seen>),
}

/// Reads what `push` is checked against, on a unit of work of its own (a
/// plain connection, or a transaction behind a transaction pooler:
/// [`crate::db::unit`]).
pub async fn read(db: &Database, push: &Push<'_>) -> Result<Read, IngestError> {
    let mut unit = db.unit().await?;
    let read = read_on(&mut unit, push).await?;
    unit.finish().await?;
    Ok(read)
}

async fn read_on(conn: &mut sqlx::PgConnection, push: &Push<'_>) -> Result<Read, IngestError> {
    let valid: Vec<&Sale> = push
        .items
        .iter()
        .filter_map(|item| item.sale.as_ref().ok())
        .collect();
    let ids: Vec<Uuid> = valid.iter().map(|s| s.sale_id).collect();
    let seqs: Vec<i64> = valid.iter().map(|s| s.seq).collect();
    // What else may settle a seq: an invalid sale refused for good, a seq
    // the till declares skipped. Only the prefix walk looks at these.
    let settling: Vec<i64> = push
        .items
        .iter()
        .filter(|item| item.sale.is_err())
        .filter_map(|item| item.seq)
        .filter(|seq| (1..=MAX_SEQ).contains(seq))
        .chain(push.skipped.iter().copied())
        .collect();
    let terminal = push.terminal;
    let found = db_push::read(conn, terminal, push.key, &ids, &seqs, &settling, WALK_CHUNK).await?;
    if let Some(stored) = found.stored {
        return if stored.request_sha256 == push.request_sha256 {
            Ok(Read::Replayed { body: stored.body })
        } else {
            Err(IngestError::KeyReused)
        };
    }

    // Read only when the prefix may move; all of them when a chunk was not full.
    let fetched = found.seqs_above.is_some();
    let mut stored_above = found.seqs_above.unwrap_or_default();
    let mut stored_above_complete = fetched && (stored_above.len() as i64) < WALK_CHUNK;
    let candidates: Vec<i64> = seqs.iter().chain(&settling).copied().collect();
    while let Some(after) = progress::more_needed(&found.sync, &stored_above, &candidates) {
        let more = sync::seqs_above(
            conn,
            terminal.merchant_id,
            terminal.terminal_id,
            after,
            WALK_CHUNK,
        )
        .await?;
        stored_above_complete = (more.len() as i64) < WALK_CHUNK;
        if more.is_empty() {
            break;
        }
        stored_above.extend(more);
    }

    Ok(Read::Seen(Box::new(Seen {
        sync: found.sync,
        related: found.related,
        stored_above,
        stored_above_complete,
    })))
}
