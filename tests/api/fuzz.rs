//! HTTP fuzzing of ingest against a running server: a few hundred random
//! and mutated batches (NULs, lone surrogates, huge, negative and
//! fractional numbers, deep nesting, wrong types, repeated and unknown
//! members, malformed envelopes, replays) from three tills of one merchant,
//! while a second merchant looks on. Invariants:
//! - no answer is a 5xx; a malformed envelope is a 4xx;
//! - every `rejected` result has a code and a detail, one result per sale;
//! - the fuzzed merchant's tenant tables change only as the accepted sales
//!   explain: its stored sales are exactly the accepted ones, its totals
//!   (per hour, day, tender and store) are what those sales imply, its
//!   sync state, kept conflicts and stored responses match the answers;
//! - the second merchant's rows in every table with a `merchant_id` are
//!   byte for byte what they were.
//!
//! The seed is printed; `FUZZ_SEED=<n>` replays a run.

mod inputs;
mod ledger;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use inputs::{Fuzzer, Request};
use ledger::{Sent, Totals};
use tillsync_testkit::sales::sale;
use tillsync_testkit::{TestApp, Till, spawn_app};

const DEFAULT_SEED: u64 = 20_261_121;
const REQUESTS: usize = 300;
const TILLS: usize = 3;

/// The fuzzed merchant's answers, as the invariants need them.
#[derive(Default)]
struct Seen {
    /// Per till, the accepted sales as sent.
    accepted: Vec<Vec<String>>,
    /// Per till, the seqs of the sales refused for good: settled, the
    /// contiguous prefix walks over them.
    settled: Vec<HashSet<i64>>,
    /// Batches answered 200 the first time (each under its own key).
    fresh_batches: i64,
    conflicts: i64,
    /// How many results of each status and code, for the summary line.
    outcomes: BTreeMap<String, usize>,
    /// (till, key, body, answer) of fresh batches, to replay.
    answered: Vec<(usize, String, Vec<u8>, Vec<u8>)>,
}

#[tokio::test]
async fn random_and_mutated_batches_never_fail_the_server_nor_touch_another_tenant() {
    let seed = std::env::var("FUZZ_SEED").map_or(DEFAULT_SEED, |s| s.parse().unwrap());
    println!("fuzz seed {seed} (replay with FUZZ_SEED={seed})");
    let started = Instant::now();
    let app = spawn_app().await;
    let mut tills = Vec::new();
    for _ in 0..TILLS {
        tills.push(app.create_till().await);
    }
    let bystander = bystander(&app).await;
    let before = tenant_checksums(&app.db, bystander).await;

    let mut fuzzer = Fuzzer::new(seed, TILLS);
    let mut seen = Seen {
        accepted: vec![Vec::new(); TILLS],
        settled: vec![HashSet::new(); TILLS],
        ..Seen::default()
    };
    for n in 0..REQUESTS {
        let at = format!("seed {seed}, request {n}");
        let t = n % TILLS;
        if !seen.answered.is_empty() && fuzzer.chance(0.05) {
            replay(&app, &tills, &mut fuzzer, &seen, &at).await;
            continue;
        }
        match fuzzer.request(t) {
            Request::Batch(sales) => {
                let body = format!(r#"{{"sales": [{}]}}"#, sales.join(","));
                let key = fuzzer.uuid().to_string();
                let (status, answer) = send(&app, &tills[t], &key, body.as_bytes(), &at).await;
                assert_eq!(status, StatusCode::OK, "{at}: {}", preview(&answer));
                record(&mut seen, t, &sales, &answer, &at);
                seen.answered.push((t, key, body.into_bytes(), answer));
            }
            Request::Malformed(body) => {
                let (status, answer) =
                    send(&app, &tills[t], &fuzzer.uuid().to_string(), &body, &at).await;
                assert!(
                    status.is_client_error(),
                    "{at}: {status} {}",
                    preview(&answer)
                );
                let problem: Value = serde_json::from_slice(&answer).unwrap();
                assert!(problem["code"].is_string(), "{at}: {problem}");
            }
        }
    }
    fuzz_names(&app, &mut fuzzer, tills[0].store_id).await;

    check_the_fuzzed_merchant(&app, &tills, &seen).await;
    assert_eq!(
        tenant_checksums(&app.db, bystander).await,
        before,
        "seed {seed}: the second merchant's rows changed"
    );
    let accepted: usize = seen.accepted.iter().map(Vec::len).sum();
    println!(
        "fuzz seed {seed}: {REQUESTS} requests, {accepted} sales accepted, {:.1} s; {:?}",
        started.elapsed().as_secs_f64(),
        seen.outcomes
    );
}

/// Sends a batch, waiting out the till's rate limit; no answer may be a 5xx.
async fn send(
    app: &TestApp,
    till: &Till,
    key: &str,
    body: &[u8],
    at: &str,
) -> (StatusCode, Vec<u8>) {
    loop {
        let response = app.push_raw(till, key, body.to_vec()).await;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait_s: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(wait_s)).await;
            continue;
        }
        let answer = response.bytes().await.unwrap().to_vec();
        assert!(
            !status.is_server_error(),
            "{at}: {status}: {}",
            preview(&answer)
        );
        return (status, answer);
    }
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned()
}

