//! Refusals that need no particular operation: a path that is no route, a
//! method a route does not have, and the rate limit.

use tillsync_testkit::sales::sale;
use uuid::Uuid;

use super::driver::{Driver, batch};
use crate::support::contract::Seen;

/// A path that is no route (404) and a method a route does not have (405).
pub async fn not_a_route(d: &mut Driver<'_>) {
    let responses = d.contract.doc["components"]["responses"].clone();
    let seen = Seen::from(
        d.app
            .client
            .get(format!("{}/v2/nothing", d.app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.status, 404);
    d.contract
        .check_response("GET /v2/nothing", &responses["NotFound"], &seen);
    let seen = Seen::from(
        d.app
            .client
            .delete(format!("{}/v1/stores", d.app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.status, 405);
    d.contract
        .check_response("DELETE /v1/stores", &responses["MethodNotAllowed"], &seen);
}

/// The rate limit, on a till of its own.
pub async fn rate_limit(d: &mut Driver<'_>) {
    let noisy = d.app.create_till().await;
    let mut limited = false;
    for _ in 0..40 {
        let seen = d
            .send("GET", "/v1/sync", "/v1/sync", Some(&noisy.token), |r| r)
            .await;
        limited = seen.status == 429;
        if limited {
            break;
        }
    }
    assert!(limited, "the rate limit never answered 429");
    let key = Uuid::new_v4().to_string();
    d.push(&noisy.token, Some(&key), &batch(&[sale(1)]), 429)
        .await;
}
