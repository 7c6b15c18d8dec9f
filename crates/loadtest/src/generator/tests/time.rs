//! When sales occurred, and their business dates: the server's own
//! calendar agrees on every one, across the cutoff and changes of clocks.

use tillsync::domain::calendar::{Calendar, DayRule};

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn shop(starts_at: &str, late_night_share: f64) -> Shop {
    Shop {
        mix: ReceiptMix {
            late_night_share,
            ..ReceiptMix::default()
        },
        day: StoreDay {
            timezone: STORE_TIMEZONE,
            starts_at: parse_day_start(starts_at).unwrap(),
        },
    }
}

/// The server's calendar of a store with `day`'s settings from the start.
fn calendar(day: &StoreDay) -> Calendar {
    Calendar::of(vec![DayRule {
        effective_from: DateTime::<Utc>::MIN_UTC,
        timezone: day.timezone,
        day_starts_at: day.starts_at,
    }])
}

#[test]
fn a_sale_before_the_cutoff_belongs_to_the_previous_business_day() {
    // 23:30 UTC in winter is 00:30 the next day in Berlin.
    let late = at("2026-01-15T23:30:00Z");
    let sale = Ticket::Sale { content: 1 };
    let bar = build(Uuid::new_v4(), 1, late, &sale, &shop("04:00", 0.0));
    assert_eq!(json(&bar)["occurred_at"], "2026-01-16T00:30:00+01:00");
    assert_eq!(bar.business_date, date("2026-01-15"));
    let shop_at_midnight = build(Uuid::new_v4(), 1, late, &sale, &shop("00:00", 0.0));
    assert_eq!(shop_at_midnight.business_date, date("2026-01-16"));
    // Exactly at the cutoff: its own day; a second before: the day before.
    let day = shop("04:00", 0.0).day;
    assert_eq!(
        day.business_date(&at("2026-01-16T03:00:00Z")),
        date("2026-01-16")
    );
    assert_eq!(
        day.business_date(&at("2026-01-16T02:59:59Z")),
        date("2026-01-15")
    );
}

/// A night's sales every 7 s, across Berlin's spring and autumn changes of
/// clocks and on a plain day, with cutoffs at midnight, in the night, in a
/// skipped hour and before midnight: the server dates every one the same.
#[test]
fn business_dates_are_the_servers_across_the_cutoff_and_changes_of_clocks() {
    let nights = [
        "2026-03-28T18:00:00Z",
        "2026-10-24T18:00:00Z",
        "2026-11-20T10:00:00Z",
    ];
    for starts_at in ["00:00", "04:00", "02:30", "23:00"] {
        let shop = shop(starts_at, 0.2);
        let server = calendar(&shop.day);
        for night in nights {
            let rung = (at(night), chrono::Duration::seconds(7));
            for (_, g) in rung_up(1, 3, 5000, &shop, rung) {
                let theirs = server.business_date(&g.occurred_at);
                assert_eq!(g.business_date, theirs, "{starts_at}: {}", g.occurred_at);
            }
        }
    }
}

/// Late-night sales occurred during the last night, from two hours before
/// the business day's start to an hour after it, never after they were
/// rung up: most on the previous business day, some at the cutoff itself.
/// Voids and refunds occur when they are rung up.
#[test]
fn late_night_sales_occurred_around_the_start_of_the_business_day() {
    // Rung up at 14:00 in Berlin, one a second.
    let start = at("2026-11-20T13:00:00Z");
    let shop = shop("04:00", 0.5);
    let rung = rung_up(9, 3, 4000, &shop, (start, chrono::Duration::seconds(1)));
    let (mut plain, mut late, mut before, mut at_cutoff) = (0, 0, 0, 0);
    for (n, (_, g)) in rung.iter().enumerate() {
        let rung_up_at = start + chrono::Duration::seconds(n as i64);
        let occurred = g.occurred_at.to_utc();
        if g.kind != Kind::Sale {
            assert_eq!(occurred, rung_up_at);
            continue;
        }
        plain += 1;
        if occurred == rung_up_at {
            continue;
        }
        late += 1;
        let local = g.occurred_at.naive_local();
        let night = date("2026-11-20");
        assert!(
            local >= night.and_hms_opt(2, 0, 0).unwrap()
                && local < night.and_hms_opt(5, 0, 0).unwrap(),
            "{local}"
        );
        let expected_date = if local.time() < shop.day.starts_at {
            "2026-11-19"
        } else {
            "2026-11-20"
        };
        assert_eq!(g.business_date, date(expected_date), "{local}");
        before += u64::from(g.business_date == date("2026-11-19"));
        at_cutoff += u64::from(local.time() == shop.day.starts_at);
    }
    let share = f64::from(late) / f64::from(plain);
    assert!((0.45..0.55).contains(&share), "late-night {share}");
    let before_share = before as f64 / f64::from(late);
    assert!(
        (0.5..0.7).contains(&before_share),
        "before the cutoff {before_share}"
    );
    assert!(at_cutoff > 50, "{at_cutoff} at the cutoff");

    // Rung up 10 minutes after the cutoff: the night is the one before, a
    // day earlier, so still in the past.
    let soon_after = at("2026-11-20T03:10:00Z");
    for (_, g) in rung_up(9, 3, 500, &shop, (soon_after, chrono::Duration::zero())) {
        assert!(g.occurred_at.to_utc() <= soon_after, "{}", g.occurred_at);
    }
}
