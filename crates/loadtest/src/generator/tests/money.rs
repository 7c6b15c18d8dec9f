//! The money on the receipts: each kind in about its share, and the tax
//! split by each line's rate.

use super::*;
use crate::generator::catalogue::{Style, TaxClass, class_of};

#[test]
fn each_kind_of_receipt_comes_in_about_its_share() {
    let generated = store_day(13, 4, 8000);
    let receipts: Vec<&Generated> = generated.iter().filter(|g| g.kind != Kind::Void).collect();
    let sales: Vec<&Generated> = generated.iter().filter(|g| g.kind == Kind::Sale).collect();
    let share = |of: &[&Generated], pred: &dyn Fn(&Generated) -> bool| {
        of.iter().filter(|g| pred(g)).count() as f64 / of.len() as f64
    };
    let on_top = share(&receipts, &|g| !g.money.tax_included);
    assert!((0.25..0.35).contains(&on_top), "tax on top {on_top}");
    let us_card: Vec<&Generated> = (sales.iter().copied())
        .filter(|g| !g.money.tax_included && g.json.contains("\"card\""))
        .collect();
    let tipped = share(&us_card, &|g| g.money.tip_minor > 0);
    assert!((0.4..0.6).contains(&tipped), "tips {tipped}");
    let serviced = share(&sales, &|g| g.money.service_charge_minor > 0);
    assert!(
        (0.07..0.13).contains(&serviced),
        "service charges {serviced}"
    );
    let gift_cards = share(&sales, &|g| g.money.gift_card_sales_minor > 0);
    assert!(
        (0.015..0.045).contains(&gift_cards),
        "gift cards {gift_cards}"
    );
    let eu_cash: Vec<&Generated> = (sales.iter().copied())
        .filter(|g| {
            g.money.tax_included && parsed(g).tenders.len() == 1 && g.json.contains("\"cash\"")
        })
        .collect();
    // Half are rounded; a fifth of those were a multiple of 5 already.
    let rounded = share(&eu_cash, &|g| g.money.rounding_minor != 0);
    assert!((0.32..0.48).contains(&rounded), "rounded {rounded}");
    let two_rates = share(&receipts, &|g| g.money.taxes.len() == 2);
    assert!(two_rates > 0.3, "two tax rates {two_rates}");
    // Tips only on top, rounding only inside, gift cards only on sales.
    for g in &receipts {
        let m = &g.money;
        assert!(m.tip_minor == 0 || !m.tax_included, "{}", g.json);
        assert!(m.rounding_minor == 0 || m.tax_included, "{}", g.json);
        assert!((-4..=2).contains(&m.rounding_minor), "{}", g.json);
        assert!(m.gift_card_sales_minor == 0 || g.kind == Kind::Sale);
    }
}

#[test]
fn tax_is_worked_out_inside_or_on_top_rounded_half_up() {
    // 11.90 with 19 % inside holds 1.90 of tax.
    assert_eq!(Style::TaxInside.tax_on(1190, 1900), 190);
    // 10.70 with 7 % inside holds 0.70.
    assert_eq!(Style::TaxInside.tax_on(1070, 700), 70);
    // 10.25 % on top of 10.00 is 1.025, rounded up; 2.25 % of 5.00 is 0.1125.
    assert_eq!(Style::TaxOnTop.tax_on(1000, 1025), 103);
    assert_eq!(Style::TaxOnTop.tax_on(500, 225), 11);
    assert_eq!(Style::TaxInside.rate(TaxClass::Reduced), ("DE-7", 700));
    assert_eq!(Style::TaxOnTop.rate(TaxClass::Standard), ("US-STD", 1025));
}

/// Each receipt's taxes are those of its item lines' rates, the service
/// charge at the standard rate, rounded once per code, in the style it
/// says; gift card lines carry none.
#[test]
fn taxes_follow_each_lines_rate() {
    let now = (Utc::now(), chrono::Duration::zero());
    for shop in [Shop::default(), shop_with(1.0)] {
        let store = store_from(17, 3, 3000, &shop, now);
        for g in store.iter().flatten().filter(|g| g.kind != Kind::Void) {
            let sale = parsed(g);
            let style = if sale.tax_included {
                Style::TaxInside
            } else {
                Style::TaxOnTop
            };
            let mut want = Vec::new();
            for class in [TaxClass::Standard, TaxClass::Reduced] {
                let lines = sale
                    .lines
                    .iter()
                    .filter(|l| class_of(&l.sku) == Some(class));
                let mut base: i64 = lines.clone().map(|l| l.amount_minor).sum();
                let mut taxed = lines.count() > 0;
                if class == TaxClass::Standard && sale.service_charge_minor > 0 {
                    base += sale.service_charge_minor;
                    taxed = true;
                }
                if taxed {
                    let (code, rate_bp) = style.rate(class);
                    want.push((code.to_owned(), rate_bp, style.tax_on(base, rate_bp)));
                }
            }
            let have: Vec<(String, i64, i64)> = (sale.taxes.iter())
                .map(|t| (t.code.clone(), t.rate_bp, t.amount_minor))
                .collect();
            assert_eq!(have, want, "{}", g.json);
            let gift_cards = sale.lines.iter().filter(|l| class_of(&l.sku).is_none());
            assert!(
                gift_cards
                    .clone()
                    .all(|l| json_kind(g, &l.sku) == "gift_card")
            );
        }
    }
}

/// The `kind` the JSON gives the line sold under `sku`.
fn json_kind(g: &Generated, sku: &str) -> String {
    let value = json(g);
    let line = (value["lines"].as_array().unwrap().iter())
        .find(|l| l["sku"] == sku)
        .unwrap()
        .clone();
    line["kind"].as_str().unwrap_or("item").to_owned()
}
