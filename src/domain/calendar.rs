//! How a store dates its sales: in its own time zone, with its business
//! day starting at `business_day_starts_at` (a bar open until 02:00 sets
//! `04:00`, and its night stays one business day). A store's settings change
//! over time (`PATCH /v1/stores/{id}`), and each sale falls by the settings
//! in force when it occurred, whenever it arrives: so a sale stored before
//! a change keeps its business date, and one that occurred before the change
//! but arrives after it gets the date it would have got on time. Every
//! delivery order of the same sales dates them the same way.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The settings in force from `effective_from` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRule {
    pub effective_from: DateTime<Utc>,
    pub timezone: Tz,
    /// When the business day starts, local time (00:00: at midnight).
    pub day_starts_at: NaiveTime,
}

/// A store's rules over time, oldest first; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    rules: Arc<[DayRule]>,
}

/// Where a moment falls for a store: its business date, and the local hour
/// (the clock's, 0 to 23) its hour totals count it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub business_date: NaiveDate,
    pub hour: i16,
}

impl Calendar {
    /// One rule for all time: `timezone`, days starting at midnight.
    pub fn fixed(timezone: Tz) -> Self {
        Self::of(vec![DayRule {
            effective_from: DateTime::<Utc>::MIN_UTC,
            timezone,
            day_starts_at: NaiveTime::MIN,
        }])
    }

    /// The rules as stored, in any order; `fixed(UTC)` if there are none
    /// (a store always has one).
    pub fn of(mut rules: Vec<DayRule>) -> Self {
        if rules.is_empty() {
            return Self::fixed(chrono_tz::UTC);
        }
        rules.sort_by_key(|r| r.effective_from);
        Self {
            rules: rules.into(),
        }
    }

    /// The rules as the database keeps them, column by column (a time zone
    /// it cannot name, which the API never stores, reads as UTC).
    pub fn stored(
        effective_from: Vec<DateTime<Utc>>,
        timezones: Vec<String>,
        day_starts_at: Vec<NaiveTime>,
    ) -> Self {
        let rules = (effective_from.into_iter().zip(timezones).zip(day_starts_at))
            .map(|((effective_from, timezone), day_starts_at)| DayRule {
                effective_from,
                timezone: timezone.parse().unwrap_or(chrono_tz::UTC),
                day_starts_at,
            })
            .collect();
        Self::of(rules)
    }

    /// The rule in force at `at`: the latest one that took effect by then
    /// (the first one for a moment before every rule).
    pub fn rule_at(&self, at: DateTime<Utc>) -> &DayRule {
        self.rules
            .iter()
            .rev()
            .find(|r| r.effective_from <= at)
            .unwrap_or(&self.rules[0])
    }

    /// The rule in force now.
    pub fn current(&self) -> &DayRule {
        self.rule_at(Utc::now())
    }

    /// Where `at` falls: the local date of the moment one cutoff earlier
    /// (a sale at 01:30 with days starting at 04:00 belongs to the day
    /// before; one at exactly 04:00 to its own), and the local hour.
    pub fn slot<Z: TimeZone>(&self, at: &DateTime<Z>) -> Slot {
        let utc = at.with_timezone(&Utc);
        let rule = self.rule_at(utc);
        let local = utc.with_timezone(&rule.timezone);
        let since_midnight = rule.day_starts_at.signed_duration_since(NaiveTime::MIN);
        let business_date = (local.naive_local() - since_midnight).date();
        Slot {
            business_date,
            hour: local.hour() as i16,
        }
    }

    pub fn business_date<Z: TimeZone>(&self, at: &DateTime<Z>) -> NaiveDate {
        self.slot(at).business_date
    }
}

/// `HH:MM`, as a store's `business_day_starts_at` is written.
pub fn parse_day_start(raw: &str) -> Result<NaiveTime, String> {
    let invalid = || format!("business_day_starts_at must be a local time HH:MM, not {raw:?}");
    if raw.len() != 5 {
        return Err(invalid());
    }
    NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| invalid())
}

/// `day_starts_at` written as the API shows it.
pub fn format_day_start(at: NaiveTime) -> String {
    at.format("%H:%M").to_string()
}

