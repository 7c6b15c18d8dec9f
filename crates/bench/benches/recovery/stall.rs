//! Scenario 1: the database link stalls for a while under steady load at
//! half of capacity. Measures detection, the slowest answer during the
//! stall, the time back to full service, and the drain of the backlog.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tillsync_loadtest::{self as loadtest, LiveCounters};
use tillsync_testkit::proxy::Fault;
use tokio::runtime::Handle;

use crate::metrics::{Scraped, scrape};
use crate::probe::spawn_prober;
use crate::setup::{Fleet, Setup, simulator};
use crate::show;
use crate::timeline::print_timeline;

/// One sample of the stall run, every 100 ms.
#[derive(Default)]
pub struct Sample {
    pub at_s: f64,
    pub status: String,
    /// The fleet's backlog: sales generated and not yet acknowledged.
    pub queued: i64,
    pub admission: Scraped,
}

/// Scenario 1: a stall of `stall_s` under steady load at half of capacity.
pub async fn stall(setup: &Setup, c: f64, stall_s: u64, batch: u32, generator: &Handle) -> Value {
    let (service, admin, proxy) = (&setup.service, &setup.admin, &setup.proxy);
    let before_s = 15;
    let after_s = 30;
    let args = simulator(
        &service.address,
        admin,
        Fleet {
            terminals: 100,
            rate: c / 2.0,
            batch: 100,
            seconds: before_s + stall_s + after_s,
            drain_s: 90,
            seed: 1,
        },
    );
    let live = Arc::new(LiveCounters::default());
    let run = generator.spawn(loadtest::run_observed(args, live.clone()));
    let probe_token = setup.tills(1).await.remove(0);
    let t0 = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let total_s = (before_s + stall_s + after_s + 30) as f64;

    let sampler = {
        let (live, client, url) = (live.clone(), client.clone(), service.address.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while t0.elapsed().as_secs_f64() < total_s {
                let status = match client
                    .get(format!("{url}/v1/status"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .map(|v| v["status"].as_str().unwrap_or("?").to_owned())
                        .unwrap_or_default(),
                    Err(_) => "no answer".into(),
                };
                let admission = scrape(&client, &url).await;
                samples.push(Sample {
                    admission,
                    at_s: t0.elapsed().as_secs_f64(),
                    status,
                    queued: live.queued.load(Ordering::Relaxed),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };
    // A till of its own pushes one sale every 250 ms and times every answer.
    let prober = spawn_prober(
        client.clone(),
        &service.address,
        probe_token,
        t0,
        move || t0.elapsed().as_secs_f64() < total_s,
        Duration::from_millis(250),
        1,
    );

    tokio::time::sleep(Duration::from_secs(before_s)).await;
    let stall_at = t0.elapsed().as_secs_f64();
    proxy.set(Fault::Stall);
    tokio::time::sleep(Duration::from_secs(stall_s)).await;
    let back_at = t0.elapsed().as_secs_f64();
    proxy.set(Fault::Pass);

    let report = run.await.unwrap().expect("simulator ran");
    let samples = sampler.await.unwrap();
    let probes = prober.await.unwrap();

    let detect_s = samples
        .iter()
        .find(|s| s.at_s >= stall_at && s.status == "unavailable")
        .map(|s| s.at_s - stall_at);
    let slowest_in_stall = probes
        .iter()
        .filter(|p| p.sent_at_s >= stall_at && p.sent_at_s < back_at)
        .map(|p| p.latency_s)
        .fold(0.0, f64::max);
    // Full service: from here on every probe is accepted.
    let full_service_s = probes
        .iter()
        .enumerate()
        .filter(|(_, p)| p.sent_at_s >= back_at)
        .find(|(i, _)| probes[*i..].iter().all(|p| p.status == 200))
        .map(|(_, p)| p.sent_at_s + p.latency_s - back_at);
    // Drained: the fleet's queues back to their level before the stall.
    let steady: Vec<i64> = samples
        .iter()
        .filter(|s| s.at_s > 5.0 && s.at_s < stall_at)
        .map(|s| s.queued)
        .collect();
    let steady_max = steady
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(i64::from(batch));
    let backlog_peak = samples.iter().map(|s| s.queued).max().unwrap_or(0);
    let at_back = samples.iter().find(|s| s.at_s >= back_at);
    let drained = samples
        .iter()
        .find(|s| s.at_s > back_at + 0.5 && s.queued <= steady_max);
    let (drain_s, drain_goodput) = match (at_back, drained) {
        (Some(a), Some(d)) => {
            let seconds = d.at_s - back_at;
            (
                Some(seconds),
                // The service's own count of accepted sales, as for C.
                Some(
                    (d.admission.accepted_total - a.admission.accepted_total)
                        / (d.at_s - a.at_s)
                        / c,
                ),
            )
        }
        _ => (None, None),
    };
    let first_accepted_s = probes
        .iter()
        .find(|p| p.sent_at_s >= back_at && p.status == 200)
        .map(|p| p.sent_at_s + p.latency_s - back_at);
    let drained_at = drain_s.map(|d| back_at + d).unwrap_or(f64::MAX);
    let refused_after_drain = probes
        .iter()
        .filter(|p| p.sent_at_s >= drained_at && p.status != 200)
        .count();
    let probes_after_drain = probes.iter().filter(|p| p.sent_at_s >= drained_at).count();
    let refused_before_stall = probes
        .iter()
        .filter(|p| p.sent_at_s >= 5.0 && p.sent_at_s < stall_at && p.status != 200)
        .count();
    let probes_before_stall = probes
        .iter()
        .filter(|p| p.sent_at_s >= 5.0 && p.sent_at_s < stall_at)
        .count();
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        print_timeline(&samples, &probes, stall_at, back_at);
    }
    json!({
        "first_accepted_after_return_s": first_accepted_s,
        "probe_refused_after_drain": refused_after_drain,
        "probe_refused_before_stall": refused_before_stall,
        "probe_pushes_before_stall": probes_before_stall,
        "probe_pushes_after_drain": probes_after_drain,
        "detect_s": detect_s,
        "slowest_answer_in_stall_s": slowest_in_stall,
        "full_service_after_return_s": full_service_s,
        "backlog_peak_sales": backlog_peak,
        "drain_s": drain_s,
        "drain_goodput_of_capacity": drain_goodput,
        "verdict_passed": report.passed(),
        "lost": report.verdict.verification.lost,
        "duplicated": report.verdict.verification.duplicated,
        "statuses": report.requests.status_counts,
        "simulator_max_request_s": report.latency.request.max_ms / 1000.0,
        // From a sale's creation on its till to the first 200 that holds it:
        // what a blip costs the fleet (issue 13: p99 under 3 s for 1 s).
        "sale_p99_s": report.latency.sale.p99_ms / 1000.0,
        "sale_max_s": report.latency.sale.max_ms / 1000.0,
    })
}

pub fn print_stall(stalled: &Value, stall_s: u64) {
    println!(
        "  probe pushes refused before the stall: {} of {}; after return: first accepted probe push {} s; probe pushes refused after the drain: {} of {}",
        stalled["probe_refused_before_stall"],
        stalled["probe_pushes_before_stall"],
        show(&stalled["first_accepted_after_return_s"]),
        stalled["probe_refused_after_drain"],
        stalled["probe_pushes_after_drain"]
    );
    println!(
        "  stall {stall_s} s under load at C/2: detect {} s, slowest answer in stall {} s (probe till) / {} s (slowest push of any simulated till, whole run), full service {} s after return, drain {} s at {} of C; backlog peak {} sales; sale latency p99 {} s, max {} s; verdict passed {}, lost {}, duplicated {}; statuses {}",
        show(&stalled["detect_s"]),
        show(&stalled["slowest_answer_in_stall_s"]),
        show(&stalled["simulator_max_request_s"]),
        show(&stalled["full_service_after_return_s"]),
        show(&stalled["drain_s"]),
        show(&stalled["drain_goodput_of_capacity"]),
        stalled["backlog_peak_sales"],
        show(&stalled["sale_p99_s"]),
        show(&stalled["sale_max_s"]),
        stalled["verdict_passed"],
        stalled["lost"],
        stalled["duplicated"],
        stalled["statuses"]
    );
}
