//! Scenario 2: open-model load at a multiple of capacity. Measures goodput
//! as a fraction of C, admitted and refused latencies (from the simulator
//! and from probe tills), the admission figures and the CPU split, and the
//! exactly-once verdict after the drain.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tillsync_bench::cpu::CpuSeconds;
use tillsync_bench::setting;
use tillsync_loadtest::{self as loadtest, LiveCounters};
use tokio::runtime::Handle;

use crate::generator::GENERATOR;
use crate::metrics::{Scraped, scrape};
use crate::probe::{Probe, p99_ms, spawn_prober};
use crate::setup::{Fleet, Setup, simulator};
use crate::show;

/// One sample of an overload run, every 100 ms.
struct LoadSample {
    /// Sales the simulator had rung up so far.
    generated: u64,
    at: Instant,
    cpu: CpuSeconds,
    scraped: Scraped,
}

/// Scenario 2: open-model load at `factor` times capacity, from a fleet of
/// 100 tills per C (each till offers about 1 % of C, so more load is more
/// tills, each keeping one push in flight). The drain afterwards may take
/// long (10x for 15 s queues 135 s of work); it is given 300 s, so that
/// every overload run ends with a full exactly-once verdict.
pub async fn overload(
    setup: &Setup,
    c: f64,
    factor: f64,
    seconds: u64,
    batch: u32,
    generator: &Handle,
) -> Value {
    let (service, admin) = (&setup.service, &setup.admin);
    let tills = match setting::<u64>("BENCH_OVERLOAD_TILLS", 0) {
        0 => (100.0 * factor).round() as u32,
        fixed => fixed as u32,
    };
    let args = simulator(
        &service.address,
        admin,
        Fleet {
            terminals: tills,
            rate: c * factor,
            batch,
            seconds,
            drain_s: 300,
            seed: 2,
        },
    );
    let live = Arc::new(LiveCounters::default());
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Four probe tills, each pushing a batch of the fleet's size every 250
    // ms for the whole run; only their pushes during the load are counted.
    let t0 = Instant::now();
    let probe_tokens = setup.tills(4).await;
    let probers: Vec<_> = probe_tokens
        .into_iter()
        .map(|token| {
            let sampling = sampling.clone();
            spawn_prober(
                reqwest::Client::new(),
                &service.address,
                token,
                t0,
                move || sampling.load(Ordering::Relaxed),
                Duration::from_millis(250),
                u64::from(batch),
            )
        })
        .collect();
    let sampler = {
        let (sampling, live, url) = (sampling.clone(), live.clone(), service.address.clone());
        let pid = service.pid();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                seen.push(LoadSample {
                    generated: LiveCounters::get(&live.generated),
                    at: Instant::now(),
                    cpu: CpuSeconds::now(Some(pid), GENERATOR),
                    scraped: scrape(&client, &url).await,
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        })
    };
    let report = generator
        .spawn(loadtest::run_observed(args, live))
        .await
        .unwrap()
        .expect("simulator ran");
    sampling.store(false, Ordering::Relaxed);
    let seen = sampler.await.unwrap();
    // The load itself: from the first arrival to the last.
    let load: Vec<&LoadSample> = seen
        .iter()
        .filter(|s| s.generated > 0)
        .take_while(|s| s.generated < report.sales.generated)
        .collect();
    let (cpu, goodput, load_from_s, load_to_s) = match (load.first(), load.last()) {
        (Some(first), Some(last)) if last.at > first.at => {
            let elapsed = last.at - first.at;
            (
                last.cpu.cores_since(&first.cpu, elapsed),
                (last.scraped.accepted_total - first.scraped.accepted_total)
                    / elapsed.as_secs_f64(),
                (first.at - t0).as_secs_f64(),
                (last.at - t0).as_secs_f64(),
            )
        }
        _ => (CpuSeconds::default(), 0.0, 0.0, 0.0),
    };
    let mut probes = Vec::new();
    for prober in probers {
        probes.extend(prober.await.unwrap());
    }
    let in_load: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.sent_at_s >= load_from_s && p.sent_at_s < load_to_s)
        .collect();
    let probe_p99 = |admitted: bool| {
        p99_ms(
            in_load
                .iter()
                .filter(|p| (p.status == 200) == admitted)
                .map(|p| p.latency_s)
                .collect(),
        )
    };
    let service_refused_p99_ms = match (load.first(), load.last()) {
        (Some(first), Some(last)) => last.scraped.refusal_p99_ms_since(&first.scraped),
        _ => None,
    };
    let mean = |f: fn(&Scraped) -> f64| {
        load.iter().map(|s| f(&s.scraped)).sum::<f64>() / load.len().max(1) as f64
    };
    json!({
        "tills": tills,
        "probe_pushes": in_load.len(),
        "probe_refused": in_load.iter().filter(|p| p.status != 200).count(),
        "probe_admitted_p99_ms": probe_p99(true),
        "probe_refused_p99_ms": probe_p99(false),
        "cpu_cores": cpu.to_json(),
        "admission_limit_mean": mean(|a| a.limit),
        "admission_in_flight_mean": mean(|a| a.in_flight),
        "admission_queued_mean": mean(|a| a.queued),
        "factor": factor,
        "offered_per_s": report.sales.generated_per_s,
        "goodput_per_s": goodput,
        "goodput_of_capacity": goodput / c,
        "simulator_acknowledged_per_s": report.sales.achieved_per_s,
        "admitted_p99_ms": report.latency.accepted.p99_ms,
        "refused_p99_ms": report.latency.refused.p99_ms,
        "service_refused_p99_ms": service_refused_p99_ms,
        "refused": report.latency.refused.count,
        "statuses": report.requests.status_counts,
        "verdict_passed": report.passed(),
        "lost": report.verdict.verification.lost,
        "duplicated": report.verdict.verification.duplicated,
        "undelivered": report.sales.undelivered,
        "unverified_tills": report.verdict.verification.unverified_tills,
        "verdict": report.verdict.to_string(),
    })
}

