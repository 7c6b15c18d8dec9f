//! Plans that stay index probes at any size. `ingest_read_v2` is planned
//! once per connection, generically, and the plan is kept for the
//! connection's life: on a fresh database that is a plan made while `sales`
//! was empty. Such a plan once read every void of the merchant on every
//! push (a hashed `exists`), and pushes got slower as voids piled up
//! (`migrations/20261129000002_ingest_read_void_probe.sql`). These tests
//! count the index entries a read takes, in the reading transaction's own
//! statistics, so they hold whatever the machine's speed.

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use tillsync_testkit::sales::{sale, void_of};
use tillsync_testkit::{TestApp, Till, spawn_app};

/// Runs one push's read of `sale_ids` on `conn`; returns the rows it gave
/// and the entries it read from `index`.
async fn read_counting(
    conn: &mut PgConnection,
    app: &TestApp,
    till: &Till,
    sale_ids: &[Uuid],
    index: &str,
) -> (i64, i64) {
    let mut tx = conn.begin().await.unwrap();
    let rows: i64 = sqlx::query_scalar(
        "select count(*) from ingest_read_v2($1, $2, gen_random_uuid(), $3, '{}'::int8[],
                                             '{}'::int8[], 1000)
          where sale_id is not null",
    )
    .bind(app.merchant.merchant_id)
    .bind(till.terminal_id)
    .bind(sale_ids)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let read: i64 = sqlx::query_scalar("select pg_stat_get_xact_tuples_returned($1::regclass)")
        .bind(index)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    (rows, read)
}

fn id(sale: &Value) -> Uuid {
    sale["sale_id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_read_planned_on_empty_tables_probes_one_sale_at_a_time() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    // This connection plans `ingest_read` now, while nothing is stored.
    let mut early = PgConnection::connect(&app.database_url).await.unwrap();
    let (rows, _) = read_counting(&mut early, &app, &till, &[Uuid::new_v4()], "sales_pkey").await;
    assert_eq!(rows, 0);

    // 200 sales, each voided.
    let sales: Vec<Value> = (1..=200).map(sale).collect();
    let voids: Vec<Value> = sales
        .iter()
        .zip(201..)
        .map(|(target, seq)| void_of(seq, target))
        .collect();
    let batch: Vec<Value> = sales.iter().chain(&voids).cloned().collect();
    app.push_ok(&till, &batch).await;

    // Reading one stored sale is one probe of the sales' key, not a read
    // of all 400 rows.
    let (rows, entries) =
        read_counting(&mut early, &app, &till, &[id(&sales[0])], "sales_pkey").await;
    assert_eq!(rows, 1, "the stored sale is read back");
    assert!(
        entries <= 2,
        "read {entries} entries of the sales' key for one sale"
    );
    let _ = early.close().await;
}
