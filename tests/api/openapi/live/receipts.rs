//! A receipt's money, on a till of its own in a Europe/Berlin EUR store: an
//! EU receipt (VAT inside, two rates), a gift card sold beside a lunch with
//! a service charge and cash rounding, a refund of half the lunch, a US
//! receipt (tax on top, a tip) in USD (another currency than the store's),
//! and one whose taxes do not add up. Then the totals in every grouping
//! (`tax` too), the stored sales, the till's day check and the exception
//! the USD sale gives, each held to the document.

use serde_json::{Value, json};
use tillsync_testkit::sales::with;
use uuid::Uuid;

use super::driver::{Driver, batch, new_key};

/// A sale of these lines and members, its total and card tender worked
/// out by the receipt rule (lines, tax on top, tip, service charge,
/// rounding).
fn receipt(seq: i64, currency: &str, lines: Value, members: Value) -> Value {
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let lines_sum: i64 = (lines.as_array().unwrap().iter())
        .map(|l| n(&l["amount_minor"]))
        .sum();
    let on_top = if members["tax_included"] == json!(false) {
        n(&members["tax_minor"])
    } else {
        0
    };
    let total = lines_sum
        + on_top
        + n(&members["tip_minor"])
        + n(&members["service_charge_minor"])
        + n(&members["rounding_minor"]);
    let sale = json!({
        "sale_id": Uuid::new_v4(),
        "seq": seq,
        "kind": "sale",
        "occurred_at": "2026-11-20T11:00:00+01:00",
        "currency": currency,
        "lines": lines,
        "tenders": [{"method": "card", "amount_minor": total}],
        "total_minor": total,
        "tax_minor": 0,
        "discount_minor": 0
    });
    with(sale, members)
}

fn tax(code: &str, rate_bp: i64, amount: i64) -> Value {
    json!({"code": code, "rate_bp": rate_bp, "amount_minor": amount})
}

/// The receipts described above, in push order.
fn receipts_of_the_day() -> Vec<Value> {
    let eu = receipt(
        1,
        "EUR",
        json!([{"sku": "COFFEE", "quantity": 1, "amount_minor": 1190},
               {"sku": "BOOK", "quantity": 1, "amount_minor": 1070}]),
        json!({"tax_minor": 260, "taxes": [tax("DE-19", 1900, 190), tax("DE-7", 700, 70)]}),
    );
    let lunch = receipt(
        2,
        "EUR",
        json!([{"sku": "LUNCH", "quantity": 1, "amount_minor": 1000},
               {"kind": "gift_card", "sku": "GIFT-50", "quantity": 1, "amount_minor": 5000}]),
        json!({"tax_minor": 160, "service_charge_minor": 150, "rounding_minor": -2,
               "taxes": [tax("DE-19", 1900, 160)]}),
    );
    let refund = with(
        receipt(
            3,
            "EUR",
            json!([{"sku": "LUNCH", "quantity": 0.5, "amount_minor": 500, "refers_to_line": 0}]),
            json!({"tax_minor": 80, "taxes": [tax("DE-19", 1900, 80)]}),
        ),
        json!({"kind": "refund", "refers_to_sale_id": lunch["sale_id"].clone()}),
    );
    let us = receipt(
        4,
        "USD",
        json!([{"sku": "BURGER", "quantity": 1, "amount_minor": 1200},
               {"sku": "SODA", "quantity": 1, "amount_minor": 300}]),
        json!({"tax_included": false, "tax_minor": 109, "tip_minor": 300,
               "taxes": [tax("US-CA", 725, 109)]}),
    );
    vec![eu, lunch, refund, us]
}

/// The receipt's split of a row: item sales, gift cards, tips, service
/// charges, rounding, net sales, tax.
fn split(row: &Value) -> Value {
    let members = [
        "item_sales_minor",
        "gift_card_sales_minor",
        "tips_minor",
        "service_charges_minor",
        "rounding_minor",
        "net_sales_minor",
        "tax_minor",
    ];
    members.iter().map(|member| row[*member].clone()).collect()
}

