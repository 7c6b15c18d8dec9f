//! The terminal making a request: which till of which merchant, in which
//! store, and that store's time zone. [`crate::http::middleware::auth`] resolves it once from the
//! bearer token; handlers, ingest and repositories take it as it is, so a
//! push needs no further query to know whose sales these are or on which
//! business day they fall.

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Terminal {
    pub merchant_id: Uuid,
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    /// The store's time zone: a sale's business date is local to it.
    pub timezone: chrono_tz::Tz,
    /// When the till was taken out of service, if it was: its sales that
    /// occurred later are refused.
    pub retired_at: Option<DateTime<Utc>>,
}

impl Terminal {
    /// A terminal as stored, with its store's time zone by name. The name
    /// was checked when the store was created; one this build does not know
    /// is logged and read as UTC rather than locking the till out.
    pub fn from_stored(
        merchant_id: Uuid,
        terminal_id: Uuid,
        store_id: Uuid,
        timezone: &str,
        retired_at: Option<DateTime<Utc>>,
    ) -> Self {
        let timezone = timezone.parse().unwrap_or_else(|_| {
            tracing::error!(terminal.id = %terminal_id, "store has an unknown time zone; using UTC");
            chrono_tz::UTC
        });
        Self {
            merchant_id,
            terminal_id,
            store_id,
            timezone,
            retired_at,
        }
    }
}
