use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
// The server, as a dev-dependency only: its own arithmetic judges ours.
use tillsync::domain::calendar::{Calendar, DayRule};
use tillsync::domain::sale::Sale;
use tillsync::domain::totals::Deltas;
use uuid::Uuid;

use super::*;
use crate::generator::tests::store_from;
use crate::generator::{Shop, TaxAmount};
use crate::verify::Fate;

fn date(text: &str) -> NaiveDate {
    NaiveDate::from_str(text).unwrap()
}

fn tax(code: &'static str, rate_bp: i64, amount_minor: i64) -> TaxAmount {
    TaxAmount {
        code,
        rate_bp,
        amount_minor,
    }
}

fn fact(kind: Kind, day: &str, money: Money) -> ExpectedSale {
    ExpectedSale {
        sale_id: Uuid::new_v4(),
        seq: 1,
        kind,
        currency: "EUR",
        occurred_at: DateTime::parse_from_rfc3339(&format!("{day}T12:00:00+01:00")).unwrap(),
        business_date: date(day),
        money,
        refers_to_sale_id: None,
        fate: Fate::Acknowledged,
        first_sent: None,
        first_stored: None,
    }
}

/// A US receipt: 15.00 at US-STD and 5.00 at US-FOOD, an 18 % service
/// charge (3.60, taxed at the standard rate), the tax on top, a 3.00 tip.
fn us_sale(day: &str) -> ExpectedSale {
    fact(
        Kind::Sale,
        day,
        Money {
            total_minor: 2000 + 360 + 191 + 11 + 300,
            tax_minor: 191 + 11,
            tax_included: false,
            item_sales_minor: 2000,
            tip_minor: 300,
            service_charge_minor: 360,
            taxes: vec![tax("US-STD", 1025, 191), tax("US-FOOD", 225, 11)],
            ..Money::default()
        },
    )
}

/// A European receipt: 11.90 at DE-19 (1.90 inside), a 25.00 gift card,
/// paid in cash rounded down by 2 cents; and the refund of half of it.
fn eu_sale_and_refund(day: &str) -> (ExpectedSale, ExpectedSale) {
    let sale = Money {
        total_minor: 1190 + 2500 - 2,
        tax_minor: 190,
        item_sales_minor: 1190,
        gift_card_sales_minor: 2500,
        rounding_minor: -2,
        taxes: vec![tax("DE-19", 1900, 190)],
        ..Money::default()
    };
    let refund = Money {
        total_minor: 595,
        tax_minor: 95,
        item_sales_minor: 595,
        taxes: vec![tax("DE-19", 1900, 95)],
        ..Money::default()
    };
    (fact(Kind::Sale, day, sale), fact(Kind::Refund, day, refund))
}

/// The columns, worked by hand: gross counts everything paid,
/// net sales only items and service charges less the tax inside them.
#[test]
fn a_day_of_both_styles_adds_up_column_by_column() {
    let (eu, refund) = eu_sale_and_refund("2026-11-20");
    let mut till = TillExpected::default();
    for fact in [us_sale("2026-11-20"), eu, refund] {
        till.count(&fact);
    }
    let split = Split {
        tax_minor: 202 + 190 - 95,
        item_sales_minor: 2000 + 1190 - 595,
        gift_card_sales_minor: 2500,
        tips_minor: 300,
        service_charges_minor: 360,
        rounding_minor: -2,
        // 20.00 + 3.60 (on top: no tax inside), 11.90 - 1.90, less 5.95 - 0.95.
        net_sales_minor: 2360 + 1000 - 500,
    };
    let row = till.rows.totals[&(date("2026-11-20"), "EUR".into())];
    assert_eq!(
        row,
        Measures {
            sales_count: 2,
            refunds_count: 1,
            voids_count: 0,
            gross_minor: 2862 + 3688,
            refunds_minor: 595,
            discounts_minor: 0,
            split,
        }
    );
    assert_eq!(row.net_minor(), 2862 + 3688 - 595);
    let day = till.days[&date("2026-11-20")]["EUR"];
    assert_eq!(
        day,
        DayFigures {
            sales_count: 3,
            net_minor: row.net_minor(),
            split
        }
    );
    let key = |code: &str, rate| (date("2026-11-20"), "EUR".to_owned(), code.to_owned(), rate);
    assert_eq!(
        till.rows.taxes,
        BTreeMap::from([
            (
                key("DE-19", 1900),
                TaxFigures {
                    sales_count: 1,
                    refunds_count: 1,
                    tax_minor: 95
                }
            ),
            (
                key("US-FOOD", 225),
                TaxFigures {
                    sales_count: 1,
                    refunds_count: 0,
                    tax_minor: 11
                }
            ),
            (
                key("US-STD", 1025),
                TaxFigures {
                    sales_count: 1,
                    refunds_count: 0,
                    tax_minor: 191
                }
            ),
        ])
    );
}

