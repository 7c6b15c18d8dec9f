//! Background work shared by replicas on one database: the fold of store
//! deltas and the purge of stored responses run on one replica at a time,
//! in bounded chunks, without deadlocks (issue 14, finding 3).

use std::time::{Duration, Instant};

use tillsync::jobs::fold::{self, Quarantine};
use tillsync_testkit::spawn_app;

/// Replicas fold in parallel this many times over.
const FOLDERS: usize = 3;

/// Store totals and the deltas not folded yet, added up per totals row.
const KEPT: &str = "select merchant_id::text || store_id::text || business_date::text || currency,
                           sum(sales_count)::int8, sum(gross_minor)::int8
                      from (select merchant_id, store_id, business_date, currency, sales_count,
                                   gross_minor from store_day_totals
                            union all
                            select merchant_id, store_id, business_date, currency, sales_count,
                                   gross_minor from store_day_deltas) kept
                     group by 1 order by 1";

/// Deltas of 400 stores over three days, in batches whose ids scramble the
/// order in which a fold meets the stores.
/// Plants `old` stored batch responses past a 7-day retention (8 days old)
/// and `recent` ones within it (1 day old).
async fn plant_stored_responses(db: &sqlx::PgPool, old: i64, recent: i64) {
    sqlx::query(
        "insert into idempotency_keys
                (merchant_id, terminal_id, idempotency_key, request_sha256, response_status,
                 response_body, created_at)
         select gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '\\x00', 200, '\\x00',
                now() - case when g <= $1 then interval '8 days' else interval '1 day' end
           from generate_series(1, $1 + $2) g",
    )
    .bind(old)
    .bind(recent)
    .execute(db)
    .await
    .unwrap();
}

async fn plant_deltas(db: &sqlx::PgPool, rows: i64) {
    sqlx::query(
        "insert into store_day_deltas
                (merchant_id, batch_id, store_id, business_date, currency, sales_count,
                 refunds_count, voids_count, gross_minor, refunds_minor, discounts_minor, tax_minor)
         select md5('merchant' || (g % 4))::uuid, gen_random_uuid(), md5('store' || (g % 20011))::uuid,
                date '2026-11-01' + (g % 3)::int4, 'EUR', 1, 0, 0, g % 1000, 0, 0, 0
           from generate_series(1, $1) g",
    )
    .bind(rows)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn replicas_folding_at_once_never_fail_and_fold_every_delta_exactly_once() {
    let app = spawn_app().await;
    for round in 0..3 {
        plant_deltas(&app.db, 40_000).await;
        let expected: Vec<(String, i64, i64)> =
            sqlx::query_as(KEPT).fetch_all(&app.db).await.unwrap();
        let folders = (0..FOLDERS).map(|folder| {
            let db = app.db.clone();
            tokio::spawn(async move {
                let mut conn = db.acquire().await.unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut limit = 37 + 101 * folder as i64;
                loop {
                    // Chunks of every size, so folds meet the stores in
                    // different orders.
                    limit = limit * 7 % 4999 + 1;
                    tillsync::db::totals::fold_store_deltas(&mut conn, limit, &[])
                        .await
                        .expect("a fold never fails when replicas fold at once");
                    let pending: i64 = sqlx::query_scalar("select count(*) from store_day_deltas")
                        .fetch_one(&mut *conn)
                        .await
                        .unwrap();
                    if pending == 0 {
                        return;
                    }
                    assert!(Instant::now() < deadline, "deltas still pending");
                }
            })
        });
        for folder in futures::future::join_all(folders).await {
            folder.unwrap();
        }
        let folded: Vec<(String, i64, i64)> =
            sqlx::query_as(KEPT).fetch_all(&app.db).await.unwrap();
        assert_eq!(folded, expected, "round {round}: totals differ");
    }
}

#[tokio::test]
async fn the_purge_of_a_large_backlog_runs_in_chunks_under_a_short_statement_timeout() {
    let app = spawn_app().await;
    plant_stored_responses(&app.db, 500_000, 10).await;
    let mut conn = app.db.acquire().await.unwrap();
    // A whole-backlog DELETE takes seconds; a chunk of 1 000 a few
    // milliseconds, and under 200 ms even with the machine's two cores
    // busy with other tests (50 ms failed there now and then).
    sqlx::query("set statement_timeout = '200ms'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let purged =
        tillsync::db::idempotency::purge_older_than(&mut conn, Duration::from_secs(7 * 86400))
            .await
            .expect("each chunk of the purge ends well within the statement timeout");
    assert_eq!(purged, 500_000);
    let left: i64 = sqlx::query_scalar("select count(*) from idempotency_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 10, "the recent responses are kept");
}

/// Holds a job's lock the way another replica leading that job would
/// (`tillsync::db::leader`: namespace "tlsy", fold 1, purge 2) until the
/// returned transaction ends.
async fn another_replica_leads(
    db: &sqlx::PgPool,
    job: i32,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(x'746c7379'::int4, $1)")
        .bind(job)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[tokio::test]
async fn a_replica_leaves_the_fold_to_the_replica_that_leads_it() {
    let app = spawn_app().await;
    // Led elsewhere before the deltas exist, so the app's own fold loop
    // cannot fold them either.
    let leader = another_replica_leads(&app.db, 1).await;
    plant_deltas(&app.db, 2_000).await;
    let mut conn = app.db.acquire().await.unwrap();
    let mut quarantine = Quarantine::default();
    let pending = || sqlx::query_scalar::<_, i64>("select count(*) from store_day_deltas");

    fold::tick(&mut conn, &mut quarantine, Instant::now())
        .await
        .unwrap();
    assert_eq!(
        pending().fetch_one(&app.db).await.unwrap(),
        2_000,
        "nothing folded"
    );
    leader.rollback().await.unwrap();

    // Once no other replica leads, this one folds (the app's own fold loop
    // may fold a chunk first: either way every delta ends up folded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending().fetch_one(&app.db).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "deltas still pending");
        fold::tick(&mut conn, &mut quarantine, Instant::now())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_replica_leaves_the_purge_to_the_replica_that_leads_it() {
    let app = spawn_app().await;
    plant_stored_responses(&app.db, 10, 0).await;
    let retention = Duration::from_secs(7 * 86400);
    let mut conn = app.db.acquire().await.unwrap();

    let leader = another_replica_leads(&app.db, 2).await;
    let purged = tillsync::db::idempotency::purge_older_than(&mut conn, retention)
        .await
        .unwrap();
    assert_eq!(purged, 0, "the leading replica purges, not this one");
    leader.rollback().await.unwrap();

    let purged = tillsync::db::idempotency::purge_older_than(&mut conn, retention)
        .await
        .unwrap();
    assert_eq!(purged, 10);
}
