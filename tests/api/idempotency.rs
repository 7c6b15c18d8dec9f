//! Idempotency-Key: byte-for-byte replay, reuse with another body, and
//! concurrent pushes of the same batch.

use reqwest::StatusCode;
use uuid::Uuid;

use tillsync_testkit::sales::sale;
use tillsync_testkit::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn replaying_a_batch_returns_the_first_response_byte_for_byte() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let key = Uuid::new_v4();
    let sales = [sale(1), sale(2)];
    let first = app.push(&till, key, &sales).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = first.bytes().await.unwrap();

    let replay = app.push(&till, key, &sales).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.bytes().await.unwrap(), first);
    assert_eq!(app.stored_count(&till).await, 2);
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_422_and_stores_nothing() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let key = Uuid::new_v4();
    assert_eq!(
        app.push(&till, key, &[sale(1)]).await.status(),
        StatusCode::OK
    );
    let response = app.push(&till, key, &[sale(2)]).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(app.stored_count(&till).await, 1);
}

#[tokio::test]
async fn a_request_right_after_a_replay_or_a_refusal_finds_the_key_free() {
    let app = spawn_app_with(&["--terminal-rate", "0"]).await;
    let till = app.create_till().await;
    for _ in 0..200 {
        let key = Uuid::new_v4();
        let sales = [sale(1)];
        assert_eq!(app.push(&till, key, &sales).await.status(), StatusCode::OK);
        // Nothing holds the key once its request is answered.
        let replay = app.push(&till, key, &sales).await;
        assert_eq!(replay.status(), StatusCode::OK);
        let reused = app.push(&till, key, &[sale(2)]).await;
        assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let replay = app.push(&till, key, &sales).await;
        assert_eq!(replay.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn keys_belong_to_one_till() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let other = app.create_till_in(&app.merchant, till.store_id).await;
    let key = Uuid::new_v4();
    assert_eq!(
        app.push(&till, key, &[sale(1)]).await.status(),
        StatusCode::OK
    );
    let response = app.push(&other, key, &[sale(1)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.stored_count(&other).await, 1);
}

#[tokio::test]
async fn the_same_batch_pushed_four_times_at_once_is_stored_once_and_all_get_its_answer() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let sales: Vec<_> = (1..=200).map(sale).collect();
    for _round in 0..3 {
        let key = Uuid::new_v4();
        let (a, b, c, d) = tokio::join!(
            app.push(&till, key, &sales),
            app.push(&till, key, &sales),
            app.push(&till, key, &sales),
            app.push(&till, key, &sales),
        );
        let mut fresh = 0;
        let mut bodies = Vec::new();
        for response in [a, b, c, d] {
            // The ones written second find the first one's stored response:
            // none waits for a retry (no 409), none fails.
            assert_eq!(response.status(), StatusCode::OK);
            if response.headers().get("idempotent-replayed").is_none() {
                fresh += 1;
            }
            bodies.push(response.bytes().await.unwrap());
        }
        assert_eq!(fresh, 1, "exactly one request did the work");
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "every racer got the same answer"
        );
    }
    assert_eq!(app.stored_count(&till).await, 200);
    // Whatever answers the racers got, a final replay says what happened.
    let settled = app.push_ok(&till, &sales).await;
    assert_eq!(settled["duplicates"], 200);
}

#[tokio::test]
async fn stored_responses_past_retention_are_purged_and_sales_still_deduplicate() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let key = Uuid::new_v4();
    let sales = [sale(1)];
    assert_eq!(app.push(&till, key, &sales).await.status(), StatusCode::OK);
    sqlx::query("update idempotency_keys set created_at = now() - interval '8 days'")
        .execute(&app.db)
        .await
        .unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    let purged = tillsync::db::idempotency::purge_older_than(
        &mut conn,
        std::time::Duration::from_secs(7 * 86400),
    )
    .await
    .unwrap();
    assert_eq!(purged, 1);
    // A replay after the purge is answered by per-sale deduplication.
    let response = app.push(&till, key, &sales).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["duplicates"], 1);
    assert_eq!(app.stored_count(&till).await, 1);
}
