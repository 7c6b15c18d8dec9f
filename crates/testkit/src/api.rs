//! The calls of the public API that tests and benchmarks make over and
//! over, against any server (`base` is its `http://host:port`). Failures
//! panic: these set up what a test or benchmark is about, they are not it.

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::Till;

/// POSTs `body` as JSON to `url` with a bearer token; the answer as it came.
pub async fn post_json(client: &Client, url: &str, token: &str, body: &Value) -> Response {
    client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// POSTs `body` and expects `201 Created`; returns the created resource.
pub async fn create(client: &Client, url: &str, token: &str, body: &Value) -> Value {
    let response = post_json(client, url, token, body).await;
    assert_eq!(response.status(), StatusCode::CREATED, "POST {url}");
    response.json().await.expect("a JSON answer")
}

/// A new store of the merchant whose admin token this is; its id.
pub async fn create_store(
    client: &Client,
    base: &str,
    admin_token: &str,
    timezone: &str,
    currency: &str,
) -> Uuid {
    let body = json!({"name": "Store", "timezone": timezone, "currency": currency});
    let store = create(client, &format!("{base}/v1/stores"), admin_token, &body).await;
    store["store_id"].as_str().unwrap().parse().unwrap()
}

/// A new till (terminal) in the store, with its token.
pub async fn create_till(
    client: &Client,
    base: &str,
    admin_token: &str,
    store_id: Uuid,
    name: &str,
) -> Till {
    let body = json!({"store_id": store_id, "name": name});
    let till = create(client, &format!("{base}/v1/terminals"), admin_token, &body).await;
    Till {
        terminal_id: till["terminal_id"].as_str().unwrap().parse().unwrap(),
        store_id,
        token: till["token"].as_str().unwrap().to_owned(),
    }
}

/// A new store and `count` tills in it, created one after the other.
pub async fn create_tills(
    client: &Client,
    base: &str,
    admin_token: &str,
    timezone: &str,
    count: usize,
) -> Vec<Till> {
    let store_id = create_store(client, base, admin_token, timezone, "EUR").await;
    let mut tills = Vec::with_capacity(count);
    for number in 1..=count {
        let name = format!("Till {number}");
        tills.push(create_till(client, base, admin_token, store_id, &name).await);
    }
    tills
}
