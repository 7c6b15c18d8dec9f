//! Real responses held to openapi.yaml: one server (its database link
//! through the fault proxy) is driven through every documented operation,
//! its successes, its client errors, the rate limit and an outage (with the
//! stale totals it answers from its last good copy). Each
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

/// A totals query answered before the outage and again, stale, during it.
const STALE_TOTALS: &str = "/v1/reports/totals?from=2026-11-20&to=2026-11-20&group_by=day";

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

    /// As `get`, and the answer must be a problem with this code (a 400 or
    /// 404, as the code says).
    async fn refused(&mut self, url: &str, token: Option<&str>, code: &str) {
        let status = if code.ends_with("_not_found") {
            404
        } else {
            400
        };
        let problem = self.get(url, token, status).await.json();
        assert_eq!(problem["code"], code, "{url}");
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
    let till_id = till["terminal_id"].as_str().unwrap().to_owned();
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

    let store_id = store_id.as_str().unwrap();
    let spare_id = spare["terminal_id"].as_str().unwrap();
    reports(
        &mut d,
        &admin_token,
        &till_token,
        store_id,
        &till_id,
        spare_id,
    )
    .await;

    out_of_range(&mut d, &admin_token).await;

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

    let fresh = d.get(STALE_TOTALS, admin, 200).await.json();
    outage(&mut d, &proxy, &admin_token, &till_token, &url, &fresh).await;
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

/// Drives the report routes. The till holds seqs 1 and 4, both of
/// 2026-11-20; `revoked_id` is a revoked terminal that never pushed.
async fn reports(
    d: &mut Driver<'_>,
    admin: &str,
    till: &str,
    store_id: &str,
    till_id: &str,
    revoked_id: &str,
) {
    let (admin, till) = (Some(admin), Some(till));
    let scope = format!("store_id={store_id}&terminal_id={till_id}");
    let day = "from=2026-11-20&to=2026-11-20";
    let unknown = Uuid::new_v4();

    let totals = "/v1/reports/totals";
    for group_by in ["none", "day", "hour", "store", "terminal", "tender"] {
        let url = format!("{totals}?{day}&group_by={group_by}&{scope}");
        let report = d.get(&url, admin, 200).await;
        assert!(report.headers.get("warning").is_none(), "fresh, not stale");
        let report = report.json();
        assert_eq!(report["group_by"], group_by);
        assert!(!report["rows"].as_array().unwrap().is_empty(), "{report}");
    }
    let refusals: [(String, &str); 8] = [
        ("to=2026-11-20".into(), "invalid_query"),
        (format!("{day}&terminal_id=nope"), "invalid_query"),
        ("from=20-11-2026&to=2026-11-20".into(), "invalid_date"),
        ("from=2026-11-21&to=2026-11-20".into(), "invalid_range"),
        ("from=2025-11-19&to=2026-11-20".into(), "range_too_large"),
        (format!("{day}&group_by=week"), "invalid_group_by"),
        (format!("{day}&store_id={unknown}"), "store_not_found"),
        (format!("{day}&terminal_id={unknown}"), "terminal_not_found"),
    ];
    for (query, code) in refusals {
        d.refused(&format!("{totals}?{query}"), admin, code).await;
    }
    d.get(&format!("{totals}?{day}"), None, 401).await;
    d.get(&format!("{totals}?{day}"), till, 403).await;

    let page = d.get("/v1/sales?limit=1", admin, 200).await.json();
    assert_eq!(page["sales"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let url = format!("/v1/sales?limit=1&cursor={cursor}");
    let next = d.get(&url, admin, 200).await.json();
    assert_ne!(next["sales"][0]["sale_id"], page["sales"][0]["sale_id"]);
    let url = format!("/v1/sales?{scope}&{day}");
    let all = d.get(&url, admin, 200).await.json();
    assert_eq!(all["sales"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all["next_cursor"], Value::Null);
    let refusals: [(String, &str); 8] = [
        ("store_id=nope".into(), "invalid_query"),
        ("limit=many".into(), "invalid_query"),
        ("from=20-11-2026".into(), "invalid_date"),
        ("from=2026-11-21&to=2026-11-20".into(), "invalid_range"),
        ("limit=0".into(), "invalid_limit"),
        ("cursor=not-ours".into(), "invalid_cursor"),
        (format!("store_id={unknown}"), "store_not_found"),
        (format!("terminal_id={unknown}"), "terminal_not_found"),
    ];
    for (query, code) in refusals {
        d.refused(&format!("/v1/sales?{query}"), admin, code).await;
    }
    d.get("/v1/sales", None, 401).await;
    d.get("/v1/sales", till, 403).await;

    let fleet = d.get("/v1/terminals", admin, 200).await.json();
    let listed = |id: &str| {
        let terminals = fleet["terminals"].as_array().unwrap();
        let found = terminals.iter().find(|t| t["terminal_id"] == id);
        found
            .unwrap_or_else(|| panic!("{id} not in {fleet}"))
            .clone()
    };
    let pushed = listed(till_id);
    assert_eq!(pushed["highest_seq"], 4, "{pushed}");
    assert_eq!(pushed["missing_count"], 2, "{pushed}");
    let revoked = listed(revoked_id);
    assert_eq!(revoked["revoked"], true, "{revoked}");
    assert_eq!(revoked["last_seen_at"], Value::Null, "{revoked}");
    let url = format!("/v1/terminals?store_id={store_id}");
    d.get(&url, admin, 200).await;
    d.refused("/v1/terminals?store_id=nope", admin, "invalid_query")
        .await;
    let url = format!("/v1/terminals?store_id={unknown}");
    d.refused(&url, admin, "store_not_found").await;
    d.get("/v1/terminals", None, 401).await;
    d.get("/v1/terminals", till, 403).await;
}

/// Drives the answers for totals that cannot be given exactly, on a till
/// and a business day of their own, with a hostile amount planted in the
/// database (the edge refuses one that large).
async fn out_of_range(d: &mut Driver<'_>, admin: &str) {
    let till = d.app.create_till().await;
    let day = json!({"occurred_at": "2026-11-25T10:00:00+01:00"});
    let body = batch(&[with(sale(1), day)]);
    d.push(&till.token, Some(&new_key()), &body, 200).await;
    for plant in [
        "update sales set total_minor = 9223372036854775807 where terminal_id = $1",
        "update sales_day_totals set gross_minor = 9007199254740992 where terminal_id = $1",
    ] {
        sqlx::query(plant)
            .bind(till.terminal_id)
            .execute(&d.app.db)
            .await
            .unwrap();
    }
    let sync = d
        .get("/v1/sync?business_date=2026-11-25", Some(&till.token), 422)
        .await;
    assert_eq!(sync.json()["code"], "total_out_of_range");
    let url = format!(
        "/v1/reports/totals?from=2026-11-25&to=2026-11-25&terminal_id={}",
        till.terminal_id
    );
    let report = d.get(&url, Some(admin), 422).await;
    assert_eq!(report.json()["code"], "total_out_of_range");
}

/// Stalls the database link and checks the answers of an outage.
async fn outage(
    d: &mut Driver<'_>,
    proxy: &crate::support::proxy::FaultProxy,
    admin: &str,
    till: &str,
    revoke: &str,
    fresh_totals: &Value,
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
    d.get("/v1/sales", admin, 503).await;
    d.get("/v1/terminals", admin, 503).await;

    // Totals asked before: the last good copy, marked stale. Never asked: 503.
    let stale = d.get(STALE_TOTALS, admin, 200).await;
    assert_eq!(stale.headers["warning"], "110 - \"Response is Stale\"");
    assert!(stale.headers.contains_key("age"));
    assert_eq!(stale.json(), *fresh_totals, "the copy from before");
    let never_asked = "/v1/reports/totals?from=2026-11-01&to=2026-11-30";
    let refused = d.get(never_asked, admin, 503).await.json();
    assert_eq!(refused["code"], "database_unavailable");
}
