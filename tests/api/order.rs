//! Order independence, as a tested property: for any history of sales,
//! refunds and voids rung up on several tills of a store, every delivery
//! order, batching and duplication gives the same totals (every
//! `group_by`), sales list, sync state (and end-of-day checks) and
//! exception list as the history pushed in order, one fact at a time.
//!
//! proptest generates the histories: voids and refunds naming a sale of any
//! till (or one that never arrives), several voids of one sale, voids of
//! voids and of refunds, refunds beyond a total or returning more than a
//! line sold, voids that do not mirror their sale, sales refused for good,
//! a till reissuing seqs it used (restored from a backup), facts on either
//! side of midnight and of the store's 04:00 business-day cutoff, receipts
//! of three styles (tax inside; tax on top by two rates with a tip; a gift
//! card with a service charge and rounding). Each delivery is the history
//! cut into pushes of a few facts, in a random order across and within
//! tills (a void may well come before its sale), some pushes sent again (a
//! replay under the same key, a retry under a new one). Every delivery runs as a merchant of its own on
//! one server, so a case costs a few seconds; `PROPTEST_CASES` sets how many
//! (default 12).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use tillsync_testkit::{Merchant, TestApp, Till, spawn_app_with};

/// What one fact of a history is, before it is written out as a sale.
#[derive(Debug, Clone)]
struct Spec {
    till: usize,
    /// 0..6 a sale, 6..8 a refund, 8..10 a void.
    kind: u8,
    /// Which earlier fact a refund or void names.
    names: prop::sample::Index,
    /// 1 in 8 refunds names a sale that never arrives.
    names_nothing: bool,
    total: i64,
    minutes_later: u32,
    /// 1 in 12 facts is refused for good (its tenders do not add up).
    broken: bool,
    /// 1 in 12 facts reissues a seq its till used already.
    reissues_seq: bool,
    /// A void that does not mirror its sale; a refund that names the line
    /// it returns.
    odd: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0usize..3,
        0u8..10,
        any::<prop::sample::Index>(),
        prop::bool::weighted(0.125),
        1i64..60,
        0u32..180,
        (
            prop::bool::weighted(0.08),
            prop::bool::weighted(0.08),
            prop::bool::weighted(0.2),
        ),
    )
        .prop_map(
            |(
                till,
                kind,
                names,
                names_nothing,
                total,
                minutes_later,
                (broken, reissues_seq, odd),
            )| {
                Spec {
                    till,
                    kind,
                    names,
                    names_nothing,
                    total: total * 10,
                    minutes_later,
                    broken,
                    reissues_seq,
                    odd,
                }
            },
        )
}

/// A history: the facts of `tills` tills, in the order they happened, each
/// with the till that rang it.
#[derive(Debug, Clone)]
struct History {
    tills: usize,
    facts: Vec<(usize, Value)>,
}

/// Writes `specs` out as sales, refunds and voids with balanced amounts,
/// from 2026-11-20 18:00 in Berlin, a few minutes to hours apart (so some
/// fall on the next day).
fn history(tills: usize, specs: &[Spec]) -> History {
    let mut facts: Vec<(usize, Value)> = Vec::new();
    let mut seqs = vec![0i64; tills];
    let mut at = chrono::DateTime::parse_from_rfc3339("2026-11-20T18:00:00+01:00").unwrap();
    for (n, spec) in specs.iter().enumerate() {
        let till = spec.till % tills;
        at += chrono::Duration::minutes(i64::from(spec.minutes_later));
        let seq = if spec.reissues_seq && seqs[till] > 1 {
            seqs[till] - 1
        } else {
            seqs[till] += 1;
            seqs[till]
        };
        let id = Uuid::from_u128(0x5eed_0000 + n as u128);
        let earlier: Vec<&Value> = facts.iter().map(|(_, f)| f).collect();
        let mut fact = match spec.kind {
            0..6 => sale(id, seq, at, spec.total),
            6..8 => {
                let sales: Vec<&Value> = earlier
                    .iter()
                    .copied()
                    .filter(|f| f["kind"] == "sale")
                    .collect();
                let mut refund = sale(id, seq, at, spec.total);
                refund["kind"] = json!("refund");
                refund["tenders"] = json!([{"method": "cash", "amount_minor": spec.total}]);
                if spec.names_nothing || sales.is_empty() {
                    refund["refers_to_sale_id"] = json!(Uuid::from_u128(0xdead_0000 + n as u128));
                } else {
                    let named = sales[spec.names.index(sales.len())];
                    refund["refers_to_sale_id"] = named["sale_id"].clone();
                    if spec.odd {
                        refund["lines"][0]["refers_to_line"] = json!(0);
                    }
                }
                refund
            }
            _ if earlier.is_empty() => sale(id, seq, at, spec.total),
            _ => {
                let named = earlier[spec.names.index(earlier.len())];
                let mut void = named.clone();
                void["sale_id"] = json!(id);
                void["seq"] = json!(seq);
                void["kind"] = json!("void");
                void["occurred_at"] = json!(at.to_rfc3339());
                void["refers_to_sale_id"] = named["sale_id"].clone();
                if spec.odd {
                    // Mirrors another amount than its sale's.
                    let total = spec.total;
                    void["lines"] = json!([{"sku": "X", "quantity": 1, "amount_minor": total}]);
                    void["tenders"] = json!([{"method": "card", "amount_minor": total}]);
                    void["total_minor"] = json!(total);
                    void["tax_minor"] = json!(total / 10);
                    void["discount_minor"] = json!(0);
                    let members = void.as_object_mut().unwrap();
                    for receipt_member in [
                        "tax_included",
                        "tip_minor",
                        "taxes",
                        "service_charge_minor",
                        "rounding_minor",
                    ] {
                        members.remove(receipt_member);
                    }
                }
                void
            }
        };
        if spec.broken {
            fact["tenders"] = json!([{"method": "card", "amount_minor": 1}]);
        }
        facts.push((till, fact));
    }
    History { tills, facts }
}

