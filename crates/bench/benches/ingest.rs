//! Ingest throughput: end to end over HTTP against the real binary, and the
//! raw rate of the same rows inserted with one
//! `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING` per 100 rows,
//! in the same run on the same Postgres. Prints both and their ratio.
//!
//! Run: `scripts/bench-ingest` (or, with the release binary built,
//! `cargo bench -p tillsync-bench --bench ingest`).
//! Settings (environment): BENCH_TILLS (default 8, one batch in flight per
//! till, so also the number of HTTP connections and of raw-insert
//! connections), BENCH_SECONDS (default 20 per phase), BENCH_BATCH (100),
//! TILLSYNC_TEST_SERVER_URL (default postgres://postgres@127.0.0.1:5432).
//!
//! The load generator runs on the same machine and shares its cores with the
//! service and Postgres; the raw phase has the same competition for the
//! cores from its own client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use tillsync::db::sales::{self, NewSales};
use tillsync_bench::setting;
use tillsync_testkit::api;
use tillsync_testkit::binary::{Binary, Served};
use tillsync_testkit::database::{drop_database, server_url};
use uuid::Uuid;

fn sale_json(seq: i64) -> String {
    let total = 1000 + seq % 500;
    let half = total / 2;
    format!(
        r#"{{"sale_id":"{}","seq":{seq},"kind":"sale","occurred_at":"2026-11-20T10:15:00+01:00","currency":"EUR","lines":[{{"sku":"COFFEE","description":"Flat white","quantity":1,"amount_minor":{half}}},{{"sku":"CAKE","quantity":2,"amount_minor":{}}}],"tenders":[{{"method":"card","amount_minor":{total}}}],"total_minor":{total},"tax_minor":{},"discount_minor":0}}"#,
        Uuid::new_v4(),
        total - half,
        total / 10
    )
}

