//! Behind PgBouncer (Debian's 1.18, one instance per test on a free port,
//! in front of the shared server): what issue 14 found with sqlx's and
//! tillsync's old defaults, and what `TILLSYNC_DB_POOLER` makes work.
//! Each test has its own database; migrations go to Postgres directly.

use std::str::FromStr;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::task::JoinHandle;
use uuid::Uuid;

use tillsync::app::Application;
use tillsync::config::DatabaseArgs;
use tillsync::db::pooler::{self, TIMEOUT_SETTINGS};
use tillsync_testkit::api::{create_store, create_till};
use tillsync_testkit::database::{drop_database, fresh_name, server_url};
use tillsync_testkit::pgbouncer::{Config, PgBouncer, PoolMode};
use tillsync_testkit::sales::sale;
use tillsync_testkit::settings::serve_args;

/// A fresh database on the shared server (dropped on drop) and a
/// PgBouncer in front of that server.
struct Setup {
    bouncer: PgBouncer,
    name: String,
    direct: String,
}

impl Setup {
    fn new(config: &Config) -> Self {
        let server: PgConnectOptions = server_url().parse().unwrap();
        let bouncer = PgBouncer::start(server.get_host(), server.get_port(), config);
        let name = fresh_name("tillsync_pooler");
        let direct = format!("{}/{name}", server_url());
        Self {
            bouncer,
            name,
            direct,
        }
    }

    fn pooled(&self) -> String {
        self.bouncer.url(&self.name)
    }

    /// The database settings of a server at `url` with this pooler mode.
    fn database_args(&self, url: &str, mode: &str, timeout: &str) -> DatabaseArgs {
        let extra = [
            "--db-pooler",
            mode,
            "--migrate-database-url",
            &self.direct,
            "--db-statement-timeout",
            timeout,
        ];
        serve_args(url, &extra).database
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop_database(&self.name);
    }
}

/// What sqlx connects with unless told otherwise.
fn sqlx_defaults(url: &str) -> PgConnectOptions {
    url.parse().unwrap()
}

/// Runs the same parameterised query on `clients` connections at once,
/// outside transactions, `rounds` times each; the errors seen and whether
/// any answer was another query's.
async fn concurrent_selects(options: &PgConnectOptions, clients: i64, rounds: i64) -> Vec<String> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut conn = options.connect().await.expect("connects through PgBouncer");
            for round in 0..rounds {
                // Two different statements per client, so names are reused.
                let wanted = client * 1000 + round;
                let got: Result<i64, _> = sqlx::query_scalar("select $1::int8")
                    .bind(wanted)
                    .fetch_one(&mut conn)
                    .await;
                let text: Result<String, _> = sqlx::query_scalar("select $1::text || 'x'")
                    .bind(wanted.to_string())
                    .fetch_one(&mut conn)
                    .await;
                match (got, text) {
                    (Ok(got), Ok(text)) if got == wanted && text == format!("{wanted}x") => {}
                    (Ok(got), Ok(text)) => {
                        errors.push(format!("wrong answer: {got} / {text} for {wanted}"));
                    }
                    (Err(e), _) | (_, Err(e)) => errors.push(e.to_string()),
                }
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_refuses_the_startup_parameters_sqlx_and_tillsync_send_by_default() {
    let setup = Setup::new(&Config::new(PoolMode::Session));
    let refused = |e: sqlx::Error| e.to_string();
    let sqlx_default = sqlx_defaults(&setup.pooled()).connect().await;
    let error = refused(sqlx_default.expect_err("extra_float_digits is refused"));
    assert!(
        error.contains("unsupported startup parameter: extra_float_digits"),
        "{error}"
    );

    let old = setup.database_args(&setup.pooled(), "none", "5s");
    let error = refused(
        pooler::connect_options(&old)
            .connect()
            .await
            .expect_err("tillsync's own options are refused too"),
    );
    assert!(error.contains("unsupported startup parameter"), "{error}");

    for mode in ["session", "transaction"] {
        let args = setup.database_args(&setup.pooled(), mode, "5s");
        let conn = pooler::connect_options(&args)
            .database("postgres")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}\n{}", setup.bouncer.log()));
        conn.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_defaults_through_a_transaction_pooler_lose_their_timeouts_and_collide() {
    // What an operator would try first: let PgBouncer drop what it refuses.
    let mut config = Config::new(PoolMode::Transaction);
    config.ignore_startup_parameters = "extra_float_digits,options".to_owned();
    let setup = Setup::new(&config);
    let old = setup.database_args(&setup.pooled(), "none", "5s");
    let options = pooler::connect_options(&old).database("postgres");

    let mut conn = options.connect().await.unwrap();
    let found = pooler::server_timeouts(&mut conn).await.unwrap();
    assert_eq!(
        pooler::unbounded(&found, Duration::from_secs(5)),
        TIMEOUT_SETTINGS.to_vec(),
        "the timeouts sent as options were dropped: {found:?}"
    );
    conn.close().await.unwrap();

    let errors = concurrent_selects(&options, 6, 20).await;
    assert!(
        errors.iter().any(|e| e.contains("prepared statement")),
        "named statements of different clients met on shared server connections: {errors:?}"
    );
}

/// Statements with parameters outside a transaction, with the statement
/// cache off: sqlx still names them, and parses and binds them in two
/// round trips, which PgBouncer 1.18 in transaction mode may split between
/// server connections. With `DEALLOCATE ALL` after every release that
/// fails loudly, never runs another client's statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_transaction_pgbouncer_1_18_splits_parse_from_bind_even_without_a_cache() {
    let mut config = Config::new(PoolMode::Transaction);
    config.server_reset_query = "DEALLOCATE ALL".to_owned();
    config.server_reset_query_always = true;
    let setup = Setup::new(&config);
    let args = setup.database_args(&setup.pooled(), "transaction", "5s");
    let options = pooler::connect_options(&args).database("postgres");
    let errors = concurrent_selects(&options, 6, 20).await;
    assert!(
        errors.iter().all(|e| e.contains("does not exist")),
        "only loud failures, never a wrong answer: {errors:?}"
    );
    eprintln!(
        "{} of 240 selects failed: {:?}",
        errors.len(),
        errors.first()
    );
}

/// A server of this process through PgBouncer, its merchant's admin token.
async fn serve(setup: &Setup, mode: &str) -> (String, String, JoinHandle<()>) {
    let extra = ["--db-pooler", mode, "--migrate-database-url", &setup.direct];
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
    let (base, admin, server) = serve(&setup, "session").await;
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
        pooler::unbounded(&found, Duration::from_millis(300)).is_empty(),
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
    let (base, admin, server) = serve(&setup, "transaction").await;
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
