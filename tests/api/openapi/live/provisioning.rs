//! Provisioning: stores, terminals and revocation, with what both creating
//! routes refuse alike.

use reqwest::RequestBuilder;
use serde_json::json;
use tillsync_testkit::sales::with;
use uuid::Uuid;

use super::driver::{Driver, too_large};

/// What provisioning made, for the operations driven after it.
pub struct Provisioned {
    pub store_id: String,
    pub till_id: String,
    pub till_token: String,
    /// A terminal revoked before it ever pushed.
    pub revoked_id: String,
    /// The revoke URL of that terminal.
    pub revoke_url: String,
}

pub async fn provisioning(d: &mut Driver<'_>, admin_token: &str) -> Provisioned {
    let admin = Some(admin_token);
    let store = json!({"name": "Main Street", "timezone": "Europe/Berlin", "currency": "EUR"});
    let store_id = d.post("/v1/stores", admin, &store, 201).await.json()["store_id"].clone();
    let terminal = json!({"store_id": store_id, "name": "Till 1"});
    let till = d.post("/v1/terminals", admin, &terminal, 201).await.json();
    let till_id = till["terminal_id"].as_str().unwrap().to_owned();
    let till_token = till["token"].as_str().unwrap().to_owned();
    let till = Some(till_token.as_str());
    let huge = too_large();
    let json_body = |body: Vec<u8>| {
        move |r: RequestBuilder| r.header("content-type", "application/json").body(body)
    };
    // What both provisioning routes answer alike.
    for (path, body) in [("/v1/stores", &store), ("/v1/terminals", &terminal)] {
        let cut = b"{\"name\":".to_vec();
        d.call("POST", path, path, admin, 400, json_body(cut)).await;
        d.post(path, None, body, 401).await;
        d.post(path, till, body, 403).await;
        d.call("POST", path, path, admin, 413, json_body(huge.clone()))
            .await;
        let text = body.to_string();
        d.call("POST", path, path, admin, 415, |r| r.body(text))
            .await;
    }
    d.post(
        "/v1/stores",
        admin,
        &with(store.clone(), json!({"timezone": "Mars/Olympus"})),
        422,
    )
    .await;
    d.post(
        "/v1/terminals",
        admin,
        &json!({"store_id": Uuid::new_v4(), "name": "T"}),
        404,
    )
    .await;
    d.post(
        "/v1/terminals",
        admin,
        &with(terminal.clone(), json!({"name": " "})),
        422,
    )
    .await;
    let spare = d.post("/v1/terminals", admin, &terminal, 201).await.json();
    let revoke = "/v1/terminals/{terminal_id}/revoke";
    let url = format!(
        "/v1/terminals/{}/revoke",
        spare["terminal_id"].as_str().unwrap()
    );
    d.call("POST", revoke, &url, admin, 200, |r| r).await;
    d.call(
        "POST",
        revoke,
        "/v1/terminals/not-a-uuid/revoke",
        admin,
        404,
        |r| r,
    )
    .await;
    d.call("POST", revoke, &url, till, 403, |r| r).await;
    d.call("POST", revoke, &url, None, 401, |r| r).await;
    Provisioned {
        store_id: store_id.as_str().unwrap().to_owned(),
        till_id,
        revoked_id: spare["terminal_id"].as_str().unwrap().to_owned(),
        till_token,
        revoke_url: url,
    }
}
