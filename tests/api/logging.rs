//! The logs of the real binary: with `TILLSYNC_LOG_FORMAT=json` every line
//! is one JSON object, every line of a request carries its id, each request
//! is logged once with status and duration, and no token or sale payload is
//! ever written, not even at debug level.

use std::time::Duration;

use serde_json::{Value, json};
use tillsync::domain::token::{self, TokenKind};
use uuid::Uuid;

use tillsync_testkit::database::{drop_database, fresh_name};
use tillsync_testkit::sales::with;
use tillsync_testkit::server_url;

use crate::support::tillsync;

/// What the test sent, to look for in the logs afterwards.
struct Sent {
    batch_request_id: String,
    secrets: Vec<String>,
}

async fn traffic(address: &str, admin_token: &str) -> Sent {
    let client = reqwest::Client::new();
    let post = |path: &str, token: &str, request_id: &str| {
        client
            .post(format!("{address}{path}"))
            .bearer_auth(token)
            .header("x-request-id", request_id)
    };
    let store: Value = post("/v1/stores", admin_token, "log-test-store")
        .json(&json!({"name": "S", "timezone": "Europe/Berlin", "currency": "EUR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let till: Value = post("/v1/terminals", admin_token, "log-test-till")
        .json(&json!({"store_id": store["store_id"], "name": "Till"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let till_token = till["token"].as_str().unwrap().to_owned();

    // A payload with a recognisable sku, to make sure bodies stay out.
    let sku = format!("SKU-{}", Uuid::new_v4().simple());
    let sale = with(
        tillsync_testkit::sales::sale(1),
        json!({"lines": [{"sku": sku, "quantity": 1, "amount_minor": 1250}]}),
    );
    let batch_request_id = format!("log-test-batch-{}", Uuid::new_v4().simple());
    let pushed = post("/v1/sales/batches", &till_token, &batch_request_id)
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(&json!({"sales": [sale]}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), reqwest::StatusCode::OK);

    // A well-formed token that is not known: refused, and not logged either.
    let (forged, _) = token::generate(TokenKind::Terminal, Uuid::new_v4());
    let refused = client
        .get(format!("{address}/v1/sync"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    let mut secrets = vec![sku];
    for token in [admin_token, &till_token, &forged] {
        secrets.push(token.to_owned());
        // The secret part alone, in case something logs a token in pieces.
        secrets.push(token.splitn(3, '_').nth(2).unwrap().to_owned());
    }
    Sent {
        batch_request_id,
        secrets,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_request_id_and_never_a_token_or_a_payload() {
    let name = fresh_name("tillsync_test_logs");
    let database_url = format!("{}/{name}", server_url());
    let admin_token = tillsync()
        .create_merchant(&database_url, "Corner Shop")
        .token;
    let served = tokio::task::spawn_blocking(move || {
        tillsync().serve(&[
            ("DATABASE_URL", database_url.as_str()),
            ("TILLSYNC_LOG_FORMAT", "json"),
            // Debug too: a token must not appear at any level.
            ("RUST_LOG", "debug"),
        ])
    })
    .await
    .unwrap();
    let sent = traffic(&served.address, &admin_token).await;
    served.sigterm();
    let (exit, lines) = tokio::task::spawn_blocking(move || served.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(exit.success(), "{lines:#?}");
    drop_database(&name);

    let parsed: Vec<Value> = lines
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    assert!(
        parsed
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );

    let of_batch: Vec<&Value> = parsed
        .iter()
        .filter(|l| l["span"]["request.id"] == sent.batch_request_id.as_str())
        .collect();
    let answered: Vec<&&Value> = of_batch
        .iter()
        .filter(|l| l["status"].is_u64() && l["level"] == "INFO")
        .collect();
    assert_eq!(answered.len(), 1, "one line per request: {of_batch:#?}");
    let line = answered[0];
    assert_eq!(line["status"], 200);
    assert!(line["duration_ms"].is_u64(), "{line}");
    assert_eq!(line["span"]["method"], "POST");
    assert_eq!(line["span"]["route"], "/v1/sales/batches");

    for secret in &sent.secrets {
        let leaked: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaked.is_empty(), "{secret} was logged: {leaked:#?}");
    }
}
