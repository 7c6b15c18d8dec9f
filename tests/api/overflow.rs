//! Hostile numbers already stored (before the edge bounded them, or planted
//! by a bug) never turn into a wrong number or a 500 that lasts forever, and
//! one tenant's unrepresentable totals never stop work for another.
//!
//! The edge refuses huge `seq`s and amounts, so these tests plant the
//! hostile rows with SQL through the test's own pool.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use tillsync_testkit::sales::{sale, sale_of, void_of, with};
use tillsync_testkit::{Merchant, TestApp, Till, assert_problem, spawn_app, statuses};

const DAY: &str = "from=2026-11-20&to=2026-11-20";

async fn sync_of(app: &TestApp, till: &Till, query: &str) -> Value {
    let response = app.get(&format!("/v1/sync{query}"), &till.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn report_as(app: &TestApp, merchant: &Merchant, query: &str) -> reqwest::Response {
    app.get(&format!("/v1/reports/totals?{query}"), &merchant.token)
        .await
}

/// Store deltas of a merchant not folded yet.
async fn pending_deltas(app: &TestApp, merchant_id: Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from store_day_deltas where merchant_id = $1")
        .bind(merchant_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn plant(app: &TestApp, sql: &str, id: Uuid) {
    sqlx::query(sql).bind(id).execute(&app.db).await.unwrap();
}

#[tokio::test]
async fn a_till_holding_the_largest_bigint_seq_still_gets_its_gaps() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale(1), sale(3)]).await;
    plant(
        &app,
        "update sales set seq = 9223372036854775807 where terminal_id = $1 and seq = 3",
        till.terminal_id,
    )
    .await;
    plant(
        &app,
        "update terminal_sync set highest_seq = 9223372036854775807 where terminal_id = $1",
        till.terminal_id,
    )
    .await;

    let held = sync_of(&app, &till, "").await;
    assert_eq!(held["highest_seq"], i64::MAX);
    assert_eq!(held["missing_seq_ranges"], json!([[2, i64::MAX - 1]]));

    let body = app.push_ok(&till, &[sale(2)]).await;
    assert_eq!(statuses(&body), ["accepted"]);
    assert_eq!(body["contiguous_through_seq"], 2);
    let held = sync_of(&app, &till, "").await;
    assert_eq!(held["missing_seq_ranges"], json!([[3, i64::MAX - 1]]));
}

#[tokio::test]
async fn a_till_whose_prefix_is_stored_at_the_largest_bigint_can_still_push() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale(5)]).await;
    plant(
        &app,
        "update terminal_sync set highest_seq = 9223372036854775807,
                contiguous_through_seq = 9223372036854775807 where terminal_id = $1",
        till.terminal_id,
    )
    .await;
    let body = app.push_ok(&till, &[sale(7)]).await;
    assert_eq!(statuses(&body), ["accepted"]);
    assert_eq!(body["contiguous_through_seq"], i64::MAX);
    let held = sync_of(&app, &till, "").await;
    assert_eq!(held["missing_seq_ranges"], json!([]));
}

/// A push adds nothing to a total in place (the fold does), so a total
/// that cannot take a sale no longer refuses it: the sale is a fact and
/// lands; its store's deltas wait, and the reports that would show the
/// total say they cannot, while the rest of the till's work goes on.
#[tokio::test]
async fn a_till_total_that_cannot_take_a_sale_holds_its_store_and_reports_say_so() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale_of(1, 1000)]).await;
    app.folded().await;
    plant(
        &app,
        "update sales_day_totals set gross_minor = 9223372036854775807 - 500
          where terminal_id = $1",
        till.terminal_id,
    )
    .await;

    // 1000 more does not fit the day's gross: stored all the same.
    let body = app
        .push_ok(&till, &[sale_of(2, 1000), sale_of(3, 400)])
        .await;
    assert_eq!(statuses(&body), ["accepted", "accepted"]);
    assert_eq!(app.stored_count(&till).await, 3, "every sale is stored");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pending_deltas(&app, app.merchant.merchant_id).await,
        1,
        "the store's delta waits"
    );
    let gross: i64 =
        sqlx::query_scalar("select gross_minor from sales_day_totals where terminal_id = $1")
            .bind(till.terminal_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(gross, i64::MAX - 500, "the total is left as it was");
    let per_till = report_as(
        &app,
        &app.merchant,
        &format!("{DAY}&terminal_id={}", till.terminal_id),
    )
    .await;
    assert_problem(
        per_till,
        StatusCode::UNPROCESSABLE_ENTITY,
        "total_out_of_range",
    )
    .await;

    // The till keeps working: its sync state, and sales on other days.
    let sync = sync_of(&app, &till, "").await;
    assert_eq!(sync["missing_seq_ranges"], json!([]));
    assert_eq!(sync["contiguous_through_seq"], 3);
    let next_day = with(
        sale_of(4, 1000),
        json!({"occurred_at": "2026-11-21T10:00:00+01:00"}),
    );
    assert_eq!(
        statuses(&app.push_ok(&till, &[next_day]).await),
        ["accepted"]
    );
    let next = report_as(&app, &app.merchant, "from=2026-11-21&to=2026-11-21").await;
    assert_eq!(next.status(), StatusCode::OK, "another day is answered");
    let rows: Value = next.json().await.unwrap();
    assert_eq!(rows["rows"][0]["gross_minor"], 1000);
}

