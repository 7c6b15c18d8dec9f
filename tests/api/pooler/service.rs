//! The service through PgBouncer 1.18: session mode end to end,
//! concurrent tills in transaction mode, and the timeouts, enforced and
//! watched.

use std::str::FromStr;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::task::JoinHandle;
use uuid::Uuid;

use tillsync::app::Application;
use tillsync::db::pooler;
use tillsync::jobs::server_settings::unbounded;
use tillsync_testkit::api::{create_store, create_till};
use tillsync_testkit::pgbouncer::{Config, PoolMode};
use tillsync_testkit::sales::sale;
use tillsync_testkit::settings::serve_args;

use super::Setup;

/// A server of this process through PgBouncer, its merchant's admin token.
async fn serve(setup: &Setup, mode: &str, more: &[&str]) -> (String, String, JoinHandle<()>) {
    let mut extra = vec!["--db-pooler", mode, "--migrate-database-url", &setup.direct];
    extra.extend_from_slice(more);
    let mut args = serve_args(&setup.pooled(), &extra);
    args.health.terminal_rate = 0;
    let app = Application::build(args).await.expect("application builds");
    let address = format!("http://{}", app.local_addr());
    let task = tokio::spawn(async move {
        app.run_until(std::future::pending())
            .await
            .expect("server runs");
    });
    let created = tillsync::admin::create_merchant(
        &setup.database_args(&setup.pooled(), mode, "5s"),
        "Pooled",
    )
    .await
    .expect("merchant created through the pooler");
    let token = created["admin_token"].as_str().unwrap().to_owned();
    (address, token, task)
}

