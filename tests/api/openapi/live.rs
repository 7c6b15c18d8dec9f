//! Real responses held to openapi.yaml: one server (its database link
//! through the fault proxy) is driven through every documented operation,
//! its successes, its client errors, the rate limit and an outage. Each
//! answer must have the status the test expects, be documented for that
//! operation, carry the documented headers and media type, and its body
//! must match the documented schema.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::contract::{Contract, Seen};
use crate::support::proxy::Fault;
use crate::support::sales::{sale, with};
use crate::support::{TestApp, spawn_app_behind_proxy};

/// Documented answers no test here can cause on purpose, and why.
const NOT_DRIVEN: &[(&str, &str, &str)] = &[
    // A bug or an unexpected database error.
    ("*", "*", "500"),
    // Needs two requests with one key overlapping to the millisecond.
    ("POST", "/v1/sales/batches", "409"),
];

struct Driver<'a> {
    app: &'a TestApp,
    contract: Contract,
    /// (METHOD, path template, status) of every answer checked.
    seen: BTreeSet<(String, String, String)>,
}

impl Driver<'_> {
    /// Sends `method url` (with `template` the documented path) and checks
    /// the answer, whatever its status, against the document.
    async fn send(
        &mut self,
        method: &str,
        template: &str,
        url: &str,
        token: Option<&str>,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Seen {
        let mut request = self.app.client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{url}", self.app.address),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let seen = Seen::from(build(request).send().await.unwrap()).await;
        self.contract.check(method, template, &seen);
        self.seen
            .insert((method.into(), template.into(), seen.status.to_string()));
        seen
    }

    /// As `send`, and the answer must have this status.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        url: &str,
        token: Option<&str>,
        status: u16,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Seen {
        let seen = self.send(method, template, url, token, build).await;
        assert_eq!(
            seen.status,
            status,
            "{method} {url}: {}",
            String::from_utf8_lossy(&seen.body)
        );
        seen
    }

    async fn get(&mut self, url: &str, token: Option<&str>, status: u16) -> Seen {
        let template = url.split('?').next().unwrap().to_owned();
        self.call("GET", &template, url, token, status, |r| r).await
    }

    async fn post(&mut self, url: &str, token: Option<&str>, body: &Value, status: u16) -> Seen {
        self.call("POST", url, url, token, status, |r| r.json(body))
            .await
    }

    async fn push(&mut self, token: &str, key: Option<&str>, body: &[u8], status: u16) -> Seen {
        let body = body.to_vec();
        let key = key.map(str::to_owned);
        let path = "/v1/sales/batches";
        self.call("POST", path, path, Some(token), status, move |r| {
            let r = r.body(body);
            match key {
                Some(key) => r.header("Idempotency-Key", key),
                None => r,
            }
        })
        .await
    }
}

fn new_key() -> String {
    Uuid::new_v4().to_string()
}

