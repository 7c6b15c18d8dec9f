//! A store's settings are dated: a change of time zone or business-day
//! start takes effect a few seconds after its PATCH, a sale stored keeps its
//! business date, and a sale that occurred before the change but arrives
//! after it gets the date the old settings give it.

use chrono::{DateTime, Duration, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tillsync_testkit::sales::{sale_of, with};
use tillsync_testkit::{TestApp, assert_problem, spawn_app};

use super::{store, till_in_store, totals};

async fn patch(app: &TestApp, store_id: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(format!("{}/v1/stores/{store_id}", app.address))
        .bearer_auth(&app.merchant.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A fixed-offset zone where it is now between 06:00 and 18:00, so that a
/// cutoff at 23:00 puts every sale of the next minutes on the day before.
fn zone_around_noon(now: DateTime<Utc>) -> (String, i64) {
    let offset = 12 - now.hour() as i64; // -11 ..= 12
    // Etc/GMT-5 is UTC+5: the sign is POSIX's, the other way round.
    let name = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    (name, offset)
}

fn stamp(at: DateTime<Utc>) -> Value {
    json!({"occurred_at": at.to_rfc3339()})
}

#[tokio::test]
async fn a_change_dates_sales_from_when_it_takes_effect_whenever_they_arrive() {
    let app = spawn_app().await;
    let now = Utc::now();
    let (zone, offset) = zone_around_noon(now);
    let till = till_in_store(&app, store(&zone, "EUR", "00:00")).await;
    let store_id = till.store_id.to_string();
    let local_day = |at: DateTime<Utc>| (at + Duration::hours(offset)).date_naive();
    let today = local_day(now);
    let yesterday = today.pred_opt().unwrap();

    // Stored before the change.
    let early = now - Duration::seconds(60);
    app.push_ok(&till, &[with(sale_of(1, 100), stamp(early))])
        .await;

    let changed = patch(&app, &store_id, json!({"business_day_starts_at": "23:00"})).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["business_day_starts_at"], "23:00");
    assert_eq!(changed["timezone"], zone);
    let effective: DateTime<Utc> = changed["settings_effective_from"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let after_patch = Utc::now();
    assert!(
        effective > after_patch + Duration::seconds(4),
        "{effective} vs {after_patch}"
    );
    assert!(
        effective <= after_patch + Duration::seconds(7),
        "{effective} vs {after_patch}"
    );

    // Occurred before the change, arrives after it takes effect.
    let offline = now - Duration::seconds(30);
    tokio::time::sleep(
        (effective - Utc::now() + Duration::milliseconds(500))
            .to_std()
            .unwrap(),
    )
    .await;
    app.push_ok(&till, &[with(sale_of(2, 100), stamp(offline))])
        .await;
    // Occurred after it: before 23:00 local, so the business day before.
    let late = Utc::now();
    app.push_ok(&till, &[with(sale_of(3, 100), stamp(late))])
        .await;

    let query = format!("from={yesterday}&to={today}&group_by=day");
    let report = totals(&app, &query).await;
    let days: Vec<(String, i64)> = (report["rows"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["group"]["business_date"].as_str().unwrap().to_owned(),
                r["sales_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [(yesterday.to_string(), 1), (today.to_string(), 2)],
        "stored and late sales keep the old rule; the new one dates only what occurred after it"
    );

    // The store shows its settings.
    let shown: Value = app
        .get(&format!("/v1/stores/{store_id}"), &app.merchant.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["business_day_starts_at"], "23:00");
    assert_eq!(
        shown["settings_effective_from"],
        changed["settings_effective_from"]
    );
}

#[tokio::test]
async fn a_store_change_checks_what_it_is_given_and_changes_only_what_it_names() {
    let app = spawn_app().await;
    let till = till_in_store(&app, store("Europe/Berlin", "EUR", "04:30")).await;
    let store_id = till.store_id.to_string();
    let shown: Value = app
        .get(&format!("/v1/stores/{store_id}"), &app.merchant.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["business_day_starts_at"], "04:30");
    let created_effective = shown["settings_effective_from"].clone();
    assert_eq!(created_effective, shown["created_at"]);

    // A new name dates nothing anew.
    let renamed: Value = patch(&app, &store_id, json!({"name": "Bar Mitte"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Bar Mitte");
    assert_eq!(renamed["business_day_starts_at"], "04:30");
    assert_eq!(renamed["settings_effective_from"], created_effective);

    for (body, status, code) in [
        (
            json!({"business_day_starts_at": "4:30"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_business_day_start",
        ),
        (
            json!({"business_day_starts_at": "24:00"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_business_day_start",
        ),
        (
            json!({"timezone": "Mars/Olympus"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_timezone",
        ),
        (
            json!({"name": "  "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        // a store's sales are counted in its currency: it cannot change
        (
            json!({"currency": "USD"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let response = patch(&app, &store_id, body.clone()).await;
        assert_problem(response, status, code).await;
    }
    let response = patch(
        &app,
        &uuid::Uuid::new_v4().to_string(),
        json!({"name": "X"}),
    )
    .await;
    assert_problem(response, StatusCode::NOT_FOUND, "store_not_found").await;
    let response = patch(&app, "not-a-uuid", json!({"name": "X"})).await;
    assert_problem(response, StatusCode::NOT_FOUND, "store_not_found").await;
    // Another merchant's store is not there.
    let other = app.create_merchant("Other").await;
    let response = app
        .client
        .patch(format!("{}/v1/stores/{store_id}", app.address))
        .bearer_auth(&other.token)
        .json(&json!({"name": "Mine now"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "store_not_found").await;
    let response = app
        .post_json(
            "/v1/stores",
            &app.merchant.token,
            &store("Europe/Berlin", "EUR", "25:00"),
        )
        .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_business_day_start",
    )
    .await;

    let unchanged: Value = app
        .get(&format!("/v1/stores/{store_id}"), &app.merchant.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["name"], "Bar Mitte");
    assert_eq!(unchanged["timezone"], "Europe/Berlin");
    assert_eq!(unchanged["currency"], "EUR");
    assert_eq!(unchanged["business_day_starts_at"], "04:30");
}
