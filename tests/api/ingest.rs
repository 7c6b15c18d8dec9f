//! POST /v1/sales/batches: per-sale results, rules, deduplication, limits.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use tillsync_testkit::sales::{refund_of, sale, sale_of, void_of, with};
use tillsync_testkit::{assert_problem, spawn_app, statuses};

#[tokio::test]
async fn a_batch_is_committed_when_the_answer_is_200() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let sales: Vec<Value> = (1..=100).map(sale).collect();
    let body = app.push_ok(&till, &sales).await;
    assert_eq!(
        (
            body["accepted"].as_i64(),
            body["duplicates"].as_i64(),
            body["rejected"].as_i64()
        ),
        (Some(100), Some(0), Some(0))
    );
    assert_eq!(body["contiguous_through_seq"], 100);
    assert_eq!(body["results"].as_array().unwrap().len(), 100);
    assert_eq!(body["results"][7]["sale_id"], sales[7]["sale_id"]);
    assert_eq!(app.stored_count(&till).await, 100);
    let business_date: String = sqlx::query_scalar("select business_date::text from sales limit 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(business_date, "2026-11-20");
}

#[tokio::test]
async fn a_sale_pushed_again_is_a_duplicate_whatever_the_key() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let sales = [sale(1), sale(2)];
    app.push_ok(&till, &sales).await;
    // The same sale spelled with another offset for the same instant is the same content.
    let respelled = with(
        sales[0].clone(),
        json!({"occurred_at": "2026-11-20T09:15:00Z"}),
    );
    let body = app
        .push_ok(&till, &[respelled, sales[1].clone(), sale(3)])
        .await;
    assert_eq!(statuses(&body), ["duplicate", "duplicate", "accepted"]);
    assert_eq!(body["duplicates"], 2);
    assert_eq!(app.stored_count(&till).await, 3);
}

#[tokio::test]
async fn a_bad_sale_is_rejected_alone_and_the_rest_is_stored() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let unbalanced = with(sale(2), json!({"total_minor": 1249}));
    let not_a_sale = json!({"sale_id": Uuid::new_v4(), "seq": "three"});
    let future = with(sale(4), json!({"occurred_at": "2099-01-01T00:00:00Z"}));
    let negative = with(
        sale_of(5, 0),
        json!({"total_minor": -5, "lines": [{"sku": "X", "quantity": 1, "amount_minor": -5}], "tenders": [{"method": "cash", "amount_minor": -5}]}),
    );
    let body = app
        .push_ok(
            &till,
            &[
                sale(1),
                unbalanced,
                not_a_sale.clone(),
                future,
                negative,
                sale(6),
                json!(42),
            ],
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "accepted",
            "rejected:lines_total_mismatch",
            "rejected:invalid_sale",
            "rejected:occurred_at_in_future",
            "rejected:negative_total",
            "accepted",
            "rejected:invalid_sale"
        ]
    );
    assert_eq!(body["results"][2]["sale_id"], not_a_sale["sale_id"]);
    let detail = body["results"][2]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("seq: invalid type"),
        "the detail names the member: {detail}"
    );
    assert_eq!(body["results"][6]["sale_id"], Value::Null);
    assert_eq!(app.stored_count(&till).await, 2);
}

#[tokio::test]
async fn a_changed_sale_under_a_stored_id_is_kept_for_review_and_changes_nothing() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let original = sale_of(1, 1000);
    app.push_ok(&till, std::slice::from_ref(&original)).await;
    let tampered = with(
        sale_of(1, 2000),
        json!({"sale_id": original["sale_id"].clone()}),
    );
    let body = app.push_ok(&till, std::slice::from_ref(&tampered)).await;
    assert_eq!(statuses(&body), ["rejected:sale_id_conflict"]);

    let stored_total: i64 = sqlx::query_scalar("select total_minor from sales where sale_id = $1")
        .bind(
            original["sale_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored_total, 1000, "the stored sale is unchanged");

    let review: Value = app
        .get("/v1/conflicts", &app.merchant.token)
        .await
        .json()
        .await
        .unwrap();
    let conflicts = review["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["sale_id"], original["sale_id"]);
    assert_eq!(conflicts[0]["terminal_id"], till.terminal_id.to_string());
    assert_eq!(conflicts[0]["payload"]["total_minor"], 2000);
}

/// A seq serves gap detection, never identity (a till restored from a
/// backup reissues seqs): a different sale holding a stored seq is stored
/// by its `sale_id`, and the seq is listed for the back office
/// (`tests/api/facts.rs` has the rest of it).
#[tokio::test]
async fn a_different_sale_reusing_a_stored_seq_is_stored() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    app.push_ok(&till, &[sale(1)]).await;
    let body = app.push_ok(&till, &[sale(1), sale(2), sale(2)]).await;
    assert_eq!(statuses(&body), ["accepted", "accepted", "accepted"]);
    assert_eq!(app.stored_count(&till).await, 4);
    // Another till has its own counter.
    let other = app.create_till_in(&app.merchant, till.store_id).await;
    assert_eq!(
        statuses(&app.push_ok(&other, &[sale(1)]).await),
        ["accepted"]
    );
}

/// What a void names is not checked at push time: a void of a sale of
/// another till, of a sale not stored, or of a sale voided already is
/// stored, and resolved in the background (`tests/api/facts.rs`). Only a
/// void that names nothing is invalid.
#[tokio::test]
async fn a_void_is_stored_whatever_it_names() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let other_till = app.create_till_in(&app.merchant, till.store_id).await;
    let theirs = sale(1);
    app.push_ok(&other_till, std::slice::from_ref(&theirs))
        .await;

    let mine = sale(1);
    let mut wrong_amounts = void_of(3, &mine);
    wrong_amounts["tax_minor"] = json!(0);
    let body = app
        .push_ok(
            &till,
            &[
                mine.clone(),
                wrong_amounts,
                void_of(4, &theirs),
                with(void_of(5, &mine), json!({"refers_to_sale_id": null})),
                void_of(6, &sale(99)),
                void_of(7, &mine),
            ],
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "accepted",
            "accepted",
            "accepted",
            "rejected:void_target_missing",
            "accepted",
            "accepted"
        ]
    );
}

