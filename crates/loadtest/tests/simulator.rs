//! The fleet simulator against a real server (in this process, from the
//! test kit): a clean run of a store that voids and refunds across tills,
//! loses a till's link, restores one from a backup and retires one with a
//! queue left passes; a run through a link that resets and stalls still
//! loses and doubles nothing; a drain cut short by the per-till rate limit
//! reports the sales still queued on tills, not as lost; and the verifier
//! really fails when a sale is deleted or added behind the server's back,
//! or one figure of a receipt's money is wrong (`simulator/tampered.rs`).
//! Runs are a few seconds long; the figures are not the point, the verdict
//! is. The `tillsync loadtest` command itself is tested with the binary, in
//! the server's `tests/api/loadtest.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use tillsync_loadtest::{self as loadtest, LoadtestArgs, Report};
use tillsync_testkit::proxy::{Fault, FaultProxy};
use tillsync_testkit::{TestApp, settings, spawn_app_for_load, spawn_app_with};

// A directory of its own, so Cargo does not take them for test crates.
#[path = "simulator/db.rs"]
mod db;
#[path = "simulator/tampered.rs"]
mod tampered;

use db::{lose_latest_sales, open_exceptions, rows_in_store, store_with_sales};

fn loadtest_args(url: &str, admin_token: &str, extra: &[&str]) -> LoadtestArgs {
    let mut argv = vec!["loadtest", "--url", url, "--admin-token", admin_token];
    argv.extend_from_slice(extra);
    settings::parse(argv)
}

/// A short run of a few tills straight against the app, with many voids
/// and refunds (half of them on another till than their sale), gift cards
/// and late-night sales, so every store behaviour and every kind of
/// receipt shows in three seconds. A void that reached the server while its
/// sale's push was committing waits for the resolver's next look, up to
/// several seconds on a busy machine: the verdict waits up to 30 s for the
/// figures to settle (a passing run ends as soon as they have).
async fn clean_run(app: &TestApp) -> Report {
    let args = loadtest_args(
        &app.address,
        &app.merchant.token,
        &[
            "--terminals",
            "5",
            "--rate",
            "300",
            "--batch-size",
            "20",
            "--duration",
            "3s",
            "--drain-timeout",
            "10s",
            "--request-timeout",
            "5s",
            "--settle-timeout",
            "30s",
            "--void-share",
            "0.1",
            "--refund-share",
            "0.1",
            "--cross-till-share",
            "0.5",
            "--gift-card-share",
            "0.1",
            "--late-night-share",
            "0.1",
            "--seed",
            "1",
        ],
    );
    loadtest::run(args).await.expect("the run takes place")
}

