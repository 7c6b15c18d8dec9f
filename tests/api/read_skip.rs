//! Pushes written without a read first (the read-skip cache,
//! src/ingest/read_skip.rs): a replica
//! that wrote a till's last push writes its next push of new sales against
//! the sync row it remembers, and the write's guard catches every case
//! where that memory is wrong. Whichever replica a till's pushes land on,
//! each sale is stored once and counted once, and every answer is the one
//! a push read first would get.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tillsync_testkit::app::{TestApp, Till, spawn_app_with, statuses};
use tillsync_testkit::metrics::sample;
use tillsync_testkit::sales::{refund_of, sale_of, void_of, with};
use uuid::Uuid;

use crate::races::{day_figures, day_totals, sync_of};

async fn push_to(app: &TestApp, address: &str, till: &Till, key: Uuid, sales: &[Value]) -> Value {
    let response = app
        .client
        .post(format!("{address}/v1/sales/batches"))
        .bearer_auth(&till.token)
        .header("Idempotency-Key", key.to_string())
        .json(&json!({ "sales": sales }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_till_moving_between_replicas_stores_each_sale_once() {
    let mut app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let first = app.address.clone();
    let second = app.spawn_second_instance().await;
    let till = app.create_till().await;
    // Each replica's memory of the till goes stale whenever the other one
    // writes in between; two in a row on one replica are guessed right.
    let route = [
        &first, &first, &second, &first, &second, &second, &first, &first,
    ];
    let mut bodies = Vec::new();
    for (seq, address) in (1..).zip(route) {
        let key = Uuid::new_v4();
        let sales = [sale_of(seq, 100 * seq)];
        let body = push_to(&app, address, &till, key, &sales).await;
        assert_eq!(statuses(&body), ["accepted"], "seq {seq}");
        assert_eq!(body["contiguous_through_seq"], seq, "seq {seq}");
        bodies.push((key, sales, body));
    }
    // A replay on the other replica gets the stored answer, and stores nothing.
    let (key, sales, body) = &bodies[3];
    assert_eq!(&push_to(&app, &second, &till, *key, sales).await, body);
    let n = route.len() as i64;
    let sync = sync_of(&app, &till.token).await;
    assert_eq!(sync["contiguous_through_seq"], n);
    assert_eq!(sync["highest_seq"], n);
    assert_eq!(sync["sales_stored"], n);
    assert_eq!(app.stored_count(&till).await, n);
    assert_eq!(
        day_totals(&app, till.terminal_id).await,
        (n, 100 * n * (n + 1) / 2)
    );
}

#[tokio::test]
async fn a_guessed_push_of_a_sale_id_another_till_holds_is_answered_as_if_read_first() {
    let app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let holder = app.create_till().await;
    let other = app.create_till_in(&app.merchant, holder.store_id).await;
    let taken = sale_of(1, 700);
    app.push_ok(&holder, std::slice::from_ref(&taken)).await;
    // The other till's first push makes this replica remember it; its next
    // push qualifies for the guess (a new seq, no void), but its sale id is
    // the holder's, which only the write finds.
    app.push_ok(&other, &[sale_of(1, 300)]).await;
    let clash = with(taken.clone(), json!({"seq": 2}));
    let body = app.push_ok(&other, &[clash, sale_of(3, 300)]).await;
    assert_eq!(statuses(&body), ["rejected:sale_id_conflict", "accepted"]);
    let sync = sync_of(&app, &other.token).await;
    assert_eq!(sync["highest_seq"], 3);
    assert_eq!(
        sync["contiguous_through_seq"], 3,
        "the refused sale's seq is settled"
    );
    assert_eq!(sync["sales_stored"], 2);
    assert_eq!(day_totals(&app, other.terminal_id).await, (2, 600));
    // The holder's sale is untouched.
    assert_eq!(app.stored_count(&holder).await, 1);
    assert_eq!(day_totals(&app, holder.terminal_id).await, (1, 700));
    let owner: Uuid = sqlx::query_scalar("select terminal_id from sales where sale_id = $1")
        .bind(taken["sale_id"].as_str().unwrap().parse::<Uuid>().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(owner, holder.terminal_id);
}

#[tokio::test]
async fn a_group_with_a_clashing_push_writes_the_rest_and_answers_each_its_own() {
    let app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let holder = app.create_till().await;
    let mut tills = Vec::new();
    for _ in 0..12 {
        tills.push(app.create_till_in(&app.merchant, holder.store_id).await);
    }
    let taken = sale_of(1, 900);
    app.push_ok(&holder, std::slice::from_ref(&taken)).await;
    const ROUNDS: i64 = 6;
    for round in 1..=ROUNDS {
        // Till 0 pushes the holder's sale id each round (under its own new
        // seq); the others push new sales, all at once, so they share groups.
        let batches: Vec<Value> = tills
            .iter()
            .enumerate()
            .map(|(i, _)| match i {
                0 => with(taken.clone(), json!({"seq": round})),
                _ => sale_of(round, 100),
            })
            .collect();
        let pushes = tills
            .iter()
            .zip(&batches)
            .map(|(till, sale)| app.push(till, Uuid::new_v4(), std::slice::from_ref(sale)));
        for (i, answer) in futures::future::join_all(pushes)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(answer.status(), StatusCode::OK);
            let body: Value = answer.json().await.unwrap();
            let expected = if i == 0 {
                "rejected:sale_id_conflict"
            } else {
                "accepted"
            };
            assert_eq!(statuses(&body), [expected], "round {round}, till {i}");
        }
    }
    for till in &tills[1..] {
        assert_eq!(app.stored_count(till).await, ROUNDS);
        assert_eq!(
            day_totals(&app, till.terminal_id).await,
            (ROUNDS, ROUNDS * 100)
        );
        assert_eq!(
            sync_of(&app, &till.token).await["contiguous_through_seq"],
            ROUNDS
        );
    }
    assert_eq!(app.stored_count(&tills[0]).await, 0);
    assert_eq!(day_totals(&app, tills[0].terminal_id).await, (0, 0));
    assert_eq!(day_totals(&app, holder.terminal_id).await, (1, 900));
}

#[tokio::test]
async fn voids_and_refunds_are_written_without_a_read_and_answered_as_if_read_first() {
    let app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let address = app.address.clone();
    let till = app.create_till().await;
    let first = sale_of(1, 700);
    let second = sale_of(2, 300);
    // The first push reads; from then on the replica remembers the till,
    // and every push below qualifies for the guess: what a void or refund
    // names is not read at push time (src/ingest/read_skip.rs, unit tests).
    push_to(
        &app,
        &address,
        &till,
        Uuid::new_v4(),
        std::slice::from_ref(&first),
    )
    .await;
    // A void that does not mirror the second sale.
    let mismatched = with(
        void_of(6, &sale_of(6, 299)),
        json!({"refers_to_sale_id": second["sale_id"]}),
    );
    let pushes = [
        vec![second.clone(), refund_of(3, 100, Some(&first))],
        vec![void_of(4, &first)],
        // The first sale is voided already: stored, and takes nothing out.
        vec![void_of(5, &first)],
        vec![mismatched],
    ];
    for sales in pushes {
        let body = push_to(&app, &address, &till, Uuid::new_v4(), &sales).await;
        assert!(statuses(&body).iter().all(|s| s == "accepted"), "{sales:?}");
    }
    app.settled().await;
    // Sales 700 + 300, both voided (one void of the first counts): no sale,
    // three voids.
    assert_eq!(day_figures(&app, till.terminal_id).await, (0, 0, 3));
    assert_eq!(app.stored_count(&till).await, 6);
    // Four pushes skipped their read (this app's own figures), none wrongly.
    assert_eq!(read_skipped(&app, &address).await, (4.0, 0.0));
}

#[tokio::test]
async fn a_till_with_a_gap_pushes_without_reads_and_its_prefix_walks_when_the_gap_fills() {
    let app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let address = app.address.clone();
    let till = app.create_till().await;
    let push = async |sales: &[Value]| {
        let body = push_to(&app, &address, &till, Uuid::new_v4(), sales).await;
        assert!(statuses(&body).iter().all(|s| s == "accepted"), "{body}");
        body
    };
    // Read first (a till this replica never wrote), then seq 2 is held
    // back, as a till sends a void ahead of its queued sale: 3 opens a gap,
    // 4 and 5 go above it.
    push(&[sale_of(1, 100)]).await;
    push(&[sale_of(3, 100)]).await;
    let body = push(&[sale_of(4, 100), sale_of(5, 100)]).await;
    assert_eq!(body["contiguous_through_seq"], 1);
    // Seq 2 fills the gap: this replica wrote every seq above the prefix,
    // so no read either, and the prefix walks over them.
    let body = push(&[sale_of(2, 100)]).await;
    assert_eq!(body["contiguous_through_seq"], 5);
    push(&[sale_of(6, 100)]).await;
    assert_eq!(read_skipped(&app, &address).await, (4.0, 0.0));
    let sync = sync_of(&app, &till.token).await;
    assert_eq!(sync["contiguous_through_seq"], 6);
    assert_eq!(sync["highest_seq"], 6);
    app.settled().await;
    assert_eq!(day_figures(&app, till.terminal_id).await, (6, 600, 0));
    assert_eq!(app.stored_count(&till).await, 6);
}

/// `tillsync_ingest_read_skipped_total` on the replica at `address`:
/// (written, read_again).
async fn read_skipped(app: &TestApp, address: &str) -> (f64, f64) {
    let page = tillsync_testkit::metrics::scrape(&app.client, address).await;
    let count = |result: &str| {
        let label = format!("result=\"{result}\"");
        sample(&page, "tillsync_ingest_read_skipped_total", &[&label]).unwrap_or(0.0)
    };
    (count("written"), count("read_again"))
}

#[tokio::test]
async fn a_till_written_by_another_replica_meanwhile_is_read_again() {
    let mut app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let first = app.address.clone();
    let second = app.spawn_second_instance().await;
    let till = app.create_till().await;
    let sale = sale_of(1, 700);
    push_to(
        &app,
        &first,
        &till,
        Uuid::new_v4(),
        std::slice::from_ref(&sale),
    )
    .await;
    push_to(&app, &first, &till, Uuid::new_v4(), &[sale_of(2, 300)]).await;
    // The second replica voids the first sale.
    let body = push_to(&app, &second, &till, Uuid::new_v4(), &[void_of(3, &sale)]).await;
    assert_eq!(statuses(&body), ["accepted"]);
    // The first replica's guess is refused by the write's guard (another
    // replica wrote the till meanwhile), and the push, read again, is stored:
    // a second void of the sale, which takes nothing out.
    let body = push_to(&app, &first, &till, Uuid::new_v4(), &[void_of(4, &sale)]).await;
    assert_eq!(statuses(&body), ["accepted"]);
    app.settled().await;
    assert_eq!(day_figures(&app, till.terminal_id).await, (1, 300, 2));
    assert_eq!(app.stored_count(&till).await, 4);
    // The first replica skipped one read and guessed wrong once; the second
    // had never written the till.
    assert_eq!(read_skipped(&app, &first).await, (1.0, 1.0));
    assert_eq!(read_skipped(&app, &second).await, (0.0, 0.0));
}
