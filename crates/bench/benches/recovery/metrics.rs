//! The service's own figures, read from its `/metrics`: admission gauges,
//! refusals, and the sales it accepted (goodput is counted from these).

use std::time::Duration;

/// The upper bounds of `tillsync_refusal_seconds`'s buckets, as the
/// service exports them (src/metrics.rs), `+Inf` last.
const REFUSAL_LE: [&str; 14] = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "1", "5", "+Inf",
];

/// What the service's /metrics said: the admission gauges, the refusal
/// counter and the sales it accepted so far (goodput is taken from this,
/// the server's own count, so the load generator's scheduling at low
/// priority cannot skew it).
#[derive(Default, Clone, Copy)]
pub struct Scraped {
    pub limit: f64,
    pub in_flight: f64,
    pub queued: f64,
    pub shed_total: f64,
    /// The part of `shed_total` refused as backlog pushes (`backlog`: sales
    /// older than `BACKLOG_AFTER`).
    pub shed_backlog: f64,
    pub accepted_total: f64,
    /// When the store-totals fold last had nothing left to fold (Unix
    /// seconds, the service's clock): the fold's lag is now less this.
    pub fold_caught_up_s: f64,
    /// `tillsync_refusal_seconds`, every code: the cumulative count of each
    /// bucket of [`REFUSAL_LE`].
    pub refusals: [f64; 14],
}

impl Scraped {
    /// The service's own p99 of the time from arrival to refusal, in ms,
    /// over the refusals between `earlier` and this scrape: interpolated
    /// within its bucket as Prometheus's `histogram_quantile` does. `None`
    /// without refusals.
    pub fn refusal_p99_ms_since(&self, earlier: &Scraped) -> Option<f64> {
        let counts: Vec<f64> = (0..REFUSAL_LE.len())
            .map(|i| self.refusals[i] - earlier.refusals[i])
            .collect();
        let total = *counts.last()?;
        if total <= 0.0 {
            return None;
        }
        let rank = 0.99 * total;
        let i = counts.iter().position(|&c| c >= rank)?;
        let bound = |i: usize| REFUSAL_LE[i].parse::<f64>().unwrap_or(f64::INFINITY);
        let lower = if i == 0 { 0.0 } else { bound(i - 1) };
        let upper = bound(i);
        if upper.is_infinite() {
            return Some(lower * 1000.0);
        }
        let below = if i == 0 { 0.0 } else { counts[i - 1] };
        let within = (rank - below) / (counts[i] - below).max(f64::MIN_POSITIVE);
        Some((lower + (upper - lower) * within) * 1000.0)
    }
}

pub async fn scrape(client: &reqwest::Client, url: &str) -> Scraped {
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
            if name.contains(r#"priority="backlog""#) {
                a.shed_backlog += value;
            }
        } else if name == r#"tillsync_sales_total{result="accepted"}"# {
            a.accepted_total = value;
        } else if name == "tillsync_fold_caught_up_timestamp_seconds" {
            a.fold_caught_up_s = value;
        } else if let Some(labels) = name.strip_prefix("tillsync_refusal_seconds_bucket{") {
            let le = labels
                .split("le=\"")
                .nth(1)
                .and_then(|l| l.split('"').next());
            if let Some(i) = le.and_then(|le| REFUSAL_LE.iter().position(|b| *b == le)) {
                a.refusals[i] += value;
            }
        }
    }
    a
}
