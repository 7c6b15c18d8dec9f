//! An outage: the database link stalls, and every operation answers as
//! documented for it (503, readiness, the stale totals).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tillsync_testkit::proxy::{Fault, FaultProxy};
use tillsync_testkit::sales::sale;
use uuid::Uuid;

use super::STALE_TOTALS;
use super::driver::{Driver, batch, new_key};

/// Stalls the database link and checks the answers of an outage.
pub async fn outage(
    d: &mut Driver<'_>,
    proxy: &FaultProxy,
    admin: &str,
    till: &str,
    revoke: &str,
    store: &str,
    fresh_totals: &Value,
) {
    proxy.set(Fault::Stall);
    let started = Instant::now();
    loop {
        let status = d.get("/v1/status", None, 200).await.json();
        if status["status"] == "unavailable" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "never unavailable: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.get("/readyz", None, 503).await;
    d.get("/healthz", None, 200).await;
    d.get("/metrics", None, 200).await;
    d.get("/status", None, 200).await;
    let (admin, till) = (Some(admin), Some(till));
    let new_store = json!({"name": "S", "timezone": "Europe/Berlin", "currency": "EUR"});
    d.post("/v1/stores", admin, &new_store, 503).await;
    let template = "/v1/stores/{store_id}";
    d.call("GET", template, store, admin, 503, |r| r).await;
    let rename = json!({"name": "S"});
    d.call("PATCH", template, store, admin, 503, |r| r.json(&rename))
        .await;
    d.post(
        "/v1/terminals",
        admin,
        &json!({"store_id": Uuid::new_v4(), "name": "T"}),
        503,
    )
    .await;
    d.call(
        "POST",
        "/v1/terminals/{terminal_id}/revoke",
        revoke,
        admin,
        503,
        |r| r,
    )
    .await;
    let retire = revoke.replace("/revoke", "/retire");
    d.call(
        "POST",
        "/v1/terminals/{terminal_id}/retire",
        &retire,
        admin,
        503,
        |r| r,
    )
    .await;
    let resolve = format!("/v1/exceptions/{}/resolve", Uuid::new_v4());
    let note = json!({"note": "looked at"});
    d.call(
        "POST",
        "/v1/exceptions/{exception_id}/resolve",
        &resolve,
        admin,
        503,
        |r| r.json(&note),
    )
    .await;
    d.push(till.unwrap(), Some(&new_key()), &batch(&[sale(9)]), 503)
        .await;
    d.get("/v1/sync", till, 503).await;
    d.get("/v1/conflicts", admin, 503).await;
    d.get("/v1/exceptions", admin, 503).await;
    d.get("/v1/sales", admin, 503).await;
    d.get("/v1/terminals", admin, 503).await;

    // Totals asked before: the last good copy, marked stale. Never asked: 503.
    let stale = d.get(STALE_TOTALS, admin, 200).await;
    assert_eq!(stale.headers["warning"], "110 - \"Response is Stale\"");
    assert!(stale.headers.contains_key("age"));
    assert_eq!(stale.json(), *fresh_totals, "the copy from before");
    let never_asked = "/v1/reports/totals?from=2026-11-01&to=2026-11-30";
    let refused = d.get(never_asked, admin, 503).await.json();
    assert_eq!(refused["code"], "database_unavailable");
}
