//! The open-model arrival scheduler: customers come at the offered rate
//! whatever the server does, each to a till chosen at random.
//!
//! Arrival times are drawn in advance on a schedule (Poisson or evenly
//! spaced); the scheduler sleeps until the next one and then rings up every
//! sale that is due. It never waits for a response, so a slow server cannot
//! slow the arrivals (no coordinated omission); and each sale carries its
//! scheduled time, so even if this task runs late its latency is measured
//! from when the customer actually arrived.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep_until};

use super::args::Arrivals;
use super::stats::LiveCounters;
use super::till::Till;

/// Draws the gaps between arrivals.
struct Schedule {
    rng: StdRng,
    mean_gap_s: f64,
    arrivals: Arrivals,
}

impl Schedule {
    fn next_gap(&mut self) -> Duration {
        match self.arrivals {
            Arrivals::Fixed => Duration::from_secs_f64(self.mean_gap_s),
            Arrivals::Poisson => {
                // Inverse transform of the exponential distribution; 1 - u
                // is in (0, 1], so the logarithm is finite.
                let u: f64 = self.rng.random();
                Duration::from_secs_f64(-(1.0 - u).ln() * self.mean_gap_s)
            }
        }
    }
}

/// Rings up sales on `tills` at `rate` per second for `duration`; returns
/// how many arrived.
pub async fn drive(
    tills: &[Arc<Till>],
    rate: f64,
    arrivals: Arrivals,
    duration: Duration,
    seed: u64,
    live: &LiveCounters,
) -> u64 {
    let mut schedule = Schedule {
        rng: StdRng::seed_from_u64(seed),
        mean_gap_s: 1.0 / rate,
        arrivals,
    };
    let mut pick = StdRng::seed_from_u64(seed.wrapping_add(1));
    let end = Instant::now() + duration;
    let mut next = Instant::now() + schedule.next_gap();
    let mut arrived = 0;
    while next < end {
        sleep_until(next).await;
        let (now, wall_clock) = (Instant::now(), Utc::now());
        // Everything due by now: at high rates that is several per wake-up.
        while next <= now && next < end {
            let till = &tills[pick.random_range(0..tills.len())];
            till.arrive(next, wall_clock, live);
            arrived += 1;
            next += schedule.next_gap();
        }
    }
    arrived
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::TerminalToken;

    fn tills(n: usize) -> Vec<Arc<Till>> {
        (0..n)
            .map(|i| {
                Arc::new(Till::new(
                    uuid::Uuid::new_v4(),
                    TerminalToken::new("t".into()),
                    i as u64,
                ))
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn arrivals_follow_the_offered_rate() {
        let live = LiveCounters::default();
        let fleet = tills(4);
        for arrivals in [Arrivals::Fixed, Arrivals::Poisson] {
            let n = drive(&fleet, 500.0, arrivals, Duration::from_secs(10), 9, &live).await;
            assert!((4700..=5300).contains(&n), "{arrivals:?}: {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_till_gets_customers() {
        let live = LiveCounters::default();
        let fleet = tills(5);
        drive(
            &fleet,
            200.0,
            Arrivals::Poisson,
            Duration::from_secs(5),
            1,
            &live,
        )
        .await;
        for till in &fleet {
            assert!(till.undelivered() > 100, "{}", till.undelivered());
        }
    }

    /// Arrivals do not wait for anything: with no till task running at all
    /// (a server that never answers), the queue still fills at the rate.
    #[tokio::test(start_paused = true)]
    async fn arrivals_never_wait_on_the_tills() {
        let live = LiveCounters::default();
        let fleet = tills(1);
        let n = drive(
            &fleet,
            100.0,
            Arrivals::Fixed,
            Duration::from_secs(3),
            1,
            &live,
        )
        .await;
        assert_eq!(fleet[0].undelivered(), n);
        assert_eq!(
            live.queued.load(std::sync::atomic::Ordering::Relaxed),
            n as i64
        );
    }
}
