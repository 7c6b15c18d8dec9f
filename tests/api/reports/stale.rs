//! Totals while the database link is down: the last good copy, marked
//! stale.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tillsync_testkit::proxy::Fault;
use tillsync_testkit::sales::sale_of;
use tillsync_testkit::{assert_problem, spawn_app_behind_proxy};

#[tokio::test]
async fn totals_are_answered_from_the_last_good_copy_while_the_link_is_down() {
    let (app, proxy) = spawn_app_behind_proxy(&[]).await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale_of(1, 1000)]).await;
    let query = "/v1/reports/totals?from=2026-11-20&to=2026-11-20";
    let fresh = app.get(query, &app.merchant.token).await;
    assert!(fresh.headers().get("warning").is_none());
    let fresh: Value = fresh.json().await.unwrap();

    proxy.set(Fault::Stall);
    loop {
        let status: Value = app.get("/v1/status", "").await.json().await.unwrap();
        if status["status"] == "unavailable" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the auth cache's TTL: the dashboard's token is still recognised.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = app.get(query, &app.merchant.token).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.headers()["warning"], "110 - \"Response is Stale\"");
    let age: u64 = stale.headers()["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 2, "age {age}");
    let stale: Value = stale.json().await.unwrap();
    assert_eq!(stale, fresh, "the same answer as before");

    let never_asked = app
        .get(
            "/v1/reports/totals?from=2026-11-19&to=2026-11-20",
            &app.merchant.token,
        )
        .await;
    assert!(never_asked.headers().contains_key("retry-after"));
    assert_problem(
        never_asked,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    proxy.set(Fault::Pass);
}
