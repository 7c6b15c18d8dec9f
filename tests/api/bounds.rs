//! Hostile input at the edge: every bound of docs/limits.md is enforced
//! per sale (or per request for names), never as a failed batch or a 5xx
//! that a till would retry forever.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use tillsync_testkit::sales::{sale, sale_of, with};
use tillsync_testkit::{assert_problem, spawn_app, statuses};

/// 2^53 - 1: the largest integer every JSON reader holds exactly.
const MAX_SAFE: i64 = 9_007_199_254_740_991;

/// A sale whose single line, single tender and total are all `amount`.
fn sale_of_exactly(seq: i64, amount: i64) -> Value {
    with(
        sale(seq),
        json!({
            "lines": [{"sku": "BIG", "quantity": 1, "amount_minor": amount}],
            "tenders": [{"method": "card", "amount_minor": amount}],
            "total_minor": amount,
            "tax_minor": 0,
        }),
    )
}

fn line(sku: &str, description: Option<&str>) -> Value {
    let mut line = json!({"sku": sku, "quantity": 1, "amount_minor": 1250});
    if let Some(description) = description {
        line["description"] = json!(description);
    }
    json!([line])
}

#[tokio::test]
async fn a_nul_in_a_line_rejects_that_sale_alone_and_a_retry_gets_the_same_answer() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let sales = [
        sale(1),
        with(sale(2), json!({"lines": line("A\u{0}B", None)})),
        with(sale(3), json!({"lines": line("A", Some("nul \u{0} here"))})),
        sale(4),
    ];
    let key = Uuid::new_v4();
    let response = app.push(&till, key, &sales).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        statuses(&body),
        [
            "accepted",
            "rejected:invalid_text",
            "rejected:invalid_text",
            "accepted"
        ]
    );
    let detail = body["results"][2]["detail"].as_str().unwrap();
    assert!(detail.contains("lines[0].description"), "{detail}");
    assert_eq!(app.stored_count(&till).await, 2);

    // The till retries after a lost answer: the same answer, not a wall.
    let again = app.push(&till, key, &sales).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn a_nul_in_a_store_or_terminal_name_is_an_invalid_name() {
    let app = spawn_app().await;
    let token = &app.merchant.token;
    let store = app
        .post_json(
            "/v1/stores",
            token,
            &json!({"name": "Main\u{0}Street", "timezone": "Europe/Berlin", "currency": "EUR"}),
        )
        .await;
    assert_problem(store, StatusCode::UNPROCESSABLE_ENTITY, "invalid_name").await;

    let till = app.create_till().await;
    let terminal = app
        .post_json(
            "/v1/terminals",
            token,
            &json!({"store_id": till.store_id, "name": "\u{0}"}),
        )
        .await;
    assert_problem(terminal, StatusCode::UNPROCESSABLE_ENTITY, "invalid_name").await;
}

#[tokio::test]
async fn a_seq_beyond_2_pow_53_minus_1_is_rejected_and_sync_keeps_answering() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let body = app
        .push_ok(
            &till,
            &[sale(1), sale(i64::MAX), sale(MAX_SAFE + 1), sale(MAX_SAFE)],
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "accepted",
            "rejected:invalid_seq",
            "rejected:invalid_seq",
            "accepted"
        ]
    );
    let response = app.get("/v1/sync", &till.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let held: Value = response.json().await.unwrap();
    assert_eq!(held["highest_seq"], MAX_SAFE);
    assert_eq!(held["missing_seq_ranges"], json!([[2, MAX_SAFE - 1]]));
}

