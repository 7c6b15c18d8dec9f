//! Why database work was not done, and how long a client should wait
//! before trying again. The health layer is the one source of every
//! database-related `Retry-After`: refusals at admission, work cut short,
//! and queries that failed on a sick link all take theirs from here.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::Rng;

/// Why work was refused or cut short; a retry is safe in every case
/// (batches are idempotent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The link to Postgres is down, or went down while the work ran.
    Unavailable,
    /// More work than the database can take right now.
    Overloaded,
    /// The work did not finish within its deadline.
    DeadlineExceeded,
}

/// Retry-After for an overloaded service is spread over this many seconds.
/// Short: overload passes in moments, and a till kept waiting longer than
/// that leaves the queue empty (measured: 1-3 s cost a third of the goodput
/// at twice the capacity).
const OVERLOAD_SPREAD_S: RangeInclusive<u32> = 1..=2;
/// The longest wait asked for at the start of an outage: most outages are
/// blips, and a till told to wait 2-10 s for a 1 s blip kept its sales
/// waiting up to ten times as long as the outage (measured: sale p99 of
/// 10 s after a 1 s blip). The wait grows by a second for every second the
/// link has been down, up to the configured maximum.
const UNAVAILABLE_FIRST_MAX_S: u32 = 2;

/// How long clients are told to wait, by why they were refused.
#[derive(Debug, Clone, Copy)]
pub struct RetryAfter {
    /// Largest wait while the database is unavailable.
    unavailable_max_s: u32,
}

impl RetryAfter {
    pub fn new(unavailable_max: Duration) -> Self {
        Self {
            unavailable_max_s: (unavailable_max.as_secs() as u32).max(UNAVAILABLE_FIRST_MAX_S),
        }
    }

    /// Seconds to wait, spread at random so a fleet told to wait does not
    /// come back in one wave. `down_for` is how long the link has been
    /// unavailable (zero when it is not): the spread follows it, short for
    /// a blip, up to the maximum for a long outage.
    pub fn seconds(&self, refusal: Refusal, down_for: Duration) -> u32 {
        let spread = match refusal {
            Refusal::Overloaded => OVERLOAD_SPREAD_S,
            Refusal::Unavailable | Refusal::DeadlineExceeded => self.unavailable_spread(down_for),
        };
        rand::rng().random_range(spread)
    }

    fn unavailable_spread(&self, down_for: Duration) -> RangeInclusive<u32> {
        let down_s = u32::try_from(down_for.as_secs()).unwrap_or(u32::MAX);
        let longest = UNAVAILABLE_FIRST_MAX_S
            .saturating_add(down_s)
            .min(self.unavailable_max_s);
        // Past the first seconds nobody is asked back at once.
        (longest / 4).max(1)..=longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn waits_stay_within_their_spread_and_honour_the_maximum() {
        let retry = RetryAfter::new(Duration::from_secs(4));
        for _ in 0..200 {
            assert!((1..=2).contains(&retry.seconds(Refusal::Overloaded, SECOND * 60)));
            assert!((1..=4).contains(&retry.seconds(Refusal::Unavailable, SECOND * 60)));
            assert!((1..=4).contains(&retry.seconds(Refusal::DeadlineExceeded, SECOND * 60)));
        }
        // A maximum below the first spread still gives the first spread.
        let tiny = RetryAfter::new(Duration::from_secs(1));
        assert!((1..=2).contains(&tiny.seconds(Refusal::Unavailable, SECOND * 60)));
    }

    #[test]
    fn the_wait_follows_how_long_the_link_has_been_down() {
        let retry = RetryAfter::new(Duration::from_secs(10));
        assert_eq!(retry.unavailable_spread(Duration::ZERO), 1..=2);
        assert_eq!(retry.unavailable_spread(SECOND), 1..=3);
        assert_eq!(retry.unavailable_spread(SECOND * 5), 1..=7);
        assert_eq!(retry.unavailable_spread(SECOND * 8), 2..=10);
        assert_eq!(retry.unavailable_spread(SECOND * 3600), 2..=10);
        assert_eq!(retry.unavailable_spread(Duration::MAX), 2..=10);
    }
}
