//! The stall run second by second, for tuning the health layer
//! (`BENCH_TIMELINE=1` prints it).

use crate::probe::Probe;
use crate::stall::Sample;

/// One line per second of the stall run: what the service's admission did
/// (limit, slots in use, queue, refusals) against the fleet's backlog and
/// the probe till's answers. For tuning; `BENCH_TIMELINE=1` prints it.
pub fn print_timeline(samples: &[Sample], probes: &[Probe], stall_at: f64, back_at: f64) {
    println!(
        "    t(s)  status       limit  in-flight  queued  shed/s  fleet-backlog  probe ok/sent"
    );
    let end = samples.last().map_or(0.0, |s| s.at_s);
    let mut second = 0.0;
    let mut shed_before = samples.first().map_or(0.0, |s| s.admission.shed_total);
    while second < end {
        let window: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at_s >= second && s.at_s < second + 1.0)
            .collect();
        let in_window = |p: &&Probe| p.sent_at_s >= second && p.sent_at_s < second + 1.0;
        let sent = probes.iter().filter(in_window).count();
        let ok = probes
            .iter()
            .filter(in_window)
            .filter(|p| p.status == 200)
            .count();
        if let Some(last) = window.last() {
            let max = |f: fn(&Sample) -> f64| window.iter().map(|s| f(s)).fold(0.0, f64::max);
            let min_limit = window
                .iter()
                .map(|s| s.admission.limit)
                .fold(f64::MAX, f64::min);
            let mark = if (second..second + 1.0).contains(&stall_at) {
                " <- stall"
            } else if (second..second + 1.0).contains(&back_at) {
                " <- link back"
            } else {
                ""
            };
            println!(
                "    {second:>4.0}  {:<11}  {:>2.0}-{:<2.0}  {:>9.0}  {:>6.0}  {:>6.0}  {:>13}  {ok}/{sent}{mark}",
                last.status,
                min_limit,
                max(|s| s.admission.limit),
                max(|s| s.admission.in_flight),
                max(|s| s.admission.queued),
                last.admission.shed_total - shed_before,
                last.queued,
            );
            shed_before = last.admission.shed_total;
        }
        second += 1.0;
    }
}
