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
/// The shortest wait asked for while the database is unavailable.
const UNAVAILABLE_MIN_S: u32 = 2;

/// How long clients are told to wait, by why they were refused.
#[derive(Debug, Clone, Copy)]
pub struct RetryAfter {
    /// Largest wait while the database is unavailable.
    unavailable_max_s: u32,
}

impl RetryAfter {
    pub fn new(unavailable_max: Duration) -> Self {
        Self {
            unavailable_max_s: (unavailable_max.as_secs() as u32).max(UNAVAILABLE_MIN_S),
        }
    }

    /// Seconds to wait, spread at random so a fleet told to wait does not
    /// come back in one wave.
    pub fn seconds(&self, refusal: Refusal) -> u32 {
        let spread = match refusal {
            Refusal::Overloaded => OVERLOAD_SPREAD_S,
            Refusal::Unavailable | Refusal::DeadlineExceeded => {
                UNAVAILABLE_MIN_S..=self.unavailable_max_s
            }
        };
        rand::rng().random_range(spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_their_spread_and_honour_the_maximum() {
        let retry = RetryAfter::new(Duration::from_secs(4));
        for _ in 0..200 {
            assert!((1..=2).contains(&retry.seconds(Refusal::Overloaded)));
            assert!((2..=4).contains(&retry.seconds(Refusal::Unavailable)));
            assert!((2..=4).contains(&retry.seconds(Refusal::DeadlineExceeded)));
        }
        // A maximum below the minimum still gives the minimum.
        let tiny = RetryAfter::new(Duration::from_secs(1));
        assert_eq!(tiny.seconds(Refusal::Unavailable), 2);
    }
}
