//! Ingest and review: pushes (replays, refusals, a conflict), the sync
//! view, and the conflicts a push left for review.

use serde_json::json;
use tillsync_testkit::sales::{sale, with};
use uuid::Uuid;

use super::driver::{Driver, batch, new_key, too_large};

/// Pushes as the till holding `till_token`: it then holds seqs 1 and 4 of
/// 2026-11-20, and one payload was rejected as a `sale_id_conflict`.
pub async fn ingest(d: &mut Driver<'_>, admin_token: &str, till_token: &str) {
    let till_token = till_token.to_owned();
    let till = Some(till_token.as_str());
    let admin = Some(admin_token);
    let first = sale(1);
    let body = batch(&[first.clone(), with(sale(2), json!({"seq": 0}))]);
    let key = Uuid::new_v4().to_string();
    d.push(&till_token, Some(&key), &body, 200).await;
    let replay = d.push(&till_token, Some(&key), &body, 200).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    d.push(&till_token, Some(&key), &batch(&[sale(3)]), 422)
        .await;
    d.push(&till_token, None, &body, 400).await;
    d.push(&till_token, Some(&new_key()), b"{\"sales\": [", 400)
        .await;
    d.push(&till_token, Some(&new_key()), &batch(&[]), 422)
        .await;
    d.push(&till_token, Some(&new_key()), &too_large(), 413)
        .await;
    d.push(admin_token, Some(&new_key()), &body, 403).await;
    d.push("tst_nonsense", Some(&new_key()), &body, 401).await;
    let conflicting = with(first.clone(), json!({"tax_minor": 100}));
    let pushed = d
        .push(
            &till_token,
            Some(&new_key()),
            &batch(&[conflicting, sale(4)]),
            200,
        )
        .await;
    assert_eq!(pushed.json()["results"][0]["code"], "sale_id_conflict");
    d.get("/v1/sync?business_date=2026-11-20", till, 200).await;
    d.get("/v1/sync?business_date=20-11-2026", till, 400).await;
    d.get("/v1/sync", None, 401).await;
    d.get("/v1/sync", admin, 403).await;
}

/// The conflicts left by `ingest`, as a merchant admin reviews them.
pub async fn review(d: &mut Driver<'_>, admin_token: &str, till_token: &str) {
    let (admin, till) = (Some(admin_token), Some(till_token));
    let page = d.get("/v1/conflicts?limit=1", admin, 200).await.json();
    assert_eq!(page["conflicts"].as_array().unwrap().len(), 1);
    d.get("/v1/conflicts?limit=0", admin, 400).await;
    d.get("/v1/conflicts?cursor=not-ours", admin, 400).await;
    d.get("/v1/conflicts", None, 401).await;
    d.get("/v1/conflicts", till, 403).await;
}