/// Checks one fresh batch answer and notes its accepted sales.
fn record(seen: &mut Seen, till: usize, sales: &[String], answer: &[u8], at: &str) {
    let answer: Value = serde_json::from_slice(answer).unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), sales.len(), "{at}: one result per sale");
    seen.fresh_batches += 1;
    for (result, sale) in results.iter().zip(sales) {
        let outcome = result["code"].as_str().or(result["status"].as_str());
        *seen
            .outcomes
            .entry(outcome.unwrap_or("?").to_owned())
            .or_default() += 1;
        match result["status"].as_str().unwrap() {
            "accepted" => seen.accepted[till].push(sale.clone()),
            "duplicate" => {}
            "rejected" => {
                let code = result["code"].as_str().unwrap_or_default();
                assert!(
                    !code.is_empty(),
                    "{at}: a rejection without a code: {result}"
                );
                assert!(result["detail"].is_string(), "{at}: {result}");
                let retryable = result["retryable"].as_bool();
                assert!(
                    retryable.is_some(),
                    "{at}: says whether it may be sent again: {result}"
                );
                seen.conflicts += i64::from(code == "sale_id_conflict");
                if retryable == Some(false)
                    && let Some(seq) = seq_of(sale)
                {
                    seen.settled[till].insert(seq);
                }
            }
            other => panic!("{at}: status {other}"),
        }
    }
}

/// The seq a sale as sent holds, as the server reads it (from a sale it
/// could not read, too), if it is one a seq can be.
fn seq_of(sale: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct SeqProbe {
        seq: Option<i64>,
    }
    let seq = serde_json::from_str::<SeqProbe>(sale).ok()?.seq?;
    (1..=(1 << 53) - 1).contains(&seq).then_some(seq)
}

/// Repeats an answered batch: the same answer byte for byte, or with a
/// changed body, 422.
async fn replay(app: &TestApp, tills: &[Till], fuzzer: &mut Fuzzer, seen: &Seen, at: &str) {
    let (t, key, body, first) = &seen.answered[fuzzer.below(seen.answered.len())];
    let (status, answer) = send(app, &tills[*t], key, body, at).await;
    assert_eq!((status, &answer), (StatusCode::OK, first), "{at}: replay");
    let mut changed = body.clone();
    changed.insert(1, b' ');
    let (status, _) = send(app, &tills[*t], key, &changed, at).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{at}: key reused");
}

/// Hostile store and terminal names: 201 or 422, never a 5xx.
async fn fuzz_names(app: &TestApp, fuzzer: &mut Fuzzer, store_id: Uuid) {
    let names = [
        json!("Main\u{0}Street"),
        json!("\u{0}"),
        json!("x".repeat(201)),
        json!("é".repeat(200)),
        json!(12),
        json!(null),
    ];
    for name in names {
        let (path, body) = if fuzzer.chance(0.5) {
            (
                "/v1/stores",
                json!({"name": name, "timezone": "UTC", "currency": "EUR"}),
            )
        } else {
            ("/v1/terminals", json!({"name": name, "store_id": store_id}))
        };
        let response = app
            .client
            .post(format!("{}{path}", app.address))
            .bearer_auth(&app.merchant.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {status}"
        );
    }
}

