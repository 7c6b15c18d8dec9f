//! Exceptions: what pushes list for the back office (a payload refused for
//! good, a void whose sale has not arrived, a seq two sales hold), seqs a
//! till declares skipped, the list with its filters and pages, resolving
//! one, and the refusals of both routes.

use chrono::{Duration, Utc};
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use tillsync_testkit::sales::{refund_of, sale, void_of, with};
use uuid::Uuid;

use super::driver::{Driver, batch, new_key, too_large};

const RESOLVE: &str = "/v1/exceptions/{exception_id}/resolve";

/// The kinds of the exceptions listed at `url`.
async fn kinds(d: &mut Driver<'_>, url: &str, admin: &str) -> Vec<String> {
    let page = d.get(url, Some(admin), 200).await.json();
    let listed = page["exceptions"].as_array().unwrap();
    let mut kinds: Vec<String> = listed
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// Pushes, on a till of its own, what the back office must see, then
/// lists, pages, filters and resolves it.
pub async fn exceptions(d: &mut Driver<'_>, admin_token: &str) {
    let admin = Some(admin_token);
    let till = d.app.create_till().await;
    let token = till.token.clone();

    // A void whose sale is not here yet, a sale reusing seq 1, a sale
    // refused for good (seq 3), one refused until the till's clock is
    // right (seq 5), and seq 4 declared skipped.
    let first = sale(1);
    let absent = sale(10);
    let unbalanced = with(
        sale(3),
        json!({"tenders": [{"method": "cash", "amount_minor": 1}]}),
    );
    let ahead = (Utc::now() + Duration::hours(48)).to_rfc3339();
    let future = with(sale(5), json!({"occurred_at": ahead}));
    let body = json!({
        "sales": [first, void_of(2, &absent), sale(1), unbalanced, future],
        "skipped_seqs": [[4, 4]],
    });
    let body = serde_json::to_vec(&body).unwrap();
    let pushed = d.push(&token, Some(&new_key()), &body, 200).await.json();
    let results = pushed["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["accepted", "accepted", "accepted", "rejected", "rejected"],
        "{pushed}"
    );
    assert_eq!(results[3]["code"], "tenders_total_mismatch");
    assert_eq!(results[3]["retryable"], false);
    assert_eq!(results[4]["code"], "occurred_at_in_future");
    assert_eq!(results[4]["retryable"], true);
    // 1 and 2 stored, 3 refused for good, 4 skipped; 5 may still come.
    assert_eq!(pushed["contiguous_through_seq"], 4, "{pushed}");

    // Only seqs declared skipped; bounds refused.
    let only_skipped = json!({"sales": [], "skipped_seqs": [[6, 7]]});
    let only_skipped = serde_json::to_vec(&only_skipped).unwrap();
    let pushed = d
        .push(&token, Some(&new_key()), &only_skipped, 200)
        .await
        .json();
    assert_eq!(pushed["results"], json!([]));
    let backwards = serde_json::to_vec(&json!({"sales": [], "skipped_seqs": [[9, 7]]})).unwrap();
    let refused = d.push(&token, Some(&new_key()), &backwards, 422).await;
    assert_eq!(refused.json()["code"], "invalid_batch");
    let sync = d.get("/v1/sync", Some(&token), 200).await.json();
    assert_eq!(sync["highest_seq"], 7, "{sync}");
    assert_eq!(sync["missing_seq_ranges"], json!([[5, 5]]), "{sync}");

    d.app.settled().await;
    let scope = format!("terminal_id={}", till.terminal_id);
    let listed = kinds(d, &format!("/v1/exceptions?{scope}"), admin_token).await;
    assert_eq!(listed, ["refused", "seq_reused", "unmatched_reference"]);
    let url = format!("/v1/exceptions?{scope}&kind=refused&status=open&limit=5");
    let page = d.get(&url, admin, 200).await.json();
    let refused = page["exceptions"][0].clone();
    assert_eq!(refused["code"], "tenders_total_mismatch", "{page}");
    assert_eq!(refused["seq"], 3, "{page}");
    assert_eq!(refused["payload"]["sale_id"], body_sale_id(&body, 3));

    // Pages: newest first, the next one from the cursor.
    let url = format!("/v1/exceptions?{scope}&limit=1");
    let first_page = d.get(&url, admin, 200).await.json();
    let cursor = first_page["next_cursor"].as_str().unwrap().to_owned();
    let url = format!("/v1/exceptions?{scope}&limit=1&cursor={cursor}");
    let next = d.get(&url, admin, 200).await.json();
    assert_ne!(
        next["exceptions"][0]["exception_id"],
        first_page["exceptions"][0]["exception_id"]
    );

    resolve(d, admin_token, &token, &refused).await;
    let url = format!("/v1/exceptions?{scope}&status=resolved");
    assert_eq!(kinds(d, &url, admin_token).await, ["refused"]);
    let url = format!("/v1/exceptions?{scope}&status=all");
    assert_eq!(kinds(d, &url, admin_token).await.len(), 3);

    // The void's sale arrives: the void takes effect and stops waiting. A
    // refund of the first sale returns more of its first line than it sold,
    // for more than its total.
    let refund = with(
        refund_of(9, 2000, Some(&first)),
        json!({"lines": [{"sku": "COFFEE", "quantity": 2, "amount_minor": 2000, "refers_to_line": 0}]}),
    );
    let body = batch(&[with(absent, json!({"seq": 8})), refund]);
    let pushed = d.push(&token, Some(&new_key()), &body, 200).await.json();
    assert_eq!(pushed["accepted"], 2, "{pushed}");
    d.app.settled().await;
    let url = format!("/v1/exceptions?{scope}");
    let open = kinds(d, &url, admin_token).await;
    assert_eq!(open, ["line_over_returned", "over_refund", "seq_reused"]);

    list_refusals(d, admin_token, &token).await;
}

/// The `sale_id` of the sale with this seq in a pushed body.
fn body_sale_id(body: &[u8], seq: i64) -> Value {
    let body: Value = serde_json::from_slice(body).unwrap();
    let sales = body["sales"].as_array().unwrap();
    let found = sales.iter().find(|s| s["seq"] == seq).unwrap();
    found["sale_id"].clone()
}

/// Resolves `exception` twice (the first time is kept) and drives every
/// refusal of the resolve route.
async fn resolve(d: &mut Driver<'_>, admin_token: &str, till_token: &str, exception: &Value) {
    let (admin, till) = (Some(admin_token), Some(till_token));
    let id = exception["exception_id"].as_str().unwrap();
    let url = format!("/v1/exceptions/{id}/resolve");
    let note = json!({"note": "Keyed wrong; the receipt shows 350 in cash."});
    let post = |body: Value| move |r: RequestBuilder| r.json(&body);
    let resolved = d
        .call("POST", RESOLVE, &url, admin, 200, post(note.clone()))
        .await
        .json();
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["note"], note["note"]);
    let again = json!({"note": "Checked again."});
    let twice = d
        .call("POST", RESOLVE, &url, admin, 200, post(again))
        .await
        .json();
    assert_eq!(
        twice["resolved_at"], resolved["resolved_at"],
        "the first time is kept"
    );
    assert_eq!(twice["note"], "Checked again.");

    let json_body = |body: Vec<u8>| {
        move |r: RequestBuilder| r.header("content-type", "application/json").body(body)
    };
    let cut = b"{\"note\":".to_vec();
    d.call("POST", RESOLVE, &url, admin, 400, json_body(cut))
        .await;
    d.call("POST", RESOLVE, &url, None, 401, post(note.clone()))
        .await;
    d.call("POST", RESOLVE, &url, till, 403, post(note.clone()))
        .await;
    d.call("POST", RESOLVE, &url, admin, 413, json_body(too_large()))
        .await;
    let text = note.to_string();
    d.call("POST", RESOLVE, &url, admin, 415, |r| r.body(text))
        .await;
    for (body, code) in [
        (json!({"note": "  "}), "invalid_note"),
        (json!({"note": "a\u{0}b"}), "invalid_note"),
        (json!({"text": "done"}), "invalid_body"),
    ] {
        let problem = d.call("POST", RESOLVE, &url, admin, 422, post(body)).await;
        assert_eq!(problem.json()["code"], code);
    }
    for missing in [
        format!("/v1/exceptions/{}/resolve", Uuid::new_v4()),
        "/v1/exceptions/not-a-uuid/resolve".to_owned(),
    ] {
        let problem = d
            .call("POST", RESOLVE, &missing, admin, 404, post(note.clone()))
            .await;
        assert_eq!(problem.json()["code"], "exception_not_found");
    }
}

/// What the list refuses.
async fn list_refusals(d: &mut Driver<'_>, admin_token: &str, till_token: &str) {
    let admin = Some(admin_token);
    let unknown = Uuid::new_v4();
    let refusals: [(String, &str); 8] = [
        ("store_id=nope".into(), "invalid_query"),
        ("kind=lost".into(), "invalid_query"),
        ("status=closed".into(), "invalid_query"),
        ("limit=0".into(), "invalid_limit"),
        ("limit=1001".into(), "invalid_limit"),
        ("cursor=not-ours".into(), "invalid_cursor"),
        (format!("store_id={unknown}"), "store_not_found"),
        (format!("terminal_id={unknown}"), "terminal_not_found"),
    ];
    for (query, code) in refusals {
        d.refused(&format!("/v1/exceptions?{query}"), admin, code)
            .await;
    }
    d.get("/v1/exceptions", None, 401).await;
    d.get("/v1/exceptions", Some(till_token), 403).await;
}
