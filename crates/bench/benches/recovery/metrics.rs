//! The service's own figures, read from its `/metrics`: admission gauges,
//! refusals, and the sales it accepted (goodput is counted from these).

use std::time::Duration;

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
    pub accepted_total: f64,
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
        } else if name == r#"tillsync_sales_total{result="accepted"}"# {
            a.accepted_total = value;
        }
    }
    a
}
