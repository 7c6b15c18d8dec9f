//! The ingest grid (issue 13): for each fleet size and batch size, tillsync
//! end to end over HTTP against the floor of raw Postgres writing as many
//! fresh rows per transaction, in one run on the same Postgres.
//!
//! Per scenario (tills x batch), each phase on a fresh database of its own
//! (dropped after), so table growth in one does not slow the next, with a
//! short warm-up before the measured window:
//!
//! 1. HTTP (`http.rs`): the release `tillsync serve` binary, one store and
//!    `tills` tills provisioned through the API, each pushing batches of
//!    `batch` valid sales back to back, one in flight per till.
//! 2. Raw (`raw.rs`): as many connections as tills, each inserting `batch`
//!    fresh rows per transaction into a **lean table** (uuid key, a few
//!    columns, one jsonb; not tillsync's `sales`, as the issue defines the
//!    floor): one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
//!    NOTHING` per batch, and for batch 1 single-row commits (one
//!    `INSERT ... VALUES` per transaction).
//!
//! Each phase gives operations per second (pushes or commits), rows per
//! second (sales), p50/p99 of an operation, and the CPU split over the
//! window (`measure.rs`, `tillsync_bench::cpu`): the service process,
//! Postgres (its processes), the load generator (this whole process), the
//! rest of the machine. Then the ratio HTTP sales/s over raw rows/s, and
//! the HTTP phase's exactly-once verdict (`verdict.rs`: the database holds
//! exactly the sales answered as committed, each counted once). One table
//! at the end (Markdown, as `docs/benchmarks.md` records it); the run fails
//! after it if any verdict did.
//!
//! Run: `scripts/bench-ingest` (or, with the release binary built,
//! `cargo bench -p tillsync-bench --bench ingest`).
//! Settings (environment): BENCH_TILLS (comma-separated, default `8,64`),
//! BENCH_BATCHES (default `1,10,100,500`; BENCH_BATCH=n alone means one
//! batch size), BENCH_SECONDS (measured seconds per phase, default 10),
//! BENCH_WARMUP_S (default 2), BENCH_JSON (a path to write the figures to as
//! JSON), TILLSYNC_TEST_SERVER_URL (default postgres://postgres@127.0.0.1:5432).
//!
//! The load generator runs on the same machine and shares its cores with
//! the service and Postgres, as the raw phase's client does; bodies are
//! built before the clock starts (`body.rs`) to keep it cheap, and its CPU
//! is printed.

mod body;
mod http;
mod measure;
mod raw;
mod verdict;

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use tillsync_bench::{list_setting, setting};
use tillsync_testkit::binary::Binary;
use tillsync_testkit::database::{drop_database, fresh_name, server_url};

use crate::http::http_phase;
use crate::measure::Measured;
use crate::raw::raw_phase;
use crate::verdict::Verdict;

/// The most sales a push may carry (the API's limit).
const MAX_BATCH: usize = 500;

/// One phase's shape.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub tills: usize,
    pub batch: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// One row of the grid.
struct Scenario {
    phase: Phase,
    http: Measured,
    raw: Measured,
    verdict: Verdict,
}

impl Scenario {
    fn ratio(&self) -> f64 {
        self.http.rows_per_s / self.raw.rows_per_s
    }

    fn to_json(&self) -> Value {
        json!({
            "tills": self.phase.tills,
            "batch": self.phase.batch,
            "http": self.http.to_json(),
            "raw": self.raw.to_json(),
            "ratio_http_to_raw": self.ratio(),
            "verdict_passed": self.verdict.passed(),
            "sales_committed": self.verdict.committed,
            "tills_short": self.verdict.tills_short,
            "tills_over": self.verdict.tills_over,
        })
    }
}

