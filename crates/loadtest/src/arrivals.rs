//! The open-model arrival scheduler: customers come at the offered rate
//! whatever the server does, each to the till the store floor
//! ([`crate::plan`]) sends them to, and the floor's incidents (a till losing
//! its link, one restored, one retired) happen between them.
//!
//! Arrival times are drawn in advance on a schedule (Poisson or evenly
//! spaced); the scheduler sleeps until the next arrival or incident and then
//! handles everything that is due, in the order of the schedule. It never
//! waits for a response (a retirement goes through the API in a task of its
//! own), so a slow server cannot slow the arrivals (no coordinated
//! omission); and each sale carries its scheduled time, so even if this
//! task runs late its latency is measured from when the customer actually
//! arrived.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep_until};

use super::args::Arrivals;
use super::plan::{Incident, Planner};
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

/// The load: how fast customers come, how, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Offered {
    pub rate: f64,
    pub arrivals: Arrivals,
    pub duration: Duration,
    pub seed: u64,
}

/// Rings up sales on `tills` as `planner` says, at the offered rate for its
/// duration, and hands each till to be retired to `retire`; returns how
/// many customers arrived.
pub async fn drive(
    tills: &[Arc<Till>],
    planner: &mut Planner,
    offered: Offered,
    live: &LiveCounters,
    retire: &mut (dyn FnMut(Arc<Till>) + Send),
) -> u64 {
    let mut schedule = Schedule {
        rng: StdRng::seed_from_u64(offered.seed),
        mean_gap_s: 1.0 / offered.rate,
        arrivals: offered.arrivals,
    };
    let start = Instant::now();
    let end = start + offered.duration;
    let mut next = start + schedule.next_gap();
    let mut arrived = 0;
    loop {
        let incident_at = planner.next_incident_at().map(|at| start + at);
        let wake = incident_at.map_or(next, |at| at.min(next));
        if wake >= end {
            break;
        }
        sleep_until(wake).await;
        let (now, wall_clock) = (Instant::now(), Utc::now());
        // Everything due by now, in schedule order: at high rates that is
        // several arrivals per wake-up.
        loop {
            let incident_at = planner.next_incident_at().map(|at| start + at);
            match incident_at {
                Some(at) if at <= now && at <= next && at < end => {
                    if let Some(incident) = planner.incident_due(at - start) {
                        apply(tills, incident, retire);
                    }
                }
                _ if next <= now && next < end => {
                    let arrival = planner.arrival();
                    tills[arrival.till].arrive(&arrival, next, wall_clock, live);
                    arrived += 1;
                    next += schedule.next_gap();
                }
                _ => break,
            }
        }
    }
    arrived
}

fn apply(tills: &[Arc<Till>], incident: Incident, retire: &mut (dyn FnMut(Arc<Till>) + Send)) {
    match incident {
        Incident::LinkDown(till) => tills[till].set_link(false),
        Incident::LinkUp(till) => tills[till].set_link(true),
        Incident::Restore { till, rewind } => tills[till].restore(rewind),
        Incident::Retire(till) => retire(tills[till].clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StoreBehaviour;
    use crate::verify::TerminalToken;

    const PLAIN: StoreBehaviour = StoreBehaviour {
        void_share: 0.02,
        refund_share: 0.05,
        cross_till_share: 0.3,
        offline_till: false,
        restore_rewind: 0,
        retire_till: false,
    };

    fn tills(n: usize) -> Vec<Arc<Till>> {
        (0..n)
            .map(|i| {
                Arc::new(Till::new(
                    i,
                    uuid::Uuid::new_v4(),
                    TerminalToken::new("t".into()),
                    true,
                    crate::generator::Shop::default(),
                ))
            })
            .collect()
    }

    async fn run(
        fleet: &[Arc<Till>],
        behaviour: StoreBehaviour,
        offered: Offered,
        live: &LiveCounters,
        retired: &mut Vec<usize>,
    ) -> u64 {
        let mut planner = Planner::new(offered.seed, fleet.len(), behaviour, offered.duration);
        drive(fleet, &mut planner, offered, live, &mut |till: Arc<
            Till,
        >| {
            retired.push(till.number)
        })
        .await
    }

    fn offered(rate: f64, arrivals: Arrivals, seconds: u64) -> Offered {
        Offered {
            rate,
            arrivals,
            duration: Duration::from_secs(seconds),
            seed: 9,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn arrivals_follow_the_offered_rate() {
        let live = LiveCounters::default();
        let fleet = tills(4);
        for arrivals in [Arrivals::Fixed, Arrivals::Poisson] {
            let n = run(
                &fleet,
                PLAIN,
                offered(500.0, arrivals, 10),
                &live,
                &mut vec![],
            )
            .await;
            assert!((4700..=5300).contains(&n), "{arrivals:?}: {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_till_gets_customers() {
        let live = LiveCounters::default();
        let fleet = tills(5);
        run(
            &fleet,
            PLAIN,
            offered(200.0, Arrivals::Poisson, 5),
            &live,
            &mut vec![],
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
        let n = run(
            &fleet,
            PLAIN,
            offered(100.0, Arrivals::Fixed, 3),
            &live,
            &mut vec![],
        )
        .await;
        assert_eq!(fleet[0].undelivered(), n);
        assert_eq!(
            live.queued.load(std::sync::atomic::Ordering::Relaxed),
            n as i64
        );
    }

    /// The incidents happen during the load: the retired till is handed
    /// over once and gets no customer afterwards, the restored one reuses
    /// seqs, and every link that went down is back by the end but the
    /// retiring till's (its retirement brings it back).
    #[tokio::test(start_paused = true)]
    async fn the_incidents_happen_and_the_retired_till_rings_nothing_more() {
        let live = LiveCounters::default();
        let fleet = tills(3);
        let behaviour = StoreBehaviour {
            offline_till: true,
            restore_rewind: 20,
            retire_till: true,
            ..PLAIN
        };
        let mut retired = Vec::new();
        run(
            &fleet,
            behaviour,
            offered(300.0, Arrivals::Fixed, 4),
            &live,
            &mut retired,
        )
        .await;
        assert_eq!(retired, [2]);

        let last = fleet[2].expected();
        let at_retirement = last.sales.len();
        assert!(last.link_lost);
        assert!(fleet[0].expected().link_lost);
        assert!(fleet[0].link_up());
        assert!(!fleet[2].link_up());
        // Customers came to the last till up to 75% of the load only.
        assert!((250..=350).contains(&at_retirement), "{at_retirement}");

        let restored = fleet[1].expected();
        assert_eq!(restored.restored_by, Some(20));
        let mut seqs: Vec<i64> = restored.sales.iter().map(|s| s.seq).collect();
        let rung = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(rung - seqs.len(), 20, "20 seqs used twice");
    }
}
