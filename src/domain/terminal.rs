//! The terminal making a request: which till of which merchant, in which
//! store, how that store dates its sales, and its currency.
//! [`crate::http::middleware::auth`] resolves it once from the bearer
//! token; handlers, ingest and repositories take it as it is, so a push
//! needs no further query to know whose sales these are or on which
//! business day they fall.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::calendar::Calendar;

#[derive(Debug, Clone)]
pub struct Terminal {
    pub merchant_id: Uuid,
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    /// The store's time zone and business-day start over time: a sale's
    /// business date is local to it.
    pub calendar: Calendar,
    /// The store's currency: a sale in another is stored and listed.
    pub currency: String,
    /// When the till was taken out of service, if it was: its sales that
    /// occurred later are refused.
    pub retired_at: Option<DateTime<Utc>>,
}
