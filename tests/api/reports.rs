//! Reports for dashboards: totals (definitions, time zones, DST, groupings,
//! completeness, stale answers), sales pages and the fleet view, one file
//! per area; the helpers they share are here.

mod access;
mod fleet;
mod kept_totals;
mod sales_pages;
mod stale;
mod totals;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tillsync_testkit::TestApp;

async fn totals(app: &TestApp, query: &str) -> Value {
    let response = app
        .get(&format!("/v1/reports/totals?{query}"), &app.merchant.token)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

fn at(when: &str) -> Value {
    json!({"occurred_at": when})
}

/// The measures of a row without its group, for compact comparisons.
fn measures(row: &Value) -> [i64; 8] {
    let n = |k: &str| row[k].as_i64().unwrap_or(i64::MIN);
    [
        n("sales_count"),
        n("refunds_count"),
        n("voids_count"),
        n("gross_minor"),
        n("refunds_minor"),
        n("discounts_minor"),
        n("tax_minor"),
        n("net_minor"),
    ]
}