/// A sale of `total` in one of three receipt styles (by its total): tax
/// inside the lines; tax on top by two rates, with a tip; a gift card sold
/// beside an item, with a service charge and cash rounding.
fn sale(id: Uuid, seq: i64, at: chrono::DateTime<chrono::FixedOffset>, total: i64) -> Value {
    let mut sale = json!({
        "sale_id": id, "seq": seq, "kind": "sale", "occurred_at": at.to_rfc3339(),
        "currency": "EUR",
        "lines": [
            {"sku": "A", "quantity": 2, "amount_minor": total / 2},
            {"sku": "B", "quantity": 1, "amount_minor": total - total / 2}
        ],
        "tenders": [{"method": "card", "amount_minor": total}],
        "total_minor": total, "tax_minor": total / 10, "discount_minor": 0
    });
    match total % 30 {
        0 => {
            // lines add up to total - tax - tip
            let (tax, tip) = (total / 10, total / 20);
            let lines = total - tax - tip;
            sale["lines"] = json!([{"sku": "A", "quantity": 1, "amount_minor": lines}]);
            sale["tax_included"] = json!(false);
            sale["tip_minor"] = json!(tip);
            sale["taxes"] = json!([
                {"code": "S", "rate_bp": 700, "amount_minor": tax / 2},
                {"code": "R", "rate_bp": 300, "amount_minor": tax - tax / 2}
            ]);
        }
        10 => {
            let (service, rounding) = (total / 20, -1);
            let items = total - service - rounding;
            sale["lines"] = json!([
                {"sku": "A", "quantity": 1, "amount_minor": items / 2},
                {"kind": "gift_card", "sku": "G", "quantity": 1, "amount_minor": items - items / 2}
            ]);
            sale["service_charge_minor"] = json!(service);
            sale["rounding_minor"] = json!(rounding);
            sale["tax_minor"] = json!(0);
        }
        _ => {}
    }
    sale
}

/// One push of a delivery: which till, under which key, which facts.
struct Push {
    till: usize,
    key: Uuid,
    facts: Vec<Value>,
}

/// The history pushed in order, one fact a push.
fn in_order(history: &History) -> Vec<Push> {
    history
        .facts
        .iter()
        .map(|(till, fact)| Push {
            till: *till,
            key: Uuid::new_v4(),
            facts: vec![fact.clone()],
        })
        .collect()
}

/// The history cut into pushes of 1 to 4 of a till's facts, shuffled across
/// and within tills; some pushes sent again, under the same key (a replay)
/// or a new one (a retry whose answer was lost).
fn shuffled(history: &History, seed: u64) -> Vec<Push> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pushes = Vec::new();
    for till in 0..history.tills {
        let mut facts: Vec<Value> = history
            .facts
            .iter()
            .filter(|(t, _)| *t == till)
            .map(|(_, f)| f.clone())
            .collect();
        while !facts.is_empty() {
            let n = rng.random_range(1..=4).min(facts.len());
            pushes.push(Push {
                till,
                key: Uuid::new_v4(),
                facts: facts.drain(..n).collect(),
            });
        }
    }
    pushes.shuffle(&mut rng);
    let mut again = Vec::new();
    for push in &pushes {
        if rng.random_bool(0.25) {
            let key = if rng.random_bool(0.5) {
                push.key
            } else {
                Uuid::new_v4()
            };
            again.push(Push {
                till: push.till,
                key,
                facts: push.facts.clone(),
            });
        }
    }
    for push in again {
        let at = rng.random_range(0..=pushes.len());
        pushes.insert(at, push);
    }
    pushes
}

