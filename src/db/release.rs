//! The check a connection passes when it goes back to the pool: it must
//! answer within a bound, and it must not be inside a transaction.
//!
//! The bound: sqlx pings every returned connection, with no time limit. A
//! connection returned while the link hangs would wait for that ping until
//! TCP gives up minutes later, holding a pool slot: the pool would stay
//! exhausted after the link is back. A connection that does not answer this
//! check in time is closed instead.
//!
//! The transaction: sqlx 0.8 cannot always tell. A `BEGIN` whose caller was
//! cancelled mid-flight (a request past its deadline while the link
//! stalled) is not rolled back by sqlx, which counts a transaction only
//! once `BEGIN` has answered; when the link comes back, the server runs it
//! and the connection returns to the pool inside a transaction nobody owns.
//! Ingest writes in single statements, each its own implicit transaction,
//! so such a connection would swallow a push: the statement runs, answers,
//! and is never committed (seen in `tests/api/health.rs` as a 200 for a sale
//! that was not stored). The check asks the server: outside a transaction
//! block, a simple-protocol statement starts its own transaction, so its
//! `now()` is its `statement_timestamp()`; inside a block opened earlier,
//! `now()` is when that block began. Such a connection is closed, which
//! rolls the stray transaction back.

use sqlx::{Executor, PgConnection, Row};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Whether a returned connection may be used again: `Ok(false)` when it is
/// inside a transaction block, an error when it did not answer in time.
pub fn check_returned(
    conn: &mut PgConnection,
    within: Duration,
) -> Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        // A plain string is sent with the simple protocol (no parameters).
        let asked = conn.fetch_one("select now() = statement_timestamp()");
        match tokio::time::timeout(within, asked).await {
            Ok(Ok(row)) => {
                let outside_any_transaction: bool = row.try_get(0)?;
                if !outside_any_transaction {
                    tracing::warn!(
                        "a pooled connection came back inside a transaction it does not own (a cancelled BEGIN); closing it"
                    );
                    metrics::counter!("tillsync_db_stray_transactions_total").increment(1);
                }
                Ok(outside_any_transaction)
            }
            Ok(Err(e)) => Err(e),
            // An error makes sqlx drop the socket without the graceful close
            // that could hang as well.
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection did not answer its release check",
            ))),
        }
    })
}
