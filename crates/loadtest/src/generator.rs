//! Realistic sales: a basket of 1 to 5 lines from a small catalogue (some
//! sold by weight, some discounted), VAT included in the prices, tenders
//! split over cash, card and vouchers, and a few sales in a second currency;
//! a refund returns one line of its sale (naming it by `refers_to_line`) or
//! one article without a receipt; a void mirrors its sale.
//!
//! What is rung up, and of which earlier sale, is decided on the store floor
//! ([`crate::plan`]) as a [`Ticket`]; everything else about a sale is a pure
//! function of its ticket, here. So a sale can be built whenever it is first
//! needed, on any till, and a void rung up on one till mirrors a sale of
//! another without either till's journal looking at the other's.
//!
//! The wire format is written here, not borrowed from the server's domain
//! types: the simulator is a client of the public API and may run from
//! another machine. The unit tests check every generated sale against the
//! server's own rules (the server crate is a dev-dependency of this one, for
//! that alone), so the two cannot drift apart unnoticed.

use chrono::{DateTime, FixedOffset, NaiveDate, SubsecRound, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

/// The time zone of the store the run provisions; business dates follow it.
pub const STORE_TIMEZONE: Tz = chrono_tz::Europe::Berlin;
/// The store's own currency; most sales are in it.
pub const STORE_CURRENCY: &str = "EUR";
/// A second currency some sales are paid in (a border or airport shop), so
/// the per-currency totals are exercised too.
const FOREIGN_CURRENCY: &str = "CHF";
const FOREIGN_CURRENCY_SHARE: f64 = 0.03;
/// Per line; with 3 lines on average about one sale in ten has a discount.
const DISCOUNTED_LINE_SHARE: f64 = 0.035;

/// One catalogue article. Prices are in minor units and include VAT; an
/// article sold by weight is priced per kilogram.
struct Article {
    sku: &'static str,
    description: Option<&'static str>,
    unit_price_minor: i64,
    vat_percent: i64,
    by_weight: bool,
}

const fn article(
    sku: &'static str,
    description: Option<&'static str>,
    unit_price_minor: i64,
    vat_percent: i64,
    by_weight: bool,
) -> Article {
    Article {
        sku,
        description,
        unit_price_minor,
        vat_percent,
        by_weight,
    }
}

const CATALOGUE: &[Article] = &[
    article("COFFEE-L", Some("Large coffee"), 350, 19, false),
    article("CROISSANT", Some("Butter croissant"), 220, 7, false),
    article("BREAD-RYE", Some("Rye bread 750 g"), 429, 7, false),
    article("MILK-1L", Some("Whole milk 1 l"), 119, 7, false),
    article("APPLES", Some("Apples, loose"), 299, 7, true),
    article("GOUDA", Some("Gouda from the counter"), 1890, 7, true),
    article("WINE-RED", Some("Red wine 0.75 l"), 899, 19, false),
    article("BATTERIES-AA", Some("AA batteries, 4 pack"), 549, 19, false),
    article("NEWSPAPER", None, 280, 7, false),
    article("TULIPS", Some("Tulips, bunch of 10"), 699, 7, false),
    article("CHOCOLATE", Some("Dark chocolate 100 g"), 189, 7, false),
    article("UMBRELLA", Some("Pocket umbrella"), 1499, 19, false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sale,
    Refund,
    Void,
}

/// What the store floor decided when a customer came to a till. `content`
/// seeds everything else (basket, tenders, currency, the line refunded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    Sale {
        content: u64,
    },
    /// `of`: the sale on the receipt; `None` for a return without one.
    Refund {
        content: u64,
        of: Option<Target>,
    },
    Void {
        of: Target,
    },
}

impl Ticket {
    pub fn kind(&self) -> Kind {
        match self {
            Ticket::Sale { .. } => Kind::Sale,
            Ticket::Refund { .. } => Kind::Refund,
            Ticket::Void { .. } => Kind::Void,
        }
    }
}

/// An earlier plain sale that a void or refund names: its id, its contents,
/// and where it was rung up (the till's number and its place in that till's
/// journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub sale_id: Uuid,
    pub content: u64,
    pub till: usize,
    pub entry: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Method {
    Cash,
    Card,
    Voucher,
}