#[tokio::test]
async fn the_day_check_refuses_a_net_it_cannot_represent_and_plain_sync_answers() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale_of(1, 1000), sale_of(2, 1000)])
        .await;
    plant(
        &app,
        "update sales set total_minor = 9223372036854775807 where terminal_id = $1 and seq = 1",
        till.terminal_id,
    )
    .await;
    let response = app
        .get("/v1/sync?business_date=2026-11-20", &till.token)
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "total_out_of_range",
    )
    .await;
    assert_eq!(sync_of(&app, &till, "").await["contiguous_through_seq"], 2);
}

#[tokio::test]
async fn reports_refuse_a_total_they_cannot_represent_exactly() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let neighbour = app.create_till_in(&app.merchant, till.store_id).await;
    app.push_ok(&till, &[sale_of(1, 1000)]).await;
    app.push_ok(&neighbour, &[sale_of(1, 1000)]).await;
    app.folded().await;

    // Each till's day fits a JSON number exactly (2^52); the two together do not.
    plant(
        &app,
        "update sales_day_totals set gross_minor = 4503599627370496 where merchant_id = $1",
        app.merchant.merchant_id,
    )
    .await;
    let per_till = report_as(&app, &app.merchant, &format!("{DAY}&group_by=terminal")).await;
    assert_eq!(per_till.status(), StatusCode::OK);
    let rows: Value = per_till.json().await.unwrap();
    assert_eq!(rows["rows"][0]["gross_minor"], 4503599627370496_i64);
    let both = report_as(
        &app,
        &app.merchant,
        &format!("{DAY}&terminal_id={}&group_by=day", till.terminal_id),
    )
    .await;
    assert_eq!(both.status(), StatusCode::OK, "one till alone fits");

    // Beyond a bigint: two store deltas of 2^62 each.
    for _ in 0..2 {
        sqlx::query(
            "insert into store_day_deltas values ($1, $2, $3, '2026-11-20', 'EUR', 1, 0, 0,
                    4611686018427387904, 0, 0, 0)",
        )
        .bind(app.merchant.merchant_id)
        .bind(Uuid::new_v4())
        .bind(till.store_id)
        .execute(&app.db)
        .await
        .unwrap();
    }
    for group_by in ["none", "day", "store"] {
        let response = report_as(&app, &app.merchant, &format!("{DAY}&group_by={group_by}")).await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "total_out_of_range",
        )
        .await;
        assert!(problem["detail"].as_str().unwrap().contains("narrow"));
    }
    // Between 2^53 and a bigint: exact in the database, not for every JSON reader.
    plant(
        &app,
        "update sales_day_totals set gross_minor = 9007199254740992 where merchant_id = $1",
        app.merchant.merchant_id,
    )
    .await;
    let response = report_as(&app, &app.merchant, &format!("{DAY}&group_by=terminal")).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "total_out_of_range",
    )
    .await;
    // The hours were not touched: still answered.
    let hours = report_as(&app, &app.merchant, &format!("{DAY}&group_by=hour")).await;
    assert_eq!(hours.status(), StatusCode::OK);
}

