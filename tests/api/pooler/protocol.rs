//! The wire protocol through PgBouncer 1.18: the startup parameters it
//! refuses, what the old defaults lose and collide on in transaction
//! mode, why a statement outside a transaction cannot work there with
//! sqlx, and how a missing reset query shows.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tillsync::db::pooler::{self, TIMEOUT_SETTINGS};
use tillsync::jobs::server_settings::unbounded;
use tillsync_testkit::pgbouncer::{Config, PoolMode};

use super::Setup;

/// What sqlx connects with unless told otherwise.
fn sqlx_defaults(url: &str) -> PgConnectOptions {
    url.parse().unwrap()
}

/// Runs the same parameterised query on `clients` connections at once,
/// outside transactions, `rounds` times each; the errors seen, a wrong
/// answer (another client's statement bound) among them.
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
    // Even without sqlx's parameter, the timeouts as `options`.
    let error = refused(
        pooler::connect_options(&old)
            .extra_float_digits(None)
            .connect()
            .await
            .expect_err("tillsync's own options are refused too"),
    );
    assert!(
        error.contains("unsupported startup parameter: options"),
        "{error}"
    );

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
        unbounded(&found, Duration::from_secs(5)),
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
    assert!(!errors.is_empty(), "every parse and bind met on one server");
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

/// Statements a client left on a server connection, as the next client
/// of that connection sees them first thing in its transaction: what the
/// service watches in transaction mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_that_hands_over_prepared_statements_is_noticed() {
    for (reset, leftovers_seen) in [(false, true), (true, false)] {
        let mut config = Config::new(PoolMode::Transaction);
        config.default_pool_size = 1;
        config.server_reset_query = "DEALLOCATE ALL".to_owned();
        config.server_reset_query_always = reset;
        let setup = Setup::new(&config);
        let args = setup.database_args(&setup.pooled(), "transaction", "5s");
        let options = pooler::connect_options(&args).database("postgres");
        let mut first = options.connect().await.unwrap();
        let mut tx = first.begin().await.unwrap();
        let one: i64 = sqlx::query_scalar("select $1::int8")
            .bind(1_i64)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(one, 1);
        tx.commit().await.unwrap();

        let mut second = options.connect().await.unwrap();
        let mut tx = second.begin().await.unwrap();
        let left = pooler::prepared_statements(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            left > 0,
            leftovers_seen,
            "reset query run: {reset}, left: {left}"
        );
    }
}

/// What PgBouncer answers a client that waited `query_wait_timeout` for a
/// server connection: an error of its own, which tillsync must read as
/// the database being unavailable (a 503), not as a bug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_giving_up_on_a_waiting_client_reads_as_unavailable() {
    let mut config = Config::new(PoolMode::Transaction);
    config.default_pool_size = 1;
    config.query_wait_timeout_s = 1;
    let setup = Setup::new(&config);
    let args = setup.database_args(&setup.pooled(), "transaction", "5s");
    let options = pooler::connect_options(&args).database("postgres");
    let mut holder = options.connect().await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("select 1").execute(&mut *held).await.unwrap();

    let mut waiter = options.connect().await.unwrap();
    let error = sqlx::query("select 1")
        .execute(&mut waiter)
        .await
        .expect_err("no server connection within query_wait_timeout");
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    eprintln!("PgBouncer's answer: {code:?} {error}");
    assert!(
        matches!(
            tillsync::db::DbError::from(error),
            tillsync::db::DbError::Unavailable(_)
        ),
        "{code:?}"
    );
    held.rollback().await.unwrap();
}
