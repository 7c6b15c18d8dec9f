//! The receipt's split and tax by code, as a back office counts them: a US
//! receipt (tax on top, a tip), an EU one (tax inside, two VAT rates), gift
//! cards, service charges and rounding, refunds and voids taking their
//! share back; in every grouping, the store totals before and after their
//! fold, and the till's day check.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tillsync_testkit::sales::{void_of, with};
use tillsync_testkit::{assert_problem, spawn_app, statuses};
use uuid::Uuid;

use super::{split, store, till_in_store, totals};

/// A sale with these lines and members; its total and tenders are worked
/// out by the receipt rule (lines, tax on top, tip, service charge,
/// rounding).
fn receipt(seq: i64, at: &str, currency: &str, lines: Value, members: Value) -> Value {
    let lines_sum: i64 = (lines.as_array().unwrap().iter())
        .map(|l| l["amount_minor"].as_i64().unwrap())
        .sum();
    let n = |k: &str| members[k].as_i64().unwrap_or(0);
    let on_top = if members["tax_included"] == json!(false) {
        n("tax_minor")
    } else {
        0
    };
    let total =
        lines_sum + on_top + n("tip_minor") + n("service_charge_minor") + n("rounding_minor");
    let sale = json!({
        "sale_id": Uuid::new_v4(),
        "seq": seq,
        "kind": "sale",
        "occurred_at": at,
        "currency": currency,
        "lines": lines,
        "tenders": [{"method": "card", "amount_minor": total}],
        "total_minor": total,
        "tax_minor": 0,
        "discount_minor": 0
    });
    with(sale, members)
}

/// Lunch in San Francisco: 15.00 of food, 7.25 % sales tax on top, a 3.00
/// tip.
fn us_receipt(seq: i64) -> Value {
    receipt(
        seq,
        "2026-11-20T12:30:00-08:00",
        "USD",
        json!([{"sku": "BURGER", "quantity": 1, "amount_minor": 1200},
               {"sku": "SODA", "quantity": 1, "amount_minor": 300}]),
        json!({"tax_included": false, "tax_minor": 109, "tip_minor": 300,
               "taxes": [{"code": "US-CA", "rate_bp": 725, "amount_minor": 109}]}),
    )
}

/// A Berlin café: coffee at 19 % VAT and a book at 7 %, VAT inside.
fn eu_receipt(seq: i64) -> Value {
    receipt(
        seq,
        "2026-11-20T10:15:00+01:00",
        "EUR",
        json!([{"sku": "COFFEE", "quantity": 1, "amount_minor": 1190},
               {"sku": "BOOK", "quantity": 1, "amount_minor": 1070}]),
        json!({"tax_minor": 260,
               "taxes": [{"code": "DE-19", "rate_bp": 1900, "amount_minor": 190},
                         {"code": "DE-7", "rate_bp": 700, "amount_minor": 70}]}),
    )
}

/// 10.00 of food (1.60 VAT inside), a 50.00 gift card loaded, a 1.50
/// service charge, and the cash total rounded down by 0.02.
fn gift_card_receipt(seq: i64) -> Value {
    receipt(
        seq,
        "2026-11-20T11:00:00+01:00",
        "EUR",
        json!([{"sku": "LUNCH", "quantity": 1, "amount_minor": 1000},
               {"kind": "gift_card", "sku": "GIFT-50", "quantity": 1, "amount_minor": 5000}]),
        json!({"tax_minor": 160, "service_charge_minor": 150, "rounding_minor": -2,
               "taxes": [{"code": "DE-19", "rate_bp": 1900, "amount_minor": 160}]}),
    )
}

