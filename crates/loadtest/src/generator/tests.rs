use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
// The server, as a dev-dependency only: its own rules judge the sales.
use tillsync::domain::sale::Sale;

use super::*;
use crate::plan::{Planner, StoreBehaviour};

mod money;
mod time;

const STORE: StoreBehaviour = StoreBehaviour {
    void_share: 0.02,
    refund_share: 0.05,
    cross_till_share: 0.3,
    offline_till: false,
    restore_rewind: 0,
    retire_till: false,
};

/// `count` sales of a store of `tills` tills as the floor rings them up in
/// `shop`, one every `gap` from `start`, each built at once with its till's
/// next seq: the till and the sale, in the order rung up.
fn rung_up(
    seed: u64,
    tills: usize,
    count: usize,
    shop: &Shop,
    (start, gap): (DateTime<Utc>, chrono::Duration),
) -> Vec<(usize, Generated)> {
    let mut planner = Planner::new(seed, tills, STORE, Duration::from_secs(60));
    let mut seqs = vec![0; tills];
    (0..count)
        .map(|n| {
            let arrival = planner.arrival();
            seqs[arrival.till] += 1;
            let at = start + gap * n as i32;
            let sale = build(
                arrival.sale_id,
                seqs[arrival.till],
                at,
                &arrival.ticket,
                shop,
            );
            (arrival.till, sale)
        })
        .collect()
}

/// The same, per till.
pub(crate) fn store_from(
    seed: u64,
    tills: usize,
    count: usize,
    shop: &Shop,
    rung_at: (DateTime<Utc>, chrono::Duration),
) -> Vec<Vec<Generated>> {
    let mut store: Vec<Vec<Generated>> = vec![Vec::new(); tills];
    for (till, sale) in rung_up(seed, tills, count, shop, rung_at) {
        store[till].push(sale);
    }
    store
}

/// `count` sales rung up now in the default shop, in the order rung up.
fn store_day(seed: u64, tills: usize, count: usize) -> Vec<Generated> {
    let now = (Utc::now(), chrono::Duration::zero());
    let rung = rung_up(seed, tills, count, &Shop::default(), now);
    rung.into_iter().map(|(_, sale)| sale).collect()
}

fn json(g: &Generated) -> Value {
    serde_json::from_str(&g.json).unwrap()
}

fn parsed(g: &Generated) -> Sale {
    serde_json::from_str(&g.json).expect("parses as a Sale")
}

/// The parts of a sale that are its contents, not its identity or time.
fn contents(g: &Generated) -> Value {
    let mut value = json(g);
    for identity in ["sale_id", "seq", "kind", "occurred_at", "refers_to_sale_id"] {
        value[identity] = Value::Null;
    }
    value
}

fn shop_with(share: f64) -> Shop {
    Shop {
        mix: ReceiptMix {
            tax_on_top_share: share,
            tip_share: share,
            service_charge_share: share,
            gift_card_share: share,
            cash_rounding_share: share,
            late_night_share: share,
        },
        ..Shop::default()
    }
}

/// The server's own parsing and validation accept every generated sale,
/// with the usual mix, with everything on every receipt, and with none of
/// it; and the server reads from the wire the money the verifier expects.
#[test]
fn every_generated_sale_passes_the_servers_own_rules() {
    let now = Utc::now();
    for shop in [Shop::default(), shop_with(1.0), shop_with(0.0)] {
        let store = store_from(7, 4, 3000, &shop, (now, chrono::Duration::zero()));
        for g in store.iter().flatten() {
            let sale = parsed(g);
            assert_eq!(sale.validate(now), Ok(()), "{}", g.json);
            let money = &g.money;
            let read = (
                sale.total_minor,
                sale.tax_minor,
                sale.discount_minor,
                sale.tax_included,
                sale.line_sums(),
                sale.tip_minor,
                sale.service_charge_minor,
                sale.rounding_minor,
                sale.net_sales_minor(),
            );
            let meant = (
                money.total_minor,
                money.tax_minor,
                money.discount_minor,
                money.tax_included,
                Some((money.item_sales_minor, money.gift_card_sales_minor)),
                money.tip_minor,
                money.service_charge_minor,
                money.rounding_minor,
                Some(money.net_sales_minor()),
            );
            assert_eq!(read, meant, "{}", g.json);
            let taxes: Vec<(&str, i64, i64)> = (sale.taxes.iter())
                .map(|t| (t.code.as_str(), t.rate_bp, t.amount_minor))
                .collect();
            let meant: Vec<(&str, i64, i64)> = (money.taxes.iter())
                .map(|t| (t.code, t.rate_bp, t.amount_minor))
                .collect();
            assert_eq!(taxes, meant);
        }
    }
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
/// void that does not) and a refund returns one item line of it, naming
/// it, in the sale's style and currency, never for more than was paid.
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
                assert_eq!(g.money, target.money);
            }
            Kind::Refund => {
                refunds += 1;
                let line = &json(g)["lines"][0];
                let index = line["refers_to_line"].as_u64().unwrap() as usize;
                let mut returned = line.clone();
                returned.as_object_mut().unwrap().remove("refers_to_line");
                assert_eq!(returned, json(target)["lines"][index]);
                assert!(returned.get("kind").is_none(), "an item line: {returned}");
                let (refund, sale) = (&g.money, &target.money);
                assert!(refund.total_minor <= sale.total_minor);
                assert!(refund.tax_minor <= sale.tax_minor);
                assert!(refund.service_charge_minor <= sale.service_charge_minor);
                assert_eq!(refund.tip_minor, 0);
                assert_eq!(refund.tax_included, sale.tax_included);
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
    let shop = Shop::default();
    let ticket = Ticket::Sale { content: 42 };
    let first = build(Uuid::new_v4(), 1, Utc::now(), &ticket, &shop);
    let later = Utc::now() + chrono::Duration::hours(3);
    let again = build(Uuid::new_v4(), 17, later, &ticket, &shop);
    assert_eq!(contents(&first), contents(&again));
    assert_eq!(json(&again)["seq"], 17);
    let other = Ticket::Sale { content: 43 };
    let other = build(Uuid::new_v4(), 1, Utc::now(), &other, &shop);
    assert_ne!(contents(&first), contents(&other));
}
