//! The Postgres server tests and benchmarks make their databases on, and
//! dropping those databases again.

use sqlx::postgres::PgPoolOptions;

/// The Postgres server tests make their databases on (no database name):
/// `TILLSYNC_TEST_SERVER_URL`, or the local one.
pub fn server_url() -> String {
    std::env::var("TILLSYNC_TEST_SERVER_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A new database name, unique to this run, starting with `prefix`.
pub fn fresh_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Drops a database made by a test or benchmark, forcing off the
/// connections still open to it. False if it did not exist (or could not
/// be dropped: then the error is printed). Blocking, and callable from
/// inside or outside a runtime (it runs on a thread with its own), so a
/// `Drop` can use it while the caller's runtime goes away.
pub fn drop_database(name: &str) -> bool {
    let statement = format!("drop database \"{name}\" with (force)");
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&format!("{}/postgres", server_url()))
                .await?;
            let dropped = sqlx::query(&statement).execute(&pool).await;
            pool.close().await;
            Ok::<_, anyhow::Error>(dropped)
        })
    })
    .join();
    match dropped {
        Ok(Ok(Ok(_))) => true,
        // 3D000 invalid_catalog_name: there was no such database.
        Ok(Ok(Err(sqlx::Error::Database(e)))) if e.code().as_deref() == Some("3D000") => false,
        Ok(Ok(Err(e))) => {
            eprintln!("could not drop database {name}: {e}");
            false
        }
        Ok(Err(e)) => {
            eprintln!("could not drop database {name}: {e}");
            false
        }
        Err(_) => {
            eprintln!("could not drop database {name}: the thread panicked");
            false
        }
    }
}

/// The totals rebuild of migration `20261208000001_receipt_money` (between
/// its `-- rebuild totals` marks), the reference kept totals are checked
/// and benchmarked against, for today's schema. It was written when
/// `sales.body` was `jsonb`; since `20261210000001_sale_body_json` the body
/// is `json`, so the rebuild reads it as `jsonb` where it picks it up.
pub fn rebuild_totals_sql() -> String {
    let migration = include_str!("../../../migrations/20261208000001_receipt_money.sql");
    let begin = migration
        .find("-- rebuild totals: begin")
        .expect("the mark");
    let end = migration.find("-- rebuild totals: end").expect("the mark");
    let mut rebuild = migration[begin..end].to_owned();
    for (column, as_jsonb) in [
        ("s.sale_id, s.body,", "s.sale_id, s.body::jsonb,"),
        ("t.sale_id, t.body,", "t.sale_id, t.body::jsonb,"),
    ] {
        assert_eq!(rebuild.matches(column).count(), 1, "{column}");
        rebuild = rebuild.replace(column, as_jsonb);
    }
    rebuild
}