/// Half of the lunch given back.
fn lunch_refund(seq: i64, of: &Value) -> Value {
    let refund = receipt(
        seq,
        "2026-11-20T15:00:00+01:00",
        "EUR",
        json!([{"sku": "LUNCH", "quantity": 0.5, "amount_minor": 500}]),
        json!({"tax_minor": 80,
               "taxes": [{"code": "DE-19", "rate_bp": 1900, "amount_minor": 80}]}),
    );
    with(
        refund,
        json!({"kind": "refund", "refers_to_sale_id": of["sale_id"].clone()}),
    )
}

#[tokio::test]
async fn a_us_and_an_eu_receipt_are_counted_as_a_back_office_counts_them() {
    let app = spawn_app().await;
    let diner = till_in_store(&app, store("America/Los_Angeles", "USD", "00:00")).await;
    let cafe = till_in_store(&app, store("Europe/Berlin", "EUR", "00:00")).await;
    app.push_ok(&diner, &[us_receipt(1)]).await;
    app.push_ok(&cafe, &[eu_receipt(1)]).await;

    let report = totals(&app, "from=2026-11-20&to=2026-11-20").await;
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let (eur, usd) = (&rows[0], &rows[1]);
    assert_eq!(eur["currency"], "EUR");
    // item sales 22.60 with 2.60 VAT inside: net sales 20.00
    assert_eq!(split(eur), [2260, 0, 0, 0, 0, 2000, 260]);
    assert_eq!(
        (eur["gross_minor"].as_i64(), eur["net_minor"].as_i64()),
        (Some(2260), Some(2260))
    );
    assert_eq!(usd["currency"], "USD");
    // gross is what the guest paid (15.00 + 1.09 tax + 3.00 tip); net sales
    // are the food alone: the tax was on top, the tip is the staff's
    assert_eq!(split(usd), [1500, 0, 300, 0, 0, 1500, 109]);
    assert_eq!(
        (usd["gross_minor"].as_i64(), usd["net_minor"].as_i64()),
        (Some(1909), Some(1909))
    );

    // A payload without the new members means what it always meant.
    let plain = tillsync_testkit::sales::sale_of(2, 1000);
    app.push_ok(&cafe, &[plain]).await;
    let report = totals(&app, "from=2026-11-20&to=2026-11-20&group_by=store").await;
    let eur = (report["rows"].as_array().unwrap().iter())
        .find(|r| r["currency"] == "EUR")
        .unwrap();
    assert_eq!(split(eur), [3260, 0, 0, 0, 0, 2900, 360]);
}

/// Every grouping (and the till's day check) counts the same receipts the
/// same way: gift cards sold are not sales, a refund takes its share back,
/// a void its sale's.
#[tokio::test]
async fn gift_cards_service_charges_rounding_refunds_and_voids_add_up_in_every_grouping() {
    let app = spawn_app().await;
    let till = till_in_store(&app, store("Europe/Berlin", "EUR", "00:00")).await;
    let lunch = gift_card_receipt(1);
    let voided = eu_receipt(2);
    app.push_ok(
        &till,
        &[
            lunch.clone(),
            voided.clone(),
            lunch_refund(3, &lunch),
            with(
                void_of(4, &voided),
                json!({"occurred_at": "2026-11-20T16:00:00+01:00"}),
            ),
        ],
    )
    .await;
    app.settled().await;
    // lunch: items 1000, gift card 5000, service 150, rounding -2, VAT 160
    // -> net sales 1000 + 150 - 160 = 990; the refund takes back 500 of
    // items with 80 VAT (net sales 420); the void takes the café receipt out.
    let expected = [500, 5000, 0, 150, -2, 570, 80];
    for group_by in ["none", "day", "store", "terminal"] {
        let report = totals(
            &app,
            &format!("from=2026-11-20&to=2026-11-20&group_by={group_by}"),
        )
        .await;
        let row = &report["rows"][0];
        assert_eq!(split(row), expected, "{group_by}");
        assert_eq!(row["gross_minor"], 6148, "{group_by}");
        assert_eq!(row["refunds_minor"], 500, "{group_by}");
        assert_eq!(row["net_minor"], 5648, "{group_by}");
    }
    let by_hour = totals(&app, "from=2026-11-20&to=2026-11-20&group_by=hour").await;
    let hours: Vec<(i64, [i64; 7])> = (by_hour["rows"].as_array().unwrap().iter())
        .map(|r| (r["group"]["hour"].as_i64().unwrap(), split(r)))
        .collect();
    assert_eq!(
        hours,
        vec![
            (10, [2260, 0, 0, 0, 0, 2000, 260]),
            (11, [1000, 5000, 0, 150, -2, 990, 160]),
            (15, [-500, 0, 0, 0, 0, -420, -80]),
            (16, [-2260, 0, 0, 0, 0, -2000, -260]),
        ]
    );

    // The till's day check says the same.
    let sync: Value = app
        .get("/v1/sync?business_date=2026-11-20", &till.token)
        .await
        .json()
        .await
        .unwrap();
    let day = &sync["business_day"]["totals"][0];
    assert_eq!(split(day), expected);
    assert_eq!(day["net_minor"], 5648);
    assert_eq!(day["sales_count"], 4);

    // Store totals folded or not: the same answer.
    let before = totals(&app, "from=2026-11-20&to=2026-11-20&group_by=store").await;
    let mut conn = app.db.acquire().await.unwrap();
    while tillsync::db::totals::fold_store_deltas(&mut conn, 1_000_000, &[])
        .await
        .unwrap()
        .is_none()
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = totals(&app, "from=2026-11-20&to=2026-11-20&group_by=store").await;
    assert_eq!(after["rows"], before["rows"]);
}

