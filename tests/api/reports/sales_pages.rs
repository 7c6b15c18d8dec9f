//! `GET /v1/sales`: keyset pages that skip and repeat nothing.

use std::collections::HashSet;

use serde_json::{Value, json};
use tillsync_testkit::sales::{sale, with};
use tillsync_testkit::spawn_app;

use super::at;

#[tokio::test]
async fn sales_pages_skip_and_repeat_nothing_while_sales_arrive() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let first: Vec<Value> = (1..=250)
        .map(|s| {
            with(
                sale(s),
                json!({"occurred_at": format!("2026-11-20T10:{:02}:00+01:00", s % 60)}),
            )
        })
        .collect();
    app.push_ok(&till, &first).await;
    let expected: HashSet<String> = first
        .iter()
        .map(|s| s["sale_id"].as_str().unwrap().to_owned())
        .collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut next_seq = 251;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sales?limit=100&cursor={c}"),
            None => "/v1/sales?limit=100".to_owned(),
        };
        let page: Value = app
            .get(&path, &app.merchant.token)
            .await
            .json()
            .await
            .unwrap();
        let sales = page["sales"].as_array().unwrap();
        for pair in sales.windows(2) {
            assert!(
                pair[0]["occurred_at"].as_str() >= pair[1]["occurred_at"].as_str()
                    || pair[0]["occurred_at"] != pair[1]["occurred_at"]
            );
        }
        seen.extend(
            sales
                .iter()
                .map(|s| s["sale_id"].as_str().unwrap().to_owned()),
        );
        // Between pages, new sales arrive, older and newer than the page.
        let arriving = [
            with(sale(next_seq), at("2026-11-20T10:30:30+01:00")),
            with(sale(next_seq + 1), at("2026-11-20T12:00:00+01:00")),
        ];
        next_seq += 2;
        app.push_ok(&till, &arriving).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no sale is repeated");
    assert!(
        expected.iter().all(|id| unique.contains(id)),
        "no sale that existed is skipped"
    );
    let sample: Value = app
        .get("/v1/sales?limit=1", &app.merchant.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        sample["sales"][0]["terminal_id"],
        till.terminal_id.to_string()
    );
    assert!(sample["sales"][0]["business_date"].is_string());
}
