//! Scenario 3: sustained load at a share of capacity for a long time (the
//! issue-26 soak: half of C for 30 minutes). A service that keeps up at
//! first can still fall behind later, as a table it churns grows dead rows
//! or a background job's statement gets slower with what it leaves behind;
//! so the run is cut into windows (5 minutes by default) and each gets its
//! own figures: sales accepted, pushes shed, the store-totals fold's
//! largest lag (now less its last caught-up time, sampled every second)
//! and the simulator's sale latency. The first and the last windows should
//! read alike. Ends with the exactly-once verdict.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sqlx::Connection;
use tillsync_bench::cpu::CpuSeconds;
use tillsync_loadtest::{self as loadtest, LiveCounters};
use tokio::runtime::Handle;

use crate::generator::GENERATOR;
use crate::metrics::{Scraped, scrape};
use crate::setup::{Fleet, Setup, simulator};
use crate::show;

/// The soak's shape.
pub struct Soak {
    pub seconds: u64,
    /// Offered load as a share of C.
    pub share: f64,
    pub tills: u32,
    /// Most sales a push.
    pub batch: u32,
    pub window_s: u64,
}

/// What one window saw.
#[derive(Default)]
struct Window {
    accepted: f64,
    shed: f64,
    shed_backlog: f64,
    fold_lag_max_s: f64,
    sale_p50_ms: f64,
    sale_p99_ms: f64,
    sale_max_ms: f64,
    sales: u64,
    /// At the window's end: voids and refunds waiting for the resolver,
    /// and dead rows in the store deltas table (read from Postgres).
    pending_refs: i64,
    dead_deltas: i64,
}

impl Window {
    fn to_json(&self, from_s: u64, to_s: u64) -> Value {
        let seconds = (to_s - from_s).max(1) as f64;
        json!({
            "from_s": from_s,
            "to_s": to_s,
            "accepted_per_s": self.accepted / seconds,
            "shed": self.shed,
            "shed_backlog": self.shed_backlog,
            "fold_lag_max_s": self.fold_lag_max_s,
            "sale_p50_ms": self.sale_p50_ms,
            "sale_p99_ms": self.sale_p99_ms,
            "sale_max_ms": self.sale_max_ms,
            "sales_timed": self.sales,
            "pending_refs": self.pending_refs,
            "dead_deltas": self.dead_deltas,
        })
    }
}

fn unix_now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Scenario 3: `soak.share` of `c` for `soak.seconds`, figures by window.
pub async fn soak(setup: &Setup, c: f64, soak: &Soak, generator: &Handle) -> Value {
    let (service, admin) = (&setup.service, &setup.admin);
    let mut args = simulator(
        &service.address,
        admin,
        Fleet {
            terminals: soak.tills,
            rate: c * soak.share,
            batch: soak.batch,
            seconds: soak.seconds,
            drain_s: 120,
            seed: 3,
        },
    );
    // The simulator's default minute is too short to verify a soak: each
    // till's day check adds up that day's sales (src/db/sync.rs), and a
    // soak's tills sell some 30 a second each, 18 000 a day in 10 minutes;
    // in a 10-minute soak no till was verified within the minute.
    args.verify_timeout = Duration::from_secs(900);
    // Two at a time, one a core: a 30-minute soak's till holds some 60 000
    // sales a day, and its day check takes about a second of the
    // database's CPU; eight at once took 3.7 s each on average, 151 of 961
    // hit the 5 s statement timeout and were asked again, and no round
    // ended within 600 s (docs/benchmarks.md, issue 26, sixth pass).
    args.verify_concurrency = 2;
    let live = Arc::new(LiveCounters::default());
    live.watch_sales();
    let run = generator.spawn(loadtest::run_observed(args, live.clone()));
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let cpu0 = CpuSeconds::now(Some(service.pid()), GENERATOR);
    let mut windows = Vec::new();
    let mut first = scrape(&client, &service.address).await;
    let mut window = Window::default();
    let mut window_from_s = 0;
    let mut next_tick = t0;
    loop {
        next_tick += Duration::from_secs(1);
        tokio::time::sleep_until(next_tick.into()).await;
        let elapsed_s = t0.elapsed().as_secs();
        let now: Scraped = scrape(&client, &service.address).await;
        // A service that never caught up since it started reads 0: its
        // lag counts from its start, as the alert would see it.
        if now.fold_caught_up_s > 0.0 {
            window.fold_lag_max_s = window
                .fold_lag_max_s
                .max(unix_now_s() - now.fold_caught_up_s);
        }
        let ends = elapsed_s >= soak.seconds;
        if elapsed_s - window_from_s >= soak.window_s || ends {
            window.accepted = now.accepted_total - first.accepted_total;
            window.shed = now.shed_total - first.shed_total;
            window.shed_backlog = now.shed_backlog - first.shed_backlog;
            if let Some(sales) = live.take_sales() {
                let ms = |q: f64| sales.value_at_quantile(q) as f64 / 1000.0;
                window.sale_p50_ms = ms(0.5);
                window.sale_p99_ms = ms(0.99);
                window.sale_max_ms = sales.max() as f64 / 1000.0;
                window.sales = sales.len();
            }
            (window.pending_refs, window.dead_deltas) = queues(&setup.database_url()).await;
            let figures = window.to_json(window_from_s, elapsed_s);
            print_window(&figures);
            windows.push(figures);
            window = Window::default();
            window_from_s = elapsed_s;
            first = now;
        }
        if ends {
            break;
        }
    }
    let cpu = CpuSeconds::now(Some(service.pid()), GENERATOR).cores_since(&cpu0, t0.elapsed());
    let report = run.await.unwrap().expect("simulator ran");
    let worst = |key: &str| {
        windows
            .iter()
            .filter_map(|w| w[key].as_f64())
            .fold(0.0, f64::max)
    };
    json!({
        "seconds": soak.seconds,
        "tills": soak.tills,
        "batch": soak.batch,
        "offered_per_s": report.sales.generated_per_s,
        "share_of_capacity": soak.share,
        "shed": windows.iter().filter_map(|w| w["shed"].as_f64()).sum::<f64>(),
        "fold_lag_max_s": worst("fold_lag_max_s"),
        "sale_p99_ms_worst_window": worst("sale_p99_ms"),
        "sale_p99_ms": report.latency.sale.p99_ms,
        "sale_max_ms": report.latency.sale.max_ms,
        "windows": windows,
        "cpu_cores": cpu.to_json(),
        "verdict_passed": report.passed(),
        "lost": report.verdict.verification.lost,
        "duplicated": report.verdict.verification.duplicated,
        "undelivered": report.sales.undelivered,
        "verdict": report.verdict.to_string(),
    })
}

