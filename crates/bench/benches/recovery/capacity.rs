//! Capacity C, the figure every scenario is judged against: what the
//! database path serves when nothing is refused.

use std::time::{Duration, Instant};

use serde_json::json;
use tillsync_bench::cpu::CpuSeconds;
use tokio::runtime::Handle;
use uuid::Uuid;

use crate::generator::GENERATOR;
use crate::metrics::scrape;
use crate::probe::sale;
use crate::setup::Setup;

/// The database path's own capacity, one figure both modes are judged
/// against: the service with the health layer off (nothing refused, requests
/// wait for the pool), a fresh database, behind the fault proxy passing
/// traffic (the scenarios' path, whose copying costs CPU here too).
pub async fn reference_capacity(batch: u64, generator: &Handle) -> (f64, CpuSeconds) {
    let setup = Setup::start("capacity", "off").await;
    let measured = capacity(&setup, batch, generator).await;
    setup.finish().await;
    measured
}

/// Capacity: 64 tills push batches back to back for 10 s (more than the
/// pool and the admission limit, so the database is never left idle), from
/// the load generator's runtime. Returns sales per second and the CPU split.
async fn capacity(setup: &Setup, batch: u64, generator: &Handle) -> (f64, CpuSeconds) {
    let service = &setup.service;
    let tokens = setup.tills(64).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let url = format!("{}/v1/sales/batches", service.address);
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
        scrape(&client, &service.address).await,
        CpuSeconds::now(Some(service.pid()), GENERATOR),
    );
    let from_at = Instant::now();
    tokio::time::sleep_until((started + Duration::from_secs(12)).into()).await;
    let (to, cpu_to) = (
        scrape(&client, &service.address).await,
        CpuSeconds::now(Some(service.pid()), GENERATOR),
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
