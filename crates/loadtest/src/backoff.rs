//! When to try again. A server that says `Retry-After` is obeyed, with a
//! little jitter so a fleet told the same number does not return in one
//! wave; without it, capped exponential backoff with full jitter (a random
//! wait between zero and the current ceiling), which spreads retries best.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::client::Failure;

/// The first backoff ceiling; it doubles with each failure up to the cap.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Jitter added to a `Retry-After`: a quarter of it, and at least this much.
const RETRY_AFTER_MIN_JITTER: Duration = Duration::from_millis(100);
/// How often one-off calls (provisioning, verification) are tried in all.
pub const ONE_OFF_ATTEMPTS: u32 = 6;

#[derive(Debug, Clone)]
pub struct Backoff {
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        Self { cap, failures: 0 }
    }

    /// The wait before the next try, after one more failure.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let mut rng = rand::rng();
        match retry_after {
            Some(wait) => {
                let spread = (wait / 4).max(RETRY_AFTER_MIN_JITTER);
                wait + spread.mul_f64(rng.random::<f64>())
            }
            None => self.ceiling().mul_f64(rng.random::<f64>()),
        }
    }

    /// A success: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    fn ceiling(&self) -> Duration {
        // 2^16 * 100ms is past any sensible cap already; stop doubling there.
        let doublings = self.failures.saturating_sub(1).min(16);
        BACKOFF_BASE.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// Calls `attempt` until it succeeds, fails for good, or was tried
/// [`ONE_OFF_ATTEMPTS`] times, waiting between tries as above. For the
/// calls around the run (provisioning, verification), which must end.
pub async fn retrying<T, F, Fut>(cap: Duration, mut attempt: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut backoff = Backoff::new(cap);
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(failure) if failure.is_transient() && tries < ONE_OFF_ATTEMPTS => {
                tokio::time::sleep(backoff.next_delay(failure.retry_after())).await;
                tries += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_retry_after_the_wait_is_random_below_a_doubling_capped_ceiling() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let ceilings_ms: Vec<u128> = (0..6)
            .map(|_| {
                let delay = backoff.next_delay(None);
                let ceiling = backoff.ceiling();
                assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
                ceiling.as_millis()
            })
            .collect();
        assert_eq!(ceilings_ms, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert!(backoff.next_delay(None) <= BACKOFF_BASE);
    }

    #[test]
    fn retry_after_is_obeyed_with_a_little_jitter_on_top() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        for _ in 0..100 {
            let delay = backoff.next_delay(Some(Duration::from_secs(4)));
            assert!(delay >= Duration::from_secs(4), "{delay:?}");
            assert!(delay <= Duration::from_secs(5), "{delay:?}");
        }
    }

    #[test]
    fn full_jitter_spreads_the_waits() {
        let mut backoff = Backoff::new(Duration::from_secs(10));
        for _ in 0..5 {
            backoff.next_delay(None);
        }
        let delays: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff.clone().next_delay(None)).collect();
        assert!(delays.len() > 10);
    }

    #[tokio::test(start_paused = true)]
    async fn one_off_calls_stop_after_a_bounded_number_of_tries() {
        let mut calls = 0;
        let result: Result<(), Failure> = retrying(Duration::from_millis(10), || {
            calls += 1;
            async { Err(Failure::Timeout) }
        })
        .await;
        assert_eq!(result, Err(Failure::Timeout));
        assert_eq!(calls, ONE_OFF_ATTEMPTS);

        let mut calls = 0;
        let _ = retrying(Duration::from_millis(10), || {
            calls += 1;
            async {
                Err::<(), _>(Failure::Status {
                    status: 401,
                    code: None,
                    retry_after: None,
                })
            }
        })
        .await;
        assert_eq!(calls, 1, "a refused token is not retried");
    }
}