#[tokio::test]
async fn amounts_beyond_2_pow_53_minus_1_are_rejected_per_sale_and_totals_stay_exact() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let huge = 4_611_686_018_427_387_904; // 2^62: two of them wrapped the day's gross
    let offsetting_lines = with(
        sale_of(5, 1000),
        json!({"lines": [
            {"sku": "A", "quantity": 1, "amount_minor": huge + 1000},
            {"sku": "B", "quantity": 1, "amount_minor": -huge}
        ]}),
    );
    let offsetting_tenders = with(
        sale_of(6, 1000),
        json!({"tenders": [
            {"method": "cash", "amount_minor": -huge},
            {"method": "card", "amount_minor": huge + 1000}
        ]}),
    );
    let huge_discount = with(sale_of(7, 1000), json!({"discount_minor": huge}));
    let body = app
        .push_ok(
            &till,
            &[
                sale_of_exactly(1, huge),
                sale_of_exactly(2, huge),
                sale_of_exactly(3, MAX_SAFE + 1),
                sale_of_exactly(4, MAX_SAFE),
                offsetting_lines,
                offsetting_tenders,
                huge_discount,
                sale_of(8, 1250),
            ],
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "rejected:amount_out_of_range",
            "rejected:amount_out_of_range",
            "rejected:amount_out_of_range",
            "accepted",
            "rejected:amount_out_of_range",
            "rejected:amount_out_of_range",
            "rejected:amount_out_of_range",
            "accepted",
        ]
    );
    // The stored totals are exact; the day's gross is now beyond what a
    // JSON reader holds exactly, so the report says so instead of rounding.
    app.folded().await;
    let gross: i64 =
        sqlx::query_scalar("select gross_minor from sales_day_totals where terminal_id = $1")
            .bind(till.terminal_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(gross, MAX_SAFE + 1250);
    let response = app
        .get(
            "/v1/reports/totals?from=2026-11-20&to=2026-11-20",
            &app.merchant.token,
        )
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "total_out_of_range",
    )
    .await;
}

#[tokio::test]
async fn numbers_no_integer_can_hold_are_rejected_per_sale() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let id = Uuid::new_v4();
    let batch = format!(
        r#"{{"sales": [
            {good},
            {{"sale_id": "{id}", "seq": 99999999999999999999, "kind": "sale"}},
            {{"sale_id": "{id}", "seq": 1e30}},
            {{"sale_id": "{id}", "seq": 3.5}},
            {{"sale_id": "{id}", "seq": -99999999999999999999}},
            {{"sale_id": "{id}", "seq": 1, "total_minor": 1e400}}
        ]}}"#,
        good = sale(1)
    );
    let response = app
        .push_raw(&till, &Uuid::new_v4().to_string(), batch)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        statuses(&body),
        [
            "accepted",
            "rejected:invalid_sale",
            "rejected:invalid_sale",
            "rejected:invalid_sale",
            "rejected:invalid_sale",
            "rejected:invalid_sale"
        ]
    );
}

#[tokio::test]
async fn an_occurred_at_before_2000_is_rejected_as_too_old() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let at = |seq: i64, when: &str| with(sale(seq), json!({"occurred_at": when}));
    let body = app
        .push_ok(
            &till,
            &[
                at(1, "0000-01-01T00:00:00Z"),
                at(2, "1970-01-01T00:00:00Z"),
                at(3, "2000-01-01T00:30:00+01:00"),
                at(4, "2000-01-01T00:00:00Z"),
            ],
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "rejected:occurred_at_too_old",
            "rejected:occurred_at_too_old",
            "rejected:occurred_at_too_old",
            "accepted"
        ]
    );
}

#[tokio::test]
async fn over_long_text_is_rejected_per_sale_and_the_longest_allowed_is_stored() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let megabyte = "x".repeat(1_000_000);
    let body = app
        .push_ok(
            &till,
            &[
                with(sale(1), json!({"lines": line("A", Some(&megabyte))})),
                with(sale(2), json!({"lines": line("A", Some(&"é".repeat(257)))})),
                with(sale(3), json!({"lines": line(&"S".repeat(65), None)})),
                with(
                    sale(4),
                    json!({"lines": line(&"S".repeat(64), Some(&"é".repeat(256)))}),
                ),
            ],
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "rejected:invalid_text",
            "rejected:invalid_text",
            "rejected:invalid_text",
            "accepted"
        ]
    );
    let detail = body["results"][0]["detail"].as_str().unwrap();
    assert!(detail.len() < 300, "the detail does not echo the text");
}

#[tokio::test]
async fn a_lone_surrogate_rejects_that_sale_alone() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let lone = serde_json::to_string(&with(sale(2), json!({"lines": line("SKU", None)})))
        .unwrap()
        .replace("\"SKU\"", r#""S\ud800K""#);
    let batch = format!(r#"{{"sales": [{}, {lone}, {}]}}"#, sale(1), sale(3));
    let response = app
        .push_raw(&till, &Uuid::new_v4().to_string(), batch)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        statuses(&body),
        ["accepted", "rejected:invalid_sale", "accepted"]
    );
}