/// The fold of store deltas used to be one statement over every merchant's
/// deltas: one store whose total could not take its deltas failed it for
/// everyone, every second, forever.
#[tokio::test]
async fn a_store_whose_totals_cannot_fold_stops_no_other_store_from_folding() {
    let app = spawn_app().await;
    let poisoned = app.create_till().await;
    let sibling = app.create_till().await;
    sqlx::query(
        "insert into store_day_totals values ($1, $2, '2026-11-20', 'EUR', 1, 0, 0,
                9223372036854775807 - 10, 0, 0, 0)",
    )
    .bind(app.merchant.merchant_id)
    .bind(poisoned.store_id)
    .execute(&app.db)
    .await
    .unwrap();
    app.push_ok(&poisoned, &[sale_of(1, 1000)]).await;
    app.push_ok(&sibling, &[sale_of(1, 300)]).await;
    let other = app.create_merchant("Other Merchant").await;
    let store = app.create_store_as(&other, "Europe/Berlin", "EUR").await;
    let till = app.create_till_in(&other, store).await;
    app.push_ok(&till, &[sale_of(1, 700)]).await;

    let waited = Instant::now();
    while pending_deltas(&app, other.merchant_id).await > 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the other merchant's deltas are folded within seconds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let folded: i64 = sqlx::query_scalar(
        "select gross_minor from store_day_totals where merchant_id = $1 and store_id = $2",
    )
    .bind(other.merchant_id)
    .bind(store)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(folded, 700);
    let report: Value = report_as(&app, &other, DAY).await.json().await.unwrap();
    assert_eq!(report["rows"][0]["gross_minor"], 700);

    // The same merchant's other store folds; the poisoned one waits, and
    // its report says why instead of showing a wrapped number.
    let sibling_pending: i64 =
        sqlx::query_scalar("select count(*) from store_day_deltas where store_id = $1")
            .bind(sibling.store_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(sibling_pending, 0);
    assert_eq!(pending_deltas(&app, app.merchant.merchant_id).await, 1);
    let response = report_as(&app, &app.merchant, DAY).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "total_out_of_range",
    )
    .await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tillsync_fold_skipped_total "))
        .expect("the skip counter is exported");
    assert!(skipped.parse::<f64>().unwrap() >= 1.0, "{skipped}");
}

/// The resolver resolves a tick's groups together; a group whose reversal
/// cannot be counted (its sale planted at the smallest bigint, which has no
/// negative) fails that transaction, and then each group is tried alone:
/// only that one waits.
#[tokio::test]
async fn a_void_whose_reversal_cannot_be_counted_holds_back_no_other_void() {
    let app = spawn_app().await;
    let seller = app.create_till().await;
    let poisoned = app.create_till_in(&app.merchant, seller.store_id).await;
    let elsewhere = app
        .create_store_as(&app.merchant, "Europe/Berlin", "EUR")
        .await;
    let healthy = app.create_till_in(&app.merchant, elsewhere).await;
    // The poisoned sale's id sorts last: the tick resolves the groups in
    // that order, so both healthy ones come before it.
    let id = |n: &str| json!({"sale_id": format!("{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000")});
    let sales = [
        with(sale_of(1, 1000), id("f")),
        with(sale_of(2, 1000), id("1")),
        with(sale_of(3, 1000), id("2")),
    ];
    app.push_ok(&seller, &sales).await;
    plant(
        &app,
        "update sales set total_minor = -9223372036854775808,
                          body = jsonb_set(body::jsonb, '{total_minor}', '-9223372036854775808')
          where terminal_id = $1 and seq = 1",
        seller.terminal_id,
    )
    .await;
    // Both pushes before the next tick, as a rule: their voids are due
    // together.
    let poisoned_voids = [void_of(1, &sales[0])];
    let healthy_voids = [void_of(1, &sales[1]), void_of(2, &sales[2])];
    let (first, second) = tokio::join!(
        app.push_ok(&poisoned, &poisoned_voids),
        app.push_ok(&healthy, &healthy_voids)
    );
    assert_eq!(statuses(&first), ["accepted"]);
    assert_eq!(statuses(&second), ["accepted", "accepted"]);

    let pending_of = |till: &Till| {
        sqlx::query_scalar::<_, i64>("select count(*) from pending_refs where terminal_id = $1")
            .bind(till.terminal_id)
            .fetch_one(&app.db)
    };
    let waited = Instant::now();
    while pending_of(&healthy).await.unwrap() > 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the healthy till's voids are resolved within seconds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.folded().await;
    let gross_of = |till: &Till| {
        sqlx::query_scalar::<_, i64>(
            "select coalesce(sum(gross_minor), 0)::int8 from sales_day_totals
              where terminal_id = $1",
        )
        .bind(till.terminal_id)
        .fetch_one(&app.db)
    };
    assert_eq!(gross_of(&healthy).await.unwrap(), -2000);
    assert_eq!(
        gross_of(&poisoned).await.unwrap(),
        0,
        "the poisoned void took nothing out"
    );
    assert_eq!(
        pending_of(&poisoned).await.unwrap(),
        1,
        "its void waits to be looked at again"
    );
}