/// A void the next day takes every member of its sale out of its own day,
/// per tax code too; a sale that does not split its tax counts it under
/// no code.
#[test]
fn a_void_takes_every_member_out_on_its_own_day_and_unsplit_tax_has_no_code() {
    let sale = us_sale("2026-11-20");
    let void = fact(Kind::Void, "2026-11-21", Money::default());
    let mut till = TillExpected::default();
    till.count(&void);
    till.take_out(&void, &sale);
    let row = till.rows.totals[&(date("2026-11-21"), "EUR".into())];
    assert_eq!(
        (row.sales_count, row.voids_count, row.gross_minor, row.split),
        (-1, 1, -2862, Split::of(&sale.money, -1))
    );
    assert_eq!(row.split.tips_minor, -300);
    let day = till.days[&date("2026-11-21")]["EUR"];
    assert_eq!(
        (day.sales_count, day.net_minor, day.split),
        (1, -2862, row.split)
    );
    let us_std = till.rows.taxes[&(date("2026-11-21"), "EUR".into(), "US-STD".into(), 1025)];
    assert_eq!((us_std.sales_count, us_std.tax_minor), (-1, -191));
    let on_its_own_day = (date("2026-11-20"), "EUR".into(), "US-STD".into(), 1025);
    assert!(!till.rows.taxes.contains_key(&on_its_own_day));

    let mut unsplit = us_sale("2026-11-20");
    unsplit.money.taxes.clear();
    let mut till = TillExpected::default();
    till.count(&unsplit);
    let row = till.rows.taxes[&(date("2026-11-20"), "EUR".into(), String::new(), 0)];
    assert_eq!((row.sales_count, row.tax_minor), (1, 202));
}

fn parsed_ids(fleet: &crate::verify::Fleet) -> std::collections::HashSet<Uuid> {
    (fleet.tills.iter())
        .flat_map(|t| t.sales.iter().map(|s| s.sale_id))
        .collect()
}