#[test]
fn openapi_yaml_documents_the_same_bounds_the_server_enforces() {
    let contract = crate::support::contract::Contract::load();
    let schema = json!({"$ref": "#/components/schemas/Sale"});
    let text_line = |sku: &str, description: &str| json!({"lines": [{"sku": sku, "description": description, "quantity": 1, "amount_minor": 1250}]});
    let at_the_bounds = [
        with(sale(MAX_SAFE), text_line(&"S".repeat(64), &"é".repeat(256))),
        with(sale(1), json!({"occurred_at": "2000-01-01T00:00:00Z"})),
        sale_of_exactly(1, MAX_SAFE),
    ];
    for valid in at_the_bounds {
        assert_eq!(contract.errors(&schema, &valid), Vec::<String>::new());
    }
    let beyond = [
        sale(MAX_SAFE + 1),
        with(sale(1), text_line("S\u{0}", "d")),
        with(sale(1), text_line("\u{0}", "d")),
        with(sale(1), text_line("S", "d\u{0}")),
        with(sale(1), text_line(&"S".repeat(65), "d")),
        with(sale(1), text_line("S", &"é".repeat(257))),
        sale_of_exactly(1, MAX_SAFE + 1),
        with(
            sale(1),
            json!({"tenders": [{"method": "cash", "amount_minor": -MAX_SAFE - 1}]}),
        ),
    ];
    for invalid in beyond {
        assert!(
            !contract.errors(&schema, &invalid).is_empty(),
            "the schema passes {invalid}"
        );
    }
    for request in ["CreateStoreRequest", "CreateTerminalRequest"] {
        let schema = json!({"$ref": format!("#/components/schemas/{request}")});
        for name in ["A\u{0}B".to_owned(), "x".repeat(201)] {
            let body = json!({"name": name, "store_id": Uuid::new_v4(), "timezone": "UTC", "currency": "EUR"});
            assert!(!contract.errors(&schema, &body).is_empty(), "{request}");
        }
    }
}

#[tokio::test]
async fn deeply_nested_json_costs_only_the_sale_it_is_in() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    // Far deeper than serde_json's recursion limit of 128.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut with_deep_extra = sale(1).to_string();
    with_deep_extra.insert_str(1, &format!(r#""extra": {deep}, "#));
    let deep_lines = with(sale(2), json!({"lines": null}))
        .to_string()
        .replace("null", &deep);
    let batch = format!(r#"{{"x": {deep}, "sales": [{with_deep_extra}, {deep}, {deep_lines}]}}"#);
    let response = app
        .push_raw(&till, &Uuid::new_v4().to_string(), batch)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    // Unknown members are skipped (without recursion) and not stored.
    assert_eq!(
        statuses(&body),
        ["accepted", "rejected:invalid_sale", "rejected:invalid_sale"]
    );
    let stored: Value = sqlx::query_scalar("select body from sales")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored.get("extra"), None);

    // The whole body nested: not an object, so not a batch.
    let response = app.push_raw(&till, &Uuid::new_v4().to_string(), deep).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_batch").await;
}

#[tokio::test]
async fn a_batch_or_a_sale_written_as_an_array_is_refused() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    // serde reads a struct from an array of its members in order; the API does not.
    let members = |sale: &Value| {
        let order = [
            "sale_id",
            "seq",
            "kind",
            "occurred_at",
            "currency",
            "lines",
            "tenders",
            "total_minor",
            "tax_minor",
            "discount_minor",
        ];
        Value::Array(order.iter().map(|m| sale[m].clone()).collect())
    };
    let batch = json!({"sales": [sale(1), members(&sale(2))]});
    let response = app
        .push_raw(&till, &Uuid::new_v4().to_string(), batch.to_string())
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(statuses(&body), ["accepted", "rejected:invalid_sale"]);
    let as_array = json!([[sale(3)]]);
    let response = app
        .push_raw(&till, &Uuid::new_v4().to_string(), as_array.to_string())
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_batch").await;
    assert_eq!(app.stored_count(&till).await, 1);
}
