//! How Postgres writes a group (`ingest_write_group_v5`, src/db/schema.sql):
//! one set-based write for the whole group when every push can be written,
//! push by push only when one of them cannot. Asked of the function itself,
//! with the calls of its set-based write (`ingest_write_set_v5`) counted by
//! `pg_stat_xact_user_functions`: once for the whole group, or, after that
//! failed, once a push (the statistics count the calls that returned).

use chrono::{NaiveDate, Utc};
use sqlx::{Connection, PgConnection};
use tillsync::db::DbError;
use tillsync::db::push::{PushRow, write_group as ingest_write_group};
use tillsync_testkit::app::{TestApp, spawn_app};
use uuid::Uuid;

/// A till's sync row as a push is planned against it.
#[derive(sqlx::FromRow)]
struct Planned {
    merchant_id: Uuid,
    store_id: Uuid,
    highest_seq: i64,
    contiguous_through_seq: i64,
    sales_stored: i64,
    last_batch_at: Option<chrono::DateTime<Utc>>,
}

impl Planned {
    /// As it is now.
    async fn read(app: &TestApp, till: Uuid) -> Self {
        sqlx::query_as(
            "select t.merchant_id, tm.store_id, t.highest_seq, t.contiguous_through_seq,
                    t.sales_stored, t.last_batch_at
               from terminal_sync t
               join terminals tm using (merchant_id, terminal_id)
              where t.terminal_id = $1",
        )
        .bind(till)
        .fetch_one(&app.db)
        .await
        .unwrap()
    }

    /// As a fresh till's would be.
    fn fresh(merchant_id: Uuid, store_id: Uuid) -> Self {
        Self {
            merchant_id,
            store_id,
            highest_seq: 0,
            contiguous_through_seq: 0,
            sales_stored: 0,
            last_batch_at: None,
        }
    }

    /// One new sale of 1.00 EUR (0.10 tax, by card) for `till`, with its
    /// totals, planned against this row: the row type the service writes
    /// (`PushRow`, the one definition of `ingest_push`).
    fn push(&self, till: Uuid, sale_id: Uuid) -> PushRow {
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let seq = self.highest_seq + 1;
        PushRow {
            merchant_id: self.merchant_id,
            terminal_id: till,
            store_id: self.store_id,
            batch_id: Uuid::new_v4(),
            seen_highest_seq: self.highest_seq,
            seen_contiguous: self.contiguous_through_seq,
            seen_sales_stored: self.sales_stored,
            seen_last_batch_at: self.last_batch_at,
            highest_seq: seq,
            contiguous: self.contiguous_through_seq + 1,
            sales_stored: self.sales_stored + 1,
            last_batch_at: Some(Utc::now()),
            idempotency_key: Uuid::new_v4(),
            request_sha256: vec![0],
            response_status: 200,
            response_body: vec![0],
            sale_id: vec![sale_id],
            seq: vec![seq],
            kind: vec!["sale".into()],
            occurred_at: vec![Utc::now()],
            business_date: vec![date],
            currency: vec!["EUR".into()],
            total_minor: vec![100],
            tax_minor: vec![10],
            discount_minor: vec![0],
            refers_to_sale_id: vec![None],
            body: vec!["{}".into()],
            day_date: vec![date],
            day_currency: vec!["EUR".into()],
            day_sales: vec![1],
            day_refunds: vec![0],
            day_voids: vec![0],
            day_gross: vec![100],
            day_refunded: vec![0],
            day_discounts: vec![0],
            day_tax: vec![10],
            day_item_sales: vec![100],
            day_gift_card_sales: vec![0],
            day_tips: vec![0],
            day_service_charges: vec![0],
            day_rounding: vec![0],
            day_net_sales: vec![90],
            hour_date: vec![date],
            hour: vec![10],
            hour_currency: vec!["EUR".into()],
            hour_sales: vec![1],
            hour_refunds: vec![0],
            hour_voids: vec![0],
            hour_gross: vec![100],
            hour_refunded: vec![0],
            hour_discounts: vec![0],
            hour_tax: vec![10],
            hour_item_sales: vec![100],
            hour_gift_card_sales: vec![0],
            hour_tips: vec![0],
            hour_service_charges: vec![0],
            hour_rounding: vec![0],
            hour_net_sales: vec![90],
            tender_date: vec![date],
            tender_currency: vec!["EUR".into()],
            tender_method: vec!["card".into()],
            tender_sales: vec![1],
            tender_refunds: vec![0],
            tender_gross: vec![100],
            tender_refunded: vec![0],
            tax_date: vec![date],
            tax_currency: vec!["EUR".into()],
            tax_code: vec![String::new()],
            tax_rate_bp: vec![0],
            tax_sales: vec![1],
            tax_refunds: vec![0],
            tax_amount: vec![10],
            ..PushRow::default()
        }
    }
}

