//! The operations surface: `/metrics` after real traffic, request ids, and
//! the `/status` page following a change of the database link driven
//! through the fault proxy.
//!
//! Each app has a metrics recorder of its own, so what a test reads from
//! its app's page is what that app did.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use tillsync_testkit::metrics::sample;
use tillsync_testkit::proxy::Fault;
use tillsync_testkit::sales::{sale, with};
use tillsync_testkit::{TestApp, spawn_app, spawn_app_behind_proxy, spawn_app_with};

/// The buckets every `_seconds` histogram must have (src/metrics.rs).
const LATENCY_BUCKETS: &[&str] = &[
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "+Inf",
];
const BATCH_BUCKETS: &[&str] = &["1", "5", "10", "25", "50", "100", "250", "500", "+Inf"];

async fn scrape(app: &TestApp) -> String {
    tillsync_testkit::metrics::scrape(&app.client, &app.address).await
}

fn assert_histogram(text: &str, name: &str, labels: &[&str], buckets: &[&str]) {
    assert!(
        text.contains(&format!("# TYPE {name} histogram")),
        "{name} is a histogram, not a summary"
    );
    for le in buckets {
        let bucket = format!("le=\"{le}\"");
        let mut wanted = labels.to_vec();
        wanted.push(&bucket);
        assert!(
            sample(text, &format!("{name}_bucket"), &wanted).is_some(),
            "{name} has no bucket {bucket} with {labels:?}"
        );
    }
    let count = sample(text, &format!("{name}_count"), labels).unwrap_or(0.0);
    assert!(count >= 1.0, "{name} {labels:?} recorded nothing");
}

#[tokio::test]
async fn metrics_name_requests_sales_batches_shedding_and_the_database_after_traffic() {
    let app = spawn_app_with(&["--terminal-rate", "1", "--terminal-burst", "5"]).await;
    let till = app.create_till().await;
    let first = sale(1);
    let pushed = app
        .push_ok(
            &till,
            &[first.clone(), sale(2), with(sale(3), json!({"seq": 0}))],
        )
        .await;
    assert_eq!(
        (&pushed["accepted"], &pushed["rejected"]),
        (&json!(2), &json!(1))
    );
    let resent = app.push_ok(&till, &[first]).await;
    assert_eq!(resent["duplicates"], 1);
    // Another till over its rate limit, to be shed.
    let noisy = app.create_till().await;
    let mut limited = 0;
    for _ in 0..8 {
        if app.get("/v1/sync", &noisy.token).await.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited > 0, "the rate limit shed something");

    let text = scrape(&app).await;

    let batches_ok = [
        "route=\"/v1/sales/batches\"",
        "method=\"POST\"",
        "status=\"200\"",
    ];
    assert!(sample(&text, "tillsync_http_requests_total", &batches_ok).unwrap() >= 2.0);
    assert!(
        sample(
            &text,
            "tillsync_http_requests_total",
            &["route=\"/v1/sync\"", "status=\"429\""]
        )
        .unwrap()
            >= limited as f64
    );
    assert_histogram(
        &text,
        "tillsync_http_request_duration_seconds",
        &["route=\"/v1/sales/batches\"", "method=\"POST\""],
        LATENCY_BUCKETS,
    );
    assert_histogram(&text, "tillsync_db_acquire_seconds", &[], LATENCY_BUCKETS);
    assert_histogram(
        &text,
        "tillsync_db_query_seconds",
        &["priority=\"ingest\""],
        LATENCY_BUCKETS,
    );
    assert_histogram(&text, "tillsync_db_probe_seconds", &[], LATENCY_BUCKETS);
    assert_histogram(&text, "tillsync_batch_sales", &[], BATCH_BUCKETS);

    for (result, at_least) in [("accepted", 2.0), ("duplicate", 1.0), ("rejected", 1.0)] {
        let label = format!("result=\"{result}\"");
        let counted = sample(&text, "tillsync_sales_total", &[&label]).unwrap_or(0.0);
        assert!(counted >= at_least, "{result}: {counted}");
    }
    assert!(
        sample(
            &text,
            "tillsync_requests_shed_total",
            &["reason=\"rate_limited\"", "priority=\"ingest\""]
        )
        .unwrap()
            >= limited as f64
    );
    for state in ["ok", "degraded", "unavailable"] {
        let label = format!("state=\"{state}\"");
        let value = sample(&text, "tillsync_db_state", &[&label]).unwrap();
        assert!(value == 0.0 || value == 1.0);
    }
    for gauge in [
        "tillsync_db_pool_size",
        "tillsync_db_pool_idle",
        "tillsync_admission_limit",
        "tillsync_admission_min_limit",
        "tillsync_admission_in_flight",
        "tillsync_admission_queued",
    ] {
        assert!(sample(&text, gauge, &[]).is_some(), "{gauge} missing");
        assert!(
            text.contains(&format!("# HELP {gauge} ")),
            "{gauge} has no help"
        );
    }
    // Exported from the start (at 0 until the fold skips a store).
    assert!(sample(&text, "tillsync_fold_skipped_total", &[]).is_some());
    assert!(text.contains("# HELP tillsync_fold_skipped_total "));
    for job in ["fold", "purge"] {
        assert!(
            sample(
                &text,
                "tillsync_background_led_elsewhere_total",
                &[&format!("job=\"{job}\"")]
            )
            .is_some(),
            "{job} missing"
        );
    }
    assert!(text.contains("# HELP tillsync_background_led_elsewhere_total "));
}

