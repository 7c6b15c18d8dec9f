//! What the shop sells, and how its receipts are taxed: the articles (each
//! at the standard or the reduced rate), the gift cards it loads (no tax),
//! and the two styles of receipt, each with its two tax codes.
//!
//! Prices are in minor units. On a receipt with the tax inside (the
//! European style) a price includes the tax; on one with the tax on top (the
//! US style) the same number is the price before tax.

use rand::Rng;
use rand::rngs::StdRng;

/// Which of a style's two rates an article is taxed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaxClass {
    /// Most goods: DE-19 (19 %) or US-STD (10.25 %).
    Standard,
    /// Food, books, flowers: DE-7 (7 %) or US-FOOD (2.25 %).
    Reduced,
}

/// How a receipt adds its tax up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// European: the tax is inside the line amounts (`tax_included`, the default).
    TaxInside,
    /// US: the tax is added on top of the lines (`tax_included: false`).
    TaxOnTop,
}

/// Basis points in one whole.
const WHOLE_BP: i64 = 10_000;

impl Style {
    /// The tax code and rate (basis points) of `class` in this style.
    pub(super) fn rate(self, class: TaxClass) -> (&'static str, i64) {
        match (self, class) {
            (Style::TaxInside, TaxClass::Standard) => ("DE-19", 1900),
            (Style::TaxInside, TaxClass::Reduced) => ("DE-7", 700),
            (Style::TaxOnTop, TaxClass::Standard) => ("US-STD", 1025),
            (Style::TaxOnTop, TaxClass::Reduced) => ("US-FOOD", 225),
        }
    }

    /// The tax on `base` at `rate_bp`, rounded half up: the part of it that
    /// is tax (inside), or what is added to it (on top). Bases are at most a
    /// few thousand minor units, so the products stay far from `i64::MAX`.
    pub(super) fn tax_on(self, base: i64, rate_bp: i64) -> i64 {
        let divisor = match self {
            Style::TaxInside => WHOLE_BP + rate_bp,
            Style::TaxOnTop => WHOLE_BP,
        };
        (base * rate_bp + divisor / 2) / divisor
    }

    /// A service charge, as a percentage of the item lines: 10 % in a
    /// European restaurant, 18 % for a large party in a US one. It is taxed
    /// at the standard rate.
    pub(super) fn service_charge_percent(self) -> i64 {
        match self {
            Style::TaxInside => 10,
            Style::TaxOnTop => 18,
        }
    }
}

/// One catalogue article. An article sold by weight is priced per kilogram.
pub(super) struct Article {
    pub sku: &'static str,
    pub description: Option<&'static str>,
    pub unit_price_minor: i64,
    pub class: TaxClass,
    pub by_weight: bool,
}

const fn article(
    sku: &'static str,
    description: Option<&'static str>,
    unit_price_minor: i64,
    class: TaxClass,
    by_weight: bool,
) -> Article {
    Article {
        sku,
        description,
        unit_price_minor,
        class,
        by_weight,
    }
}

use TaxClass::{Reduced, Standard};

pub(super) const CATALOGUE: &[Article] = &[
    article("COFFEE-L", Some("Large coffee"), 350, Standard, false),
    article("CROISSANT", Some("Butter croissant"), 220, Reduced, false),
    article("BREAD-RYE", Some("Rye bread 750 g"), 429, Reduced, false),
    article("MILK-1L", Some("Whole milk 1 l"), 119, Reduced, false),
    article("APPLES", Some("Apples, loose"), 299, Reduced, true),
    article("GOUDA", Some("Gouda from the counter"), 1890, Reduced, true),
    article("WINE-RED", Some("Red wine 0.75 l"), 899, Standard, false),
    article(
        "BATTERIES-AA",
        Some("AA batteries, 4 pack"),
        549,
        Standard,
        false,
    ),
    article("NEWSPAPER", None, 280, Reduced, false),
    article("TULIPS", Some("Tulips, bunch of 10"), 699, Reduced, false),
    article(
        "CHOCOLATE",
        Some("Dark chocolate 100 g"),
        189,
        Reduced,
        false,
    ),
    article("UMBRELLA", Some("Pocket umbrella"), 1499, Standard, false),
];

/// A gift card line: value loaded onto a card, a liability and not a sale,
/// so no tax.
pub(super) const GIFT_CARD_SKU: &str = "GIFT-CARD";
pub(super) const GIFT_CARD_DESCRIPTION: &str = "Gift card";
pub(super) const GIFT_CARD_VALUES_MINOR: [i64; 3] = [1000, 2500, 5000];

/// An article and how much of it: 1 to 3 pieces, or 0.150 to 2.000 kg
/// (scales weigh in grams).
pub(super) fn pick(rng: &mut StdRng) -> (&'static Article, f64) {
    let article = &CATALOGUE[rng.random_range(0..CATALOGUE.len())];
    let quantity = if article.by_weight {
        f64::from(rng.random_range(150..=2000_u32)) / 1000.0
    } else {
        f64::from(rng.random_range(1..=3_u32))
    };
    (article, quantity)
}

/// The class of the article sold under `sku`, `None` for a gift card (or
/// an unknown sku).
#[cfg(test)]
pub(super) fn class_of(sku: &str) -> Option<TaxClass> {
    CATALOGUE.iter().find(|a| a.sku == sku).map(|a| a.class)
}
