//! When a sale happened, and which business day that is for the store.
//!
//! The store's business day starts at `business_day_starts_at`, local time
//! (a bar open until 02:00 sets 04:00, so its night is one business day):
//! a sale's business date is the local date, in the store's time zone, of
//! the moment one cutoff before it occurred, the API's rule. A sale at
//! exactly the cutoff belongs to its own day.
//!
//! Most sales occur when they are rung up. A share of them (late-night
//! sales, `--late-night-share`) occurred during the last night instead, in
//! the three hours around the start of the business day that began at least
//! an hour before they are rung up: a bar's till sending the night's sales
//! in the morning. About two thirds of those fall on the previous business
//! day, whatever the time of the run, and a tenth occurred at exactly the
//! cutoff.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ReceiptMix;

/// Mixed into a sale's content seed for its time, so whether a sale is a
/// late-night one is drawn apart from its basket (a void, which mirrors the
/// basket, never occurred at night).
const NIGHT_SALT: u64 = 0x6e69_6768_7473_6869;
/// Late-night sales occurred from this long before the cutoff ...
const NIGHT_BEFORE_CUTOFF_S: i64 = 2 * 3600;
/// ... to this long after it.
const NIGHT_AFTER_CUTOFF_S: i64 = 3600;
/// Of the late-night sales, those at exactly the cutoff.
const AT_CUTOFF_SHARE: f64 = 0.1;

/// Where the store's business days begin and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreDay {
    pub timezone: Tz,
    /// When the business day starts, local time (00:00: at midnight).
    pub starts_at: NaiveTime,
}

impl StoreDay {
    /// The business date of a sale that occurred at `at`.
    pub fn business_date<Z: TimeZone>(&self, at: &DateTime<Z>) -> NaiveDate {
        let local = at.with_timezone(&self.timezone).naive_local();
        (local - self.starts_at.signed_duration_since(NaiveTime::MIN)).date()
    }

    /// The local date of `at`, which a sale before the cutoff is a day
    /// ahead of its business date.
    pub fn local_date<Z: TimeZone>(&self, at: &DateTime<Z>) -> NaiveDate {
        at.with_timezone(&self.timezone).date_naive()
    }

    /// `starts_at` as the API writes it.
    pub fn starts_at_text(&self) -> String {
        self.starts_at.format("%H:%M").to_string()
    }

    /// The moment the business day `date` starts. A start the clocks skip
    /// (spring forward) is taken an hour later, one they pass twice (fall
    /// back) the first time.
    fn start_of(&self, date: NaiveDate) -> DateTime<Utc> {
        let local = date.and_time(self.starts_at);
        self.timezone
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                let later = local + Duration::hours(1);
                self.timezone.from_local_datetime(&later).earliest()
            })
            .map_or_else(|| Utc.from_utc_datetime(&local), |t| t.to_utc())
    }
}

/// `HH:MM`, as the API writes `business_day_starts_at`.
pub fn parse_day_start(raw: &str) -> Result<NaiveTime, String> {
    let invalid = || format!("must be a local time HH:MM from 00:00 to 23:59, not {raw:?}");
    if raw.len() != 5 {
        return Err(invalid());
    }
    NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| invalid())
}

/// When the plain sale of seed `content`, rung up at `rung_up_at`,
/// occurred: then, or for a late-night sale during the last night, never
/// after it was rung up.
pub(super) fn occurred_at(
    rung_up_at: DateTime<Utc>,
    content: u64,
    mix: &ReceiptMix,
    day: &StoreDay,
) -> DateTime<Utc> {
    let mut rng = StdRng::seed_from_u64(content ^ NIGHT_SALT);
    if !rng.random_bool(mix.late_night_share) {
        return rung_up_at;
    }
    let offset_s = if rng.random_bool(AT_CUTOFF_SHARE) {
        0
    } else {
        rng.random_range(-NIGHT_BEFORE_CUTOFF_S..NIGHT_AFTER_CUTOFF_S)
    };
    // The business day that began at least an hour ago: its start plus
    // the offset is in the past (up to a change of the clocks, hence the
    // bound).
    let night_of = day.business_date(&(rung_up_at - Duration::seconds(NIGHT_AFTER_CUTOFF_S)));
    let at = day.start_of(night_of) + Duration::seconds(offset_s);
    at.min(rung_up_at)
}
