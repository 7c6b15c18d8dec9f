//! GET /v1/sync: what the server holds from a till.

use reqwest::StatusCode;
use serde_json::{Value, json};

use tillsync_testkit::sales::{refund_of, sale, sale_of, void_of, with};
use tillsync_testkit::{assert_problem, spawn_app};

#[tokio::test]
async fn sync_reports_the_contiguous_prefix_and_the_gaps() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let empty: Value = app.get("/v1/sync", &till.token).await.json().await.unwrap();
    assert_eq!(empty["highest_seq"], 0);
    assert_eq!(empty["last_batch_at"], Value::Null);

    // Seqs 1-3, 6, 9-10 arrive out of order over two batches.
    app.push_ok(&till, &[sale(10), sale(2), sale(6)]).await;
    app.push_ok(&till, &[sale(1), sale(9), sale(3)]).await;
    let held: Value = app.get("/v1/sync", &till.token).await.json().await.unwrap();
    assert_eq!(held["terminal_id"], till.terminal_id.to_string());
    assert_eq!(held["highest_seq"], 10);
    assert_eq!(held["contiguous_through_seq"], 3);
    assert_eq!(held["missing_seq_ranges"], json!([[4, 5], [7, 8]]));
    assert_eq!(held["sales_stored"], 6);
    assert!(held["last_batch_at"].is_string());

    // The till resends what was missing; the prefix catches up.
    let body = app
        .push_ok(&till, &[sale(4), sale(5), sale(7), sale(8)])
        .await;
    assert_eq!(body["contiguous_through_seq"], 10);
    let held: Value = app.get("/v1/sync", &till.token).await.json().await.unwrap();
    assert_eq!(held["missing_seq_ranges"], json!([]));
}

#[tokio::test]
async fn a_gap_before_the_first_seq_is_reported() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale(5)]).await;
    let held: Value = app.get("/v1/sync", &till.token).await.json().await.unwrap();
    assert_eq!(held["contiguous_through_seq"], 0);
    assert_eq!(held["missing_seq_ranges"], json!([[1, 4]]));
}

#[tokio::test]
async fn at_most_100_missing_ranges_are_reported() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let every_other: Vec<Value> = (1..=150).map(|i| sale_of(i * 2, 10)).collect();
    app.push_ok(&till, &every_other).await;
    let held: Value = app.get("/v1/sync", &till.token).await.json().await.unwrap();
    let ranges = held["missing_seq_ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 100);
    assert_eq!(ranges[0], json!([1, 1]));
    assert_eq!(ranges[99], json!([199, 199]));
}

#[tokio::test]
async fn the_business_day_check_counts_and_nets_per_currency_in_store_time() {
    let app = spawn_app().await;
    let till = app.create_till().await; // Europe/Berlin
    let day = |at: &str| json!({"occurred_at": at});
    let coffee = with(sale_of(1, 1000), day("2026-11-20T08:00:00+01:00"));
    let voided = with(sale_of(2, 500), day("2026-11-20T09:00:00+01:00"));
    // 23:30 UTC on the 20th is already the 21st in Berlin.
    let late = with(sale_of(3, 700), day("2026-11-20T23:30:00Z"));
    let refund = with(
        refund_of(4, 300, Some(&coffee)),
        day("2026-11-20T12:00:00+01:00"),
    );
    let in_chf = with(
        sale_of(5, 900),
        json!({"currency": "CHF", "occurred_at": "2026-11-20T13:00:00+01:00", "tenders": [{"method": "cash", "amount_minor": 900}]}),
    );
    let void = with(void_of(6, &voided), day("2026-11-20T09:05:00+01:00"));
    app.push_ok(&till, &[coffee, voided, late, refund, in_chf, void])
        .await;

    let check: Value = app
        .get("/v1/sync?business_date=2026-11-20", &till.token)
        .await
        .json()
        .await
        .unwrap();
    let day = &check["business_day"];
    assert_eq!(day["business_date"], "2026-11-20");
    assert_eq!(day["sales_count"], 5);
    assert_eq!(
        day["totals"],
        // Tax inside the lines: item sales are the lines, net sales the
        // lines less their tax (1000 - 300 for EUR, its tax 100 - 30).
        json!([
            {"currency": "CHF", "sales_count": 1, "net_minor": 900, "tax_minor": 90,
             "item_sales_minor": 900, "gift_card_sales_minor": 0, "tips_minor": 0,
             "service_charges_minor": 0, "rounding_minor": 0, "net_sales_minor": 810},
            {"currency": "EUR", "sales_count": 4, "net_minor": 700, "tax_minor": 70,
             "item_sales_minor": 700, "gift_card_sales_minor": 0, "tips_minor": 0,
             "service_charges_minor": 0, "rounding_minor": 0, "net_sales_minor": 630}
        ])
    );
    let next: Value = app
        .get("/v1/sync?business_date=2026-11-21", &till.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        next["business_day"]["totals"],
        json!([{"currency": "EUR", "sales_count": 1, "net_minor": 700, "tax_minor": 70,
                "item_sales_minor": 700, "gift_card_sales_minor": 0, "tips_minor": 0,
                "service_charges_minor": 0, "rounding_minor": 0, "net_sales_minor": 630}])
    );

    let response = app
        .get("/v1/sync?business_date=20-11-2026", &till.token)
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_business_date").await;
}
