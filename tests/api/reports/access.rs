//! Who may ask for reports, and the queries refused as problems.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tillsync_testkit::{assert_problem, spawn_app};

use super::totals;

#[tokio::test]
async fn bad_report_queries_are_400_problems() {
    let app = spawn_app().await;
    let cases = [
        ("to=2026-11-20", "invalid_query"),
        ("from=2026-13-01&to=2026-11-20", "invalid_date"),
        ("from=2026-11-21&to=2026-11-20", "invalid_range"),
        (
            "from=2026-11-20&to=2026-11-20&group_by=week",
            "invalid_group_by",
        ),
        ("from=2025-01-01&to=2026-01-02", "range_too_large"),
        (
            "from=2026-11-20&to=2026-11-20&store_id=nope",
            "invalid_query",
        ),
    ];
    for (query, code) in cases {
        let response = app
            .get(&format!("/v1/reports/totals?{query}"), &app.merchant.token)
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST, code).await;
    }
    // 366 days is allowed.
    totals(&app, "from=2025-01-01&to=2026-01-01").await;
}

#[tokio::test]
async fn reports_are_for_the_merchants_own_admins_only() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let rival = app.create_merchant("Rival").await;
    let query = format!(
        "/v1/reports/totals?from=2026-11-20&to=2026-11-20&store_id={}",
        till.store_id
    );
    assert_problem(
        app.get(&query, &rival.token).await,
        StatusCode::NOT_FOUND,
        "store_not_found",
    )
    .await;
    assert_problem(
        app.get(&query, &till.token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let sales = format!("/v1/sales?terminal_id={}", till.terminal_id);
    assert_problem(
        app.get(&sales, &rival.token).await,
        StatusCode::NOT_FOUND,
        "terminal_not_found",
    )
    .await;
    let fleet: Value = app
        .get("/v1/terminals", &rival.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fleet["terminals"], json!([]));
}
