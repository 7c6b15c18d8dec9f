//! The recovery benchmark: the service behind a TCP fault proxy on its link
//! to Postgres, under load from the fleet simulator, with the health layer
//! on and then off.
//!
//! First, capacity C: the service with the layer off, 64 tills pushing
//! batches back to back. Then per mode (on, off), every scenario on a fresh
//! database behind the proxy: (1) a 30 s stall under steady open-model load
//! at half of C: time to detect, slowest answer during the stall, time from
//! link return to full service, time to drain the backlog and goodput
//! during the drain as a fraction of C; (2) overload at 2x, 5x and 10x C
//! from 100 tills per C: goodput as a fraction of C, p99 of admitted and
//! of refused pushes, and the exactly-once verdict after the drain; (3)
//! only when asked for (`BENCH_SCENARIOS=soak`, `scripts/soak`), a soak at
//! half of C for 30 minutes with its figures by 5-minute window.
//!
//! How it measures, on one two-core machine: the load generator runs at the
//! lowest CPU priority (`generator.rs`) and the CPU split is printed
//! (`tillsync_bench::cpu`); goodput, C included, is the service's own count of accepted
//! sales (`metrics.rs`); latencies are timed by probe tills at normal
//! priority (`probe.rs`) as well as by the simulator. The scenarios:
//! `capacity.rs`, `stall.rs` (with `timeline.rs`), `overload.rs`,
//! `soak.rs`; each starts from `setup.rs`.
//!
//! Run: `scripts/bench-recovery` (or, with the release binary built,
//! `cargo bench -p tillsync-bench --bench recovery`).
//! Settings: BENCH_STALL_S (30; 1 gives the blip scenario), BENCH_OVERLOAD_S (15), BENCH_MODES ("on,off"),
//! BENCH_OVERLOAD_TILLS (a fixed fleet for every overload run instead of 100 per C),
//! BENCH_BATCH (10: small batches keep capacity within what a load
//! generator on the same two cores can offer ten times over),
//! BENCH_SCENARIOS ("stall,overload"; "soak" for the soak), and the soak's
//! BENCH_SOAK_S (1800), BENCH_SOAK_SHARE (0.5 of C), BENCH_SOAK_TILLS (300),
//! BENCH_SOAK_BATCH (100, most sales a push), BENCH_SOAK_WINDOW_S (300).

mod capacity;
mod generator;
mod metrics;
mod overload;
mod probe;
mod setup;
mod soak;
mod stall;
mod timeline;

use serde_json::{Value, json};
use tillsync_bench::setting;

use crate::capacity::reference_capacity;
use crate::overload::{overload, print_overload};
use crate::setup::Setup;
use crate::soak::{Soak, print_soak, soak};
use crate::stall::{print_stall, stall};

/// A figure of the results as printed: numbers with two decimals, none as `-`.
fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| format!("{f:.2}"))
            .unwrap_or_else(|| n.to_string()),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[tokio::main]
