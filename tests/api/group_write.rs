//! How Postgres writes a group (migrations 20261129000003 and 0005): one statement
//! for the whole group when every push can be written, push by push only
//! when one of them cannot. Asked of the function itself, with its calls
//! counted by `pg_stat_xact_user_functions`: the per-push form calls
//! `ingest_write` once a push (the statistics count the calls that
//! returned), the set-based form never.

use sqlx::{Connection, PgConnection};
use tillsync_testkit::app::{TestApp, spawn_app};
use uuid::Uuid;

/// A group of one new sale from each till, in order, planned against the
/// tills' sync rows as they are; `sale_ids[i]` is the sale id of till i's.
const GROUP: &str = "
select error_code from ingest_write_group((
select array_agg(row(
  t.merchant_id, t.terminal_id, tm.store_id, gen_random_uuid(),
  t.highest_seq, t.contiguous_through_seq, t.sales_stored, t.last_batch_at,
  t.highest_seq + 1, t.contiguous_through_seq + 1, t.sales_stored + 1, clock_timestamp(),
  gen_random_uuid(), '\\x00'::bytea, 200::int2, '\\x00'::bytea,
  array[w.sale_id], array[t.highest_seq + 1], array['sale'], array[now()],
  array[date '2026-11-20'], array['EUR'], array[100::int8], array[10::int8], array[0::int8],
  array[null::uuid], array['{}'::jsonb],
  '{}'::uuid[], '{}'::uuid[], '{}'::jsonb[],
  array[date '2026-11-20'], array['EUR'], array[1::int8], array[0::int8], array[0::int8],
  array[100::int8], array[0::int8], array[0::int8], array[10::int8],
  array[date '2026-11-20'], array[10::int2], array['EUR'], array[1::int8], array[0::int8],
  array[0::int8], array[100::int8], array[0::int8], array[0::int8], array[10::int8],
  array[date '2026-11-20'], array['EUR'], array['card'], array[1::int8], array[0::int8],
  array[100::int8], array[0::int8]
)::ingest_push order by w.ord)
  from unnest($1::uuid[], $2::uuid[]) with ordinality as w(terminal_id, sale_id, ord)
  join terminal_sync t on t.terminal_id = w.terminal_id
  join terminals tm on tm.merchant_id = t.merchant_id and tm.terminal_id = t.terminal_id))";

/// Writes the group in a transaction of its own and returns each push's
/// SQLSTATE and how often the per-push `ingest_write` ran.
async fn write_group(app: &TestApp, tills: &[Uuid], sale_ids: &[Uuid]) -> (Vec<String>, i64) {
    write_group_as(app, GROUP, tills, sale_ids, None).await
}

/// `write_group` with the group built by `sql` (`GROUP` changed), which
/// may take a third parameter, `key`.
async fn write_group_as(
    app: &TestApp,
    sql: &str,
    tills: &[Uuid],
    sale_ids: &[Uuid],
    key: Option<Uuid>,
) -> (Vec<String>, i64) {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("set local track_functions = 'pl'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut group = sqlx::query_scalar(sql).bind(tills).bind(sale_ids);
    if let Some(key) = key {
        group = group.bind(key);
    }
    let codes: Vec<String> = group.fetch_all(&mut *tx).await.unwrap();
    let per_push: i64 = sqlx::query_scalar(
        "select coalesce(sum(calls), 0)::int8 from pg_stat_xact_user_functions
          where funcname = 'ingest_write'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (codes, per_push)
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

    let (codes, per_push) = write_group(&app, &tills, &fresh()).await;
    assert_eq!(codes, ["00000"; 4]);
    assert_eq!(
        per_push, 0,
        "a group that can be written whole is one statement"
    );

    // The third push names a sale id the first till stored above: the
    // group is written push by push, and only that push fails.
    let held: Uuid = sqlx::query_scalar("select sale_id from sales where terminal_id = $1")
        .bind(tills[0])
        .fetch_one(&app.db)
        .await
        .unwrap();
    let mut clashing = fresh();
    clashing[2] = held;
    let (codes, per_push) = write_group(&app, &tills, &clashing).await;
    assert_eq!(codes, ["00000", "00000", "40001", "00000"]);
    // The statistics count calls that returned: the three written pushes
    // (the one that raised is not counted).
    assert_eq!(per_push, 3);

    for (i, till) in tills.iter().enumerate() {
        let expected = if i == 2 { 1 } else { 2 };
        assert_eq!(stored_sales(&app, *till).await, expected, "till {i}");
    }
    let counted: i64 = sqlx::query_scalar(
        "select coalesce(sum(sales_count), 0)::int8 from sales_day_totals where terminal_id = $1",
    )
    .bind(tills[2])
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(counted, 1, "the failed push counted nothing");
}

#[tokio::test]
async fn two_pushes_of_one_till_in_a_group_write_one_and_refuse_the_other() {
    let app = spawn_app().await;
    let till = app.create_till().await.terminal_id;
    let other = app.create_till().await.terminal_id;
    let (codes, per_push) = write_group(
        &app,
        &[till, till, other],
        &[Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()],
    )
    .await;
    let mut sorted = codes[..2].to_vec();
    sorted.sort();
    assert_eq!(sorted, ["00000", "40001"]);
    assert_eq!(codes[2], "00000");
    assert_eq!(per_push, 0);
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
    // The group as `GROUP` builds it, planned against the sync row a fresh
    // till would have.
    let planned_as_fresh = GROUP.replace(
        "  join terminal_sync t on t.terminal_id = w.terminal_id
  join terminals tm on tm.merchant_id = t.merchant_id and tm.terminal_id = t.terminal_id",
        "  cross join lateral (select $3::uuid as merchant_id, w.terminal_id, 0::int8 as highest_seq,
                             0::int8 as contiguous_through_seq, 0::int8 as sales_stored,
                             null::timestamptz as last_batch_at) t
  cross join lateral (select $4::uuid as store_id) tm",
    );
    assert_ne!(planned_as_fresh, GROUP);
    let codes: Vec<String> = sqlx::query_scalar(&planned_as_fresh)
        .bind([gone.terminal_id])
        .bind([Uuid::new_v4()])
        .bind(app.merchant.merchant_id)
        .bind(gone.store_id)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(codes, ["40001"]);
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
    assert_eq!(codes, ["00000"; 3]);
    let (stored_key, stored_at): (Uuid, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "select idempotency_key, created_at from idempotency_keys where terminal_id = $1",
    )
    .bind(tills[1])
    .fetch_one(&app.db)
    .await
    .unwrap();

    // The second push of the group reuses that key.
    let reusing = GROUP.replace(
        "  gen_random_uuid(), '\\x00'::bytea, 200::int2,",
        "  case when w.ord = 2 then $3::uuid else gen_random_uuid() end, '\\x00'::bytea, 201::int2,",
    );
    assert_ne!(reusing, GROUP);
    let (codes, per_push) =
        write_group_as(&app, &reusing, &tills, &fresh(), Some(stored_key)).await;

    assert_eq!(codes, ["00000", "40001", "00000"]);
    assert_eq!(
        per_push, 2,
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
