//! Reports for dashboards: totals (definitions, time zones, DST, groupings,
//! completeness, stale answers), sales pages and the fleet view.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::proxy::Fault;
use crate::support::sales::{refund_of, sale, sale_of, void_of, with};
use crate::support::{TestApp, assert_problem, spawn_app, spawn_app_behind_proxy};

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
            ("2026-11-17".into(), [1, 0, 0, 1000, 0, 0, 100, 1000]),
            ("2026-11-18".into(), [0, 0, 1, 0, 0, 0, 0, 0]),
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

#[tokio::test]
async fn sales_pages_skip_and_repeat_nothing_while_sales_arrive() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let first: Vec<Value> = (1..=250)
        .map(|s| {
            with(
                sale(s),
                json!({"occurred_at": format!("2026-11-20T10:{:02}:00+01:00", s % 60)}),
            )
        })
        .collect();
    app.push_ok(&till, &first).await;
    let expected: HashSet<String> = first
        .iter()
        .map(|s| s["sale_id"].as_str().unwrap().to_owned())
        .collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut next_seq = 251;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sales?limit=100&cursor={c}"),
            None => "/v1/sales?limit=100".to_owned(),
        };
        let page: Value = app
            .get(&path, &app.merchant.token)
            .await
            .json()
            .await
            .unwrap();
        let sales = page["sales"].as_array().unwrap();
        for pair in sales.windows(2) {
            assert!(
                pair[0]["occurred_at"].as_str() >= pair[1]["occurred_at"].as_str()
                    || pair[0]["occurred_at"] != pair[1]["occurred_at"]
            );
        }
        seen.extend(
            sales
                .iter()
                .map(|s| s["sale_id"].as_str().unwrap().to_owned()),
        );
        // Between pages, new sales arrive, older and newer than the page.
        let arriving = [
            with(sale(next_seq), at("2026-11-20T10:30:30+01:00")),
            with(sale(next_seq + 1), at("2026-11-20T12:00:00+01:00")),
        ];
        next_seq += 2;
        app.push_ok(&till, &arriving).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no sale is repeated");
    assert!(
        expected.iter().all(|id| unique.contains(id)),
        "no sale that existed is skipped"
    );
    let sample: Value = app
        .get("/v1/sales?limit=1", &app.merchant.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        sample["sales"][0]["terminal_id"],
        till.terminal_id.to_string()
    );
    assert!(sample["sales"][0]["business_date"].is_string());
}

#[tokio::test]
async fn the_fleet_view_shows_each_tills_progress() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let revoked = app.create_till_in(&app.merchant, till.store_id).await;
    app.push_ok(&till, &[sale(1), sale(2), sale(5)]).await;
    app.post_json(
        &format!("/v1/terminals/{}/revoke", revoked.terminal_id),
        &app.merchant.token,
        &json!({}),
    )
    .await;
    let fleet: Value = app
        .get(
            &format!("/v1/terminals?store_id={}", till.store_id),
            &app.merchant.token,
        )
        .await
        .json()
        .await
        .unwrap();
    let terminals = fleet["terminals"].as_array().unwrap();
    assert_eq!(terminals.len(), 2);
    let mine = terminals
        .iter()
        .find(|t| t["terminal_id"] == till.terminal_id.to_string())
        .unwrap();
    assert_eq!(
        (
            mine["highest_seq"].as_i64(),
            mine["contiguous_through_seq"].as_i64(),
            mine["missing_count"].as_i64()
        ),
        (Some(5), Some(2), Some(2))
    );
    assert_eq!(mine["revoked"], false);
    assert!(mine["last_seen_at"].is_string());
    let gone = terminals
        .iter()
        .find(|t| t["terminal_id"] == revoked.terminal_id.to_string())
        .unwrap();
    assert_eq!(gone["revoked"], true);
    assert_eq!(gone["last_seen_at"], Value::Null);
}

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

/// The totals kept at ingest equal the totals the migration computes from
/// the sales themselves (the same code path existing deployments get).
#[tokio::test]
async fn totals_kept_at_ingest_equal_totals_rebuilt_from_the_sales() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let other = app.create_till().await;
    let sold = with(
        sale_of(1, 1000),
        json!({"tenders": [{"method": "voucher", "amount_minor": 1000}]}),
    );
    let late = with(sale_of(2, 800), at("2026-11-20T23:45:00+01:00"));
    app.push_ok(
        &till,
        &[sold.clone(), late.clone(), refund_of(3, 200, Some(&sold))],
    )
    .await;
    app.push_ok(
        &till,
        &[with(void_of(4, &late), at("2026-11-21T08:00:00+01:00"))],
    )
    .await;
    app.push_ok(&other, &[with(sale_of(1, 50), json!({"currency": "USD"}))])
        .await;

    let queries: Vec<String> = ["none", "day", "hour", "store", "terminal", "tender"]
        .iter()
        .map(|g| format!("from=2026-11-19&to=2026-11-22&group_by={g}"))
        .collect();
    let mut kept = Vec::new();
    for q in &queries {
        kept.push(totals(&app, q).await["rows"].clone());
    }
    let migration = std::fs::read_to_string("migrations/20261121000003_report_totals.sql").unwrap();
    let rebuild = &migration[migration.find("with judged as").unwrap()..];
    let stores = std::fs::read_to_string("migrations/20261121000004_store_day_totals.sql").unwrap();
    let rebuild_stores = &stores[stores.find("insert into store_day_totals").unwrap()..];
    sqlx::query(
        "truncate sales_day_totals, sales_hour_totals, tender_day_totals, store_day_totals, store_day_deltas",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::raw_sql(rebuild).execute(&app.db).await.unwrap();
    sqlx::raw_sql(rebuild_stores)
        .execute(&app.db)
        .await
        .unwrap();
    for (q, before) in queries.iter().zip(kept) {
        assert_eq!(totals(&app, q).await["rows"], before, "{q}");
    }
}

/// Store totals are kept as deltas appended by each batch and folded into
/// the store rows in the background; a report must be the same whichever
/// side of a fold it is asked on.
#[tokio::test]
async fn folding_store_deltas_changes_no_report() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let neighbour = app.create_till_in(&app.merchant, till.store_id).await;
    let voided = sale_of(2, 400);
    app.push_ok(&till, &[sale_of(1, 1000), voided.clone()])
        .await;
    app.push_ok(&neighbour, &[sale_of(1, 250), refund_of(2, 50, None)])
        .await;
    app.push_ok(&till, &[void_of(3, &voided)]).await;

    let queries = ["group_by=none", "group_by=day", "group_by=store"]
        .map(|g| format!("from=2026-11-20&to=2026-11-20&{g}"));
    let mut before = Vec::new();
    for q in &queries {
        before.push(totals(&app, q).await["rows"].clone());
    }
    assert_eq!(before[0][0]["net_minor"], 1000 + 250 - 50);
    let mut conn = app.db.acquire().await.unwrap();
    tillsync::db::totals::fold_store_deltas(&mut conn, 1_000_000, &[])
        .await
        .unwrap();
    let pending: i64 = sqlx::query_scalar("select count(*) from store_day_deltas")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(pending, 0, "every delta is folded");
    for (q, earlier) in queries.iter().zip(before) {
        assert_eq!(totals(&app, q).await["rows"], earlier, "{q}");
    }
}
