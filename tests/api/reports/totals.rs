//! Totals by their definitions: one row per currency, business days in the
//! store's own time zone (DST included), refunds and voids on their own
//! day, every grouping, and the completeness block.

use serde_json::{Value, json};
use tillsync_testkit::sales::{refund_of, sale, sale_of, void_of, with};
use tillsync_testkit::spawn_app;

use super::{at, measures, totals};

#[tokio::test]
async fn totals_follow_the_definitions_with_one_row_per_currency() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let sold = with(sale_of(1, 1000), json!({"discount_minor": 50}));
    let voided = sale_of(2, 500);
    let in_chf = with(sale_of(5, 900), json!({"currency": "CHF"}));
    app.push_ok(
        &till,
        &[
            sold.clone(),
            voided.clone(),
            refund_of(3, 300, Some(&sold)),
            void_of(4, &voided),
            in_chf,
        ],
    )
    .await;
    app.settled().await;
    let report = totals(&app, "from=2026-11-20&to=2026-11-20").await;
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["currency"], "CHF");
    assert_eq!(rows[0]["group"], json!({}));
    assert_eq!(measures(&rows[0]), [1, 0, 0, 900, 0, 0, 90, 900]);
    assert_eq!(rows[1]["currency"], "EUR");
    // gross: only the unvoided sale; tax: 100 - 30 of the refund; the void only counts itself.
    assert_eq!(measures(&rows[1]), [1, 1, 1, 1000, 300, 50, 70, 700]);
    assert_eq!(report["completeness"]["terminals"], 1);
}

#[tokio::test]
async fn a_sale_at_half_past_eleven_utc_falls_on_the_next_local_day() {
    let app = spawn_app().await;
    let till = app.create_till().await; // Europe/Berlin
    app.push_ok(
        &till,
        &[
            with(sale_of(1, 700), at("2026-11-20T23:30:00Z")),
            with(sale_of(2, 100), at("2026-11-20T22:30:00Z")),
        ],
    )
    .await;
    let day = totals(&app, "from=2026-11-20&to=2026-11-21&group_by=day").await;
    let rows = day["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0]["group"]["business_date"].as_str(),
            rows[0]["gross_minor"].as_i64()
        ),
        (Some("2026-11-20"), Some(100))
    );
    assert_eq!(
        (
            rows[1]["group"]["business_date"].as_str(),
            rows[1]["gross_minor"].as_i64()
        ),
        (Some("2026-11-21"), Some(700))
    );
    let only_20th = totals(&app, "from=2026-11-20&to=2026-11-20").await;
    assert_eq!(only_20th["rows"][0]["gross_minor"], 100);
}

#[tokio::test]
async fn the_night_the_clocks_go_back_counts_both_local_two_oclocks_in_hour_two() {
    let app = spawn_app().await;
    let till = app.create_till().await; // Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET
    app.push_ok(
        &till,
        &[
            with(sale_of(1, 100), at("2026-10-25T02:30:00+02:00")),
            with(sale_of(2, 200), at("2026-10-25T02:30:00+01:00")),
            with(sale_of(3, 400), at("2026-10-24T22:30:00Z")), // 00:30 CEST on the 25th
        ],
    )
    .await;
    let hours = totals(&app, "from=2026-10-24&to=2026-10-25&group_by=hour").await;
    let rows = hours["rows"].as_array().unwrap();
    let summary: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["group"]["business_date"].as_str().unwrap().to_owned(),
                r["group"]["hour"].as_i64().unwrap(),
                r["gross_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("2026-10-25".into(), 0, 400), ("2026-10-25".into(), 2, 300)]
    );
}