/// A group of one new sale from each till, in order, planned against the
/// tills' sync rows as they are; `sale_ids[i]` is the sale id of till i's.
async fn group_of(app: &TestApp, tills: &[Uuid], sale_ids: &[Uuid]) -> Vec<PushRow> {
    let mut rows = Vec::new();
    for (&till, &sale_id) in tills.iter().zip(sale_ids) {
        rows.push(Planned::read(app, till).await.push(till, sale_id));
    }
    rows
}

/// How a push of a group ended.
fn outcome(written: &Result<(), DbError>) -> &'static str {
    match written {
        Ok(()) => "written",
        Err(DbError::Contention(_)) => "refused",
        Err(e) => panic!("a push failed otherwise: {e}"),
    }
}

/// Writes `rows` as one group, in a transaction of its own, as the
/// committer does, and returns how each push ended and how often the
/// set-based `ingest_write_set_v5` returned (once for a group written
/// whole; once per push written, when written push by push).
async fn write_rows(app: &TestApp, rows: &[PushRow]) -> (Vec<&'static str>, i64) {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("set local track_functions = 'pl'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let written = ingest_write_group(&mut tx, rows).await.unwrap();
    let writes: i64 = sqlx::query_scalar(
        "select coalesce(sum(calls), 0)::int8 from pg_stat_xact_user_functions
          where funcname = 'ingest_write_set_v5'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (written.iter().map(outcome).collect(), writes)
}

/// The group of `group_of`, written.
async fn write_group(app: &TestApp, tills: &[Uuid], sale_ids: &[Uuid]) -> (Vec<&'static str>, i64) {
    write_rows(app, &group_of(app, tills, sale_ids).await).await
}

/// `n` tills of one store, ids only.
async fn tills_of_one_store(app: &TestApp, n: usize) -> Vec<Uuid> {
    let first = app.create_till().await;
    let mut tills = vec![first.terminal_id];
    for _ in 1..n {
        tills.push(
            app.create_till_in(&app.merchant, first.store_id)
                .await
                .terminal_id,
        );
    }
    tills
}

async fn stored_sales(app: &TestApp, till: Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from sales where terminal_id = $1")
        .bind(till)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_group_is_written_in_one_statement_unless_a_push_of_it_cannot_be() {
    let app = spawn_app().await;
    let tills = tills_of_one_store(&app, 4).await;
    let fresh = || -> Vec<Uuid> { tills.iter().map(|_| Uuid::new_v4()).collect() };

    let (codes, writes) = write_group(&app, &tills, &fresh()).await;
    assert_eq!(codes, ["written"; 4]);
    assert_eq!(writes, 1, "a group that can be written whole is one write");

    // The third push names a sale id the first till stored above: the
    // group is written push by push, and only that push fails.
    let held: Uuid = sqlx::query_scalar("select sale_id from sales where terminal_id = $1")
        .bind(tills[0])
        .fetch_one(&app.db)
        .await
        .unwrap();
    let mut clashing = fresh();
    clashing[2] = held;
    let (codes, writes) = write_group(&app, &tills, &clashing).await;
    assert_eq!(codes, ["written", "written", "refused", "written"]);
    // The statistics count calls that returned: the three written pushes
    // (the one that raised is not counted).
    assert_eq!(writes, 3);

    for (i, till) in tills.iter().enumerate() {
        let expected = if i == 2 { 1 } else { 2 };
        assert_eq!(stored_sales(&app, *till).await, expected, "till {i}");
    }
    let (counted, _) = crate::races::day_totals(&app, tills[2]).await;
    assert_eq!(counted, 1, "the failed push counted nothing");
}

#[tokio::test]
async fn two_pushes_of_one_till_in_a_group_write_one_and_refuse_the_other() {
    let app = spawn_app().await;
    let till = app.create_till().await.terminal_id;
    let other = app.create_till().await.terminal_id;
    let (codes, writes) = write_group(
        &app,
        &[till, till, other],
        &[Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()],
    )
    .await;
    let mut sorted = codes[..2].to_vec();
    sorted.sort();
    assert_eq!(sorted, ["refused", "written"]);
    assert_eq!(codes[2], "written");
    assert_eq!(writes, 1, "one write, whose guard refuses the second push");
    assert_eq!(stored_sales(&app, till).await, 1);
    assert_eq!(stored_sales(&app, other).await, 1);
}

/// Sales carry no foreign key to their till (migration 20261129000004): a
/// push is written only when the guarded update finds its till's sync row,
/// which references `terminals`. A push planned for a till that is gone
/// (its sync row and its terminal deleted) is refused and stores nothing.
#[tokio::test]
async fn a_push_for_a_till_without_a_sync_row_stores_nothing() {
    let app = spawn_app().await;
    let gone = app.create_till().await;
    for table in ["terminal_sync", "terminals"] {
        sqlx::query(&format!("delete from {table} where terminal_id = $1"))
            .bind(gone.terminal_id)
            .execute(&app.db)
            .await
            .unwrap();
    }
    // A push planned against the sync row a fresh till would have.
    let planned = Planned::fresh(app.merchant.merchant_id, gone.store_id);
    let (codes, _) = write_rows(&app, &[planned.push(gone.terminal_id, Uuid::new_v4())]).await;
    assert_eq!(codes, ["refused"]);
    assert_eq!(stored_sales(&app, gone.terminal_id).await, 0);
    let keys: i64 =
        sqlx::query_scalar("select count(*) from idempotency_keys where terminal_id = $1")
            .bind(gone.terminal_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(keys, 0);
}

/// A push whose Idempotency-Key is stored already (a key replayed while
/// its first push's group committed, planned against the sync row as it is
/// now) fails the set-based attempt with the key's unique violation
/// (migration 20261129000005: plain inserts, no `on conflict`): the group
/// is written push by push, that push alone is refused and stores nothing,
/// and the stored key keeps its first answer.
#[tokio::test]
async fn a_push_with_a_stored_key_fails_alone_and_keeps_the_first_answer() {
    let app = spawn_app().await;
    let tills = tills_of_one_store(&app, 3).await;
    let fresh = || -> Vec<Uuid> { tills.iter().map(|_| Uuid::new_v4()).collect() };
    let (codes, _) = write_group(&app, &tills, &fresh()).await;
    assert_eq!(codes, ["written"; 3]);
    let (stored_key, stored_at): (Uuid, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "select idempotency_key, created_at from idempotency_keys where terminal_id = $1",
    )
    .bind(tills[1])
    .fetch_one(&app.db)
    .await
    .unwrap();

    // The second push of the group reuses that key, with another answer.
    let mut group = group_of(&app, &tills, &fresh()).await;
    group[1].idempotency_key = stored_key;
    group[1].response_status = 201;
    let (codes, writes) = write_rows(&app, &group).await;

    assert_eq!(codes, ["written", "refused", "written"]);
    assert_eq!(
        writes, 2,
        "written push by push; the refused push not counted"
    );
    for (i, till) in tills.iter().enumerate() {
        let expected = if i == 1 { 1 } else { 2 };
        assert_eq!(stored_sales(&app, *till).await, expected, "till {i}");
    }
    let kept: (i16, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "select response_status, created_at from idempotency_keys
          where terminal_id = $1 and idempotency_key = $2",
    )
    .bind(tills[1])
    .bind(stored_key)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(kept, (200, stored_at), "the first answer is kept");
}

/// A replica one migration behind (docs/deploy.md) writes through
/// `ingest_write_group_v4`, whose `ingest_push_v3` carries each body as
/// `jsonb`, and reads through `ingest_read_v2`, which returns it as `jsonb`:
/// both still work now that `sales.body` is `json`.
#[tokio::test]
async fn an_older_replicas_write_and_read_still_work_with_the_body_stored_as_json() {
    let app = spawn_app().await;
    let till = app.create_till().await.terminal_id;
    let planned = Planned::read(&app, till).await;
    let sale_id = Uuid::new_v4();
    let body = serde_json::json!({"sale_id": sale_id, "seq": 1, "kind": "sale", "note": "older"});
    // The older binary's row, as JSON: the fields a write needs, the rest null.
    let push = serde_json::json!({
        "merchant_id": planned.merchant_id, "terminal_id": till, "store_id": planned.store_id,
        "batch_id": Uuid::new_v4(), "seen_highest_seq": 0, "seen_contiguous": 0,
        "seen_sales_stored": 0, "highest_seq": 1, "contiguous": 1, "sales_stored": 1,
        "idempotency_key": Uuid::new_v4(), "request_sha256": "\\x00", "response_status": 200,
        "response_body": "\\x7b7d", "sale_id": [sale_id], "seq": [1], "kind": ["sale"],
        "occurred_at": ["2026-11-20T10:00:00Z"], "business_date": ["2026-11-20"],
        "currency": ["EUR"], "total_minor": [100], "tax_minor": [10], "discount_minor": [0],
        "refers_to_sale_id": [null], "body": [body],
    });
    let codes: Vec<String> = sqlx::query_scalar(
        "select error_code from ingest_write_group_v4(
             array[jsonb_populate_record(null::ingest_push_v3, $1)])",
    )
    .bind(&push)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(codes, ["00000"]);

    let (stored, kind): (serde_json::Value, String) = sqlx::query_as(
        "select body, pg_typeof(body)::text
           from ingest_read_v2($1, $2, $3, $4, '{}', '{}', 10)",
    )
    .bind(planned.merchant_id)
    .bind(till)
    .bind(Uuid::new_v4())
    .bind([sale_id])
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, body);
    assert_eq!(kind, "jsonb");
}
