//! The server's timeouts, read back through the pool every minute (the
//! first time at once, again after 2 s when a look fails or is put off: at
//! start the health layer refuses background work until its first probe
//! answers). Behind a pooler they are role settings the migration step
//! wrote ([`crate::db::pooler`]), and a timeout silently dropped is what
//! issue 14 found: each one is exported as
//! `tillsync_db_server_timeout_seconds{setting}`, and an error is logged
//! whenever the set of unbounded ones changes to a non-empty one. In
//! transaction mode the look also tells whether PgBouncer hands over server
//! connections with other clients' prepared statements.

use std::time::Duration;

use super::Job;
use crate::config::Pooler;
use crate::db::pooler::{TIMEOUT_SETTINGS, prepared_statements, server_timeouts};
use crate::db::{Database, DbError};

/// How often the server's timeouts are read back through the pool.
const CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// The watch as a background job, with what it has reported.
#[derive(Debug)]
pub struct ServerSettings {
    /// The timeout every setting should be at most (`TILLSYNC_DB_STATEMENT_TIMEOUT`).
    wanted: Duration,
    reported: Option<Vec<&'static str>>,
    leftovers_reported: bool,
}

impl ServerSettings {
    pub fn new(wanted: Duration) -> Self {
        Self {
            wanted,
            reported: None,
            leftovers_reported: false,
        }
    }

    fn report_timeouts(&mut self, timeouts: &[(String, Duration)]) {
        for (name, value) in timeouts {
            metrics::gauge!("tillsync_db_server_timeout_seconds", "setting" => name.clone())
                .set(value.as_secs_f64());
        }
        let unbounded = unbounded(timeouts, self.wanted);
        if self.reported.as_ref() != Some(&unbounded) && !unbounded.is_empty() {
            tracing::error!(
                settings = ?unbounded,
                wanted_ms = self.wanted.as_millis() as u64,
                "server timeouts {unbounded:?} are off or longer than {} ms: behind a pooler, \
                 set them per role (docs/deploy.md, PgBouncer)",
                self.wanted.as_millis()
            );
        }
        self.reported = Some(unbounded);
    }

    fn report_leftovers(&mut self, leftovers: i64) {
        metrics::gauge!("tillsync_db_pooler_leftover_statements").set(leftovers as f64);
        if leftovers > 0 && !self.leftovers_reported {
            tracing::error!(
                leftover_statements = leftovers,
                "PgBouncer lent a server connection holding {leftovers} prepared statements \
                 of other clients: set server_reset_query = DEALLOCATE ALL and \
                 server_reset_query_always = 1 (docs/deploy.md, PgBouncer)"
            );
        }
        self.leftovers_reported = leftovers > 0;
    }
}

impl Job for ServerSettings {
    const WHAT: &'static str = "read the server's settings";

    fn every(&self) -> Duration {
        CHECK_INTERVAL
    }

    async fn step(&mut self, db: &Database) -> Result<(), DbError> {
        let mut unit = db.unit().await?;
        // First in the transaction: what earlier clients of this server
        // connection left there.
        let leftovers = match db.pooler() {
            Pooler::Transaction => Some(prepared_statements(&mut unit).await?),
            Pooler::None | Pooler::Session => None,
        };
        let timeouts = server_timeouts(&mut unit).await?;
        unit.finish().await?;
        self.report_timeouts(&timeouts);
        if let Some(leftovers) = leftovers {
            self.report_leftovers(leftovers);
        }
        Ok(())
    }
}

/// The settings among `found` that do not bound work by `wanted`: off (0),
/// longer, or not reported at all.
pub fn unbounded(found: &[(String, Duration)], wanted: Duration) -> Vec<&'static str> {
    TIMEOUT_SETTINGS
        .into_iter()
        .filter(|setting| {
            !found
                .iter()
                .any(|(name, value)| name == setting && !value.is_zero() && *value <= wanted)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(values: &[(&str, u64)]) -> Vec<(String, Duration)> {
        values
            .iter()
            .map(|(name, ms)| ((*name).to_owned(), Duration::from_millis(*ms)))
            .collect()
    }

    #[test]
    fn a_timeout_that_is_off_longer_or_missing_is_unbounded() {
        let wanted = Duration::from_secs(5);
        let all = found(&[
            ("idle_in_transaction_session_timeout", 5000),
            ("lock_timeout", 1000),
            ("statement_timeout", 5000),
        ]);
        assert!(unbounded(&all, wanted).is_empty());
        let off = found(&[("lock_timeout", 0), ("statement_timeout", 6000)]);
        assert_eq!(
            unbounded(&off, wanted),
            TIMEOUT_SETTINGS.to_vec(),
            "off, longer and missing all count"
        );
    }
}
