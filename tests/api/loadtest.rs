//! The fleet simulator against a real server: a clean run passes, a run
//! through a link that resets and stalls still loses and doubles nothing,
//! and the verifier really fails when a sale is deleted or added behind the
//! server's back. Runs are a few seconds long; the figures are not the
//! point, the verdict is.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use sqlx::PgPool;
use tillsync::config::{Cli, Command};
use tillsync::loadtest::{self, LoadtestArgs, Report};
use uuid::Uuid;

use crate::support::proxy::{Fault, FaultProxy};
use crate::support::{TestApp, spawn_app_with};

/// A server for load: a handful of simulated tills push many times a
/// second each (a real till pushes far less often), so the per-till rate
/// limit is off here; it has its own test in `health.rs`.
async fn spawn_app_for_load() -> TestApp {
    spawn_app_with(&["--terminal-rate", "0"]).await
}

fn loadtest_args(url: &str, admin_token: &str, extra: &[&str]) -> LoadtestArgs {
    let mut argv = vec![
        "tillsync",
        "loadtest",
        "--url",
        url,
        "--admin-token",
        admin_token,
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv)
        .expect("loadtest settings parse")
        .command
    {
        Command::Loadtest(args) => args,
        _ => unreachable!("loadtest was asked for"),
    }
}

/// A short run of a few tills straight against the app.
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

#[tokio::test]
async fn a_short_clean_run_passes_with_every_sale_stored_once() {
    let app = spawn_app_for_load().await;
    let report = clean_run(&app).await;

    assert!(report.passed(), "{report}");
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

/// Forgets each till's last `count` sales with its sync state, in one
/// transaction per till that holds the till's sync row (so no batch of it
/// commits in between): what a failover to a lagging replica or a restore
/// from an older backup would do to sales already acknowledged.
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
        lost += sqlx::query("delete from sales where terminal_id = $1 and seq > $2")
            .bind(till)
            .bind(cut)
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected() as i64;
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

    // A plain sale nobody voided, so exactly one row and its total go.
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
    // The sync counters are maintained by ingest and do not see a row
    // deleted behind its back; only the day figures (from the rows) do.
    assert_eq!(verification.sync_state_mismatches, 0);
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

fn tillsync() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tillsync"));
    command.env("RUST_LOG", "warn");
    for (name, _) in std::env::vars() {
        if name.starts_with("TILLSYNC_LOADTEST_") {
            command.env_remove(name);
        }
    }
    command
}

#[tokio::test]
async fn the_command_prints_the_verdict_writes_json_and_exits_zero_on_a_pass() {
    let app = spawn_app_for_load().await;
    let json_path = std::env::temp_dir().join(format!("tillsync-loadtest-{}.json", Uuid::new_v4()));
    let output = tillsync()
        .args([
            "loadtest",
            "--terminals",
            "2",
            "--rate",
            "50",
            "--duration",
            "1s",
        ])
        .arg("--json")
        .arg(&json_path)
        .env("TILLSYNC_LOADTEST_URL", &app.address)
        .env("TILLSYNC_LOADTEST_ADMIN_TOKEN", &app.merchant.token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    assert!(stdout.contains("p99.9"), "{stdout}");
    assert!(
        output.stderr.is_empty(),
        "no progress line when not a terminal"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json_path);
    assert_eq!(json["verdict"]["passed"], true);
    assert_eq!(json["verdict"]["lost"], 0);
    assert!(json["latency"]["sale"]["p99_9_ms"].is_number());
    assert!(
        !json.to_string().contains(&app.merchant.token),
        "no secrets in the report"
    );
}

#[tokio::test]
async fn the_command_stops_before_any_load_when_the_admin_token_is_refused() {
    let app = spawn_app_for_load().await;
    let output = tillsync()
        .args([
            "loadtest",
            "--url",
            &app.address,
            "--admin-token",
            "tsa_not_a_token",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin token was refused"), "{stderr}");
}

#[test]
fn help_documents_every_loadtest_setting_with_its_variable_and_default() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tillsync"))
        .args(["loadtest", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for setting in [
        "URL",
        "ADMIN_TOKEN",
        "TERMINALS",
        "RATE",
        "BATCH_SIZE",
        "DURATION",
        "DRAIN_TIMEOUT",
        "REQUEST_TIMEOUT",
        "SYNC_INTERVAL",
        "VERIFY_TIMEOUT",
        "BACKOFF_CAP",
        "ARRIVALS",
        "JSON",
        "SEED",
    ] {
        assert!(
            help.contains(&format!("TILLSYNC_LOADTEST_{setting}")),
            "{setting} missing"
        );
    }
    for default in [
        "[default: 50]",
        "[default: 200]",
        "[default: 100]",
        "[default: 60s]",
    ] {
        assert!(help.contains(default), "{default} missing:\n{help}");
    }
}