#[tokio::test]
async fn a_short_clean_run_of_a_real_store_passes_with_every_sale_stored_once() {
    let app = spawn_app_for_load().await;
    let report = clean_run(&app).await;
    println!("{report}");

    assert!(report.passed(), "{report}");
    assert!(report.verdict.complete, "{report}");
    let sales = &report.sales;
    assert!(sales.generated > 500, "about 900 offered in 3s: {report}");
    assert_eq!(sales.acknowledged, sales.generated);
    assert_eq!(sales.undelivered, 0);
    assert!(sales.rejected.is_empty(), "{report}");
    assert_eq!(
        rows_in_store(&app.db, &report).await,
        sales.generated as i64
    );
    let verdict = &report.verdict.verification;
    assert_eq!(
        (verdict.lost, verdict.duplicated, verdict.mismatched_totals),
        (0, 0, 0)
    );
    assert_eq!(verdict.tills_checked, 5);
    assert!(report.drain.completed);
    assert_eq!(report.requests.retries, 0, "{report}");
    assert_eq!(
        report.requests.status_counts.keys().collect::<Vec<_>>(),
        ["200"],
        "{report}"
    );
    assert_eq!(report.latency.sale.count, sales.generated);

    // Every behaviour of a real store happened.
    let incidents = &report.incidents;
    assert!(incidents.on_another_till > 10, "{report}");
    assert!(incidents.stored_before_their_sale > 0, "{report}");
    assert!(incidents.voids_pushed_ahead > 0, "{report}");
    assert!(incidents.offline_till.is_some(), "{report}");
    let restored = incidents.restored_till.as_ref().expect("a till restored");
    assert_eq!(restored.seqs_reused, 20, "{report}");
    assert_eq!(
        open_exceptions(&app.db, &report, "seq_reused").await,
        20,
        "each reused seq is listed"
    );
    let retired = incidents.retired_till.as_ref().expect("a till retired");
    assert!(retired.retired_at.is_some(), "{report}");
    assert!(retired.queued_at_retirement > 0, "{report}");
    assert_eq!(retired.acknowledged_after, retired.queued_at_retirement);
    let retired_in_db: bool =
        sqlx::query_scalar("select retired_at is not null from terminals where terminal_id = $1")
            .bind(retired.terminal_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(retired_in_db);
    // Every void and refund found its sale.
    assert_eq!(
        open_exceptions(&app.db, &report, "unmatched_reference").await,
        0
    );

    // Every kind of receipt was rung up, and the verdict checked its money.
    let receipts = &report.receipts;
    for (kind, count) in [
        ("tax on top", receipts.tax_on_top),
        ("tip", receipts.with_tip),
        ("cash rounding", receipts.cash_rounded),
        ("service charge", receipts.with_service_charge),
        ("gift card", receipts.loading_gift_card),
        ("two tax rates", receipts.two_tax_rates),
        ("before the cutoff", receipts.before_cutoff),
    ] {
        assert!(count > 0, "no {kind}: {report}");
    }
    // The server dated as many facts before their local date as the tills
    // meant to (in Berlin, with days from 04:00), and listed every CHF fact.
    let before_cutoff: i64 = sqlx::query_scalar(
        "select count(*) from sales
          where store_id = $1
            and business_date < (occurred_at at time zone 'Europe/Berlin')::date",
    )
    .bind(report.settings.store_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(before_cutoff, receipts.before_cutoff as i64);
    let foreign: i64 =
        sqlx::query_scalar("select count(*) from sales where store_id = $1 and currency = 'CHF'")
            .bind(report.settings.store_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(foreign > 0);
    assert_eq!(
        open_exceptions(&app.db, &report, "currency_mismatch").await,
        foreign
    );
}

/// The finding, scaled down: tills pushing far above the per-till
/// rate limit, and a drain too short to empty their queues. The sales still
/// on the tills are reported as such, not as lost, and do not fail the
/// verdict; what the server acknowledged is all there. The limit has no
/// burst: with the default one (40 requests) a till pushing full batches
/// stays under it for the whole run whenever the server is a little slow.
#[tokio::test]
async fn a_drain_that_gives_up_reports_sales_still_queued_not_lost() {
    let app = spawn_app_with(&["--terminal-rate", "1", "--terminal-burst", "1"]).await;
    let args = loadtest_args(
        &app.address,
        &app.merchant.token,
        &[
            "--terminals",
            "3",
            "--rate",
            "150",
            "--batch-size",
            "3",
            "--duration",
            "2s",
            "--drain-timeout",
            "1s",
            "--sync-interval",
            "1s",
            "--settle-timeout",
            "5s",
            "--seed",
            "4",
        ],
    );
    let report = loadtest::run(args).await.expect("the run takes place");
    println!("{report}");
    let verdict = &report.verdict.verification;
    assert!(!report.drain.completed, "{report}");
    assert!(verdict.still_queued > 100, "{report}");
    assert!(verdict.still_queued_never_sent > 0, "{report}");
    assert_eq!((verdict.lost, verdict.duplicated), (0, 0), "{report}");
    assert!(report.passed(), "{report}");
    assert!(!report.verdict.complete);
    let text = report.to_string();
    assert!(text.contains("verdict: PASS, incomplete"), "{text}");
    assert!(text.contains("still queued on tills:"), "{text}");
    // The server holds exactly what it acknowledged (and the unanswered
    // sales it stored), nothing of what is still queued.
    assert_eq!(
        rows_in_store(&app.db, &report).await,
        (report.sales.acknowledged + verdict.unanswered_but_stored) as i64
    );
}

#[tokio::test]
async fn a_link_that_resets_and_stalls_loses_and_duplicates_nothing() {
    let app = spawn_app_for_load().await;
    let upstream: SocketAddr = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("the app listens on ip:port");
    let proxy = FaultProxy::start(upstream).await;
    let args = loadtest_args(
        &format!("http://{}", proxy.address()),
        &app.merchant.token,
        &[
            "--terminals",
            "5",
            "--rate",
            "300",
            "--batch-size",
            "20",
            "--duration",
            "5s",
            "--drain-timeout",
            "10s",
            "--request-timeout",
            "1s",
            "--backoff-cap",
            "500ms",
            "--sync-interval",
            "1s",
            "--seed",
            "2",
        ],
    );
    let run = tokio::spawn(loadtest::run(args));

    // Provisioning 5 tills takes well under the first pause.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..3 {
        proxy.set(Fault::Reset);
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.set(Fault::Pass);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Longer than the request timeout: requests time out, and the held
    // ones reach the server afterwards, while their retries are under way.
    proxy.set(Fault::Stall);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    proxy.set(Fault::Pass);

    let report = run.await.unwrap().expect("the run takes place");
    // Shown when the test fails, or with --nocapture.
    println!("{report}");
    let verdict = &report.verdict.verification;
    assert_eq!((verdict.lost, verdict.duplicated), (0, 0), "{report}");
    assert!(report.passed(), "{report}");
    assert_eq!(
        rows_in_store(&app.db, &report).await,
        report.sales.generated as i64
    );
    assert!(report.requests.retries > 0, "{report}");
    let counts = &report.requests.status_counts;
    assert!(
        counts.contains_key("connection error") || counts.contains_key("timeout"),
        "the faults were seen: {report}"
    );
}

#[tokio::test]
async fn sales_the_server_lost_after_acknowledging_them_are_resent() {
    let app = spawn_app_for_load().await;
    let args = loadtest_args(
        &app.address,
        &app.merchant.token,
        &[
            "--terminals",
            "5",
            "--rate",
            "300",
            "--batch-size",
            "20",
            "--duration",
            "4s",
            "--drain-timeout",
            "10s",
            "--sync-interval",
            "1s",
            "--void-share",
            "0",
            "--refund-share",
            "0",
            "--restore-rewind",
            "0",
            "--seed",
            "3",
        ],
    );
    let run = tokio::spawn(loadtest::run(args));
    // Mid-load, whatever provisioning took on a busy machine.
    let store_id = store_with_sales(&app.db, 200).await;
    let forgotten = lose_latest_sales(&app.db, store_id, 10).await;
    assert!(forgotten > 0);

    let report = run.await.unwrap().expect("the run takes place");
    assert!(report.passed(), "{report}");
    assert!(
        report.sales.resent >= forgotten as u64,
        "{forgotten} lost, {} resent: {report}",
        report.sales.resent
    );
    assert_eq!(
        rows_in_store(&app.db, &report).await,
        report.sales.generated as i64
    );
}