fn batch(sales: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "sales": sales })).unwrap()
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let (app, proxy) =
        spawn_app_behind_proxy(&["--terminal-rate", "1", "--terminal-burst", "30"]).await;
    let mut d = Driver {
        app: &app,
        contract: Contract::load(),
        seen: BTreeSet::new(),
    };
    let admin_token = app.merchant.token.clone();
    let admin = Some(admin_token.as_str());

    for path in ["/healthz", "/readyz", "/v1/status", "/metrics", "/status"] {
        d.get(path, None, 200).await;
    }

    // Provisioning.
    let store = json!({"name": "Main Street", "timezone": "Europe/Berlin", "currency": "EUR"});
    let store_id = d.post("/v1/stores", admin, &store, 201).await.json()["store_id"].clone();
    let terminal = json!({"store_id": store_id, "name": "Till 1"});
    let till = d.post("/v1/terminals", admin, &terminal, 201).await.json();
    let till_token = till["token"].as_str().unwrap().to_owned();
    let till = Some(till_token.as_str());
    let huge = vec![b' '; tillsync::http::MAX_BODY_BYTES + 16];
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

    // Ingest.
    let first = sale(1);
    let body = batch(&[first.clone(), with(sale(2), json!({"seq": 0}))]);
    let key = Uuid::new_v4().to_string();
    d.push(&till_token, Some(&key), &body, 200).await;
    let replay = d.push(&till_token, Some(&key), &body, 200).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    d.push(&till_token, Some(&key), &batch(&[sale(3)]), 422)
        .await;
    d.push(&till_token, None, &body, 400).await;
    d.push(&till_token, Some(&new_key()), b"{\"sales\": [", 400)
        .await;
    d.push(&till_token, Some(&new_key()), &batch(&[]), 422)
        .await;
    d.push(&till_token, Some(&new_key()), &huge, 413).await;
    d.push(&app.merchant.token, Some(&new_key()), &body, 403)
        .await;
    d.push("tst_nonsense", Some(&new_key()), &body, 401).await;
    let conflicting = with(first.clone(), json!({"tax_minor": 100}));
    let pushed = d
        .push(
            &till_token,
            Some(&new_key()),
            &batch(&[conflicting, sale(4)]),
            200,
        )
        .await;
    assert_eq!(pushed.json()["results"][0]["code"], "sale_id_conflict");
    d.get("/v1/sync?business_date=2026-11-20", till, 200).await;
    d.get("/v1/sync?business_date=20-11-2026", till, 400).await;
    d.get("/v1/sync", None, 401).await;
    d.get("/v1/sync", admin, 403).await;

    // Review.
    let page = d.get("/v1/conflicts?limit=1", admin, 200).await.json();
    assert_eq!(page["conflicts"].as_array().unwrap().len(), 1);
    d.get("/v1/conflicts?limit=0", admin, 400).await;
    d.get("/v1/conflicts?cursor=not-ours", admin, 400).await;
    d.get("/v1/conflicts", None, 401).await;
    d.get("/v1/conflicts", till, 403).await;

    // Neither a route nor a method of one.
    let responses = d.contract.doc["components"]["responses"].clone();
    let seen = Seen::from(
        app.client
            .get(format!("{}/v2/nothing", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.status, 404);
    d.contract
        .check_response("GET /v2/nothing", &responses["NotFound"], &seen);
    let seen = Seen::from(
        app.client
            .delete(format!("{}/v1/stores", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.status, 405);
    d.contract
        .check_response("DELETE /v1/stores", &responses["MethodNotAllowed"], &seen);

    // The rate limit, on a till of its own.
    let noisy = app.create_till().await;
    let mut limited = false;
    for _ in 0..40 {
        let seen = d
            .send("GET", "/v1/sync", "/v1/sync", Some(&noisy.token), |r| r)
            .await;
        limited = seen.status == 429;
        if limited {
            break;
        }
    }
    assert!(limited, "the rate limit never answered 429");
    let key = Uuid::new_v4().to_string();
    d.push(&noisy.token, Some(&key), &batch(&[sale(1)]), 429)
        .await;

    outage(&mut d, &proxy, &admin_token, &till_token, &url).await;
    proxy.set(Fault::Pass);

    let mut missing = Vec::new();
    for (path, item) in d.contract.doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                let key = (method.to_uppercase(), path.clone(), status.clone());
                let excused = NOT_DRIVEN.iter().any(|(m, p, s)| {
                    (*m == "*" || *m == key.0) && (*p == "*" || *p == key.1) && *s == key.2
                });
                if !excused && !d.seen.contains(&key) {
                    missing.push(key);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented but never seen live: {missing:?}"
    );
}

/// Stalls the database link and checks the answers of an outage.
async fn outage(
    d: &mut Driver<'_>,
    proxy: &crate::support::proxy::FaultProxy,
    admin: &str,
    till: &str,
    revoke: &str,
) {
    proxy.set(Fault::Stall);
    let started = Instant::now();
    loop {
        let status = d.get("/v1/status", None, 200).await.json();
        if status["status"] == "unavailable" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "never unavailable: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.get("/readyz", None, 503).await;
    d.get("/healthz", None, 200).await;
    d.get("/metrics", None, 200).await;
    d.get("/status", None, 200).await;
    let (admin, till) = (Some(admin), Some(till));
    let store = json!({"name": "S", "timezone": "Europe/Berlin", "currency": "EUR"});
    d.post("/v1/stores", admin, &store, 503).await;
    d.post(
        "/v1/terminals",
        admin,
        &json!({"store_id": Uuid::new_v4(), "name": "T"}),
        503,
    )
    .await;
    d.call(
        "POST",
        "/v1/terminals/{terminal_id}/revoke",
        revoke,
        admin,
        503,
        |r| r,
    )
    .await;
    d.push(till.unwrap(), Some(&new_key()), &batch(&[sale(9)]), 503)
        .await;
    d.get("/v1/sync", till, 503).await;
    d.get("/v1/conflicts", admin, 503).await;
}
