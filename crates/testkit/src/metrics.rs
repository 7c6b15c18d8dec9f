//! Reading a server's `/metrics`. Each server records into a recorder of
//! its own, so what a test reads from its server's page is that server's
//! alone, and a test can ask for exact figures.

use reqwest::StatusCode;

/// The Prometheus page of the server at `address` (`http://host:port`).
pub async fn scrape(client: &reqwest::Client, address: &str) -> String {
    let response = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = &response.headers()["content-type"];
    assert!(
        content_type
            .to_str()
            .is_ok_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "the Prometheus text format, not {content_type:?}"
    );
    response.text().await.expect("/metrics has a body")
}

/// The value of the first sample of `name` (a line starting with `name{`
/// or `name `) that holds every one of `labels` (`over="1d"`).
pub fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