#[tokio::test]
async fn refunds_and_voids_fall_on_their_own_business_day() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let first = with(sale_of(1, 1000), at("2026-11-17T10:00:00+01:00"));
    let second = with(sale_of(2, 400), at("2026-11-17T11:00:00+01:00"));
    app.push_ok(&till, &[first.clone(), second.clone()]).await;
    let later = app
        .push_ok(
            &till,
            &[
                with(void_of(3, &second), at("2026-11-18T09:00:00+01:00")),
                with(
                    refund_of(4, 250, Some(&first)),
                    at("2026-11-19T09:00:00+01:00"),
                ),
            ],
        )
        .await;
    assert_eq!(later["accepted"], 2);
    app.settled().await;
    let days = totals(&app, "from=2026-11-17&to=2026-11-19&group_by=day").await;
    let by_day: Vec<(String, [i64; 8])> = days["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"]["business_date"].as_str().unwrap().to_owned(),
                measures(r),
            )
        })
        .collect();
    assert_eq!(
        by_day,
        [
            // The day both sales were made keeps them: it was closed.
            ("2026-11-17".into(), [2, 0, 0, 1400, 0, 0, 140, 1400]),
            // The void takes its sale out on its own day.
            ("2026-11-18".into(), [-1, 0, 1, -400, 0, 0, -40, -400]),
            ("2026-11-19".into(), [0, 1, 0, 0, 250, 0, -25, -250]),
        ]
    );
}

#[tokio::test]
async fn every_grouping_names_its_groups() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let other_store_till = app.create_till().await;
    let split = with(
        sale_of(1, 1000),
        json!({"tenders": [{"method": "card", "amount_minor": 600}, {"method": "cash", "amount_minor": 400}]}),
    );
    app.push_ok(&till, &[split]).await;
    app.push_ok(&other_store_till, &[sale_of(1, 300)]).await;
    let range = "from=2026-11-20&to=2026-11-20";

    let stores = totals(&app, &format!("{range}&group_by=store")).await;
    let mut store_ids: Vec<&str> = stores["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"]["store_id"].as_str().unwrap())
        .collect();
    store_ids.sort();
    let mut expected = vec![
        till.store_id.to_string(),
        other_store_till.store_id.to_string(),
    ];
    expected.sort();
    assert_eq!(store_ids, expected);

    let terminals = totals(
        &app,
        &format!("{range}&group_by=terminal&store_id={}", till.store_id),
    )
    .await;
    assert_eq!(terminals["rows"].as_array().unwrap().len(), 1);
    assert_eq!(
        terminals["rows"][0]["group"],
        json!({"store_id": till.store_id, "terminal_id": till.terminal_id})
    );
    assert_eq!(terminals["completeness"]["terminals"], 1);

    let tenders = totals(
        &app,
        &format!("{range}&group_by=tender&terminal_id={}", till.terminal_id),
    )
    .await;
    let tender_rows: Vec<(String, i64, Value)> = tenders["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"]["method"].as_str().unwrap().to_owned(),
                r["gross_minor"].as_i64().unwrap(),
                r["tax_minor"].clone(),
            )
        })
        .collect();
    assert_eq!(
        tender_rows,
        [
            ("card".into(), 600, Value::Null),
            ("cash".into(), 400, Value::Null)
        ]
    );

    let none = totals(&app, range).await;
    assert_eq!(none["rows"][0]["gross_minor"], 1300);
}

#[tokio::test]
async fn completeness_says_which_tills_have_gaps_or_never_synced() {
    let app = spawn_app().await;
    let complete = app.create_till().await;
    let gappy = app.create_till_in(&app.merchant, complete.store_id).await;
    let _silent = app.create_till_in(&app.merchant, complete.store_id).await;
    app.push_ok(&complete, &[sale(1), sale(2)]).await;
    app.push_ok(&gappy, &[sale(1), sale(3)]).await;
    let report = totals(&app, "from=2026-11-20&to=2026-11-20").await;
    let c = &report["completeness"];
    assert_eq!(
        (
            c["terminals"].as_i64(),
            c["terminals_with_gaps"].as_i64(),
            c["terminals_never_synced"].as_i64()
        ),
        (Some(3), Some(1), Some(1))
    );
    assert!(c["oldest_last_seen_at"].is_string());
}