/// The simulator's expected figures for a whole store (voids and refunds
/// across tills, both styles, a night across the cutoff and a change of
/// clocks) are exactly what the server's own totals arithmetic adds up
/// from the same sales: every column of every day row, and every tax row.
#[test]
fn the_expected_figures_are_what_the_servers_own_arithmetic_makes_of_the_sales() {
    let shop = Shop {
        mix: crate::generator::ReceiptMix {
            late_night_share: 0.2,
            ..Default::default()
        },
        ..Shop::default()
    };
    let night = DateTime::parse_from_rfc3339("2026-10-24T20:00:00Z")
        .unwrap()
        .to_utc();
    let store = store_from(21, 4, 6000, &shop, (night, chrono::Duration::seconds(5)));
    let fleet = crate::verify::tests::fleet(
        (store.iter())
            .map(|till| (till.iter()).map(|g| ExpectedSale::new(g, Fate::Acknowledged, None, None)))
            .map(Iterator::collect)
            .collect(),
    );
    let presence = crate::verify::expect::Presence {
        stored: parsed_ids(&fleet),
        ..Default::default()
    };
    let expected = crate::verify::expect::expected(&fleet, &presence);

    let calendar = Calendar::of(vec![DayRule {
        effective_from: DateTime::<Utc>::MIN_UTC,
        timezone: shop.day.timezone,
        day_starts_at: shop.day.starts_at,
    }]);
    let parsed: HashMap<Uuid, (usize, Sale)> = (store.iter().enumerate())
        .flat_map(|(till, sales)| sales.iter().map(move |g| (till, g)))
        .map(|(till, g)| (g.sale_id, (till, serde_json::from_str(&g.json).unwrap())))
        .collect();
    let mut deltas: Vec<Deltas> = vec![Deltas::default(); store.len()];
    for (till, sale) in parsed.values() {
        deltas[*till].try_add(sale, &calendar).unwrap();
    }
    // The counting void of each sale: the first by (occurred_at, sale_id).
    let mut first_voids: HashMap<Uuid, &Sale> = HashMap::new();
    for (_, void) in parsed
        .values()
        .filter(|(_, s)| s.refers_to_sale_id.is_some())
    {
        let (Some(target), tillsync::domain::sale::SaleKind::Void) =
            (void.refers_to_sale_id, void.kind)
        else {
            continue;
        };
        let order = |s: &Sale| (s.occurred_at.to_utc(), s.sale_id);
        let first = first_voids.entry(target).or_insert(void);
        if order(void) < order(first) {
            *first = void;
        }
    }
    assert!(first_voids.len() > 50, "{} voids", first_voids.len());
    for (target, void) in first_voids {
        let void_till = parsed[&void.sale_id].0;
        deltas[void_till]
            .try_reverse(void, &parsed[&target].1, &calendar, false)
            .unwrap();
    }

    let dates: std::collections::BTreeSet<NaiveDate> =
        store.iter().flatten().map(|g| g.business_date).collect();
    assert!(dates.len() >= 2, "the night spans business days: {dates:?}");
    // The store's rows, as the server's per-till deltas add up.
    let mut store_rows = ReportRows::default();
    for (till, server) in deltas.iter().enumerate() {
        let ours = &expected.tills[till];
        let theirs: BTreeMap<(NaiveDate, String), Measures> = (server.days.iter())
            .map(|(key, m)| {
                let split = Split {
                    tax_minor: m.tax_minor,
                    item_sales_minor: m.item_sales_minor,
                    gift_card_sales_minor: m.gift_card_sales_minor,
                    tips_minor: m.tips_minor,
                    service_charges_minor: m.service_charges_minor,
                    rounding_minor: m.rounding_minor,
                    net_sales_minor: m.net_sales_minor,
                };
                let measures = Measures {
                    sales_count: m.sales_count,
                    refunds_count: m.refunds_count,
                    voids_count: m.voids_count,
                    gross_minor: m.gross_minor,
                    refunds_minor: m.refunds_minor,
                    discounts_minor: m.discounts_minor,
                    split,
                };
                (key.clone(), measures)
            })
            .collect();
        assert_eq!(ours.rows.totals, theirs, "till {till}");
        for (key, measures) in &theirs {
            store_rows
                .totals
                .entry(key.clone())
                .or_default()
                .add(measures);
        }
        let mut taxes: BTreeMap<TaxKey, TaxFigures> = BTreeMap::new();
        for (key, m) in &server.taxes {
            let key = (
                key.business_date,
                key.currency.clone(),
                key.code.clone(),
                key.rate_bp,
            );
            let row = taxes.entry(key).or_default();
            row.sales_count += m.sales_count;
            row.refunds_count += m.refunds_count;
            row.tax_minor += m.tax_minor;
        }
        assert_eq!(ours.rows.taxes, taxes, "till {till}");
        for (key, figures) in &taxes {
            store_rows
                .taxes
                .entry(key.clone())
                .or_default()
                .add(figures);
        }
        // The day check carries the day rows' split.
        for ((date, currency), row) in &ours.rows.totals {
            assert_eq!(ours.days[date][currency].split, row.split);
        }
    }
    assert_eq!(expected.store, store_rows);
}