async fn check_the_fuzzed_merchant(app: &TestApp, tills: &[Till], seen: &Seen) {
    let merchant = app.merchant.merchant_id;
    let count = async |table: &str| -> i64 {
        let sql = format!("select count(*) from {table} where merchant_id = $1");
        sqlx::query_scalar(&sql)
            .bind(merchant)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    assert_eq!(count("idempotency_keys").await, seen.fresh_batches);
    assert_eq!(count("sale_conflicts").await, seen.conflicts);
    let accepted: usize = seen.accepted.iter().map(Vec::len).sum();
    assert_eq!(count("sales").await, accepted as i64);
    app.settled().await;

    let all: Vec<Sent> = seen
        .accepted
        .iter()
        .flatten()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    for ((till, accepted), settled) in tills.iter().zip(&seen.accepted).zip(&seen.settled) {
        let sent: Vec<Sent> = accepted
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        let stored: HashSet<Uuid> =
            sqlx::query_scalar("select sale_id from sales where terminal_id = $1")
                .bind(till.terminal_id)
                .fetch_all(&app.db)
                .await
                .unwrap()
                .into_iter()
                .collect();
        let sent_ids: HashSet<Uuid> = sent.iter().map(|s| s.sale_id).collect();
        assert_eq!(stored, sent_ids, "the stored sales are the accepted ones");

        let implied = Totals::implied_by(&sent, &all);
        assert_eq!(Totals::of_till(&app.db, till.terminal_id).await, implied);
        assert_eq!(
            Totals::store_days(&app.db, till.store_id).await,
            implied.days
        );

        let sync = app
            .client
            .get(format!("{}/v1/sync", app.address))
            .bearer_auth(&till.token)
            .send()
            .await
            .unwrap();
        assert_eq!(sync.status(), StatusCode::OK);
        let sync: Value = sync.json().await.unwrap();
        let seqs: HashSet<i64> = sent
            .iter()
            .map(|s| s.seq)
            .chain(settled.iter().copied())
            .collect();
        let contiguous = (1..).find(|seq| !seqs.contains(seq)).unwrap() - 1;
        assert_eq!(sync["highest_seq"], seqs.iter().max().copied().unwrap_or(0));
        assert_eq!(sync["contiguous_through_seq"], contiguous);
        assert_eq!(sync["sales_stored"], sent.len());
    }
}

/// A second merchant with a till that pushed a few sales, settled: its
/// store deltas folded, so nothing of it changes unless something leaks.
async fn bystander(app: &TestApp) -> Uuid {
    let merchant = app.create_merchant("Bystander").await;
    let store = app.create_store_as(&merchant, "Europe/Berlin", "EUR").await;
    let till = app.create_till_in(&merchant, store).await;
    let body = json!({"sales": [sale(1), sale(2), sale(4)]}).to_string();
    let (status, _) = send(
        app,
        &till,
        &Uuid::new_v4().to_string(),
        body.as_bytes(),
        "bystander",
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let merchant_id = merchant.merchant_id;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>(
        "select count(*) from store_day_deltas where merchant_id = $1",
    )
    .bind(merchant_id)
    .fetch_one(&app.db)
    .await
    .unwrap()
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the store deltas were never folded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    merchant_id
}

/// Per table with a `merchant_id` column, an md5 of the merchant's rows.
async fn tenant_checksums(db: &PgPool, merchant_id: Uuid) -> BTreeMap<String, String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.columns \
         where table_schema = 'public' and column_name = 'merchant_id' order by 1",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for expected in [
        "sales",
        "sales_day_totals",
        "terminal_sync",
        "idempotency_keys",
        "store_day_totals",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} has no merchant_id"
        );
    }
    let mut sums = BTreeMap::new();
    for table in tables {
        let sum: String = sqlx::query_scalar(&format!(
            "select md5(coalesce(string_agg(t::text, ',' order by t::text), '')) \
             from {table} t where merchant_id = $1"
        ))
        .bind(merchant_id)
        .fetch_one(db)
        .await
        .unwrap();
        sums.insert(table, sum);
    }
    sums
}
