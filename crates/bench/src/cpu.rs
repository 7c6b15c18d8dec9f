//! Where the machine's CPU went while a benchmark measured: the service,
//! Postgres, this benchmark's load generator, the rest of this process (for
//! the recovery benchmark: the fault proxy and the samplers) and the rest
//! of the machine. Read from `/proc`, so Linux only; elsewhere every figure
//! is 0.
//!
//! On a two-core machine the generator competes with what it measures, so
//! the benchmarks print this split next to their figures.
//!
//! Postgres is counted by its processes (every process named `postgres`)
//! rather than as the rest of the machine, so another program busy on the
//! machine shows as such instead of inflating Postgres. Its backends come
//! and go (a timed-out query discards its connection, a benchmark closes its
//! pool), so the live processes alone would miss the ones that exited; the
//! postmaster reaps every backend, and the kernel adds a reaped child's time
//! to its parent's `cutime`/`cstime`, which are counted too (see
//! `postgres_seconds` for reading both consistently).

use std::fs;
use std::time::Duration;

/// Which of this process's threads are the load generator.
#[derive(Debug, Clone, Copy)]
pub enum Generator {
    /// The threads with this name (the recovery benchmark's own runtime).
    Threads(&'static str),
    /// The whole process (the ingest benchmark: the process is its client).
    WholeProcess,
}

/// CPU time used so far, in seconds (or, from [`CpuSeconds::cores_since`],
/// cores used on average).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSeconds {
    pub service: f64,
    pub postgres: f64,
    pub generator: f64,
    pub rest_of_process: f64,
    /// Everything else busy: other programs, the kernel's own threads.
    pub rest_of_machine: f64,
}

impl CpuSeconds {
    /// Now, for the service process `service_pid` (none: no service runs).
    pub fn now(service_pid: Option<u32>, generator: Generator) -> Self {
        let service = service_pid.map_or(0.0, |pid| process_seconds(&format!("/proc/{pid}/stat")));
        let machine = machine_busy_seconds();
        let postgres = postgres_seconds();
        let mut own = 0.0;
        let mut generating = 0.0;
        for thread in fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(stat) = fs::read_to_string(thread.path().join("stat"))
                .ok()
                .and_then(|stat| parse(&stat))
            else {
                continue;
            };
            let seconds = stat.ticks as f64 / ticks_per_second();
            own += seconds;
            if matches!(generator, Generator::Threads(name) if stat.name == name) {
                generating += seconds;
            }
        }
        if matches!(generator, Generator::WholeProcess) {
            generating = own;
        }
        Self {
            service,
            postgres,
            generator: generating,
            rest_of_process: own - generating,
            rest_of_machine: machine - service - postgres - own,
        }
    }

    /// CPU seconds used between `earlier` and this reading.
    pub fn since(&self, earlier: &Self) -> Self {
        let d = |now: f64, then: f64| (now - then).max(0.0);
        Self {
            service: d(self.service, earlier.service),
            postgres: d(self.postgres, earlier.postgres),
            generator: d(self.generator, earlier.generator),
            rest_of_process: d(self.rest_of_process, earlier.rest_of_process),
            rest_of_machine: d(self.rest_of_machine, earlier.rest_of_machine),
        }
    }

    /// Cores used on average between `earlier` and this reading, `elapsed` apart.
    pub fn cores_since(&self, earlier: &Self, elapsed: Duration) -> Self {
        let used = self.since(earlier);
        let per_s = |seconds: f64| seconds / elapsed.as_secs_f64();
        Self {
            service: per_s(used.service),
            postgres: per_s(used.postgres),
            generator: per_s(used.generator),
            rest_of_process: per_s(used.rest_of_process),
            rest_of_machine: per_s(used.rest_of_machine),
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "service": self.service,
            "postgres": self.postgres,
            "generator": self.generator,
            "rest_of_process": self.rest_of_process,
            "rest_of_machine": self.rest_of_machine,
        })
    }
}

impl std::fmt::Display for CpuSeconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service {:.2}, Postgres {:.2}, load generator {:.2}, rest of this process {:.2}, rest of the machine {:.2}",
            self.service, self.postgres, self.generator, self.rest_of_process, self.rest_of_machine
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

/// Every process named `postgres`: its own time, and its reaped children's
/// (only the postmaster has any). A backend reaped while the processes are
/// read would be missed (gone from `/proc`, its time not yet in a `cutime`
/// read earlier) or counted twice, and with it its whole lifetime's CPU; so
/// the postmasters' reaped time is read before and after the live
/// processes, and the reading taken again until no reap fell in between.
fn postgres_seconds() -> f64 {
    let postmasters: Vec<String> = {
        let processes = postgres_processes(|_| true);
        let pids: Vec<&str> = processes.iter().map(|p| p.pid.as_str()).collect();
        processes
            .iter()
            .filter(|p| !pids.contains(&p.ppid.as_str()))
            .map(|p| p.pid.clone())
            .collect()
    };
    let reaped = || -> u64 {
        postgres_processes(|pid| postmasters.iter().any(|p| p == pid))
            .iter()
            .map(|p| p.children_ticks)
            .sum()
    };
    let mut ticks = 0;
    for _attempt in 0..10 {
        let before = reaped();
        let live: u64 = postgres_processes(|_| true).iter().map(|p| p.ticks).sum();
        ticks = live + before;
        if reaped() == before {
            break;
        }
    }
    ticks as f64 / ticks_per_second()
}

/// The processes named `postgres` among those whose pid `wanted` accepts.
fn postgres_processes(wanted: impl Fn(&str) -> bool) -> Vec<Stat> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && wanted(pid))
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| parse(&stat))
        .filter(|stat| stat.name == "postgres")
        .collect()
}

fn process_seconds(stat_path: &str) -> f64 {
    fs::read_to_string(stat_path)
        .ok()
        .and_then(|stat| parse(&stat))
        .map_or(0.0, |stat| stat.ticks as f64 / ticks_per_second())
}

/// What one `/proc/.../stat` line says about a process and its CPU time.
struct Stat {
    pid: String,
    ppid: String,
    /// The command name.
    name: String,
    /// User + system ticks.
    ticks: u64,
    /// User + system ticks of the children it has reaped.
    children_ticks: u64,
}

fn parse(stat: &str) -> Option<Stat> {
    // The name is in parentheses and may itself contain spaces or ')'.
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // Fields 4 and 14 to 17 of the line (ppid; utime, stime, cutime,
    // cstime) are 1 and 11 to 14 after the name.
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        pid: stat.split(' ').next()?.to_owned(),
        ppid: fields.get(1)?.to_string(),
        name: name.to_owned(),
        ticks: field(11)? + field(12)?,
        children_ticks: field(13)? + field(14)?,
    })
}

fn ticks_per_second() -> f64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100.0,
        ticks => ticks as f64,
    }
}
