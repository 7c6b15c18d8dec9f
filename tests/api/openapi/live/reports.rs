//! The report routes: totals in every grouping, sales pages, the fleet,
//! and their refusals.

use serde_json::{Value, json};
use tillsync_testkit::sales::{sale, with};
use uuid::Uuid;

use super::driver::{Driver, batch, new_key};

/// Drives the report routes. The till holds seqs 1 and 4, both of
/// 2026-11-20; `revoked_id` is a revoked terminal that never pushed.
pub async fn reports(
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
    for group_by in ["none", "day", "hour", "store", "terminal", "tender", "tax"] {
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
pub async fn out_of_range(d: &mut Driver<'_>, admin: &str) {
    let till = d.app.create_till().await;
    let day = json!({"occurred_at": "2026-11-25T10:00:00+01:00"});
    let body = batch(&[with(sale(1), day)]);
    d.push(&till.token, Some(&new_key()), &body, 200).await;
    d.app.folded().await;
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
