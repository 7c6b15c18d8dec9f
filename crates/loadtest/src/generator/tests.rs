use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
// The server, as a dev-dependency only: its own rules judge the sales.
use tillsync::domain::sale::Sale;

use super::*;
use crate::plan::{Planner, StoreBehaviour};

const STORE: StoreBehaviour = StoreBehaviour {
    void_share: 0.02,
    refund_share: 0.05,
    cross_till_share: 0.3,
    offline_till: false,
    restore_rewind: 0,
    retire_till: false,
};

/// `count` sales of a store of `tills` tills as the floor rings them up,
/// each built at once with its till's next seq.
fn store_day(seed: u64, tills: usize, count: usize) -> Vec<Generated> {
    let mut planner = Planner::new(seed, tills, STORE, Duration::from_secs(60));
    let mut seqs = vec![0; tills];
    let now = Utc::now();
    (0..count)
        .map(|_| {
            let arrival = planner.arrival();
            seqs[arrival.till] += 1;
            build(arrival.sale_id, seqs[arrival.till], now, &arrival.ticket)
        })
        .collect()
}

fn json(g: &Generated) -> Value {
    serde_json::from_str(&g.json).unwrap()
}

/// The parts of a sale that are its contents, not its identity or time.
fn contents(g: &Generated) -> Value {
    let mut value = json(g);
    for identity in ["sale_id", "seq", "kind", "occurred_at", "refers_to_sale_id"] {
        value[identity] = Value::Null;
    }
    value
}

/// The server's own parsing and validation accept every generated sale.
#[test]
fn every_generated_sale_passes_the_servers_own_rules() {
    for sale in store_day(7, 4, 5000) {
        let parsed: Sale = serde_json::from_str(&sale.json).expect("parses as a Sale");
        assert_eq!(parsed.validate(Utc::now()), Ok(()), "{parsed:?}");
    }
}

/// The server serves pushes up to `LIVE_PUSH_MAX_BYTES` as live sales and
/// larger ones as a backlog: a till selling online (a few sales a push, up
/// to 10) is live, an offline queue replayed 50 at a time is not.
#[test]
fn pushes_of_up_to_ten_sales_are_live_and_of_fifty_a_backlog() {
    use tillsync::http::middleware::admission::LIVE_PUSH_MAX_BYTES;
    let generated = store_day(11, 1, 5000);
    let body = |sales: &[Generated]| {
        let joined: Vec<&str> = sales.iter().map(|g| &*g.json).collect();
        format!(r#"{{"sales":[{}]}}"#, joined.join(",")).len() as u64
    };
    let largest_of_ten = generated.chunks(10).map(body).max().unwrap();
    let smallest_of_fifty = generated.chunks_exact(50).map(body).min().unwrap();
    assert!(
        largest_of_ten <= LIVE_PUSH_MAX_BYTES,
        "{largest_of_ten} bytes"
    );
    assert!(
        smallest_of_fifty > LIVE_PUSH_MAX_BYTES,
        "{smallest_of_fifty} bytes"
    );
}

#[test]
fn the_mix_has_refunds_voids_split_tenders_and_a_second_currency() {
    let generated = store_day(3, 4, 5000);
    let share = |pred: &dyn Fn(&Generated) -> bool| {
        generated.iter().filter(|g| pred(g)).count() as f64 / generated.len() as f64
    };
    let refunds = share(&|g| g.kind == Kind::Refund);
    let voids = share(&|g| g.kind == Kind::Void);
    let foreign = share(&|g| g.currency == FOREIGN_CURRENCY);
    let vouchers = share(&|g| g.json.contains("\"voucher\""));
    let multi_line = share(&|g| g.json.matches("\"sku\"").count() > 1);
    assert!((0.03..0.07).contains(&refunds), "refunds {refunds}");
    assert!((0.01..0.03).contains(&voids), "voids {voids}");
    assert!((0.01..0.05).contains(&foreign), "foreign {foreign}");
    assert!(vouchers > 0.05, "vouchers {vouchers}");
    assert!(multi_line > 0.5, "multi-line {multi_line}");
}

/// Whichever till rang it up, a void mirrors its sale (the server flags a
/// void that does not) and a refund returns one line of it, naming it.
#[test]
fn a_void_mirrors_its_sale_and_a_refund_returns_one_of_its_lines() {
    let generated = store_day(5, 3, 5000);
    let by_id: HashMap<Uuid, &Generated> = generated.iter().map(|g| (g.sale_id, g)).collect();
    let (mut voids, mut refunds) = (0, 0);
    for g in &generated {
        let Some(target) = g.refers_to_sale_id.map(|id| by_id[&id]) else {
            continue;
        };
        assert_eq!(target.kind, Kind::Sale, "only plain sales are named");
        match g.kind {
            Kind::Void => {
                voids += 1;
                assert_eq!(contents(g), contents(target));
            }
            Kind::Refund => {
                refunds += 1;
                let line = &json(g)["lines"][0];
                let index = line["refers_to_line"].as_u64().unwrap() as usize;
                let mut returned = line.clone();
                returned.as_object_mut().unwrap().remove("refers_to_line");
                assert_eq!(returned, json(target)["lines"][index]);
                assert!(g.total_minor <= target.total_minor);
                assert!(g.tax_minor <= target.tax_minor);
                assert_eq!(g.currency, target.currency);
            }
            Kind::Sale => panic!("a plain sale names no sale"),
        }
    }
    assert!(
        voids > 50 && refunds > 100,
        "{voids} voids, {refunds} refunds"
    );
}

#[test]
fn a_ticket_gives_the_same_sale_whenever_and_as_whatever_it_is_built() {
    let ticket = Ticket::Sale { content: 42 };
    let first = build(Uuid::new_v4(), 1, Utc::now(), &ticket);
    let later = Utc::now() + chrono::Duration::hours(3);
    let again = build(Uuid::new_v4(), 17, later, &ticket);
    assert_eq!(contents(&first), contents(&again));
    assert_eq!(json(&again)["seq"], 17);
    let other = build(Uuid::new_v4(), 1, Utc::now(), &Ticket::Sale { content: 43 });
    assert_ne!(contents(&first), contents(&other));
}

#[test]
fn business_dates_follow_the_stores_time_zone() {
    // 23:30 UTC in winter is 00:30 the next day in Berlin.
    let late = DateTime::parse_from_rfc3339("2026-01-15T23:30:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let sale = build(Uuid::new_v4(), 1, late, &Ticket::Sale { content: 1 });
    assert_eq!(
        sale.business_date,
        NaiveDate::from_ymd_opt(2026, 1, 16).unwrap()
    );
    assert_eq!(json(&sale)["occurred_at"], "2026-01-16T00:30:00+01:00");
}