/// A merchant of its own, with a store and the history's tills.
async fn merchant(app: &TestApp, tills: usize) -> (Merchant, Vec<Till>) {
    let merchant = app.create_merchant("Order").await;
    // Business days from 04:00: the history's nights are one business day.
    let body = json!({"name": "Store", "timezone": "Europe/Berlin", "currency": "EUR",
                      "business_day_starts_at": "04:00"});
    let created = tillsync_testkit::api::create(
        &app.client,
        &format!("{}/v1/stores", app.address),
        &merchant.token,
        &body,
    )
    .await;
    let store: Uuid = created["store_id"].as_str().unwrap().parse().unwrap();
    let mut created = Vec::new();
    for _ in 0..tills {
        created.push(app.create_till_in(&merchant, store).await);
    }
    (merchant, created)
}

/// Everything a delivery leaves, with the ids of its merchant's store and
/// tills replaced by their positions, and what depends on arrival (times,
/// stored-response and exception ids) left out.
async fn state(app: &TestApp, merchant: &Merchant, tills: &[Till]) -> BTreeMap<String, Value> {
    let positions: Vec<(String, String)> = tills
        .iter()
        .enumerate()
        .map(|(i, t)| (t.terminal_id.to_string(), format!("till {i}")))
        .chain(std::iter::once((
            tills[0].store_id.to_string(),
            "the store".to_owned(),
        )))
        .collect();
    let anonymous = |value: &Value| -> Value {
        let mut text = value.to_string();
        for (id, position) in &positions {
            text = text.replace(id, position);
        }
        serde_json::from_str(&text).unwrap()
    };
    let mut state = BTreeMap::new();
    let range = "from=2026-11-19&to=2026-11-23";
    for group_by in ["none", "day", "hour", "store", "terminal", "tender", "tax"] {
        let path = format!("/v1/reports/totals?{range}&group_by={group_by}");
        let report: Value = app.get(&path, &merchant.token).await.json().await.unwrap();
        state.insert(format!("totals by {group_by}"), anonymous(&report["rows"]));
    }
    let listed: Value = app
        .get(&format!("/v1/sales?{range}&limit=1000"), &merchant.token)
        .await
        .json()
        .await
        .unwrap();
    let mut sales = listed["sales"].clone();
    for sale in sales.as_array_mut().unwrap() {
        sale.as_object_mut().unwrap().remove("received_at");
    }
    state.insert("sales".into(), anonymous(&sales));
    for (i, till) in tills.iter().enumerate() {
        for day in ["", "2026-11-20", "2026-11-21", "2026-11-22"] {
            let path = match day {
                "" => "/v1/sync".to_owned(),
                day => format!("/v1/sync?business_date={day}"),
            };
            let mut sync: Value = app.get(&path, &till.token).await.json().await.unwrap();
            sync.as_object_mut().unwrap().remove("last_batch_at");
            state.insert(format!("sync of till {i} {day}"), anonymous(&sync));
        }
    }
    let mut exceptions: Vec<Value> = app
        .exceptions(&merchant.token, "status=all")
        .await
        .into_iter()
        .map(|mut e| {
            let fields = e.as_object_mut().unwrap();
            for arrival in ["exception_id", "opened_at", "age_s"] {
                fields.remove(arrival);
            }
            anonymous(&e)
        })
        .collect();
    exceptions.sort_by_key(|e| e.to_string());
    state.insert("exceptions".into(), Value::Array(exceptions));
    state
}

/// Delivers `pushes` as a merchant of its own and returns what it left.
async fn deliver(app: &TestApp, tills: usize, pushes: &[Push]) -> BTreeMap<String, Value> {
    let (merchant, created) = merchant(app, tills).await;
    for push in pushes {
        let response = app.push(&created[push.till], push.key, &push.facts).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
    app.settled().await;
    state(app, &merchant, &created).await
}

#[test]
fn every_delivery_order_batching_and_duplication_gives_the_same_state() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app_with(&["--terminal-rate", "0"]));
    let cases = std::env::var("PROPTEST_CASES").map_or(12, |n| n.parse().unwrap());
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let strategy = (
        2usize..=3,
        prop::collection::vec(spec(), 3..16),
        any::<[u64; 2]>(),
    );
    let outcome = runner.run(&strategy, |(tills, specs, seeds)| {
        let history = history(tills, &specs);
        runtime.block_on(async {
            let expected = deliver(&app, tills, &in_order(&history)).await;
            for seed in seeds {
                let got = deliver(&app, tills, &shuffled(&history, seed)).await;
                for (what, value) in &expected {
                    prop_assert_eq!(
                        &got[what],
                        value,
                        "{} differs (seed {}) for history {:#?}",
                        what,
                        seed,
                        history.facts
                    );
                }
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
