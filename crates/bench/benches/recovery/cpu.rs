//! Where the machine's CPU went: the service, this benchmark's load
//! generator, the rest of this process (the fault proxy and the samplers),
//! and the rest of the machine (Postgres, on an idle machine). Read from
//! `/proc`, so Linux only; elsewhere every figure is 0.
//!
//! On a two-core machine the generator competes with what it measures, so
//! every scenario prints this split next to its goodput.

use std::fs;
use std::time::Duration;

/// CPU time used so far, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSeconds {
    pub service: f64,
    pub postgres: f64,
    pub generator: f64,
    pub proxy_and_samplers: f64,
}

impl CpuSeconds {
    /// Now, for the service process `service_pid`. Postgres is the rest of
    /// the machine's busy time: its backends come and go (a timed-out query
    /// discards its connection), so summing live processes would miss the
    /// ones that exited; on an idle machine the rest is Postgres.
    pub fn now(service_pid: u32) -> Self {
        let service = process_seconds(&format!("/proc/{service_pid}/stat"));
        let machine = machine_busy_seconds();
        let mut generator = 0.0;
        let mut own = 0.0;
        for thread in fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some((name, ticks)) = fs::read_to_string(thread.path().join("stat"))
                .ok()
                .and_then(|stat| parse(&stat))
            else {
                continue;
            };
            let seconds = ticks as f64 / ticks_per_second();
            own += seconds;
            if name == crate::generator::THREAD_NAME {
                generator += seconds;
            }
        }
        Self {
            service,
            postgres: machine - service - own,
            generator,
            proxy_and_samplers: own - generator,
        }
    }

    /// Cores used on average between `earlier` and this reading, `elapsed` apart.
    pub fn cores_since(&self, earlier: &Self, elapsed: Duration) -> Self {
        let per_s = |now: f64, then: f64| (now - then).max(0.0) / elapsed.as_secs_f64();
        Self {
            service: per_s(self.service, earlier.service),
            postgres: per_s(self.postgres, earlier.postgres),
            generator: per_s(self.generator, earlier.generator),
            proxy_and_samplers: per_s(self.proxy_and_samplers, earlier.proxy_and_samplers),
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "service": self.service,
            "postgres": self.postgres,
            "generator": self.generator,
            "proxy_and_samplers": self.proxy_and_samplers,
        })
    }
}

impl std::fmt::Display for CpuSeconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service {:.2}, Postgres (rest of the machine) {:.2}, load generator {:.2}, proxy and samplers {:.2}",
            self.service, self.postgres, self.generator, self.proxy_and_samplers
        )
    }
}

/// Busy time of all CPUs since boot: the first line of /proc/stat, all but
/// idle and iowait (guest time is already inside user).
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    busy as f64 / ticks_per_second()
}

fn process_seconds(stat_path: &str) -> f64 {
    fs::read_to_string(stat_path)
        .ok()
        .and_then(|stat| parse(&stat))
        .map_or(0.0, |(_, ticks)| ticks as f64 / ticks_per_second())
}

/// The command name and user + system ticks of one `/proc/.../stat` line.
fn parse(stat: &str) -> Option<(String, u64)> {
    // The name is in parentheses and may itself contain spaces or ')'.
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name.to_owned(), ticks))
}

fn ticks_per_second() -> f64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100.0,
        ticks => ticks as f64,
    }
}