#[tokio::test]
async fn a_request_id_sent_by_the_client_is_echoed_and_a_missing_one_is_made() {
    let app = spawn_app_with(&[]).await;
    let url = |path: &str| format!("{}{path}", app.address);
    for path in ["/healthz", "/v1/sync", "/no/such/route"] {
        let sent = format!("till-7-{}", Uuid::new_v4().simple());
        let response = app
            .client
            .get(url(path))
            .header("x-request-id", &sent)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], sent.as_str(), "{path}");

        let response = app.client.get(url(path)).send().await.unwrap();
        let made = response.headers()["x-request-id"].to_str().unwrap();
        assert!(Uuid::try_parse(made).is_ok(), "{path}: {made}");
    }
}

async fn status_page(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/status", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    assert!(!html.contains("<script"), "readable without JavaScript");
    html
}

async fn wait_for_status(app: &TestApp, wanted: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let body: Value = app.get("/v1/status", "").await.json().await.unwrap();
        if body["status"] == wanted {
            return;
        }
        assert!(
            started.elapsed() < within,
            "status never became {wanted}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_status_page_shows_the_current_state_and_the_changes_of_the_link() {
    let (app, proxy) = spawn_app_behind_proxy(&[]).await;
    let html = status_page(&app).await;
    assert!(html.contains("All systems operational"), "{html}");
    assert!(html.contains("id=\"service\" data-state=\"ok\""));
    assert!(html.contains("No changes since this instance started"));

    proxy.set(Fault::Stall);
    wait_for_status(&app, "unavailable", Duration::from_secs(8)).await;
    let html = status_page(&app).await;
    assert!(html.contains("Service unavailable"), "{html}");
    assert!(html.contains("id=\"service\" data-state=\"unavailable\""));
    assert!(html.contains("id=\"database\" data-state=\"unavailable\""));
    assert!(html.contains("data-to=\"unavailable\""), "{html}");
    assert!(
        html.contains("UTC</time> (for "),
        "since when, and for how long"
    );

    proxy.set(Fault::Pass);
    wait_for_status(&app, "ok", Duration::from_secs(8)).await;
    let html = status_page(&app).await;
    assert!(html.contains("All systems operational"), "{html}");
    let recovery = html
        .find("data-from=\"unavailable\" data-to=\"ok\"")
        .expect("the recovery is listed");
    let outage = html
        .find("data-to=\"unavailable\"")
        .expect("the outage is still listed");
    assert!(recovery < outage, "newest first: {html}");
    assert!(
        html.contains("probe failed"),
        "each change says why: {html}"
    );
}

/// Sets a till's last push `days` days back.
async fn silent_for(app: &TestApp, terminal_id: Uuid, days: i32) {
    sqlx::query(
        "update terminal_sync set last_batch_at = now() - make_interval(days => $2)
          where terminal_id = $1",
    )
    .bind(terminal_id)
    .bind(days)
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn silent_tills_are_counted_for_the_alert_unless_revoked_or_never_seen() {
    let app = spawn_app().await;
    let pushing = app.create_till().await;
    let day = app.create_till().await;
    let four_days = app.create_till().await;
    let revoked = app.create_till().await;
    let _never_pushed = app.create_till().await;
    for till in [&pushing, &day, &four_days, &revoked] {
        app.push_ok(till, &[sale(1)]).await;
    }
    silent_for(&app, day.terminal_id, 2).await;
    silent_for(&app, four_days.terminal_id, 4).await;
    silent_for(&app, revoked.terminal_id, 4).await;
    let path = format!("/v1/terminals/{}/revoke", revoked.terminal_id);
    let response = app.post_json(&path, &app.merchant.token, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);

    let mut conn = app.db.acquire().await.unwrap();
    let silent = tillsync::db::tenancy::silent_terminals(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        silent,
        tillsync::db::tenancy::SilentTerminals {
            over_1d: 2,
            over_3d: 1
        }
    );

    // The app counts at start, before these tills were silent; a second
    // instance starting now counts at once (its first count, or a retry
    // 2 s later while its probe has not answered yet), and its own page
    // says what it counted.
    let mut app = app;
    let second = app.spawn_second_instance().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = tillsync_testkit::metrics::scrape(&app.client, &second).await;
        let counted = (
            sample(&page, "tillsync_terminals_silent", &["over=\"1d\""]),
            sample(&page, "tillsync_terminals_silent", &["over=\"3d\""]),
        );
        if counted == (Some(2.0), Some(1.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second instance never exported its count: {counted:?}\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_fold_records_when_it_last_caught_up() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let app = spawn_app().await;
    // The fold ticks every second and, with nothing waiting, catches up;
    // the gauge on this app's page is set by this app's fold alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = scrape(&app).await;
        let caught_up = sample(&page, "tillsync_fold_caught_up_timestamp_seconds", &[])
            .expect("tillsync_fold_caught_up_timestamp_seconds is exported");
        if caught_up >= before.floor() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fold caught up within 10 s (last {caught_up}, started {before})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_fold_and_the_resolver_vacuum_the_tables_they_empty() {
    // Both delete rows as they go; autovacuum may be off (it is on the CI
    // machine) or too slow for a table that churns every second, so each
    // job vacuums its own table, the first time at its first step.
    let app = spawn_app().await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale(1), sale(2)]).await;
    let vacuumed = |table: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "select vacuum_count from pg_stat_user_tables where relname = $1",
        )
        .bind(table)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    for table in ["store_day_deltas", "pending_refs"] {
        while vacuumed(table).fetch_one(&app.db).await.unwrap() == 0 {
            assert!(
                Instant::now() < deadline,
                "{table} not vacuumed within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