#[tokio::main]
async fn main() {
    let tills: Vec<usize> = list_setting("BENCH_TILLS", &[8, 64]);
    let default_batches = match std::env::var("BENCH_BATCH") {
        Ok(_) => vec![setting("BENCH_BATCH", 100)],
        Err(_) => vec![1, 10, 100, 500],
    };
    let batches: Vec<usize> = list_setting("BENCH_BATCHES", &default_batches);
    assert!(
        batches.iter().all(|b| (1..=MAX_BATCH).contains(b)) && tills.iter().all(|&t| t > 0),
        "batch sizes from 1 to {MAX_BATCH}, at least one till"
    );
    let seconds: f64 = setting("BENCH_SECONDS", 10.0);
    let warmup_s: f64 = setting("BENCH_WARMUP_S", 2.0);
    let binary = Binary::release();
    let commit = commit();
    println!(
        "ingest grid at {commit}: tills {tills:?} x batches {batches:?}, per phase {warmup_s} s warm-up then {seconds} s measured"
    );
    let mut scenarios = Vec::new();
    for &tills in &tills {
        for &batch in &batches {
            let phase = Phase {
                tills,
                batch,
                warmup: Duration::from_secs_f64(warmup_s),
                measure: Duration::from_secs_f64(seconds),
            };
            let scenario = run(&binary, phase).await;
            println!(
                "  {tills} tills, batch {batch}: HTTP {:.0} sales/s, raw {:.0} rows/s, ratio {:.2}; exactly once: {}",
                scenario.http.rows_per_s,
                scenario.raw.rows_per_s,
                scenario.ratio(),
                scenario.verdict
            );
            scenarios.push(scenario);
        }
    }
    print_table(&scenarios);
    if let Ok(path) = std::env::var("BENCH_JSON") {
        let figures = json!({
            "commit": commit,
            "settings": {"tills": tills, "batches": batches, "seconds": seconds, "warmup_s": warmup_s},
            "scenarios": scenarios.iter().map(Scenario::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&figures).unwrap())
            .unwrap_or_else(|e| panic!("BENCH_JSON {path}: {e}"));
        println!("figures written to {path}");
    }
    let failed = scenarios.iter().filter(|s| !s.verdict.passed()).count();
    assert_eq!(
        failed, 0,
        "{failed} scenarios failed the exactly-once verdict"
    );
}

/// Both phases of one scenario, each on a fresh database.
async fn run(binary: &Binary, phase: Phase) -> Scenario {
    let server = server_url();
    let database = fresh_name("tillsync_bench_http");
    let (http, verdict) = http_phase(binary, &format!("{server}/{database}"), phase).await;
    drop_database(&database);
    let database = fresh_name("tillsync_bench_raw");
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("the Postgres server");
    admin
        .execute(format!("create database \"{database}\"").as_str())
        .await
        .expect("a fresh database");
    admin.close().await.ok();
    let raw = raw_phase(&format!("{server}/{database}"), phase).await;
    drop_database(&database);
    Scenario {
        phase,
        http,
        raw,
        verdict,
    }
}

/// The commit measured, as `git describe` gives it (`-dirty` if the tree
/// had changes).
fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "an unknown commit".into())
}

fn print_table(scenarios: &[Scenario]) {
    println!();
    println!(
        "| tills | batch | path | ops/s | rows/s | p50 ms | p99 ms | CPU service | CPU Postgres | CPU generator | CPU rest | HTTP / raw | exactly once |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in scenarios {
        let verdict = if s.verdict.passed() {
            "passed"
        } else {
            "FAILED"
        };
        for (path, m, ratio, verdict) in [
            ("HTTP", &s.http, format!("{:.2}", s.ratio()), verdict),
            ("raw", &s.raw, String::new(), ""),
        ] {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "| {} | {} | {path} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {ratio} | {verdict} |",
                s.phase.tills,
                s.phase.batch,
                m.ops_per_s,
                m.rows_per_s,
                ms(m.p50),
                ms(m.p99),
                m.cpu.service,
                m.cpu.postgres,
                m.cpu.generator,
                m.cpu.rest_of_machine,
            );
        }
    }
}
