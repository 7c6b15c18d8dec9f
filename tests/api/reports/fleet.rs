//! `GET /v1/terminals`: each till's progress.

use serde_json::{Value, json};
use tillsync_testkit::sales::sale;
use tillsync_testkit::spawn_app;

#[tokio::test]
async fn the_fleet_view_shows_each_tills_progress() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let revoked = app.create_till_in(&app.merchant, till.store_id).await;
    app.push_ok(&till, &[sale(1), sale(2), sale(5)]).await;
    app.post_json(
        &format!("/v1/terminals/{}/revoke", revoked.terminal_id),
        &app.merchant.token,
        &json!({}),
    )
    .await;
    let fleet: Value = app
        .get(
            &format!("/v1/terminals?store_id={}", till.store_id),
            &app.merchant.token,
        )
        .await
        .json()
        .await
        .unwrap();
    let terminals = fleet["terminals"].as_array().unwrap();
    assert_eq!(terminals.len(), 2);
    let mine = terminals
        .iter()
        .find(|t| t["terminal_id"] == till.terminal_id.to_string())
        .unwrap();
    assert_eq!(
        (
            mine["highest_seq"].as_i64(),
            mine["contiguous_through_seq"].as_i64(),
            mine["missing_count"].as_i64()
        ),
        (Some(5), Some(2), Some(2))
    );
    assert_eq!(mine["revoked"], false);
    assert!(mine["last_seen_at"].is_string());
    let gone = terminals
        .iter()
        .find(|t| t["terminal_id"] == revoked.terminal_id.to_string())
        .unwrap();
    assert_eq!(gone["revoked"], true);
    assert_eq!(gone["last_seen_at"], Value::Null);
}
