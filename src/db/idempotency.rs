//! Stored responses of batch pushes, keyed by (terminal, Idempotency-Key).
//!
//! A request first takes a transaction-scoped advisory lock on its key: if
//! another request holds it, that one is still running (409). The stored
//! response is written in the same transaction as the sales, so it exists
//! exactly when they are committed. Old responses are purged in chunks by
//! one replica at a time.

use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::DbError;
use super::leader::{self, Job};

pub struct StoredResponse {
    pub request_sha256: Vec<u8>,
    pub status: u16,
    pub body: Vec<u8>,
}

pub enum KeyState {
    /// Another request with this key is running now.
    Busy,
    /// This transaction holds the key; `stored` is the earlier response, if any.
    Held { stored: Option<StoredResponse> },
}

/// The advisory lock id of a key: 64 bits of SHA-256 over terminal and key.
/// A collision only makes an unrelated request wait for a retry.
fn lock_id(terminal_id: Uuid, key: Uuid) -> i64 {
    let digest = Sha256::new()
        .chain_update(terminal_id.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

pub async fn claim(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    key: Uuid,
) -> Result<KeyState, DbError> {
    let row = sqlx::query!(
        r#"select pg_try_advisory_xact_lock($4) as "locked!",
                  k.request_sha256 as "request_sha256?", k.response_status as "response_status?",
                  k.response_body as "response_body?"
             from (select 1) one
             left join idempotency_keys k
               on k.merchant_id = $1 and k.terminal_id = $2 and k.idempotency_key = $3"#,
        merchant_id,
        terminal_id,
        key,
        lock_id(terminal_id, key)
    )
    .fetch_one(conn)
    .await?;
    if !row.locked {
        return Ok(KeyState::Busy);
    }
    let stored = match (row.request_sha256, row.response_status, row.response_body) {
        (Some(request_sha256), Some(status), Some(body)) => Some(StoredResponse {
            request_sha256,
            status: status as u16,
            body,
        }),
        _ => None,
    };
    Ok(KeyState::Held { stored })
}

pub async fn store(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    key: Uuid,
    response: &StoredResponse,
) -> Result<(), DbError> {
    sqlx::query!(
        r#"insert into idempotency_keys
               (merchant_id, terminal_id, idempotency_key, request_sha256, response_status, response_body)
           values ($1, $2, $3, $4, $5, $6)"#,
        merchant_id,
        terminal_id,
        key,
        response.request_sha256,
        response.status as i16,
        response.body
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Stored responses one purge statement deletes at most: a chunk takes a
/// few milliseconds, far inside the statement timeout, however large the
/// backlog (one `DELETE` of everything timed out at fleet size every time).
pub const PURGE_CHUNK: i64 = 1000;
/// Chunks one purge run deletes at most, so a run ends; the next run goes on.
const MAX_PURGE_CHUNKS: usize = 10_000;

/// Deletes stored responses older than `retention`, a chunk at a time, each
/// chunk in a transaction of its own that first takes the purge's lock
/// (`db::leader`): while another replica purges, this one stops. Returns
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