fn batch_body(first_seq: i64, batch: i64) -> String {
    let sales: Vec<String> = (first_seq..first_seq + batch).map(sale_json).collect();
    format!(r#"{{"sales":[{}]}}"#, sales.join(","))
}

/// The release binary serving this database, logging warnings only.
fn start_server(binary: &Binary, database_url: &str) -> Served {
    tokio::task::block_in_place(|| {
        binary.serve_quietly(
            "warn",
            &[
                ("DATABASE_URL", database_url),
                // Each bench till pushes tens of batches a second, far above
                // what the per-till rate limit lets a real till do.
                ("TILLSYNC_TERMINAL_RATE", "0"),
            ],
        )
    })
}

/// Phase 1: tills push batches over HTTP as fast as they get answers.
async fn http_phase(
    server: &Served,
    admin_token: &str,
    tills: u64,
    batch: i64,
    seconds: u64,
) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(tills as usize)
        .build()
        .unwrap();
    let provisioned = api::create_tills(
        &client,
        &server.address,
        admin_token,
        "Europe/Berlin",
        tills as usize,
    )
    .await;
    let tokens = provisioned.into_iter().map(|till| till.token);
    let accepted = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_secs(2);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let (client, accepted) = (client.clone(), accepted.clone());
        let url = format!("{}/v1/sales/batches", server.address);
        tasks.push(tokio::spawn(async move {
            let mut seq = 1;
            while started.elapsed() < warmup + Duration::from_secs(seconds) {
                let body = batch_body(seq, batch);
                seq += batch;
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Idempotency-Key", Uuid::new_v4().to_string())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let result: Value = response.json().await.unwrap();
                assert_eq!(result["accepted"], batch);
                if started.elapsed() >= warmup {
                    accepted.fetch_add(batch as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    accepted.load(Ordering::Relaxed) as f64 / seconds as f64
}

fn new_rows(first_seq: i64, batch: i64) -> NewSales {
    let mut rows = NewSales::default();
    let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    for seq in first_seq..first_seq + batch {
        let body: Value = serde_json::from_str(&sale_json(seq)).unwrap();
        rows.sale_id
            .push(body["sale_id"].as_str().unwrap().parse().unwrap());
        rows.seq.push(seq);
        rows.kind.push("sale".into());
        rows.occurred_at.push(Utc::now());
        rows.business_date.push(date);
        rows.currency.push("EUR".into());
        rows.total_minor.push(body["total_minor"].as_i64().unwrap());
        rows.tax_minor.push(body["tax_minor"].as_i64().unwrap());
        rows.discount_minor.push(0);
        rows.refers_to_sale_id.push(None);
        rows.body.push(body);
    }
    rows
}

/// Phase 2: the same kind of rows, straight into the same table of a fresh
/// database, one statement per batch, from as many connections as there
/// were tills.
async fn raw_phase(
    binary: &Binary,
    database_url: &str,
    tills: u64,
    batch: i64,
    seconds: u64,
) -> f64 {
    // Creates the database (through the binary, as an operator would).
    let merchant_id = binary.create_merchant(database_url, "Bench").merchant_id;
    let pool = PgPoolOptions::new()
        .max_connections(tills as u32)
        .connect(database_url)
        .await
        .unwrap();
    let store_id = Uuid::now_v7();
    sqlx::query("insert into stores (merchant_id, store_id, name, timezone, currency) values ($1, $2, 'Raw', 'Europe/Berlin', 'EUR')")
        .bind(merchant_id).bind(store_id).execute(&pool).await.unwrap();
    let mut terminals = Vec::new();
    for _ in 0..tills {
        let terminal_id = Uuid::now_v7();
        sqlx::query("insert into terminals (merchant_id, terminal_id, store_id, name, token_hash) values ($1, $2, $3, 'raw', $4)")
            .bind(merchant_id).bind(terminal_id).bind(store_id).bind(terminal_id.as_bytes().to_vec())
            .execute(&pool).await.unwrap();
        terminals.push(terminal_id);
    }
    let inserted = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_secs(2);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for terminal_id in terminals {
        let (pool, inserted) = (pool.clone(), inserted.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 1;
            while started.elapsed() < warmup + Duration::from_secs(seconds) {
                let rows = new_rows(seq, batch);
                seq += batch;
                let mut conn = pool.acquire().await.unwrap();
                let ids = sales::insert(
                    &mut conn,
                    merchant_id,
                    terminal_id,
                    store_id,
                    Uuid::now_v7(),
                    &rows,
                )
                .await
                .unwrap();
                assert_eq!(ids.len() as i64, batch);
                if started.elapsed() >= warmup {
                    inserted.fetch_add(batch as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    inserted.load(Ordering::Relaxed) as f64 / seconds as f64
}

#[tokio::main]
async fn main() {
    let tills: u64 = setting("BENCH_TILLS", 8);
    let seconds: u64 = setting("BENCH_SECONDS", 20);
    let batch: i64 = setting("BENCH_BATCH", 100);
    let server_url = server_url();
    let binary = Binary::release();
    // Each phase starts on an empty database of its own on the same server,
    // so neither inserts into indexes the other has grown.
    let run = Uuid::new_v4().simple().to_string();
    let http_database = format!("tillsync_bench_http_{run}");
    let raw_database = format!("tillsync_bench_raw_{run}");

    println!(
        "ingest benchmark: {tills} tills/connections, batches of {batch}, {seconds} s per phase after 2 s warm-up"
    );
    let http_url = format!("{server_url}/{http_database}");
    let server = start_server(&binary, &http_url);
    let admin = binary.create_merchant(&http_url, "Bench");
    let http = http_phase(&server, &admin.token, tills, batch, seconds).await;
    println!("  HTTP end to end (POST /v1/sales/batches): {http:>9.0} sales/s");
    drop(server);
    let raw = raw_phase(
        &binary,
        &format!("{server_url}/{raw_database}"),
        tills,
        batch,
        seconds,
    )
    .await;
    println!("  raw INSERT ... unnest ... ON CONFLICT:     {raw:>9.0} sales/s");
    println!(
        "  ratio HTTP / raw:                           {:>9.2}",
        http / raw
    );

    for database in [http_database, raw_database] {
        drop_database(&database);
    }
}