/// How long after a change of a store's settings they take effect: longer
/// than any replica trusts a cached terminal (`TILLSYNC_AUTH_CACHE_TTL`, at
/// most 5 s), so no replica dates a sale by settings it has not seen.
pub const CHANGE_DELAY: Duration = Duration::seconds(6);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn bar(tz: Tz, starts: &str) -> Calendar {
        Calendar::of(vec![DayRule {
            effective_from: DateTime::<Utc>::MIN_UTC,
            timezone: tz,
            day_starts_at: parse_day_start(starts).unwrap(),
        }])
    }

    #[test]
    fn a_night_before_the_cutoff_belongs_to_the_day_before_and_the_cutoff_itself_to_its_own() {
        let bar = bar(chrono_tz::Europe::Berlin, "04:00");
        assert_eq!(
            bar.business_date(&at("2026-11-20T23:00:00+01:00")),
            day("2026-11-20")
        );
        assert_eq!(
            bar.business_date(&at("2026-11-21T02:00:00+01:00")),
            day("2026-11-20")
        );
        let cutoff = bar.slot(&at("2026-11-21T04:00:00+01:00"));
        assert_eq!(
            cutoff,
            Slot {
                business_date: day("2026-11-21"),
                hour: 4
            }
        );
        let before = bar.slot(&at("2026-11-21T03:59:59+01:00"));
        assert_eq!(
            before,
            Slot {
                business_date: day("2026-11-20"),
                hour: 3
            }
        );
    }

    #[test]
    fn the_cutoff_holds_across_a_change_of_clocks() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET.
        let bar = bar(chrono_tz::Europe::Berlin, "03:00");
        let first_two = at("2026-10-25T02:30:00+02:00");
        let second_two = at("2026-10-25T02:30:00+01:00");
        assert_eq!(bar.business_date(&first_two), day("2026-10-24"));
        assert_eq!(bar.business_date(&second_two), day("2026-10-24"));
        assert_eq!(
            bar.business_date(&at("2026-10-25T03:00:00+01:00")),
            day("2026-10-25")
        );
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 03:00 local exists.
        assert_eq!(
            bar.business_date(&at("2026-03-29T01:59:00+01:00")),
            day("2026-03-28")
        );
        assert_eq!(
            bar.business_date(&at("2026-03-29T03:00:00+02:00")),
            day("2026-03-29")
        );
    }

    #[test]
    fn stores_far_east_and_far_west_date_the_same_instant_two_days_apart() {
        let instant = at("2026-11-20T12:00:00Z");
        let kiritimati = bar(chrono_tz::Pacific::Kiritimati, "00:00"); // UTC+14
        let pago_pago = bar(chrono_tz::Pacific::Pago_Pago, "00:00"); // UTC-11
        assert_eq!(
            kiritimati.slot(&instant),
            Slot {
                business_date: day("2026-11-21"),
                hour: 2
            }
        );
        assert_eq!(
            pago_pago.slot(&instant),
            Slot {
                business_date: day("2026-11-20"),
                hour: 1
            }
        );
        let late = bar(chrono_tz::Pacific::Kiritimati, "04:00");
        assert_eq!(
            late.business_date(&instant),
            day("2026-11-20"),
            "02:00 is before its cutoff"
        );
    }

    #[test]
    fn a_sale_falls_by_the_rules_in_force_when_it_occurred() {
        let change = at("2026-11-20T12:00:00Z");
        let calendar = Calendar::of(vec![
            DayRule {
                effective_from: change,
                timezone: chrono_tz::UTC,
                day_starts_at: parse_day_start("06:00").unwrap(),
            },
            DayRule {
                effective_from: DateTime::<Utc>::MIN_UTC,
                timezone: chrono_tz::UTC,
                day_starts_at: NaiveTime::MIN,
            },
        ]);
        // 05:00 on the 20th: before the change, midnight days.
        assert_eq!(
            calendar.business_date(&at("2026-11-20T05:00:00Z")),
            day("2026-11-20")
        );
        // 05:00 on the 21st: after it, days from 06:00.
        assert_eq!(
            calendar.business_date(&at("2026-11-21T05:00:00Z")),
            day("2026-11-20")
        );
    }

    #[test]
    fn a_day_start_is_hh_mm() {
        assert_eq!(format_day_start(parse_day_start("04:30").unwrap()), "04:30");
        for bad in ["4:30", "24:00", "04:60", "04:30:00", "", "noon"] {
            assert!(parse_day_start(bad).is_err(), "{bad}");
        }
    }
}
