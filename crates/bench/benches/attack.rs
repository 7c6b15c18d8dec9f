//! Memory and latency under hostile clients (issue 25): the release binary
//! with its default settings, an honest till pushing batches of 10 sales at
//! 10 a second, first calm, then while the attack issue 25 found runs:
//!
//! - 2 000 connections without a token of ours (none, not a token, one
//!   nobody holds), each announcing a 1 MB body and sending 900 KB of it,
//!   then holding the rest back;
//! - 100 tills with valid (stolen) tokens, each with as many 1 MiB bodies
//!   crawling as it may have requests in flight (4);
//! - 1 000 connections that never finish their heads.
//!
//! It prints the server's resident memory (from `/proc`) at rest and at
//! its peak beside the body budget, and the honest till's p50/p99/max and
//! how many of its pushes were accepted, calm and under attack.
//!
//! Run: `cargo build --release --locked --bin tillsync && cargo bench -p
//! tillsync-bench --locked --bench attack`. `TILLSYNC_BIN` names another
//! binary (an older one, to compare: it ignores the budget settings).
//! Settings: BENCH_ANONYMOUS (2000), BENCH_STOLEN_TILLS (100),
//! BENCH_SLOW_HEADS (1000), BENCH_HONEST_PUSHES (300 a phase),
//! TILLSYNC_TEST_SERVER_URL. The process needs an open-file limit above the
//! connections it opens (`ulimit -n`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use uuid::Uuid;

use tillsync::domain::token::{self, TokenKind};
use tillsync_bench::{quantile, setting};
use tillsync_testkit::api;
use tillsync_testkit::binary::{Binary, Served};
use tillsync_testkit::database::{drop_database, fresh_name, server_url};
use tillsync_testkit::hostile::{hostile, push_head, resident_bytes};
use tillsync_testkit::sales::sale;

const MB: u64 = 1024 * 1024;
/// The server's default body budget (`TILLSYNC_BODY_BUDGET_MIB`).
const BUDGET_MB: u64 = 64;
/// An honest till's pace: a push every this long.
const HONEST_EVERY: Duration = Duration::from_millis(100);

/// One phase of honest pushes: their latencies, sorted, how many were
/// accepted, and the server's peak resident memory meanwhile.
struct Phase {
    took: Vec<Duration>,
    accepted: usize,
    peak: u64,
}

impl Phase {
    fn print(&self, name: &str) {
        println!(
            "{name:>12}: honest pushes {}/{} accepted, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             resident peak {} MB",
            self.accepted,
            self.took.len(),
            ms(quantile(&self.took, 0.50)),
            ms(quantile(&self.took, 0.99)),
            ms(*self.took.last().unwrap()),
            self.peak / MB,
        );
    }
}

fn ms(took: Duration) -> f64 {
    took.as_secs_f64() * 1000.0
}

async fn honest_phase(
    client: &reqwest::Client,
    server: &Served,
    till_token: &str,
    seqs: std::ops::Range<i64>,
) -> Phase {
    let url = format!("{}/v1/sales/batches", server.address);
    let mut phase = Phase {
        took: Vec::new(),
        accepted: 0,
        peak: 0,
    };
    let mut tick = tokio::time::interval(HONEST_EVERY);
    for first in seqs.step_by(10) {
        tick.tick().await;
        phase.peak = phase.peak.max(resident_bytes(server.pid()));
        let sales: Vec<_> = (first..first + 10).map(sale).collect();
        let started = Instant::now();
        let response = client
            .post(&url)
            .bearer_auth(till_token)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&serde_json::json!({ "sales": sales }))
            .send()
            .await
            .expect("the server answers the honest till");
        let status = response.status();
        let _ = response.bytes().await;
        phase.took.push(started.elapsed());
        if status == StatusCode::OK {
            phase.accepted += 1;
        }
    }
    phase.took.sort();
    phase
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let anonymous: usize = setting("BENCH_ANONYMOUS", 2000);
    let stolen: usize = setting("BENCH_STOLEN_TILLS", 100);
    let slow_heads: usize = setting("BENCH_SLOW_HEADS", 1000);
    let pushes: i64 = setting("BENCH_HONEST_PUSHES", 300);

    let name = fresh_name("tillsync_bench_attack");
    let url = format!("{}/{name}", server_url());
    let binary = Binary::release();
    let merchant = binary.create_merchant(&url, "Attacked");
    let server = tokio::task::block_in_place(|| {
        binary.serve_quietly(
            "error",
            &[("DATABASE_URL", &url), ("TILLSYNC_TERMINAL_RATE", "0")],
        )
    });
    let client = reqwest::Client::new();
    let base = server.address.clone();
    let address = base.trim_start_matches("http://").to_owned();
    let store = api::create_store(&client, &base, &merchant.token, "Europe/Berlin", "EUR").await;
    let honest = api::create_till(&client, &base, &merchant.token, store, "Honest").await;
    let mut attackers = Vec::new();
    for i in 0..stolen {
        let name = format!("Stolen {i}");
        attackers.push(api::create_till(&client, &base, &merchant.token, store, &name).await);
    }

    // Warm up, then the calm phase.
    honest_phase(&client, &server, &honest.token, 1..101).await;
    let rest = resident_bytes(server.pid());
    let calm = honest_phase(&client, &server, &honest.token, 101..101 + pushes * 10).await;

    let until = Instant::now() + Duration::from_secs(600);
    let (forged, _) = token::generate(TokenKind::Terminal, merchant.merchant_id);
    for i in 0..anonymous {
        let authorization = match i % 3 {
            0 => String::new(),
            1 => "Authorization: Bearer hello\r\n".to_owned(),
            _ => format!("Authorization: Bearer {forged}\r\n"),
        };
        hostile(
            address.clone(),
            push_head(&authorization, 1_000_000),
            900_000,
            until,
        );
    }
    for till in &attackers {
        for _ in 0..4 {
            let authorization = format!("Authorization: Bearer {}\r\n", till.token);
            hostile(
                address.clone(),
                push_head(&authorization, 1_048_576),
                900_000,
                until,
            );
        }
    }
    for _ in 0..slow_heads {
        let opening = "POST /v1/sales/batches HTTP/1.1\r\nHost: tillsync\r\nX-Slow: 1".to_owned();
        hostile(address.clone(), opening, 0, until);
    }
    // Let the attack take what it can before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = 101 + pushes * 10;
    let attacked = honest_phase(&client, &server, &honest.token, start..start + pushes * 10).await;

    println!(
        "hostile clients: {anonymous} anonymous 1 MB bodies, {stolen} stolen tokens x 4 x 1 MiB, \
         {slow_heads} unfinished heads; body budget {BUDGET_MB} MB"
    );
    println!("resident at rest: {} MB", rest / MB);
    calm.print("calm");
    attacked.print("under attack");
    println!(
        "peak above rest under attack: {} MB (budget {BUDGET_MB} MB)",
        attacked.peak.saturating_sub(rest) / MB
    );
    drop(server);
    drop_database(&name);
}