async fn push(client: &Client, base: &str, token: &str, key: Uuid, sales: &[Value]) -> Value {
    let response = client
        .post(format!("{base}/v1/sales/batches"))
        .bearer_auth(token)
        .header("Idempotency-Key", key.to_string())
        .json(&json!({"sales": sales}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_session_pooler_the_service_pushes_replays_and_reports_totals() {
    // In session mode every pooled connection of tillsync (and its probe)
    // holds a server connection for as long as it lives: the server pool
    // must be larger than tillsync's (10 by default, plus the probe).
    let mut config = Config::new(PoolMode::Session);
    config.default_pool_size = 16;
    let setup = Setup::new(&config);
    let (base, admin, server) = serve(&setup, "session", &[]).await;
    let client = Client::new();
    let store = create_store(&client, &base, &admin, "Europe/Berlin", "EUR").await;
    let till = create_till(&client, &base, &admin, store, "Till").await;

    let key = Uuid::new_v4();
    let sales = [sale(1), sale(2)];
    let first = push(&client, &base, &till.token, key, &sales).await;
    let replay = push(&client, &base, &till.token, key, &sales).await;
    assert_eq!(first, replay, "a replay answers what the first push did");

    let report: Value = client
        .get(format!(
            "{base}/v1/reports/totals?from=2026-11-20&to=2026-11-20"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["rows"][0]["sales_count"], 2, "{report}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_is_enforced_through_a_transaction_pooler() {
    let setup = Setup::new(&Config::new(PoolMode::Transaction));
    let args = setup.database_args(&setup.pooled(), "transaction", "300ms");
    pooler::migrate(&args).await.expect("migrated directly");

    let mut conn: PgConnection = pooler::connect_options(&args).connect().await.unwrap();
    let found = pooler::server_timeouts(&mut conn).await.unwrap();
    assert!(
        unbounded(&found, Duration::from_millis(300)).is_empty(),
        "role settings reach sessions through the pooler: {found:?}"
    );
    let slept = sqlx::raw_sql("select pg_sleep(2)").execute(&mut conn).await;
    let code = slept
        .expect_err("canceled by statement_timeout")
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled");
    conn.close().await.unwrap();
}

/// PgBouncer 1.18 in transaction mode as docs/deploy.md sets it up, with
/// two server connections for a service whose pool has ten: eight tills
/// push at once, each connection lent to many clients in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_transaction_pooler_concurrent_tills_push_exactly_once() {
    let mut config = Config::new(PoolMode::Transaction);
    config.server_reset_query = "DEALLOCATE ALL".to_owned();
    config.server_reset_query_always = true;
    let setup = Setup::new(&config);
    let (base, admin, server) = serve(&setup, "transaction", &[]).await;
    let client = Client::new();
    let store = create_store(&client, &base, &admin, "Europe/Berlin", "EUR").await;
    let mut tills = Vec::new();
    for number in 0..8 {
        tills.push(create_till(&client, &base, &admin, store, &format!("Till {number}")).await);
    }

    const BATCHES: i64 = 5;
    let pushes = tills.iter().map(|till| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            for batch in 0..BATCHES {
                let sales = [sale(batch * 2 + 1), sale(batch * 2 + 2)];
                let key = Uuid::new_v4();
                let first = push(&client, &base, &till.token, key, &sales).await;
                let replay = push(&client, &base, &till.token, key, &sales).await;
                assert_eq!(first, replay, "a replay answers what the first push did");
            }
        }
    });
    futures::future::join_all(pushes).await;

    let direct = PgConnectOptions::from_str(&setup.direct).unwrap();
    let mut conn = direct.connect().await.unwrap();
    let stored: i64 = sqlx::query_scalar("select count(*) from sales")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 8 * BATCHES * 2, "every sale stored exactly once");
    let log = setup.bouncer.log();
    assert!(!log.contains("already exists"), "{log}");

    // And the read paths that open no transaction of their own.
    let sync: Value = client
        .get(format!("{base}/v1/sync"))
        .bearer_auth(&tills[0].token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sync["contiguous_through_seq"], BATCHES * 2, "{sync}");
    conn.close().await.unwrap();

    server.abort();
}

/// Polls `/metrics` until it has the line `wanted` (the service looks at
/// the server at start, and again 2 s later if the health layer put that
/// off); returns the `tillsync_db_` lines.
async fn wait_for_metric(client: &Client, base: &str, wanted: &str) -> Vec<String> {
    let mut metrics = Vec::new();
    for _ in 0..100 {
        metrics = metric_lines(client, base, "tillsync_db_").await;
        if metrics.iter().any(|line| line == wanted) {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {wanted} within 10 s: {metrics:?}");
}

/// The lines of `/metrics` starting with `prefix`.
async fn metric_lines(client: &Client, base: &str, prefix: &str) -> Vec<String> {
    let page = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .filter(|line| line.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The real binary, so its metrics are its own (the recorder is global
/// to a process, and the other tests' servers share this one's): `serve`
/// through PgBouncer in transaction mode; its `/metrics` once the line
/// `wanted` shows, and its log lines.
async fn serve_binary(
    setup: &Setup,
    extra_env: &[(&str, &str)],
    wanted: &str,
) -> (Vec<String>, Vec<String>) {
    let pooled = setup.pooled();
    let mut env = vec![
        ("DATABASE_URL", pooled.as_str()),
        ("TILLSYNC_DB_POOLER", "transaction"),
        ("TILLSYNC_MIGRATE_DATABASE_URL", setup.direct.as_str()),
    ];
    env.extend_from_slice(extra_env);
    let served = tokio::task::block_in_place(|| crate::support::tillsync().serve(&env));
    let metrics = wait_for_metric(&Client::new(), &served.address, wanted).await;
    (metrics, served.lines())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_transaction_pooler_the_service_finds_its_timeouts_and_no_leftovers() {
    let mut config = Config::new(PoolMode::Transaction);
    config.server_reset_query = "DEALLOCATE ALL".to_owned();
    config.server_reset_query_always = true;
    let setup = Setup::new(&config);
    let wanted = "tillsync_db_server_timeout_seconds{setting=\"statement_timeout\"} 5";
    let (metrics, lines) = serve_binary(&setup, &[], wanted).await;
    for setting in ["lock_timeout", "idle_in_transaction_session_timeout"] {
        let line = format!("tillsync_db_server_timeout_seconds{{setting=\"{setting}\"}} 5");
        assert!(metrics.contains(&line), "{metrics:?}");
    }
    assert!(
        metrics.contains(&"tillsync_db_pooler_leftover_statements 0".to_owned()),
        "{metrics:?}"
    );
    assert!(
        !lines.iter().any(|line| line.contains("ERROR")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_a_pooler_drops_show_in_the_metrics_and_the_log() {
    let setup = Setup::new(&Config::new(PoolMode::Transaction));
    // Migrated without a pooler: no role settings are written.
    pooler::migrate(&serve_args(&setup.direct, &[]).database)
        .await
        .unwrap();
    let wanted = "tillsync_db_server_timeout_seconds{setting=\"statement_timeout\"} 0";
    let (_, lines) = serve_binary(&setup, &[("TILLSYNC_NO_MIGRATE", "true")], wanted).await;
    assert!(
        lines
            .iter()
            .any(|line| line.contains("ERROR") && line.contains("set them per role")),
        "{lines:#?}"
    );
}

#[test]
fn behind_a_pooler_migrate_refuses_to_go_through_it() {
    let output = crate::support::tillsync()
        .command()
        .arg("migrate")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/tillsync")
        .env("TILLSYNC_DB_POOLER", "transaction")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("TILLSYNC_MIGRATE_DATABASE_URL"),
        "names the setting: {stderr}"
    );
}

/// Replicas behind a pooler starting together on a fresh database: each
/// migrates (directly) and writes the role timeouts, and all come up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_behind_a_pooler_all_migrate() {
    let setup = Setup::new(&Config::new(PoolMode::Transaction));
    for round in 0..3 {
        let args = setup.database_args(&setup.pooled(), "transaction", &format!("{}s", 5 + round));
        let (a, b, c) = tokio::join!(
            pooler::migrate(&args),
            pooler::migrate(&args),
            pooler::migrate(&args)
        );
        for started in [a, b, c] {
            started.unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        }
    }
}

/// PgBouncer out of server connections for longer than its
/// `query_wait_timeout`: it drops the waiting client with an error of its
/// own, which is the link failing, not a bug: 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_out_of_server_connections_is_a_503_not_a_500() {
    let mut config = Config::new(PoolMode::Transaction);
    config.server_reset_query = "DEALLOCATE ALL".to_owned();
    config.server_reset_query_always = true;
    config.default_pool_size = 1;
    config.query_wait_timeout_s = 1;
    let setup = Setup::new(&config);
    // The probe waits in PgBouncer too; it must not be what answers 503.
    let patient = ["--db-probe-failures", "100", "--db-acquire-timeout", "5s"];
    let (base, admin, server) = serve(&setup, "transaction", &patient).await;
    let client = Client::new();
    let store = create_store(&client, &base, &admin, "Europe/Berlin", "EUR").await;
    let till = create_till(&client, &base, &admin, store, "Till").await;
    // A first push, so the till's token is cached and the next one gets
    // as far as ingest.
    push(&client, &base, &till.token, Uuid::new_v4(), &[sale(1)]).await;

    // Another client holds the only server connection in a transaction.
    let args = setup.database_args(&setup.pooled(), "transaction", "5s");
    let mut holder = pooler::connect_options(&args).connect().await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("select 1").execute(&mut *held).await.unwrap();

    let response = client
        .post(format!("{base}/v1/sales/batches"))
        .bearer_auth(&till.token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"sales": [sale(2)]}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry_after.is_some(), "{body}");
    held.rollback().await.unwrap();
    server.abort();
}
