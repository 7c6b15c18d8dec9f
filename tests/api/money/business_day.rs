//! Business days with a cutoff: a bar's night is one business day, a sale
//! at exactly the cutoff opens the next, the cutoff holds the night the
//! clocks change, and stores at UTC+14 and UTC-11 date the same instant two
//! days apart. Hour totals keep the local clock hour.

use serde_json::{Value, json};
use tillsync_testkit::sales::{sale_of, with};
use tillsync_testkit::spawn_app;

use super::{store, till_in_store, totals};

fn at(when: &str) -> Value {
    json!({"occurred_at": when})
}

/// (business date, local hour, sales) of each hour row.
async fn hours(app: &tillsync_testkit::TestApp, query: &str) -> Vec<(String, i64, i64)> {
    let report = totals(app, &format!("{query}&group_by=hour")).await;
    (report["rows"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["group"]["business_date"].as_str().unwrap().to_owned(),
                r["group"]["hour"].as_i64().unwrap(),
                r["sales_count"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_bars_night_is_one_business_day_and_the_cutoff_itself_opens_the_next() {
    let app = spawn_app().await;
    let bar = till_in_store(&app, store("Europe/Berlin", "EUR", "04:00")).await;
    app.push_ok(
        &bar,
        &[
            with(sale_of(1, 100), at("2026-11-20T23:00:00+01:00")),
            with(sale_of(2, 100), at("2026-11-21T02:00:00+01:00")),
            with(sale_of(3, 100), at("2026-11-21T03:59:59+01:00")),
            with(sale_of(4, 100), at("2026-11-21T04:00:00+01:00")),
        ],
    )
    .await;
    let by_day = totals(&app, "from=2026-11-19&to=2026-11-22&group_by=day").await;
    let days: Vec<(&str, i64)> = (by_day["rows"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["group"]["business_date"].as_str().unwrap(),
                r["sales_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days, [("2026-11-20", 3), ("2026-11-21", 1)]);
    assert_eq!(
        hours(&app, "from=2026-11-19&to=2026-11-22").await,
        [
            ("2026-11-20".to_owned(), 2, 1),
            ("2026-11-20".to_owned(), 3, 1),
            ("2026-11-20".to_owned(), 23, 1),
            ("2026-11-21".to_owned(), 4, 1),
        ]
    );
    // The till's day check dates them the same way.
    let sync: Value = app
        .get("/v1/sync?business_date=2026-11-20", &bar.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sync["business_day"]["sales_count"], 3);
}

#[tokio::test]
async fn the_cutoff_holds_the_nights_the_clocks_change() {
    let app = spawn_app().await;
    let bar = till_in_store(&app, store("Europe/Berlin", "EUR", "03:00")).await;
    app.push_ok(
        &bar,
        &[
            // 2026-10-25: 03:00 CEST goes back to 02:00 CET; both 02:30s
            // are before the cutoff.
            with(sale_of(1, 100), at("2026-10-25T02:30:00+02:00")),
            with(sale_of(2, 100), at("2026-10-25T02:30:00+01:00")),
            with(sale_of(3, 100), at("2026-10-25T03:00:00+01:00")),
            // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
            with(sale_of(4, 100), at("2026-03-29T01:59:00+01:00")),
            with(sale_of(5, 100), at("2026-03-29T03:00:00+02:00")),
        ],
    )
    .await;
    assert_eq!(
        hours(&app, "from=2026-03-28&to=2026-10-25").await,
        [
            ("2026-03-28".to_owned(), 1, 1),
            ("2026-03-29".to_owned(), 3, 1),
            ("2026-10-24".to_owned(), 2, 2),
            ("2026-10-25".to_owned(), 3, 1),
        ]
    );
}

#[tokio::test]
async fn stores_at_utc_plus_14_and_utc_minus_11_date_one_instant_two_days_apart() {
    let app = spawn_app().await;
    let kiritimati = till_in_store(&app, store("Pacific/Kiritimati", "USD", "00:00")).await;
    let pago_pago = till_in_store(&app, store("Pacific/Pago_Pago", "USD", "00:00")).await;
    let late_opening = till_in_store(&app, store("Pacific/Kiritimati", "USD", "04:00")).await;
    // 2026-11-20 12:00 UTC is 02:00 on the 21st at UTC+14 and 01:00 on the
    // 20th at UTC-11; but 00:30 UTC is 13:30 on the 19th at UTC-11.
    let noon = at("2026-11-20T12:00:00Z");
    app.push_ok(&kiritimati, &[with(sale_of(1, 100), noon.clone())])
        .await;
    app.push_ok(&pago_pago, &[with(sale_of(1, 100), noon.clone())])
        .await;
    app.push_ok(
        &pago_pago,
        &[with(sale_of(2, 100), at("2026-11-20T00:30:00Z"))],
    )
    .await;
    app.push_ok(&late_opening, &[with(sale_of(1, 100), noon)])
        .await;
    let by_store = |store_id: uuid::Uuid| {
        let app = &app;
        async move {
            let query = format!("from=2026-11-18&to=2026-11-22&store_id={store_id}");
            hours(app, &query).await
        }
    };
    assert_eq!(
        by_store(kiritimati.store_id).await,
        [("2026-11-21".to_owned(), 2, 1)]
    );
    assert_eq!(
        by_store(pago_pago.store_id).await,
        [
            ("2026-11-19".to_owned(), 13, 1),
            ("2026-11-20".to_owned(), 1, 1)
        ]
    );
    // 02:00 is before a 04:00 cutoff: the day before.
    assert_eq!(
        by_store(late_opening.store_id).await,
        [("2026-11-20".to_owned(), 2, 1)]
    );
}
