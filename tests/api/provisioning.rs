//! Merchants, stores, terminals, tokens and tenancy.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use tillsync_testkit::sales::sale;
use tillsync_testkit::{assert_problem, spawn_app};

#[tokio::test]
async fn a_provisioned_till_can_push_with_its_token() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    assert!(till.token.starts_with("tst_"));
    let body = app.push_ok(&till, &[sale(1)]).await;
    assert_eq!(body["accepted"], 1);
    assert_eq!(app.stored_count(&till).await, 1);
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let rows: Vec<String> = sqlx::query_scalar(
        "select t::text from terminals t union all select a::text from admin_tokens a",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    for token in [&till.token, &app.merchant.token] {
        let secret = token.rsplit('_').next().unwrap();
        assert!(
            rows.iter().all(|row| !row.contains(secret)),
            "a secret is stored in clear"
        );
    }
    let hashed: bool = sqlx::query_scalar(
        "select token_hash = sha256(convert_to($1, 'UTF8')) from terminals where terminal_id = $2",
    )
    .bind(&till.token)
    .bind(till.terminal_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(hashed, "the stored value is the token's SHA-256");
}

#[tokio::test]
async fn store_settings_are_checked() {
    let app = spawn_app().await;
    let token = &app.merchant.token;
    let cases = [
        (
            json!({"name": "S", "timezone": "Mars/Olympus", "currency": "EUR"}),
            "invalid_timezone",
        ),
        (
            json!({"name": "S", "timezone": "Europe/Berlin", "currency": "EURO"}),
            "invalid_currency",
        ),
        (
            json!({"name": "  ", "timezone": "Europe/Berlin", "currency": "EUR"}),
            "invalid_name",
        ),
        (
            json!({"name": "S", "timezone": "Europe/Berlin"}),
            "invalid_body",
        ),
    ];
    for (body, code) in cases {
        let response = app.post_json("/v1/stores", token, &body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    let stores: i64 = sqlx::query_scalar("select count(*) from stores")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stores, 0, "nothing is stored from a refused request");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthorized() {
    let app = spawn_app().await;
    let well_formed_but_unknown = format!(
        "tsa_{}_{}",
        app.merchant.merchant_id.simple(),
        "A".repeat(43)
    );
    for token in ["", "garbage", well_formed_but_unknown.as_str()] {
        let response = app.post_json("/v1/stores", token, &json!({})).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let response = app
        .client
        .get(format!("{}/v1/sync", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_till_token_cannot_provision_and_an_admin_token_cannot_push() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let response = app
        .post_json(
            "/v1/stores",
            &till.token,
            &json!({"name": "S", "timezone": "UTC", "currency": "EUR"}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get("/v1/sync", &app.merchant.token).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn another_merchants_objects_look_like_missing_ones() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let rival = app.create_merchant("Rival").await;

    let response = app
        .post_json(
            "/v1/terminals",
            &rival.token,
            &json!({"store_id": till.store_id, "name": "Spy"}),
        )
        .await;
    let theirs = assert_problem(response, StatusCode::NOT_FOUND, "store_not_found").await;
    let response = app
        .post_json(
            "/v1/terminals",
            &rival.token,
            &json!({"store_id": Uuid::new_v4(), "name": "Spy"}),
        )
        .await;
    let missing = assert_problem(response, StatusCode::NOT_FOUND, "store_not_found").await;
    assert_eq!(theirs, missing, "no difference between foreign and missing");

    let path = format!("/v1/terminals/{}/revoke", till.terminal_id);
    let response = app.post_json(&path, &rival.token, &json!({})).await;
    assert_problem(response, StatusCode::NOT_FOUND, "terminal_not_found").await;
    // The rival's attempt changed nothing: the till still pushes.
    app.push_ok(&till, &[sale(1)]).await;

    let rival_conflicts: serde_json::Value = app
        .get("/v1/conflicts", &rival.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rival_conflicts["conflicts"], json!([]));
}

#[tokio::test]
async fn a_revoked_till_is_refused_at_once_here_and_within_5s_on_other_instances() {
    let mut app = spawn_app().await;
    let second = app.spawn_second_instance().await;
    let till = app.create_till().await;
    // Both instances have the token cached as valid.
    app.push_ok(&till, &[sale(1)]).await;
    let sync_on_second = |token: String| {
        let client = app.client.clone();
        let url = format!("{second}/v1/sync");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(sync_on_second(till.token.clone()).await, StatusCode::OK);

    let path = format!("/v1/terminals/{}/revoke", till.terminal_id);
    let response = app.post_json(&path, &app.merchant.token, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["revoked"], true);

    let response = app.push(&till, Uuid::new_v4(), &[sale(2)]).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let revoked_at = Instant::now();
    loop {
        if sync_on_second(till.token.clone()).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.stored_count(&till).await, 1);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let response = app
        .client
        .get(format!("{}/v1/sync", app.address))
        .header("Authorization", format!("bearer {}", till.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
