//! `src/db/schema.sql` is the schema the migrations make, so the live SQL
//! (tables, indexes, the ingest functions) reads in one file: a database
//! migrated as the service migrates it is dumped and compared, and a
//! migration added without `scripts/schema-dump` fails here with the diff.

use std::process::Command;

use tillsync_testkit::database::{drop_database, fresh_name, server_url};

#[tokio::test]
async fn the_checked_in_schema_is_the_one_the_migrations_make() {
    let name = fresh_name("tillsync_schema");
    let url = format!("{}/{name}", server_url());
    let options = url.parse().unwrap();
    tillsync::db::create_and_migrate(&options).await.unwrap();

    let checked = Command::new("scripts/schema-dump")
        .args(["--check", &url])
        .output()
        .expect("scripts/schema-dump runs (pg_dump on the PATH)");
    drop_database(&name);
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
