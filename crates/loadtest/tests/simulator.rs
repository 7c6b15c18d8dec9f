//! The fleet simulator against a real server (in this process, from the
//! test kit): a clean run of a store that voids and refunds across tills,
//! loses a till's link, restores one from a backup and retires one with a
//! queue left passes; a run through a link that resets and stalls still
//! loses and doubles nothing; a drain cut short by the per-till rate limit
//! reports the sales still queued on tills, not as lost; and the verifier
//! really fails when a sale is deleted or added behind the server's back.
//! Runs are a few seconds long; the figures are not the point, the verdict
//! is. The `tillsync loadtest` command itself is tested with the binary, in
//! the server's `tests/api/loadtest.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::PgPool;
use tillsync_loadtest::{self as loadtest, LoadtestArgs, Report};
use tillsync_testkit::proxy::{Fault, FaultProxy};
use tillsync_testkit::{TestApp, settings, spawn_app_for_load, spawn_app_with};
use uuid::Uuid;

fn loadtest_args(url: &str, admin_token: &str, extra: &[&str]) -> LoadtestArgs {
    let mut argv = vec!["loadtest", "--url", url, "--admin-token", admin_token];
    argv.extend_from_slice(extra);
    settings::parse(argv)
}

/// A short run of a few tills straight against the app, with many voids
/// and refunds (half of them on another till than their sale) so every
/// store behaviour shows in three seconds.
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
            "5s",
            "--void-share",
            "0.1",
            "--refund-share",
            "0.1",
            "--cross-till-share",
            "0.5",
            "--seed",
            "1",
        ],
    );
    loadtest::run(args).await.expect("the run takes place")
}

/// Sale rows of the run's store, counted in the database itself, so the
/// verdict is checked against something the simulator did not compute.
async fn rows_in_store(db: &PgPool, report: &Report) -> i64 {
    sqlx::query_scalar("select count(*) from sales where store_id = $1")
        .bind(report.settings.store_id)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Open exceptions of one kind in the run's store, counted in the database.
async fn open_exceptions(db: &PgPool, report: &Report, kind: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from exceptions where store_id = $1 and kind = $2 and resolved_at is null",
    )
    .bind(report.settings.store_id)
    .bind(kind)
    .fetch_one(db)
    .await
    .unwrap()
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
}

/// The finding, scaled down: tills pushing far above the per-till
/// rate limit, and a drain too short to empty their queues. The sales still
/// on the tills are reported as such, not as lost, and do not fail the
/// verdict; what the server acknowledged is all there.
#[tokio::test]
async fn a_drain_that_gives_up_reports_sales_still_queued_not_lost() {
    let app = spawn_app_with(&["--terminal-rate", "1"]).await;
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

/// Forgets each till's last `count` sales with its sync state and their
/// day totals, in one transaction per till that holds the till's sync row
/// (so no batch of it commits in between): what a failover to a lagging
/// replica or a restore from an older backup would do to sales already
/// acknowledged. The run has plain sales only, so the day totals (which
/// the verdict reads) are all a lost sale leaves behind.
async fn lose_latest_sales(db: &PgPool, store_id: Uuid, count: i64) -> i64 {
    let tills: Vec<Uuid> =
        sqlx::query_scalar("select terminal_id from terminals where store_id = $1")
            .bind(store_id)
            .fetch_all(db)
            .await
            .unwrap();
    let mut lost = 0;
    for till in tills {
        let mut tx = db.begin().await.unwrap();
        let highest: i64 = sqlx::query_scalar(
            "select highest_seq from terminal_sync where terminal_id = $1 for update",
        )
        .bind(till)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let cut = (highest - count).max(0);
        lost += sqlx::query_scalar::<_, i64>(
            "with gone as (
                 delete from sales where terminal_id = $1 and seq > $2
                 returning business_date, currency, total_minor, discount_minor, tax_minor
             ), per_day as (
                 select business_date, currency, count(*) as sales, sum(total_minor) as gross,
                        sum(discount_minor) as discounts, sum(tax_minor) as tax
                   from gone group by business_date, currency
             ), rolled_back as (
                 update sales_day_totals t
                    set sales_count = t.sales_count - p.sales,
                        gross_minor = t.gross_minor - p.gross,
                        discounts_minor = t.discounts_minor - p.discounts,
                        tax_minor = t.tax_minor - p.tax
                   from per_day p
                  where t.terminal_id = $1 and t.business_date = p.business_date
                    and t.currency = p.currency
                 returning 1
             )
             select count(*) from gone",
        )
        .bind(till)
        .bind(cut)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "update terminal_sync
                set highest_seq = $2, contiguous_through_seq = least(contiguous_through_seq, $2),
                    sales_stored = (select count(*) from sales where terminal_id = $1)
              where terminal_id = $1",
        )
        .bind(till)
        .bind(cut)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    lost
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    let store_id: Uuid = sqlx::query_scalar("select store_id from stores")
        .fetch_one(&app.db)
        .await
        .unwrap();
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

#[tokio::test]
async fn the_verifier_finds_a_sale_deleted_behind_the_servers_back() {
    let app = spawn_app_for_load().await;
    let report = clean_run(&app).await;
    assert!(report.passed(), "{report}");

    // A plain sale nobody voided or refunded, so exactly one row and its
    // total go.
    let deleted: Uuid = sqlx::query_scalar(
        "delete from sales where sale_id = (
             select s.sale_id from sales s
              where s.store_id = $1 and s.kind = 'sale'
                and not exists (select 1 from sales v where v.refers_to_sale_id = s.sale_id)
              limit 1)
         returning sale_id",
    )
    .bind(report.settings.store_id)
    .fetch_one(&app.db)
    .await
    .unwrap();

    let verification = report.verify_again().await.unwrap();
    assert!(!verification.passed(), "sale {deleted} was deleted");
    assert_eq!(verification.lost, 1, "{verification:?}");
    assert_eq!(verification.duplicated, 0);
    assert_eq!(verification.mismatched_totals, 1);
    // The sync counters and the report totals are maintained by ingest and
    // do not see a row deleted behind its back; only the day figures (from
    // the rows) do.
    assert_eq!(verification.sync_state_mismatches, 0);
    assert_eq!(verification.mismatched_report_rows, 0);
}

#[tokio::test]
async fn the_verifier_finds_an_extra_copy_of_a_stored_sale() {
    let app = spawn_app_for_load().await;
    let report = clean_run(&app).await;
    assert!(report.passed(), "{report}");

    // Same content under a new sale_id and an unused seq: one row too many.
    sqlx::query(
        "insert into sales (merchant_id, sale_id, terminal_id, store_id, seq, kind, occurred_at,
                            business_date, currency, total_minor, tax_minor, discount_minor,
                            refers_to_sale_id, body, batch_id)
         select merchant_id, gen_random_uuid(), terminal_id, store_id, seq + 1000000, kind,
                occurred_at, business_date, currency, total_minor, tax_minor, discount_minor,
                refers_to_sale_id, body, batch_id
           from sales where store_id = $1 and kind = 'sale' limit 1",
    )
    .bind(report.settings.store_id)
    .execute(&app.db)
    .await
    .unwrap();

    let verification = report.verify_again().await.unwrap();
    assert!(!verification.passed());
    assert_eq!(verification.duplicated, 1, "{verification:?}");
    assert_eq!(verification.lost, 0);
}
