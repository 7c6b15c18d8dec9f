//! The HTTP phase: the release binary serving a fresh database, one store
//! and its tills provisioned through the API, then every till pushing
//! batches (`POST /v1/sales/batches`, a new Idempotency-Key each) back to
//! back over its own keep-alive connection. Every answer must be 200 with
//! the whole batch accepted (or 503, and the same sales are sent again);
//! after the last answer, the exactly-once verdict (`verdict.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tillsync_testkit::api;
use tillsync_testkit::binary::{Binary, Served};
use uuid::Uuid;

use crate::Phase;
use crate::body::BodyTemplate;
use crate::measure::{Clock, Measured, Tally, measure};
use crate::verdict::{self, Verdict};

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

pub async fn http_phase(binary: &Binary, database_url: &str, phase: Phase) -> (Measured, Verdict) {
    let server = start_server(binary, database_url);
    let admin = binary.create_merchant(database_url, "Bench");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(phase.tills)
        .build()
        .expect("an HTTP client");
    let tills = api::create_tills(
        &client,
        &server.address,
        &admin.token,
        "Europe/Berlin",
        phase.tills,
    )
    .await;
    let template = Arc::new(BodyTemplate::new(phase.batch));
    let url = format!("{}/v1/sales/batches", server.address);
    // The answer ends with the counts; only their bytes are looked at, so
    // checking costs the generator little.
    let accepted = format!(r#""accepted":{},"duplicates":0,"#, phase.batch).into_bytes();
    let clock = Clock::start(phase.warmup, phase.measure);
    let till_ids: Vec<_> = tills.iter().map(|till| till.terminal_id).collect();
    let workers = tills
        .into_iter()
        .map(|till| {
            let (client, template, url) = (client.clone(), template.clone(), url.clone());
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut seq = 1;
                while clock.running() {
                    let body = template.fill(seq);
                    seq += phase.batch as u64;
                    let began = Instant::now();
                    let response = client
                        .post(&url)
                        .bearer_auth(&till.token)
                        .header("Idempotency-Key", Uuid::new_v4().to_string())
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("the service answers");
                    let status = response.status();
                    if status == 503 {
                        // Refused by admission (overloaded): wait as a till
                        // would, as long as `Retry-After` says, and send the
                        // same sales again. Only answered pushes count.
                        let wait_s = response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .unwrap_or(1);
                        seq -= phase.batch as u64;
                        tokio::time::sleep(std::time::Duration::from_secs(wait_s)).await;
                        continue;
                    }
                    let answer = response.bytes().await.expect("a whole answer");
                    assert!(
                        status == 200
                            && answer.windows(accepted.len()).rev().any(|w| w == accepted),
                        "push answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                    tally.record(&clock, began);
                }
                tally
            })
        })
        .collect();
    let measured = measure(clock, phase.batch, Some(server.pid()), workers).await;
    // Every worker has its last answer: nothing of the phase is in flight.
    let committed: HashMap<_, _> = till_ids
        .into_iter()
        .zip(&measured.ended)
        .map(|(till, &pushes)| (till, (pushes * phase.batch as u64) as i64))
        .collect();
    let verdict = verdict::check(database_url, &committed).await;
    drop(server);
    (measured, verdict)
}
