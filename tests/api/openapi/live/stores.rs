//! One store: opened with a business-day start, shown and changed (`GET`
//! and `PATCH /v1/stores/{store_id}`, with settings dated 6 s ahead), and
//! what both routes refuse.

use chrono::{DateTime, Duration, Utc};
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use tillsync_testkit::sales::with;
use uuid::Uuid;

use super::driver::{Driver, too_large};

const STORE: &str = "/v1/stores/{store_id}";

fn send(body: Value) -> impl FnOnce(RequestBuilder) -> RequestBuilder {
    move |r| r.json(&body)
}

fn raw(body: Vec<u8>) -> impl FnOnce(RequestBuilder) -> RequestBuilder {
    move |r| r.header("content-type", "application/json").body(body)
}

/// Opens a bar whose business day starts at 04:00, shows it, changes it,
/// and drives every refusal of both routes. Returns the store's URL.
pub async fn stores(d: &mut Driver<'_>, admin_token: &str, till_token: &str) -> String {
    let admin = Some(admin_token);
    let bar = json!({"name": "Bar", "timezone": "Europe/Berlin", "currency": "EUR",
                     "business_day_starts_at": "04:00"});
    let created = d.post("/v1/stores", admin, &bar, 201).await.json();
    assert_eq!(created["business_day_starts_at"], "04:00", "{created}");
    assert_eq!(created["settings_effective_from"], created["created_at"]);
    let late = with(bar.clone(), json!({"business_day_starts_at": "24:00"}));
    let refused = d.post("/v1/stores", admin, &late, 422).await.json();
    assert_eq!(refused["code"], "invalid_business_day_start");

    let id = created["store_id"].as_str().unwrap();
    let url = format!("/v1/stores/{id}");
    let shown = d.call("GET", STORE, &url, admin, 200, |r| r).await.json();
    assert_eq!(shown, created);

    // A new name dates nothing anew; a new time zone and cutoff take effect
    // 6 s after the change.
    let rename = send(json!({"name": "Bar Mitte"}));
    let renamed = d
        .call("PATCH", STORE, &url, admin, 200, rename)
        .await
        .json();
    assert_eq!(renamed["name"], "Bar Mitte");
    assert_eq!(
        renamed["settings_effective_from"],
        created["settings_effective_from"]
    );
    let asked = Utc::now();
    let change = send(json!({"timezone": "Europe/Vienna", "business_day_starts_at": "05:00"}));
    let changed = d
        .call("PATCH", STORE, &url, admin, 200, change)
        .await
        .json();
    assert_eq!(changed["timezone"], "Europe/Vienna");
    assert_eq!(changed["business_day_starts_at"], "05:00");
    assert_eq!(changed["name"], "Bar Mitte", "left as it was");
    let effective: DateTime<Utc> = changed["settings_effective_from"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(effective > asked + Duration::seconds(5), "{changed}");
    let shown = d.call("GET", STORE, &url, admin, 200, |r| r).await.json();
    assert_eq!(shown, changed);

    refusals(d, admin_token, till_token, &url).await;
    url
}

/// What GET and PATCH of a store refuse.
async fn refusals(d: &mut Driver<'_>, admin_token: &str, till_token: &str, url: &str) {
    let (admin, till) = (Some(admin_token), Some(till_token));
    let name = json!({"name": "Bar"});
    let other = d.app.create_merchant("Other").await;
    let missing = [
        format!("/v1/stores/{}", Uuid::new_v4()),
        "/v1/stores/not-a-uuid".to_owned(),
    ];
    for (path, token) in [
        (missing[0].as_str(), admin),
        (missing[1].as_str(), admin),
        (url, Some(other.token.as_str())),
    ] {
        let shown = d.call("GET", STORE, path, token, 404, |r| r).await;
        assert_eq!(shown.json()["code"], "store_not_found");
        let changed = d
            .call("PATCH", STORE, path, token, 404, send(name.clone()))
            .await;
        assert_eq!(changed.json()["code"], "store_not_found");
    }
    d.call("GET", STORE, url, None, 401, |r| r).await;
    d.call("GET", STORE, url, till, 403, |r| r).await;
    d.call("PATCH", STORE, url, None, 401, send(name.clone()))
        .await;
    d.call("PATCH", STORE, url, till, 403, send(name.clone()))
        .await;
    let cut = b"{\"name\":".to_vec();
    d.call("PATCH", STORE, url, admin, 400, raw(cut)).await;
    d.call("PATCH", STORE, url, admin, 413, raw(too_large()))
        .await;
    let text = name.to_string();
    d.call("PATCH", STORE, url, admin, 415, |r| r.body(text))
        .await;
    for (body, code) in [
        (
            json!({"business_day_starts_at": "4:30"}),
            "invalid_business_day_start",
        ),
        (json!({"timezone": "Mars/Olympus"}), "invalid_timezone"),
        (json!({"name": "  "}), "invalid_name"),
        // a store's sales are counted in its currency: it cannot change
        (json!({"currency": "USD"}), "invalid_body"),
    ] {
        let problem = d.call("PATCH", STORE, url, admin, 422, send(body)).await;
        assert_eq!(problem.json()["code"], code);
    }
    let unchanged = d.call("GET", STORE, url, admin, 200, |r| r).await.json();
    assert_eq!(unchanged["name"], "Bar Mitte", "{unchanged}");
    assert_eq!(unchanged["currency"], "EUR", "{unchanged}");
}
