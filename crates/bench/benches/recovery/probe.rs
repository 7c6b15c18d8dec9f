//! Probe tills: the benchmark's own tills at normal priority, timing every
//! answer they get, and the sales they (and capacity runs) push.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

/// A sale shaped like the simulator's (three described lines, one tender), so
/// capacity measured with it is comparable with the simulator's goodput.
pub fn sale(seq: u64) -> Value {
    let line = |sku: &str, description: &str, amount_minor: i64| json!({"sku": sku, "description": description, "quantity": 1, "amount_minor": amount_minor});
    json!({"sale_id": Uuid::new_v4(), "seq": seq, "kind": "sale", "occurred_at": chrono::Utc::now().to_rfc3339(),
           "currency": "EUR",
           "lines": [line("COFFEE-L", "Large coffee", 350), line("CROISSANT", "Butter croissant", 220),
                     line("MILK-1L", "Whole milk 1 l", 119)],
           "tenders": [{"method": "card", "amount_minor": 689}], "total_minor": 689, "tax_minor": 70, "discount_minor": 0})
}

/// One push of a probe till: when it was sent, how long its answer took.
pub struct Probe {
    pub sent_at_s: f64,
    pub latency_s: f64,
    pub status: u16,
}

/// A till of the benchmark's own, on the main runtime at normal priority:
/// pushes `per_push` sales every `every` while `keep_going` says so and
/// times every answer (sent at: seconds after `t0`). Its timings are what a till sees, without
/// the load generator's own scheduling delays at low priority.
pub fn spawn_prober(
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
pub fn p99_ms(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * 0.99).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1] * 1000.0)
}
