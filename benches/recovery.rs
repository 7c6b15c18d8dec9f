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
//! of refused pushes, and the exactly-once verdict after the drain.
//!
//! How it measures, on one two-core machine: the load generator runs at the
//! lowest CPU priority (`recovery_support/generator.rs`) and the CPU split
//! is printed (`recovery_support/cpu.rs`); goodput, C included, is the
//! service's own count of accepted sales; latencies are timed by probe
//! tills at normal priority as well as by the simulator.
//!
//! Run: `scripts/bench-recovery` (or `cargo bench --bench recovery`).
//! Settings: BENCH_STALL_S (30), BENCH_OVERLOAD_S (15), BENCH_MODES ("on,off"),
//! BENCH_OVERLOAD_TILLS (a fixed fleet for every overload run instead of 100 per C),
//! BENCH_BATCH (10: small batches keep capacity within what a load
//! generator on the same two cores can offer ten times over).

#[path = "recovery_support/cpu.rs"]
mod cpu;
#[path = "recovery_support/generator.rs"]
mod generator;
#[path = "../tests/api/support/proxy.rs"]
#[expect(
    dead_code,
    reason = "the benchmark stalls and passes; latency faults are for the tests"
)]
mod proxy;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use cpu::CpuSeconds;
use proxy::{Fault, FaultProxy};
use serde_json::{Value, json};
use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;
use tillsync::config::{Cli, Command as TillsyncCommand};
use tillsync::loadtest::{self, LiveCounters, LoadtestArgs};
use tokio::runtime::Handle;
use uuid::Uuid;