/// The figures of one overload run, as three lines.
pub fn print_overload(o: &Value, factor: f64) {
    println!(
        "  overload {factor:>4}x, {} tills: offered {} sales/s, goodput {} sales/s = {} of C, p99 admitted {} ms, p99 refused {} ms as the fleet saw it, {} ms as the service timed it ({} refused); verdict passed {} (not held {}, duplicated {}, still queued at the drain timeout {}, tills not verified {})",
        o["tills"],
        show(&o["offered_per_s"]),
        show(&o["goodput_per_s"]),
        show(&o["goodput_of_capacity"]),
        show(&o["admitted_p99_ms"]),
        show(&o["refused_p99_ms"]),
        show(&o["service_refused_p99_ms"]),
        o["refused"],
        o["verdict_passed"],
        o["lost"],
        o["duplicated"],
        o["undelivered"],
        o["unverified_tills"]
    );
    println!(
        "            probe tills (normal priority): p99 admitted {} ms, p99 refused {} ms ({} of {} pushes refused)",
        show(&o["probe_admitted_p99_ms"]),
        show(&o["probe_refused_p99_ms"]),
        o["probe_refused"],
        o["probe_pushes"],
    );
    println!(
        "            during the load: admission (mean of samples every 100 ms) limit {}, in flight {}, queued {}; CPU (cores): service {}, Postgres {}, load generator {}, proxy and samplers {}, rest of the machine {}",
        show(&o["admission_limit_mean"]),
        show(&o["admission_in_flight_mean"]),
        show(&o["admission_queued_mean"]),
        show(&o["cpu_cores"]["service"]),
        show(&o["cpu_cores"]["postgres"]),
        show(&o["cpu_cores"]["generator"]),
        show(&o["cpu_cores"]["rest_of_process"]),
        show(&o["cpu_cores"]["rest_of_machine"]),
    );
    if o["verdict_passed"] == false {
        println!(
            "            verdict: {}",
            o["verdict"].as_str().unwrap_or("")
        );
    }
}
