//! Stored responses of batch pushes, keyed by (terminal, Idempotency-Key).
//!
//! [`super::push`] reads a key's stored response and writes it in the same
//! statement as the push's sales, so it exists exactly when they are
//! committed. Old responses are purged here, in chunks, by one replica at a
//! time.

use sqlx::{Connection, PgConnection};

use super::DbError;
use super::leader::{self, Job};

pub struct StoredResponse {
    pub request_sha256: Vec<u8>,
    pub status: u16,
    pub body: Vec<u8>,
}

/// Stored responses one purge statement deletes at most: a chunk takes a
/// few milliseconds, far inside the statement timeout, however large the
/// backlog (one `DELETE` of everything timed out at fleet size every time).
pub const PURGE_CHUNK: i64 = 1000;
/// Chunks one purge run deletes at most, so a run ends; the next run goes on.
const MAX_PURGE_CHUNKS: usize = 10_000;

/// Deletes stored responses older than `retention`, a chunk at a time, each
/// chunk in a transaction of its own that first takes the purge's lock
/// ([`super::leader`]): while another replica purges, this one stops. Returns
/// how many this call deleted.
pub async fn purge_older_than(
    conn: &mut PgConnection,
    retention: std::time::Duration,
) -> Result<u64, DbError> {
    let seconds = retention.as_secs_f64();
    let mut purged = 0;
    for _ in 0..MAX_PURGE_CHUNKS {
        let mut tx = conn.begin().await?;
        if !leader::lead(&mut tx, Job::Purge).await? {
            tracing::debug!("another replica purges stored batch responses now");
            break;
        }
        let done = sqlx::query!(
            "delete from idempotency_keys
              where ctid = any(array(select ctid from idempotency_keys
                                      where created_at < now() - make_interval(secs => $1)
                                      limit $2))",
            seconds,
            PURGE_CHUNK
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        purged += done.rows_affected();
        if done.rows_affected() < PURGE_CHUNK as u64 {
            break;
        }
    }
    Ok(purged)
}