const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Service {
    child: Child,
    url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_service(database_url: &str, layer: &str) -> Service {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_tillsync"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url)
        // Warnings are the point of this run (pool timeouts, stalls): keep
        // the figures readable.
        .env("RUST_LOG", "error")
        .env("TILLSYNC_HEALTH_LAYER", layer)
        // Simulated tills push far more often than real ones.
        .env("TILLSYNC_TERMINAL_RATE", "0")
        .stdout(Stdio::null())
        .spawn()
        .expect("tillsync starts");
    let service = Service {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("{}/healthz", service.url))
            .send()
            .await
            .is_ok()
        {
            return service;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tillsync did not start");
}

/// One simulator run's fleet and load.
struct Fleet {
    terminals: u32,
    rate: f64,
    batch: u32,
    seconds: u64,
    drain_s: u64,
    seed: u64,
}

fn simulator(url: &str, token: &str, fleet: Fleet) -> LoadtestArgs {
    let Fleet {
        terminals,
        rate,
        batch,
        seconds,
        drain_s,
        seed,
    } = fleet;
    let argv = [
        "tillsync".to_owned(),
        "loadtest".into(),
        "--url".into(),
        url.into(),
        "--admin-token".into(),
        token.into(),
        "--terminals".into(),
        terminals.to_string(),
        "--rate".into(),
        format!("{rate:.0}"),
        "--batch-size".into(),
        batch.to_string(),
        "--duration".into(),
        format!("{seconds}s"),
        "--drain-timeout".into(),
        format!("{drain_s}s"),
        "--seed".into(),
        seed.to_string(),
    ];
    match Cli::try_parse_from(argv)
        .expect("simulator settings parse")
        .command
    {
        TillsyncCommand::Loadtest(args) => args,
        _ => unreachable!(),
    }
}

async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// Provisions `n` tills in a new store; returns their tokens.
async fn tills(service: &Service, admin: &str, n: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let store = post(
        &client,
        format!("{}/v1/stores", service.url),
        admin,
        json!({"name": "Bench", "timezone": "UTC", "currency": "EUR"}),
    )
    .await;
    let mut tokens = Vec::new();
    for i in 0..n {
        let till = post(
            &client,
            format!("{}/v1/terminals", service.url),
            admin,
            json!({"store_id": store["store_id"], "name": format!("t{i}")}),
        )
        .await;
        tokens.push(till["token"].as_str().unwrap().to_owned());
    }
    tokens
}

/// A sale shaped like the simulator's (three described lines, one tender), so
/// capacity measured with it is comparable with the simulator's goodput.
fn sale(seq: u64) -> Value {
    let line = |sku: &str, description: &str, amount_minor: i64| json!({"sku": sku, "description": description, "quantity": 1, "amount_minor": amount_minor});
    json!({"sale_id": Uuid::new_v4(), "seq": seq, "kind": "sale", "occurred_at": chrono::Utc::now().to_rfc3339(),
           "currency": "EUR",
           "lines": [line("COFFEE-L", "Large coffee", 350), line("CROISSANT", "Butter croissant", 220),
                     line("MILK-1L", "Whole milk 1 l", 119)],
           "tenders": [{"method": "card", "amount_minor": 689}], "total_minor": 689, "tax_minor": 70, "discount_minor": 0})
}

/// Capacity: 64 tills push batches back to back for 10 s (more than the
/// pool and the admission limit, so the database is never left idle), from
/// the load generator's runtime. Returns sales per second and the CPU split.
async fn capacity(
    service: &Service,
    admin: &str,
    batch: u64,
    generator: &Handle,
) -> (f64, CpuSeconds) {
    let tokens = tills(service, admin, 64).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let url = format!("{}/v1/sales/batches", service.url);
        tasks.push(generator.spawn(async move {
            let client = reqwest::Client::new();
            let mut seq = 1;
            while started.elapsed() < Duration::from_secs(13) {
                let body = json!({"sales": (seq..seq + batch).map(sale).collect::<Vec<_>>()});
                seq += batch;
                let _ = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Idempotency-Key", Uuid::new_v4().to_string())
                    .json(&body)
                    .send()
                    .await;
            }
        }));
    }
    // Counted over 10 s after a 2 s warm-up, by the service's own counter.
    let client = reqwest::Client::new();
    tokio::time::sleep_until((started + Duration::from_secs(2)).into()).await;
    let (from, cpu_from) = (
        scrape(&client, &service.url).await,
        CpuSeconds::now(service.child.id()),
    );
    let from_at = Instant::now();
    tokio::time::sleep_until((started + Duration::from_secs(12)).into()).await;
    let (to, cpu_to) = (
        scrape(&client, &service.url).await,
        CpuSeconds::now(service.child.id()),
    );
    let elapsed = from_at.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    (
        (to.accepted_total - from.accepted_total) / elapsed.as_secs_f64(),
        cpu_to.cores_since(&cpu_from, elapsed),
    )
}

#[derive(Default)]
struct Sample {
    at_s: f64,
    status: String,
    queued: i64,
    admission: Scraped,
}

/// What the service's /metrics said: the admission gauges, the refusal
/// counter and the sales it accepted so far (goodput is taken from this,
/// the server's own count, so the load generator's scheduling at low
/// priority cannot skew it).
#[derive(Default, Clone, Copy)]
struct Scraped {
    limit: f64,
    in_flight: f64,
    queued: f64,
    shed_total: f64,
    accepted_total: f64,
}

async fn scrape(client: &reqwest::Client, url: &str) -> Scraped {
    let Ok(response) = client
        .get(format!("{url}/metrics"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
    else {
        return Scraped::default();
    };
    let text = response.text().await.unwrap_or_default();
    let mut a = Scraped::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        if name == "tillsync_admission_limit" {
            a.limit = value;
        } else if name == "tillsync_admission_in_flight" {
            a.in_flight = value;
        } else if name == "tillsync_admission_queued" {
            a.queued = value;
        } else if name.starts_with("tillsync_requests_shed_total{") {
            a.shed_total += value;
        } else if name == r#"tillsync_sales_total{result="accepted"}"# {
            a.accepted_total = value;
        }
    }
    a
}

/// One sample of an overload run, every 100 ms.
struct LoadSample {
    /// Sales the simulator had rung up so far.
    generated: u64,
    at: Instant,
    cpu: CpuSeconds,
    scraped: Scraped,
}

struct Probe {
    sent_at_s: f64,
    latency_s: f64,
    status: u16,
}

/// A till of the benchmark's own, on the main runtime at normal priority:
/// pushes `per_push` sales every `every` while `keep_going` says so and
/// times every answer (sent at: seconds after `t0`). Its timings are what a till sees, without
/// the load generator's own scheduling delays at low priority.
fn spawn_prober(
    client: reqwest::Client,
    service_url: &str,
    token: String,
    t0: Instant,
    keep_going: impl Fn() -> bool + Send + 'static,
    every: Duration,
    per_push: u64,
) -> tokio::task::JoinHandle<Vec<Probe>> {
    let url = format!("{service_url}/v1/sales/batches");
    tokio::spawn(async move {
        let mut probes = Vec::new();
        let mut seq = 1;
        while keep_going() {
            let sent_at_s = t0.elapsed().as_secs_f64();
            let started = Instant::now();
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&json!({"sales": (seq..seq + per_push).map(sale).collect::<Vec<_>>()}))
                .send()
                .await;
            let status = response.map(|r| r.status().as_u16()).unwrap_or(0);
            if status == 200 {
                seq += per_push;
            }
            probes.push(Probe {
                sent_at_s,
                latency_s: started.elapsed().as_secs_f64(),
                status,
            });
            tokio::time::sleep(every).await;
        }
        probes
    })
}