#[tokio::test]
async fn refunds_are_their_own_rows_with_positive_amounts() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let original = sale_of(1, 1000);
    let body = app
        .push_ok(
            &till,
            &[
                original.clone(),
                refund_of(2, 400, Some(&original)),
                refund_of(3, 100, None),
            ],
        )
        .await;
    assert_eq!(statuses(&body), ["accepted", "accepted", "accepted"]);
    let kinds: Vec<String> = sqlx::query_scalar("select kind from sales order by seq")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(kinds, ["sale", "refund", "refund"]);
}

#[tokio::test]
async fn ingest_never_updates_a_stored_sale_row() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let original = sale(1);
    app.push_ok(&till, &[original.clone(), sale(2)]).await;
    let versions = || async {
        sqlx::query_scalar::<_, String>("select xmin::text || ctid::text from sales order by seq")
            .fetch_all(&app.db)
            .await
            .unwrap()
    };
    let before = versions().await;
    app.push_ok(
        &till,
        &[
            original.clone(),
            with(original.clone(), json!({"tax_minor": 0})),
            void_of(3, &original),
        ],
    )
    .await;
    let after = versions().await;
    assert_eq!(
        before[..],
        after[..2],
        "existing rows keep their row version"
    );
    assert_eq!(after.len(), 3);
}

#[tokio::test]
async fn the_same_sale_in_two_batches_at_once_is_stored_once() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    for round in 0..5 {
        let shared = sale(round * 3 + 1);
        let a = [shared.clone(), sale(round * 3 + 2)];
        let b = [shared.clone(), sale(round * 3 + 3)];
        let (ra, rb) = tokio::join!(
            app.push(&till, Uuid::new_v4(), &a),
            app.push(&till, Uuid::new_v4(), &b)
        );
        let (ba, bb): (Value, Value) = (ra.json().await.unwrap(), rb.json().await.unwrap());
        let mut first = [statuses(&ba)[0].clone(), statuses(&bb)[0].clone()];
        first.sort();
        assert_eq!(first, ["accepted", "duplicate"], "round {round}");
    }
    assert_eq!(app.stored_count(&till).await, 15);
}

#[tokio::test]
async fn malformed_json_is_400_with_its_position() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let response = app
        .push_raw(&till, &Uuid::new_v4().to_string(), "{\"sales\": [1,}")
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("line 1 column 14"),
        "{problem}"
    );
    let response = app
        .push_raw(&till, &Uuid::new_v4().to_string(), "{\"sales\": {}}")
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_batch").await;
}

#[tokio::test]
async fn batch_size_and_body_size_are_limited() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let too_many: Vec<Value> = (1..=501).map(|s| sale_of(s, 2)).collect();
    let response = app.push(&till, Uuid::new_v4(), &too_many).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "batch_too_large",
    )
    .await;
    let response = app.push(&till, Uuid::new_v4(), &[]).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "batch_empty").await;

    let mut huge = sale(1);
    huge["lines"][0]["description"] = json!("x".repeat(1024 * 1024));
    let response = app.push(&till, Uuid::new_v4(), &[huge]).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    let full: Vec<Value> = (1..=500).map(|s| sale_of(s, 2)).collect();
    assert_eq!(app.push_ok(&till, &full).await["accepted"], 500);
    assert_eq!(app.stored_count(&till).await, 500);
}

#[tokio::test]
async fn a_missing_or_malformed_idempotency_key_is_400() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let body = serde_json::to_vec(&json!({"sales": [sale(1)]})).unwrap();
    let response = app
        .client
        .post(format!("{}/v1/sales/batches", app.address))
        .bearer_auth(&till.token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "idempotency_key_missing").await;
    let response = app.push_raw(&till, "not-a-uuid", body).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "idempotency_key_invalid").await;
    assert_eq!(app.stored_count(&till).await, 0);
}
