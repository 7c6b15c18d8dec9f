//! A receipt's money as a back office counts it (issue 24): the receipt's
//! split (item sales, gift cards sold, tips, service charges, rounding, net
//! sales) and tax by code in every grouping and in the till's day check;
//! business days with a cutoff, across clock changes and far time zones;
//! dated store settings; a sale in another currency listed. The helpers the
//! files share are here.

mod business_day;
mod receipts;
mod store_settings;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tillsync_testkit::{TestApp, Till};
use uuid::Uuid;

async fn totals(app: &TestApp, query: &str) -> Value {
    let response = app
        .get(&format!("/v1/reports/totals?{query}"), &app.merchant.token)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

/// The receipt's split of a report row, in a fixed order: item sales, gift
/// cards, tips, service charges, rounding, net sales, tax.
fn split(row: &Value) -> [i64; 7] {
    let n = |k: &str| row[k].as_i64().unwrap_or(i64::MIN);
    [
        n("item_sales_minor"),
        n("gift_card_sales_minor"),
        n("tips_minor"),
        n("service_charges_minor"),
        n("rounding_minor"),
        n("net_sales_minor"),
        n("tax_minor"),
    ]
}

/// A till in a new store of the test merchant with these settings.
async fn till_in_store(app: &TestApp, store: Value) -> Till {
    let created = tillsync_testkit::api::create(
        &app.client,
        &format!("{}/v1/stores", app.address),
        &app.merchant.token,
        &store,
    )
    .await;
    let store_id: Uuid = created["store_id"].as_str().unwrap().parse().unwrap();
    app.create_till_in(&app.merchant, store_id).await
}

fn store(timezone: &str, currency: &str, day_starts_at: &str) -> Value {
    json!({"name": "Store", "timezone": timezone, "currency": currency,
           "business_day_starts_at": day_starts_at})
}