/// The 99th percentile of `values`, in milliseconds; None for no values.
fn p99_ms(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * 0.99).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1] * 1000.0)
}

/// Scenario 1: a stall of `stall_s` under steady load at half of capacity.
async fn stall(
    service: &Service,
    admin: &str,
    proxy: &FaultProxy,
    c: f64,
    stall_s: u64,
    batch: u32,
    generator: &Handle,
) -> Value {
    let before_s = 15;
    let after_s = 30;
    let args = simulator(
        &service.url,
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
    let probe_token = tills(service, admin, 1).await.remove(0);
    let t0 = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let total_s = (before_s + stall_s + after_s + 30) as f64;

    let sampler = {
        let (live, client, url) = (live.clone(), client.clone(), service.url.clone());
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
    // A till of its own pushes one sale every 250 ms and times every answer.
    let prober = spawn_prober(
        client.clone(),
        &service.url,
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
    })
}

/// One line per second of the stall run: what the service's admission did
/// (limit, slots in use, queue, refusals) against the fleet's backlog and
/// the probe till's answers. For tuning; `BENCH_TIMELINE=1` prints it.
fn print_timeline(samples: &[Sample], probes: &[Probe], stall_at: f64, back_at: f64) {
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

/// Scenario 2: open-model load at `factor` times capacity, from a fleet of
/// 100 tills per C (each till offers about 1 % of C, so more load is more
/// tills, each keeping one push in flight). The drain afterwards may take
/// long (10x for 15 s queues 135 s of work); it is given 300 s, so that
/// every overload run ends with a full exactly-once verdict.
async fn overload(
    service: &Service,
    admin: &str,
    c: f64,
    factor: f64,
    seconds: u64,
    batch: u32,
    generator: &Handle,
) -> Value {
    let tills = match setting("BENCH_OVERLOAD_TILLS", 0) {
        0 => (100.0 * factor).round() as u32,
        fixed => fixed as u32,
    };
    let args = simulator(
        &service.url,
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
    let probe_tokens = self::tills(service, admin, 4).await;
    let probers: Vec<_> = probe_tokens
        .into_iter()
        .map(|token| {
            let sampling = sampling.clone();
            spawn_prober(
                reqwest::Client::new(),
                &service.url,
                token,
                t0,
                move || sampling.load(Ordering::Relaxed),
                Duration::from_millis(250),
                u64::from(batch),
            )
        })
        .collect();
    let sampler = {
        let (sampling, live, url) = (sampling.clone(), live.clone(), service.url.clone());
        let pid = service.child.id();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                seen.push(LoadSample {
                    generated: LiveCounters::get(&live.generated),
                    at: Instant::now(),
                    cpu: CpuSeconds::now(pid),
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
        "refused": report.latency.refused.count,
        "statuses": report.requests.status_counts,
        "verdict_passed": report.passed(),
        "lost": report.verdict.verification.lost,
        "duplicated": report.verdict.verification.duplicated,
        "undelivered": report.sales.undelivered,
        "unverified_tills": report.verdict.verification.unverified_tills,
    })
}

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

/// The database path's own capacity, one figure both modes are judged
/// against: the service with the health layer off (nothing refused, requests
/// wait for the pool), a fresh database, behind the fault proxy passing
/// traffic (the scenarios' path, whose copying costs CPU here too).
async fn reference_capacity(batch: u64, generator: &Handle) -> (f64, CpuSeconds) {
    let setup = Setup::start("capacity", "off").await;
    let measured = capacity(&setup.service, &setup.admin, batch, generator).await;
    setup.finish().await;
    measured
}

/// A fresh database for one scenario, the service on it in one mode
/// (health layer on or off) behind a fault proxy passing traffic, and a
/// merchant admin token. Every scenario starts from the same state, so
/// runs compare with each other whatever ran before them.
struct Setup {
    proxy: FaultProxy,
    service: Service,
    admin: String,
    database: String,
}

impl Setup {
    async fn start(scenario: &str, mode: &str) -> Self {
        let database = format!(
            "tillsync_bench_recovery_{scenario}_{mode}_{}",
            Uuid::new_v4().simple()
        );
        let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
        // The service creates its database and migrates it (through the proxy).
        let service = start_service(
            &format!("postgres://postgres@{}/{database}", proxy.address()),
            mode,
        )
        .await;
        let created = Command::new(env!("CARGO_BIN_EXE_tillsync"))
            .args(["admin", "create-merchant", "--name", "Bench"])
            .env("DATABASE_URL", format!("{SERVER_URL}/{database}"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let created: Value = serde_json::from_slice(&created.stdout).unwrap();
        let admin = created["admin_token"].as_str().unwrap().to_owned();
        Self {
            proxy,
            service,
            admin,
            database,
        }
    }

    /// Stops the service and drops its database.
    async fn finish(self) {
        let Self {
            proxy,
            service,
            database,
            ..
        } = self;
        drop(service);
        drop(proxy);
        let admin_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{SERVER_URL}/postgres"))
            .await
            .unwrap();
        admin_pool
            .execute(format!("drop database if exists \"{database}\" with (force)").as_str())
            .await
            .unwrap();
    }
}

fn print_stall(stalled: &Value, stall_s: u64) {
    println!(
        "  probe pushes refused before the stall: {} of {}; after return: first accepted probe push {} s; probe pushes refused after the drain: {} of {}",
        stalled["probe_refused_before_stall"],
        stalled["probe_pushes_before_stall"],
        show(&stalled["first_accepted_after_return_s"]),
        stalled["probe_refused_after_drain"],
        stalled["probe_pushes_after_drain"]
    );
    println!(
        "  stall {stall_s} s under load at C/2: detect {} s, slowest answer in stall {} s (probe till) / {} s (slowest push of any simulated till, whole run), full service {} s after return, drain {} s at {} of C; backlog peak {} sales; verdict passed {}, lost {}, duplicated {}; statuses {}",
        show(&stalled["detect_s"]),
        show(&stalled["slowest_answer_in_stall_s"]),
        show(&stalled["simulator_max_request_s"]),
        show(&stalled["full_service_after_return_s"]),
        show(&stalled["drain_s"]),
        show(&stalled["drain_goodput_of_capacity"]),
        stalled["backlog_peak_sales"],
        stalled["verdict_passed"],
        stalled["lost"],
        stalled["duplicated"],
        stalled["statuses"]
    );
}

#[tokio::main]
async fn main() {
    let stall_s = setting("BENCH_STALL_S", 30);
    let overload_s = setting("BENCH_OVERLOAD_S", 15);
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "on,off".into());
    let batch = setting("BENCH_BATCH", 10);
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
            stalled = stall(
                &setup.service,
                &setup.admin,
                &setup.proxy,
                c,
                stall_s,
                batch as u32,
                generator.handle(),
            )
            .await;
            setup.finish().await;
            print_stall(&stalled, stall_s);
        }
        let mut overloads = Vec::new();
        for &factor in factors.iter().filter(|_| scenarios.contains("overload")) {
            let setup = Setup::start("overload", mode).await;
            let o = overload(
                &setup.service,
                &setup.admin,
                c,
                factor,
                overload_s,
                batch as u32,
                generator.handle(),
            )
            .await;
            setup.finish().await;
            println!(
                "  overload {factor:>4}x, {} tills: offered {} sales/s, goodput {} sales/s = {} of C, p99 admitted {} ms, p99 refused {} ms ({} refused); verdict passed {} (not held {}, duplicated {}, still queued at the drain timeout {}, tills not verified {})",
                o["tills"],
                show(&o["offered_per_s"]),
                show(&o["goodput_per_s"]),
                show(&o["goodput_of_capacity"]),
                show(&o["admitted_p99_ms"]),
                show(&o["refused_p99_ms"]),
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
                "            during the load: admission (mean of samples every 100 ms) limit {}, in flight {}, queued {}; CPU (cores): service {}, Postgres {}, load generator {}, proxy and samplers {}",
                show(&o["admission_limit_mean"]),
                show(&o["admission_in_flight_mean"]),
                show(&o["admission_queued_mean"]),
                show(&o["cpu_cores"]["service"]),
                show(&o["cpu_cores"]["postgres"]),
                show(&o["cpu_cores"]["generator"]),
                show(&o["cpu_cores"]["proxy_and_samplers"]),
            );
            overloads.push(o);
        }
        results.insert(
            mode.to_owned(),
            json!({"capacity_per_s": c, "stall": stalled, "overload": overloads}),
        );
    }
    generator.shutdown_background();
    if let Ok(path) = std::env::var("BENCH_JSON") {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&Value::Object(results)).unwrap(),
        )
        .unwrap();
    }
}
