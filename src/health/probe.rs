//! The background probe: one dedicated connection, one query at a time
//! under a short timeout, every interval or at once when a real query saw
//! link trouble. One prober per instance means no probe herd when the
//! database comes back; it decides alone when the link is usable again.
//!
//! The query asks whether the server takes writes, not just whether it
//! answers: a hot standby answers `select 1` as fast as a primary but
//! refuses every write (SQLSTATE 25006), so a link to one is not usable
//! and the probe fails, in the same single round trip.
//!
//! A failed probe also starts the search for the server to use
//! ([`crate::db::primary`]): with several hosts in `DATABASE_URL` the pool moves to
//! the new primary, and the next probe, at once, checks it there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection, Executor, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Gate;
use super::link::{LinkState, ProbeResult};
use crate::db::Database;

pub struct Prober {
    /// Probed where its pool points now, which a failover changes.
    pub db: Database,
    pub interval: Duration,
    pub timeout: Duration,
    pub wake: Arc<Notify>,
}

impl Prober {
    pub async fn run(self, gate: Gate, stopping: CancellationToken) {
        let mut connection: Option<PgConnection> = None;
        let mut generation = self.db.primary().generation();
        // At most one probe right after a move: two servers that each fail
        // as soon as the pool moves to them must not make this loop spin.
        let mut just_moved = false;
        loop {
            if self.db.primary().generation() != generation {
                // The pool moved: probe where it points now.
                generation = self.db.primary().generation();
                connection = None;
            }
            let (result, refused) = self.probe_once(&mut connection).await;
            gate.observe_probe(&result);
            let failed = matches!(result, ProbeResult::Failed(_));
            // With sslmode=prefer: whether TLS can be set up (again). A
            // server that answered but refused was reached: not a TLS matter.
            self.db
                .primary()
                .check_tls(self.db.pool(), self.timeout, failed && !refused);
            let moved = failed
                && self
                    .db
                    .primary()
                    .search(self.db.pool(), self.timeout, refused)
                    .await;
            if moved && !just_moved {
                // Check the new server now rather than an interval later.
                just_moved = true;
                continue;
            }
            just_moved = false;
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = self.wake.notified() => {}
                () = stopping.cancelled() => break,
            }
        }
        if let Some(connection) = connection {
            let _ = tokio::time::timeout(self.timeout, connection.close()).await;
        }
    }

    /// Connects if needed and asks whether the server takes writes, all
    /// under the probe timeout. Any failure drops the connection (its socket
    /// closes at once): a connection that hung once is not trusted again,
    /// and a read-only server may be a former primary that a name or a
    /// proxy no longer points at, so the next probe connects afresh.
    ///
    /// Also says whether the server answered but refused (read-only): its
    /// pooled connections are then no use even if its address now leads to
    /// a primary.
    async fn probe_once(&self, connection: &mut Option<PgConnection>) -> (ProbeResult, bool) {
        let started = Instant::now();
        let attempt = tokio::time::timeout(self.timeout, async {
            if connection.is_none() {
                *connection = Some(self.db.connect_options().connect().await?);
            }
            let conn = connection.as_mut().expect("connected above");
            // In recovery: a standby. Read-only otherwise: a primary set
            // to `default_transaction_read_only`, whose writes fail alike.
            // The simple protocol: one round trip that a transaction
            // pooler cannot split between server connections, and no
            // prepared statement left behind on one (`db::pooler`).
            // (A plain `&str` is sent as a simple query.)
            let row = conn
                .fetch_one("select pg_is_in_recovery(), current_setting('transaction_read_only')")
                .await?;
            let in_recovery: bool = row.try_get(0)?;
            let read_only: String = row.try_get(1)?;
            Ok::<_, sqlx::Error>(writable(in_recovery, &read_only))
        })
        .await;
        let result = match attempt {
            Ok(Ok(Ok(()))) => return (ProbeResult::Answered(started.elapsed()), false),
            Ok(Ok(Err(why))) => {
                *connection = None;
                return (ProbeResult::Failed(why.to_owned()), true);
            }
            Ok(Err(e)) => ProbeResult::Failed(e.to_string()),
            Err(_) => {
                ProbeResult::Failed(format!("no answer within {} ms", self.timeout.as_millis()))
            }
        };
        *connection = None;
        (result, false)
    }
}

/// Whether a server that answered the probe takes writes; if not, why.
fn writable(in_recovery: bool, read_only: &str) -> Result<(), &'static str> {
    if in_recovery {
        Err("the server is a standby (in recovery): it takes no writes")
    } else if read_only == "on" {
        Err("the server is read-only (transaction_read_only is on)")
    } else {
        Ok(())
    }
}

/// Whether a change of state is a recovery from an outage.
pub fn is_recovery(from: LinkState, to: LinkState) -> bool {
    from == LinkState::Unavailable && to != LinkState::Unavailable
}

#[cfg(test)]
mod tests {
    use super::writable;

    #[test]
    fn only_a_primary_that_takes_writes_passes_the_probe() {
        assert_eq!(writable(false, "off"), Ok(()));
        assert!(writable(true, "on").unwrap_err().contains("standby"));
        assert!(writable(false, "on").unwrap_err().contains("read-only"));
    }
}
