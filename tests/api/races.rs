//! Ingest reads, decides, then writes in one statement that checks what it
//! read (src/ingest/mod.rs). These are the races that check is for: pushes
//! of one till arriving together, tills of one merchant racing for a sale
//! id, a client hanging up mid-push, the link cut mid-push. Whatever the
//! interleaving, every sale is stored once, counted once, and each request
//! gets its own correct answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tillsync_testkit::app::{
    TestApp, assert_problem, spawn_app_behind_proxy, spawn_app_with, statuses,
};
use tillsync_testkit::metrics::sample;
use tillsync_testkit::proxy::Fault;
use tillsync_testkit::sales::{sale, sale_of};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// The till's day totals as the reports keep them (folded, plus the
/// deltas the fold has not moved yet): count and gross.
pub(crate) async fn day_totals(app: &TestApp, terminal_id: Uuid) -> (i64, i64) {
    let (sales, gross, _) = day_figures(app, terminal_id).await;
    (sales, gross)
}

/// The same with the voids: sales, gross, voids.
pub(crate) async fn day_figures(app: &TestApp, terminal_id: Uuid) -> (i64, i64, i64) {
    sqlx::query_as(
        "select coalesce(sum(sales_count), 0)::int8, coalesce(sum(gross_minor), 0)::int8,
                coalesce(sum(voids_count), 0)::int8
           from (select sales_count, gross_minor, voids_count
                   from sales_day_totals where terminal_id = $1
                 union all
                 select sales_count, gross_minor, voids_count
                   from store_day_deltas where terminal_id = $1) t",
    )
    .bind(terminal_id)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// `GET /v1/sync` of the till with this token, expected 200.
pub(crate) async fn sync_of(app: &TestApp, token: &str) -> Value {
    let response = app.get("/v1/sync", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn pushes_of_one_till_arriving_together_all_commit_one_after_another() {
    let app = spawn_app_with_room().await;
    let till = app.create_till().await;
    const PUSHES: i64 = 4;
    const ROUNDS: i64 = 10;
    for round in 0..ROUNDS {
        // Push k of round r holds seq r*4 + k + 1: the prefix can only
        // reach the end if every push's sync update saw the others.
        let base = round * PUSHES;
        let batches: Vec<[Value; 1]> = (0..PUSHES).map(|k| [sale_of(base + k + 1, 500)]).collect();
        let pushes = batches.iter().map(|b| app.push(&till, Uuid::new_v4(), b));
        for response in futures::future::join_all(pushes).await {
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.unwrap();
            assert_eq!(statuses(&body), ["accepted"], "round {round}");
        }
    }
    let total = PUSHES * ROUNDS;
    let sync = sync_of(&app, &till.token).await;
    assert_eq!(sync["contiguous_through_seq"], total);
    assert_eq!(sync["highest_seq"], total);
    assert_eq!(sync["sales_stored"], total);
    assert_eq!(app.stored_count(&till).await, total);
    assert_eq!(
        day_totals(&app, till.terminal_id).await,
        (total, total * 500)
    );
}

/// The same sale id sent by two tills of one merchant at once: the read of
/// each may miss the other's sale, and then the write finds it and reads
/// again. One till stores it; the other is told it conflicts.
#[tokio::test]
async fn tills_racing_for_one_sale_id_store_it_once_and_count_it_once() {
    let app = spawn_app_with_room().await;
    let a = app.create_till().await;
    let b = app.create_till_in(&app.merchant, a.store_id).await;
    const ROUNDS: i64 = 20;
    for round in 1..=ROUNDS {
        let shared = sale(round);
        let (ra, rb) = tokio::join!(
            app.push(&a, Uuid::new_v4(), std::slice::from_ref(&shared)),
            app.push(&b, Uuid::new_v4(), std::slice::from_ref(&shared)),
        );
        let (ba, bb): (Value, Value) = (ra.json().await.unwrap(), rb.json().await.unwrap());
        let mut outcomes = [statuses(&ba)[0].clone(), statuses(&bb)[0].clone()];
        outcomes.sort();
        assert_eq!(outcomes[0], "accepted", "round {round}: {outcomes:?}");
        assert_ne!(outcomes[1], "accepted", "round {round}: {outcomes:?}");
    }
    let stored = app.stored_count(&a).await + app.stored_count(&b).await;
    assert_eq!(stored, ROUNDS);
    let (count_a, _) = day_totals(&app, a.terminal_id).await;
    let (count_b, _) = day_totals(&app, b.terminal_id).await;
    assert_eq!(count_a, app.stored_count(&a).await);
    assert_eq!(count_b, app.stored_count(&b).await);
}

/// A till that hangs up right after sending: the batch is stored whole or
/// not at all, and the replay under the same key says which.
#[tokio::test]
async fn a_client_hanging_up_mid_push_leaves_its_batch_whole_or_absent() {
    let app = spawn_app_with_room().await;
    let till = app.create_till().await;
    let authority = app.address.trim_start_matches("http://").to_owned();
    let mut expected = 0;
    for round in 0..20_i64 {
        let sales: Vec<Value> = (1..=50).map(|i| sale(round * 50 + i)).collect();
        let body = serde_json::to_vec(&json!({ "sales": sales })).unwrap();
        let key = Uuid::new_v4();
        let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let head = format!(
            "POST /v1/sales/batches HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {}\r\n\
             idempotency-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            till.token,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        // Hang up at a different point of the server's work each round.
        tokio::time::sleep(Duration::from_micros(round as u64 * 400)).await;
        drop(stream);

        let replay = app.push(&till, key, &sales).await;
        assert_eq!(replay.status(), StatusCode::OK, "round {round}");
        let answer: Value = replay.json().await.unwrap();
        assert_eq!(answer["accepted"], 50, "round {round}: {answer}");
        expected += 50;
        assert_eq!(app.stored_count(&till).await, expected, "round {round}");
    }
    assert_eq!(day_totals(&app, till.terminal_id).await.0, expected);
    assert_eq!(
        sync_of(&app, &till.token).await["contiguous_through_seq"],
        expected
    );
}

/// The link to Postgres reset again and again while a till pushes: a push
/// answered 200 is stored, one that failed is retried under its key until
/// it is, and in the end nothing is missing, doubled or counted twice.
#[tokio::test]
async fn a_link_cut_mid_push_loses_and_doubles_nothing() {
    let (app, proxy) = spawn_app_behind_proxy(&["--terminal-rate", "0"]).await;
    let till = app.create_till().await;
    let pushes: Vec<(Uuid, Vec<Value>)> = (0..40_i64)
        .map(|p| {
            (
                Uuid::new_v4(),
                (1..=5).map(|i| sale_of(p * 5 + i, 700)).collect(),
            )
        })
        .collect();
    let cutter = async {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            proxy.set(Fault::Reset);
            tokio::time::sleep(Duration::from_millis(15)).await;
            proxy.set(Fault::Pass);
        }
    };
    let pusher = async {
        for (key, sales) in &pushes {
            // Until one answer is a 200: the first, or a replay of it.
            for attempt in 0.. {
                let response = app.push(&till, *key, sales).await;
                match response.status() {
                    StatusCode::OK => break,
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert!(attempt < 200, "push {key} never got through");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("push {key}: unexpected {other}"),
                }
            }
        }
    };
    tokio::join!(cutter, pusher);
    proxy.set(Fault::Pass);
    assert_eq!(app.stored_count(&till).await, 200);
    assert_eq!(day_totals(&app, till.terminal_id).await, (200, 200 * 700));
    let sync = sync_of(&app, &till.token).await;
    assert_eq!(sync["contiguous_through_seq"], 200);
    assert_eq!(sync["sales_stored"], 200);
}

/// Pushes of many tills at once go to Postgres in groups (src/ingest/write.rs).
/// One push of such a group fails inside the write (a trigger planted for
/// the test refuses its till's totals delta as out of range, as a database
/// refusing it for its data would): it alone is rolled back and answered
/// with the problem; every other push of the group is stored and counted.
#[tokio::test]
async fn a_push_failing_inside_its_group_fails_alone() {
    let app = spawn_app_with_room().await;
    let bad = app.create_till().await;
    let mut good = Vec::new();
    for _ in 0..7 {
        good.push(app.create_till_in(&app.merchant, bad.store_id).await);
    }
    sqlx::raw_sql(&format!(
        "create function refuse_the_bad_till() returns trigger language plpgsql as $$
         begin
             if new.terminal_id = '{}' then
                 raise exception 'planted: out of range' using errcode = '22003';
             end if;
             return new;
         end $$;
         create trigger refuse_the_bad_till before insert on store_day_deltas
            for each row execute function refuse_the_bad_till();",
        bad.terminal_id
    ))
    .execute(&app.db)
    .await
    .unwrap();
    const ROUNDS: i64 = 10;
    for round in 1..=ROUNDS {
        let batches: Vec<[Value; 1]> = (0..good.len()).map(|_| [sale_of(round, 300)]).collect();
        let overflowing = [sale_of(round + 1, 1000)];
        let good_pushes = good
            .iter()
            .zip(&batches)
            .map(|(till, batch)| app.push(till, Uuid::new_v4(), batch));
        let (answers, bad_answer) = tokio::join!(
            futures::future::join_all(good_pushes),
            app.push(&bad, Uuid::new_v4(), &overflowing)
        );
        for answer in answers {
            assert_eq!(answer.status(), StatusCode::OK);
            let body: Value = answer.json().await.unwrap();
            assert_eq!(statuses(&body), ["accepted"], "round {round}");
        }
        assert_problem(
            bad_answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "total_out_of_range",
        )
        .await;
    }
    for till in &good {
        assert_eq!(app.stored_count(till).await, ROUNDS);
        assert_eq!(
            day_totals(&app, till.terminal_id).await,
            (ROUNDS, ROUNDS * 300)
        );
    }
    assert_eq!(app.stored_count(&bad).await, 0);
    // This app's own figures: every push went through a group (the bad one
    // once a round), and pushes shared groups.
    let page = tillsync_testkit::metrics::scrape(&app.client, &app.address).await;
    let series = |name: &str| sample(&page, name, &[]).unwrap_or_else(|| panic!("{name}"));
    let (pushes, groups) = (
        series("tillsync_ingest_group_size_sum"),
        series("tillsync_ingest_group_size_count"),
    );
    let written = (ROUNDS * (good.len() as i64 + 1)) as f64;
    assert!(
        pushes >= written,
        "{pushes} pushes in groups, {written} written"
    );
    assert!(pushes > groups, "{pushes} pushes went in {groups} groups");
}

/// A server without the per-till rate limit, so tests can push as fast as
/// they like.
async fn spawn_app_with_room() -> TestApp {
    spawn_app_with(&["--terminal-rate", "0"]).await
}