pub async fn receipts(d: &mut Driver<'_>, admin_token: &str) {
    let admin = Some(admin_token);
    let till = d.app.create_till().await;
    let sales = receipts_of_the_day();
    let us_sale_id = sales[3]["sale_id"].clone();
    let uneven = with(
        receipt(
            5,
            "EUR",
            json!([{"sku": "TEA", "quantity": 1, "amount_minor": 300}]),
            json!({}),
        ),
        json!({"tax_minor": 48, "taxes": [tax("DE-19", 1900, 40)]}),
    );
    let body = batch(&[sales, vec![uneven]].concat());
    let pushed = d
        .push(&till.token, Some(&new_key()), &body, 200)
        .await
        .json();
    assert_eq!(pushed["accepted"], 4, "{pushed}");
    assert_eq!(pushed["results"][4]["code"], "taxes_total_mismatch");

    let scope = format!(
        "from=2026-11-20&to=2026-11-20&terminal_id={}",
        till.terminal_id
    );
    for group_by in ["none", "day", "hour", "store", "terminal", "tender", "tax"] {
        let url = format!("/v1/reports/totals?{scope}&group_by={group_by}");
        let report = d.get(&url, admin, 200).await.json();
        assert!(!report["rows"].as_array().unwrap().is_empty(), "{report}");
    }
    let url = format!("/v1/reports/totals?{scope}");
    let rows = d.get(&url, admin, 200).await.json()["rows"].clone();
    // EUR: items 2260 + 1000 - 500, gift card 5000, service 150, rounding
    // -2, net sales 2000 + 990 - 420, VAT 260 + 160 - 80.
    assert_eq!(rows[0]["currency"], "EUR", "{rows}");
    assert_eq!(split(&rows[0]), json!([2760, 5000, 0, 150, -2, 2570, 340]));
    assert_eq!(rows[1]["currency"], "USD", "{rows}");
    assert_eq!(split(&rows[1]), json!([1500, 0, 300, 0, 0, 1500, 109]));
    assert_eq!(rows[1]["gross_minor"], 1909, "{rows}");

    let url = format!("/v1/reports/totals?{scope}&group_by=tax");
    let by_tax = d.get(&url, admin, 200).await.json();
    let taxes: Vec<(Value, Value, Value)> = (by_tax["rows"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["currency"].clone(),
                r["group"].clone(),
                r["tax_minor"].clone(),
            )
        })
        .collect();
    assert_eq!(
        taxes,
        [
            (
                json!("EUR"),
                json!({"tax_code": "DE-19", "rate_bp": 1900}),
                json!(270)
            ),
            (
                json!("EUR"),
                json!({"tax_code": "DE-7", "rate_bp": 700}),
                json!(70)
            ),
            (
                json!("USD"),
                json!({"tax_code": "US-CA", "rate_bp": 725}),
                json!(109)
            ),
        ]
    );

    let url = format!("/v1/sales?terminal_id={}", till.terminal_id);
    let stored = d.get(&url, admin, 200).await.json();
    assert_eq!(stored["sales"].as_array().unwrap().len(), 4, "{stored}");
    let day = "/v1/sync?business_date=2026-11-20";
    let sync = d.get(day, Some(&till.token), 200).await.json();
    let totals = &sync["business_day"]["totals"];
    assert_eq!(split(&totals[0]), split(&rows[0]), "{sync}");
    assert_eq!(split(&totals[1]), split(&rows[1]), "{sync}");

    d.app.settled().await;
    let url = format!(
        "/v1/exceptions?terminal_id={}&kind=currency_mismatch",
        till.terminal_id
    );
    let listed = d.get(&url, admin, 200).await.json();
    let listed = listed["exceptions"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["sale_ids"], json!([us_sale_id]));
    assert_eq!(listed[0]["seq"], 4);
}
