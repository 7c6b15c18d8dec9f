//! Retirement: a till taken out of service still lands the sales it made
//! before; one made after is refused for good and listed; the fleet view
//! shows when; and what the retire route refuses.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use tillsync_testkit::sales::{sale, with};
use uuid::Uuid;

use super::driver::{Driver, batch, new_key};

const RETIRE: &str = "/v1/terminals/{terminal_id}/retire";

pub async fn retirement(d: &mut Driver<'_>, admin_token: &str) {
    let admin = Some(admin_token);
    let till = d.app.create_till().await;
    let url = format!("/v1/terminals/{}/retire", till.terminal_id);
    let retired = d.call("POST", RETIRE, &url, admin, 200, |r| r).await.json();
    assert_eq!(retired["revoked"], false, "{retired}");
    let retired_at = retired["retired_at"].clone();
    assert!(retired_at.is_string(), "{retired}");
    let again = d.call("POST", RETIRE, &url, admin, 200, |r| r).await.json();
    assert_eq!(again["retired_at"], retired_at, "the first time is kept");

    // Its queue still lands: a sale made before retirement is accepted,
    // one made after is refused for good.
    let later = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let after = with(sale(2), json!({"occurred_at": later}));
    let body = batch(&[sale(1), after]);
    let pushed = d
        .push(&till.token, Some(&new_key()), &body, 200)
        .await
        .json();
    let results = &pushed["results"];
    assert_eq!(results[0]["status"], "accepted", "{pushed}");
    assert_eq!(results[1]["code"], "terminal_retired", "{pushed}");
    assert_eq!(results[1]["retryable"], false, "{pushed}");
    assert_eq!(pushed["contiguous_through_seq"], 2, "{pushed}");

    let url = format!("/v1/terminals?store_id={}", till.store_id);
    let fleet = d.get(&url, admin, 200).await.json();
    let listed: &Value = &fleet["terminals"][0];
    assert_eq!(listed["retired_at"], retired_at, "{fleet}");
    assert_eq!(listed["missing_count"], 0, "{fleet}");

    let till_token = Some(till.token.as_str());
    let url = format!("/v1/terminals/{}/retire", till.terminal_id);
    d.call("POST", RETIRE, &url, till_token, 403, |r| r).await;
    d.call("POST", RETIRE, &url, None, 401, |r| r).await;
    for missing in [
        format!("/v1/terminals/{}/retire", Uuid::new_v4()),
        "/v1/terminals/not-a-uuid/retire".to_owned(),
    ] {
        let problem = d.call("POST", RETIRE, &missing, admin, 404, |r| r).await;
        assert_eq!(problem.json()["code"], "terminal_not_found");
    }
}