/// Voids and refunds waiting for the resolver, and the dead rows of the
/// store deltas table as Postgres's statistics count them.
async fn queues(database_url: &str) -> (i64, i64) {
    let Ok(mut conn) = sqlx::PgConnection::connect(database_url).await else {
        return (-1, -1);
    };
    let pending = sqlx::query_scalar("select count(*) from pending_refs")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(-1);
    let dead = sqlx::query_scalar(
        "select coalesce(n_dead_tup, 0) from pg_stat_user_tables where relname = 'store_day_deltas'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap_or(-1);
    conn.close().await.ok();
    (pending, dead)
}

fn print_window(w: &Value) {
    println!(
        "  soak {:>5}-{:>5} s: accepted {} sales/s, shed {} ({} of them backlog pushes), fold lag max {} s, sale p50 {} ms, p99 {} ms, max {} ms ({} sales); at its end {} voids and refunds pending, {} dead store deltas",
        w["from_s"],
        w["to_s"],
        show(&w["accepted_per_s"]),
        w["shed"],
        w["shed_backlog"],
        show(&w["fold_lag_max_s"]),
        show(&w["sale_p50_ms"]),
        show(&w["sale_p99_ms"]),
        show(&w["sale_max_ms"]),
        w["sales_timed"],
        w["pending_refs"],
        w["dead_deltas"],
    );
}

/// The whole soak, as three lines after its windows: the figures, the CPU
/// split and the simulator's verdict with every count it checks.
pub fn print_soak(s: &Value) {
    println!(
        "  soak {} s at {} of C ({} tills, batches up to {}): offered {} sales/s; shed {}, fold lag max {} s, sale p99 {} ms (worst window {} ms), max {} ms; verdict passed {} (not held {}, duplicated {}, still queued {})",
        s["seconds"],
        show(&s["share_of_capacity"]),
        s["tills"],
        s["batch"],
        show(&s["offered_per_s"]),
        s["shed"],
        show(&s["fold_lag_max_s"]),
        show(&s["sale_p99_ms"]),
        show(&s["sale_p99_ms_worst_window"]),
        show(&s["sale_max_ms"]),
        s["verdict_passed"],
        s["lost"],
        s["duplicated"],
        s["undelivered"],
    );
    println!(
        "            CPU (cores): service {}, Postgres {}, load generator {}, proxy and samplers {}, rest of the machine {}",
        show(&s["cpu_cores"]["service"]),
        show(&s["cpu_cores"]["postgres"]),
        show(&s["cpu_cores"]["generator"]),
        show(&s["cpu_cores"]["rest_of_process"]),
        show(&s["cpu_cores"]["rest_of_machine"]),
    );
    if let Some(verdict) = s["verdict"].as_str() {
        print!("            {verdict}");
    }
}