async fn main() {
    let stall_s: u64 = setting("BENCH_STALL_S", 30);
    let overload_s: u64 = setting("BENCH_OVERLOAD_S", 15);
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "on,off".into());
    let batch: u64 = setting("BENCH_BATCH", 10);
    let scenarios = std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "stall,overload".into());
    let factors: Vec<f64> = std::env::var("BENCH_FACTORS")
        .unwrap_or_else(|_| "2,5,10".into())
        .split(',')
        .map(|f| {
            f.trim()
                .parse()
                .expect("BENCH_FACTORS: numbers, comma-separated")
        })
        .collect();
    let generator = generator::runtime();
    let mut results = serde_json::Map::new();
    let c = match std::env::var("BENCH_CAPACITY") {
        // For repeated runs while tuning: the C of an earlier run.
        Ok(given) => {
            let c: f64 = given.parse().expect("BENCH_CAPACITY: sales per second");
            println!("capacity C = {c:.0} sales/s (given by BENCH_CAPACITY)");
            c
        }
        Err(_) => {
            let (c, cpu) = reference_capacity(batch, generator.handle()).await;
            println!(
                "capacity C = {c:.0} sales/s (health layer off, 64 tills pushing batches of {batch} back to back, through the proxy passing traffic)"
            );
            println!("            CPU (cores): {cpu}");
            results.insert("capacity_cpu_cores".into(), cpu.to_json());
            c
        }
    };
    results.insert("capacity_per_s".into(), json!(c));
    for mode in modes.split(',') {
        println!("health layer {mode}:");
        let mut stalled = Value::Null;
        if scenarios.contains("stall") {
            let setup = Setup::start("stall", mode).await;
            stalled = stall(&setup, c, stall_s, batch as u32, generator.handle()).await;
            setup.finish().await;
            print_stall(&stalled, stall_s);
        }
        let mut soaked = Value::Null;
        if scenarios.contains("soak") {
            let shape = Soak {
                seconds: setting("BENCH_SOAK_S", 1800),
                share: setting("BENCH_SOAK_SHARE", 0.5),
                tills: setting("BENCH_SOAK_TILLS", 300),
                batch: setting("BENCH_SOAK_BATCH", 100),
                window_s: setting("BENCH_SOAK_WINDOW_S", 300),
            };
            let setup = Setup::start("soak", mode).await;
            soaked = soak(&setup, c, &shape, generator.handle()).await;
            setup.finish().await;
            print_soak(&soaked);
        }
        let mut overloads = Vec::new();
        for &factor in factors.iter().filter(|_| scenarios.contains("overload")) {
            let setup = Setup::start("overload", mode).await;
            let o = overload(
                &setup,
                c,
                factor,
                overload_s,
                batch as u32,
                generator.handle(),
            )
            .await;
            setup.finish().await;
            print_overload(&o, factor);
            overloads.push(o);
        }
        results.insert(
            mode.to_owned(),
            json!({"capacity_per_s": c, "stall": stalled, "overload": overloads, "soak": soaked}),
        );
    }
    generator.shutdown_background();
    if let Some(judged) = judge_overloads(&results, c) {
        results.insert("overload_against_best".into(), judged);
    }
    let soak_failed = results
        .values()
        .any(|mode| mode["soak"]["verdict_passed"] == false);
    if let Ok(path) = std::env::var("BENCH_JSON") {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&Value::Object(results)).unwrap(),
        )
        .unwrap();
    }
    if soak_failed {
        eprintln!("the soak's exactly-once verdict failed");
        std::process::exit(1);
    }
}

/// The overload target's own yardstick, when both modes ran: goodput with
/// the layer on against the best the service reached at that load, with the
/// layer off or at capacity (C's load is plain sales; the simulator's mix of
/// refunds, voids and split tenders costs more a sale, so C alone flatters
/// or blames the layer by the mix, not by what it admits).
fn judge_overloads(results: &serde_json::Map<String, Value>, c: f64) -> Option<Value> {
    let runs = |mode: &str| results.get(mode)?["overload"].as_array().cloned();
    let (on, off) = (runs("on")?, runs("off")?);
    println!(
        "overload goodput, layer on against the best of C and layer off at that load (target >= 0.95):"
    );
    let judged: Vec<Value> = on
        .iter()
        .zip(&off)
        .map(|(on, off)| {
            let goodput = |o: &Value| o["goodput_per_s"].as_f64().unwrap_or(0.0);
            let best = c.max(goodput(off));
            let ratio = goodput(on) / best;
            println!(
                "  {}x: {:.0} sales/s against {:.0} = {:.2}",
                on["factor"],
                goodput(on),
                best,
                ratio
            );
            json!({"factor": on["factor"], "on_per_s": goodput(on), "best_per_s": best, "ratio": ratio})
        })
        .collect();
    Some(Value::Array(judged))
}