#[tokio::test]
async fn tax_rows_split_the_tax_by_code_and_leave_every_other_member_null() {
    let app = spawn_app().await;
    let till = till_in_store(&app, store("Europe/Berlin", "EUR", "00:00")).await;
    let lunch = gift_card_receipt(1);
    app.push_ok(
        &till,
        &[
            eu_receipt(2),
            lunch.clone(),
            lunch_refund(3, &lunch),
            // no split: all of its tax under code ""
            tillsync_testkit::sales::sale_of(4, 1000),
        ],
    )
    .await;
    let report = totals(&app, "from=2026-11-20&to=2026-11-20&group_by=tax").await;
    assert_eq!(report["group_by"], "tax");
    let rows: Vec<(Value, i64, i64, i64)> = (report["rows"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["group"].clone(),
                r["sales_count"].as_i64().unwrap(),
                r["refunds_count"].as_i64().unwrap(),
                r["tax_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (json!({"tax_code": "", "rate_bp": 0}), 1, 0, 100),
            (
                json!({"tax_code": "DE-19", "rate_bp": 1900}),
                2,
                1,
                190 + 160 - 80
            ),
            (json!({"tax_code": "DE-7", "rate_bp": 700}), 1, 0, 70),
        ]
    );
    let row = &report["rows"][1];
    for member in [
        "gross_minor",
        "refunds_minor",
        "net_minor",
        "discounts_minor",
        "item_sales_minor",
        "gift_card_sales_minor",
        "tips_minor",
        "service_charges_minor",
        "rounding_minor",
        "net_sales_minor",
    ] {
        assert!(row[member].is_null(), "{member} in a tax row");
    }
    // The tax rows add up to the tax of the day.
    let day = totals(&app, "from=2026-11-20&to=2026-11-20").await;
    assert_eq!(day["rows"][0]["tax_minor"], 100 + 190 + 160 - 80 + 70);
    // Tender rows do not split the receipt either.
    let tenders = totals(&app, "from=2026-11-20&to=2026-11-20&group_by=tender").await;
    assert!(tenders["rows"][0]["net_sales_minor"].is_null());
    assert!(tenders["rows"][0]["tips_minor"].is_null());
}

/// A void rung up on another till moves its sale's money on the void's
/// till: there the tax and tender rows count the till's own sale less the
/// void (0 sales) and still hold the money that moved.
#[tokio::test]
async fn a_void_on_another_till_keeps_the_money_in_its_tax_and_tender_rows() {
    let app = spawn_app().await;
    let store: Uuid = tillsync_testkit::api::create(
        &app.client,
        &format!("{}/v1/stores", app.address),
        &app.merchant.token,
        &super::store("Europe/Berlin", "EUR", "00:00"),
    )
    .await["store_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (till_a, till_b) = (
        app.create_till_in(&app.merchant, store).await,
        app.create_till_in(&app.merchant, store).await,
    );
    let book = |seq: i64, amount: i64, tax: i64| {
        receipt(
            seq,
            "2026-11-20T10:00:00+01:00",
            "EUR",
            json!([{"sku": "BOOK", "quantity": 1, "amount_minor": amount}]),
            json!({"tax_minor": tax,
                   "taxes": [{"code": "DE-7", "rate_bp": 700, "amount_minor": tax}]}),
        )
    };
    let on_b = book(1, 459, 30);
    app.push_ok(&till_b, std::slice::from_ref(&on_b)).await;
    app.push_ok(&till_a, &[book(1, 1070, 70), void_of(2, &on_b)])
        .await;
    app.settled().await;

    let day = "from=2026-11-20&to=2026-11-20";
    let of_a = format!("{day}&terminal_id={}", till_a.terminal_id);
    let tax = totals(&app, &format!("{of_a}&group_by=tax")).await;
    let row = &tax["rows"].as_array().unwrap()[..];
    assert_eq!(row.len(), 1, "{tax}");
    assert_eq!(row[0]["group"], json!({"tax_code": "DE-7", "rate_bp": 700}));
    assert_eq!(
        (row[0]["sales_count"].as_i64(), row[0]["tax_minor"].as_i64()),
        (Some(0), Some(40))
    );
    let tender = totals(&app, &format!("{of_a}&group_by=tender")).await;
    let row = &tender["rows"].as_array().unwrap()[..];
    assert_eq!(row.len(), 1, "{tender}");
    assert_eq!(row[0]["group"], json!({"method": "card"}));
    assert_eq!(
        (
            row[0]["sales_count"].as_i64(),
            row[0]["gross_minor"].as_i64()
        ),
        (Some(0), Some(1070 - 459))
    );
    // The till's tax rows add up to its day's tax, and the store's to its.
    let till_day = totals(&app, &of_a).await;
    assert_eq!(till_day["rows"][0]["tax_minor"], 40);
    let store_tax = totals(&app, &format!("{day}&group_by=tax")).await;
    assert_eq!(store_tax["rows"][0]["sales_count"], 1);
    assert_eq!(store_tax["rows"][0]["tax_minor"], 70);
}

#[tokio::test]
async fn a_receipt_that_does_not_add_up_is_refused_with_its_code_and_stores_nothing() {
    let app = spawn_app().await;
    let till = till_in_store(&app, store("Europe/Berlin", "EUR", "00:00")).await;
    let eu = eu_receipt(1);
    let taxes = |taxes: Value| with(eu.clone(), json!({"taxes": taxes}));
    let cases = [
        (
            taxes(json!([{"code": "DE-19", "rate_bp": 1900, "amount_minor": 190}])),
            "taxes_total_mismatch",
        ),
        (
            taxes(
                json!([{"code": "DE-19", "rate_bp": 1900, "amount_minor": 190},
                         {"code": "DE-19", "rate_bp": 700, "amount_minor": 70}]),
            ),
            "invalid_taxes",
        ),
        (
            taxes(json!([{"code": "", "rate_bp": 1900, "amount_minor": 260}])),
            "invalid_taxes",
        ),
        (
            taxes(json!([{"code": "DE-19", "rate_bp": 100_001, "amount_minor": 260}])),
            "invalid_taxes",
        ),
        (
            taxes(
                json!([{"code": "DE-19", "rate_bp": 1900, "amount_minor": 300},
                         {"code": "DE-7", "rate_bp": 700, "amount_minor": -40}]),
            ),
            "invalid_taxes",
        ),
        // the tax on top but the total as if it were inside
        (
            with(eu.clone(), json!({"tax_included": false})),
            "lines_total_mismatch",
        ),
        (
            with(us_receipt(1), json!({"tip_minor": 200})),
            "lines_total_mismatch",
        ),
        (
            with(
                us_receipt(1),
                json!({"tip_minor": -300, "total_minor": 1309,
                                       "tenders": [{"method": "card", "amount_minor": 1309}]}),
            ),
            "negative_amount",
        ),
        (
            with(eu.clone(), json!({"service_charge_minor": -1})),
            "negative_amount",
        ),
        (
            with(
                eu.clone(),
                json!({"rounding_minor": 9_007_199_254_740_992_i64}),
            ),
            "amount_out_of_range",
        ),
        (
            with(
                eu.clone(),
                json!({"lines": [{"kind": "voucher", "sku": "X", "quantity": 1,
                                               "amount_minor": 2260}]}),
            ),
            "invalid_sale",
        ),
        (
            with(eu.clone(), json!({"tax_included": "yes"})),
            "invalid_sale",
        ),
    ];
    for (i, (sale, code)) in cases.iter().enumerate() {
        let sale = with(
            sale.clone(),
            json!({"seq": 10 + i as i64, "sale_id": Uuid::new_v4()}),
        );
        let body = app.push_ok(&till, &[sale]).await;
        assert_eq!(
            statuses(&body),
            vec![format!("rejected:{code}")],
            "case {i}: {body}"
        );
    }
    assert_eq!(app.stored_count(&till).await, 0);
}

#[tokio::test]
async fn a_sale_in_another_currency_is_stored_counted_in_its_own_and_listed() {
    let app = spawn_app().await;
    let till = till_in_store(&app, store("Europe/Berlin", "EUR", "00:00")).await;
    let in_chf = with(eu_receipt(1), json!({"currency": "CHF"}));
    let body = app.push_ok(&till, &[in_chf.clone(), eu_receipt(2)]).await;
    assert_eq!(statuses(&body), vec!["accepted", "accepted"]);
    let listed = app
        .exceptions(&app.merchant.token, "kind=currency_mismatch")
        .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["sale_ids"], json!([in_chf["sale_id"]]));
    assert_eq!(listed[0]["terminal_id"], json!(till.terminal_id));
    let report = totals(&app, "from=2026-11-20&to=2026-11-20").await;
    let currencies: Vec<&str> = (report["rows"].as_array().unwrap().iter())
        .map(|r| r["currency"].as_str().unwrap())
        .collect();
    assert_eq!(currencies, ["CHF", "EUR"]);
    // Pushed again (a retry): still one exception.
    app.push_ok(&till, &[in_chf]).await;
    let listed = app
        .exceptions(&app.merchant.token, "kind=currency_mismatch")
        .await;
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn a_split_total_beyond_what_json_holds_exactly_is_refused_never_rounded() {
    let app = spawn_app().await;
    let till = till_in_store(&app, store("Europe/Berlin", "EUR", "00:00")).await;
    let max = (1_i64 << 53) - 1;
    let tip = |seq: i64| {
        receipt(
            seq,
            "2026-11-20T10:00:00+01:00",
            "EUR",
            json!([{"sku": "X", "quantity": 1, "amount_minor": 0}]),
            json!({"tip_minor": max}),
        )
    };
    let body = app.push_ok(&till, &[tip(1), tip(2)]).await;
    assert_eq!(statuses(&body), vec!["accepted", "accepted"]);
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
    let response = app
        .get("/v1/sync?business_date=2026-11-20", &till.token)
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "total_out_of_range",
    )
    .await;
}