/// A sale as `POST /v1/sales/batches` takes it.
#[derive(Debug, Clone, Serialize)]
struct WireSale {
    sale_id: Uuid,
    seq: i64,
    kind: Kind,
    occurred_at: DateTime<FixedOffset>,
    currency: &'static str,
    lines: Vec<WireLine>,
    tenders: Vec<WireTender>,
    total_minor: i64,
    tax_minor: i64,
    discount_minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refers_to_sale_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
struct WireLine {
    sku: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
    quantity: f64,
    amount_minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refers_to_line: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
struct WireTender {
    method: Method,
    amount_minor: i64,
}

/// One generated sale: what the verifier needs to know about it, and its
/// JSON, made once so every resend is byte for byte the same content.
#[derive(Debug, Clone)]
pub struct Generated {
    pub sale_id: Uuid,
    pub seq: i64,
    pub kind: Kind,
    pub currency: &'static str,
    pub occurred_at: DateTime<FixedOffset>,
    pub business_date: NaiveDate,
    pub total_minor: i64,
    pub tax_minor: i64,
    pub discount_minor: i64,
    pub refers_to_sale_id: Option<Uuid>,
    pub json: Box<str>,
}

/// The sale `ticket` stands for, rung up at `rung_up_at` under `sale_id`
/// and `seq`.
pub fn build(sale_id: Uuid, seq: i64, rung_up_at: DateTime<Utc>, ticket: &Ticket) -> Generated {
    let occurred_at = rung_up_at
        .with_timezone(&STORE_TIMEZONE)
        .fixed_offset()
        .trunc_subsecs(3);
    let contents = match ticket {
        Ticket::Sale { content } => basket(*content),
        Ticket::Refund { content, of: None } => return_without_receipt(*content),
        Ticket::Refund {
            content,
            of: Some(of),
        } => refund_of(*content, of),
        Ticket::Void { of } => Contents {
            refers_to_sale_id: Some(of.sale_id),
            ..basket(of.content)
        },
    };
    let wire = WireSale {
        sale_id,
        seq,
        kind: ticket.kind(),
        occurred_at,
        currency: contents.currency,
        lines: contents.lines,
        tenders: contents.tenders,
        total_minor: contents.total_minor,
        tax_minor: contents.tax_minor,
        discount_minor: contents.discount_minor,
        refers_to_sale_id: contents.refers_to_sale_id,
    };
    Generated {
        sale_id,
        seq,
        kind: wire.kind,
        currency: wire.currency,
        occurred_at,
        business_date: occurred_at.with_timezone(&STORE_TIMEZONE).date_naive(),
        total_minor: wire.total_minor,
        tax_minor: wire.tax_minor,
        discount_minor: wire.discount_minor,
        refers_to_sale_id: wire.refers_to_sale_id,
        json: serde_json::to_string(&wire)
            .expect("a generated sale always serializes")
            .into_boxed_str(),
    }
}

/// What a sale holds besides its identity and time.
struct Contents {
    currency: &'static str,
    lines: Vec<WireLine>,
    tenders: Vec<WireTender>,
    total_minor: i64,
    tax_minor: i64,
    discount_minor: i64,
    refers_to_sale_id: Option<Uuid>,
}

/// A plain sale's contents, from its seed alone.
fn basket(content: u64) -> Contents {
    let mut rng = StdRng::seed_from_u64(content);
    let line_count = rng.random_range(1..=5);
    let mut basket = Basket::default();
    for _ in 0..line_count {
        let discount_percent = if rng.random_bool(DISCOUNTED_LINE_SHARE) {
            [10, 20, 30][rng.random_range(0..3)]
        } else {
            0
        };
        basket.add(pick_line(&mut rng), discount_percent);
    }
    let tenders = tenders(&mut rng, basket.total_minor);
    basket.into_contents(currency(&mut rng), tenders)
}

/// A refund of one line of the sale `of` (money back the way it came).
fn refund_of(content: u64, of: &Target) -> Contents {
    let mut rng = StdRng::seed_from_u64(content);
    let original = basket(of.content);
    let index = rng.random_range(0..original.lines.len());
    let line = &original.lines[index];
    // Tax in the same proportion as on the receipt, rounded down so it
    // never exceeds the refunded amount.
    let tax_minor = original.tax_minor * line.amount_minor / original.total_minor.max(1);
    let method = match original.tenders[0].method {
        Method::Card => Method::Card,
        _ => Method::Cash,
    };
    Contents {
        currency: original.currency,
        tenders: vec![WireTender {
            method,
            amount_minor: line.amount_minor,
        }],
        total_minor: line.amount_minor,
        tax_minor,
        discount_minor: 0,
        lines: vec![WireLine {
            refers_to_line: Some(index),
            ..line.clone()
        }],
        refers_to_sale_id: Some(of.sale_id),
    }
}

/// One article brought back without a receipt: cash back.
fn return_without_receipt(content: u64) -> Contents {
    let mut rng = StdRng::seed_from_u64(content);
    let mut basket = Basket::default();
    basket.add(pick_line(&mut rng), 0);
    let tenders = vec![WireTender {
        method: Method::Cash,
        amount_minor: basket.total_minor,
    }];
    basket.into_contents(currency(&mut rng), tenders)
}

fn currency(rng: &mut StdRng) -> &'static str {
    if rng.random_bool(FOREIGN_CURRENCY_SHARE) {
        FOREIGN_CURRENCY
    } else {
        STORE_CURRENCY
    }
}

fn pick_line(rng: &mut StdRng) -> (&'static Article, f64) {
    let article = &CATALOGUE[rng.random_range(0..CATALOGUE.len())];
    let quantity = if article.by_weight {
        // Scales weigh in grams: 0.150 to 2.000 kg.
        f64::from(rng.random_range(150..=2000_u32)) / 1000.0
    } else {
        f64::from(rng.random_range(1..=3_u32))
    };
    (article, quantity)
}

/// Cash or card mostly; sometimes part of it on a voucher.
fn tenders(rng: &mut StdRng, total_minor: i64) -> Vec<WireTender> {
    let tender = |method, amount_minor| WireTender {
        method,
        amount_minor,
    };
    let roll: f64 = rng.random();
    if roll < 0.55 {
        return vec![tender(Method::Card, total_minor)];
    }
    if roll < 0.85 {
        return vec![tender(Method::Cash, total_minor)];
    }
    let voucher = [500, 1000, 2000][rng.random_range(0..3)].min(total_minor);
    let rest_method = if roll < 0.95 {
        Method::Card
    } else {
        Method::Cash
    };
    let mut tenders = vec![tender(Method::Voucher, voucher)];
    if total_minor > voucher {
        tenders.push(tender(rest_method, total_minor - voucher));
    }
    tenders
}

/// Lines being rung up, with running totals. At most 5 lines of at most
/// 2 kg of the dearest article: far from any bound of `i64`.
#[derive(Default)]
struct Basket {
    lines: Vec<WireLine>,
    total_minor: i64,
    tax_minor: i64,
    discount_minor: i64,
}

impl Basket {
    fn add(&mut self, (article, quantity): (&'static Article, f64), discount_percent: i64) {
        let full = (article.unit_price_minor as f64 * quantity).round() as i64;
        let discount = full * discount_percent / 100;
        let amount_minor = full - discount;
        // VAT is inside the price: tax = amount * rate / (100 + rate), rounded.
        let divisor = 100 + article.vat_percent;
        let tax = (amount_minor * article.vat_percent + divisor / 2) / divisor;
        self.lines.push(WireLine {
            sku: article.sku,
            description: article.description,
            quantity,
            amount_minor,
            refers_to_line: None,
        });
        self.total_minor += amount_minor;
        self.tax_minor += tax;
        self.discount_minor += discount;
    }

    fn into_contents(self, currency: &'static str, tenders: Vec<WireTender>) -> Contents {
        Contents {
            currency,
            lines: self.lines,
            tenders,
            total_minor: self.total_minor,
            tax_minor: self.tax_minor,
            discount_minor: self.discount_minor,
            refers_to_sale_id: None,
        }
    }
}

#[cfg(test)]
mod tests;
