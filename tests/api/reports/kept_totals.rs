//! The totals kept at ingest (and by the resolver) against the sales
//! themselves: rebuilt by the migration's statement, and unchanged by
//! folding store deltas.

use serde_json::json;
use tillsync_testkit::sales::{refund_of, sale_of, void_of, with};
use tillsync_testkit::spawn_app;

use super::{at, totals};

/// The totals kept at ingest and by the resolver equal the totals the
/// migration computes from the sales themselves (the same code path
/// existing deployments get: migrations/20261208000001_receipt_money.sql
/// rebuilds them by today's rule, with the receipt's split and the tax
/// rows).
#[tokio::test]
async fn totals_kept_at_ingest_equal_totals_rebuilt_from_the_sales() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let other = app.create_till().await;
    let sold = with(
        sale_of(1, 1000),
        json!({"tenders": [{"method": "voucher", "amount_minor": 1000}]}),
    );
    // Tax on top with a tip, split by code; a gift card with a service
    // charge and rounding.
    let late = with(
        sale_of(2, 800),
        json!({"occurred_at": "2026-11-20T23:45:00+01:00", "tax_included": false,
               "tax_minor": 80, "tip_minor": 100, "total_minor": 980,
               "tenders": [{"method": "card", "amount_minor": 980}],
               "taxes": [{"code": "A", "rate_bp": 1000, "amount_minor": 60},
                         {"code": "B", "rate_bp": 500, "amount_minor": 20}]}),
    );
    let gift = with(
        sale_of(6, 600),
        json!({"lines": [{"kind": "gift_card", "sku": "G", "quantity": 1, "amount_minor": 500},
                         {"sku": "I", "quantity": 1, "amount_minor": 100}],
               "service_charge_minor": 30, "rounding_minor": -1, "total_minor": 629,
               "tenders": [{"method": "cash", "amount_minor": 629}]}),
    );
    app.push_ok(
        &till,
        &[
            sold.clone(),
            late.clone(),
            refund_of(3, 200, Some(&sold)),
            gift,
        ],
    )
    .await;
    app.push_ok(
        &till,
        &[with(void_of(4, &late), at("2026-11-21T08:00:00+01:00"))],
    )
    .await;
    app.push_ok(&other, &[with(sale_of(1, 50), json!({"currency": "USD"}))])
        .await;
    // A void on another till, pushed before its sale: the resolver applies it.
    let held = sale_of(5, 300);
    app.push_ok(
        &other,
        &[with(void_of(2, &held), at("2026-11-21T09:00:00+01:00"))],
    )
    .await;
    app.push_ok(&till, &[held]).await;
    app.settled().await;

    let queries: Vec<String> = ["none", "day", "hour", "store", "terminal", "tender", "tax"]
        .iter()
        .map(|g| format!("from=2026-11-19&to=2026-11-22&group_by={g}"))
        .collect();
    let mut kept = Vec::new();
    for q in &queries {
        kept.push(totals(&app, q).await["rows"].clone());
    }
    let rebuild = tillsync_testkit::database::rebuild_totals_sql();
    sqlx::query(
        "truncate sales_day_totals, sales_hour_totals, tender_day_totals, tax_day_totals, store_day_totals, store_day_deltas",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::raw_sql(&rebuild).execute(&app.db).await.unwrap();
    for (q, before) in queries.iter().zip(kept) {
        assert_eq!(totals(&app, q).await["rows"], before, "{q}");
    }
}

/// Store totals are kept as deltas appended by each batch and folded into
/// the store rows in the background; a report must be the same whichever
/// side of a fold it is asked on.
#[tokio::test]
async fn folding_store_deltas_changes_no_report() {
    let app = spawn_app().await;
    let till = app.create_till().await;
    let neighbour = app.create_till_in(&app.merchant, till.store_id).await;
    let voided = sale_of(2, 400);
    app.push_ok(&till, &[sale_of(1, 1000), voided.clone()])
        .await;
    app.push_ok(&neighbour, &[sale_of(1, 250), refund_of(2, 50, None)])
        .await;
    app.push_ok(&till, &[void_of(3, &voided)]).await;
    app.settled().await;

    let queries = ["group_by=none", "group_by=day", "group_by=store"]
        .map(|g| format!("from=2026-11-20&to=2026-11-20&{g}"));
    let mut before = Vec::new();
    for q in &queries {
        before.push(totals(&app, q).await["rows"].clone());
    }
    assert_eq!(before[0][0]["net_minor"], 1000 + 250 - 50);
    let mut conn = app.db.acquire().await.unwrap();
    // The app's own fold may hold the fold's lock for a moment.
    while tillsync::db::totals::fold_store_deltas(&mut conn, 1_000_000, &[])
        .await
        .unwrap()
        .is_none()
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pending: i64 = sqlx::query_scalar("select count(*) from store_day_deltas")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(pending, 0, "every delta is folded");
    for (q, earlier) in queries.iter().zip(before) {
        assert_eq!(totals(&app, q).await["rows"], earlier, "{q}");
    }
}
