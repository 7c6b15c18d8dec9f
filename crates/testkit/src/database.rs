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
