//! The live progress line: once a second on stderr, overwritten in place
//! with `\r`, and only when stderr is a terminal, so logs and CI output stay
//! clean.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval};

use super::stats::LiveCounters;
use super::till::Phase;

const REFRESH: Duration = Duration::from_secs(1);
/// Carriage return, then ANSI "erase the whole line".
const CLEAR_LINE: &str = "\r\x1b[2K";

pub struct Progress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What one line shows.
struct Snapshot {
    elapsed: Duration,
    draining: bool,
    offered_per_s: f64,
    achieved_per_s: f64,
    in_flight: i64,
    queued: i64,
    errors: u64,
}

impl Progress {
    /// Starts the line, or nothing when stderr is not a terminal.
    pub fn start(
        live: Arc<LiveCounters>,
        offered_per_s: f64,
        phase: watch::Receiver<Phase>,
    ) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = interval(REFRESH);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last = (Instant::now(), LiveCounters::get(&live.acknowledged));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {}
                }
                let (now, acknowledged) = (Instant::now(), LiveCounters::get(&live.acknowledged));
                let window = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let snapshot = Snapshot {
                    elapsed: started.elapsed(),
                    draining: matches!(*phase.borrow(), Phase::Drain { .. }),
                    offered_per_s,
                    achieved_per_s: (acknowledged - last.1) as f64 / window,
                    in_flight: live.in_flight.load(Ordering::Relaxed),
                    queued: live.queued.load(Ordering::Relaxed),
                    errors: LiveCounters::get(&live.errors),
                };
                last = (now, acknowledged);
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "{CLEAR_LINE}{}", snapshot.line());
                let _ = stderr.flush();
            }
            let _ = write!(std::io::stderr(), "{CLEAR_LINE}");
        });
        Some(Self { stop, task })
    }

    /// Stops the line and erases it, so the summary starts on a clean line.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

impl Snapshot {
    fn line(&self) -> String {
        let (phase, offered) = if self.draining {
            ("drain", "-".to_owned())
        } else {
            ("load", format!("{:.0}/s", self.offered_per_s))
        };
        format!(
            "{phase} {:>5}s  offered {offered}  achieved {:.0}/s  in flight {}  queued {}  errors {}",
            self.elapsed.as_secs(),
            self.achieved_per_s,
            self.in_flight,
            self.queued,
            self.errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_rates_in_flight_queued_and_errors() {
        let mut snapshot = Snapshot {
            elapsed: Duration::from_millis(12_400),
            draining: false,
            offered_per_s: 200.0,
            achieved_per_s: 187.6,
            in_flight: 5,
            queued: 37,
            errors: 2,
        };
        assert_eq!(
            snapshot.line(),
            "load    12s  offered 200/s  achieved 188/s  in flight 5  queued 37  errors 2"
        );
        snapshot.draining = true;
        assert!(snapshot.line().starts_with("drain    12s  offered -"));
    }
}
