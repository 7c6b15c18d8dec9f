//! Realistic sales for one simulated till: a basket of 1 to 5 lines from a
//! small catalogue (some sold by weight, some discounted), VAT included in
//! the prices, tenders split over cash, card and vouchers, about 5% refunds
//! and 2% voids of an earlier sale, and a few sales in a second currency.
//!
//! The wire format is written here, not borrowed from the server's domain
//! types: the simulator is a client of the public API and may run from
//! another machine. The unit tests check every generated sale against the
//! server's own rules (the server crate is a dev-dependency of this one, for
//! that alone), so the two cannot drift apart unnoticed.

use std::collections::VecDeque;

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

const REFUND_SHARE: f64 = 0.05;
const VOID_SHARE: f64 = 0.02;
/// Per line; with 3 lines on average about one sale in ten has a discount.
const DISCOUNTED_LINE_SHARE: f64 = 0.035;
/// Most refunds name the sale they refund; the rest are returns without a receipt.
const REFUND_WITH_RECEIPT_SHARE: f64 = 0.7;
/// How many recent sales stay candidates for a refund or a void.
const RECENT_SALES: usize = 32;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sale,
    Refund,
    Void,
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
    pub business_date: NaiveDate,
    pub total_minor: i64,
    pub refers_to_sale_id: Option<Uuid>,
    pub json: Box<str>,
}

/// The sales of one till, in seq order.
pub struct SaleGenerator {
    rng: StdRng,
    next_seq: i64,
    /// Recent plain sales not yet refunded or voided: what a refund with a
    /// receipt or a void may name.
    recent: VecDeque<WireSale>,
}

impl SaleGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            next_seq: 1,
            recent: VecDeque::with_capacity(RECENT_SALES),
        }
    }

    /// The till's next sale, rung up at `now`.
    pub fn next_sale(&mut self, now: DateTime<Utc>) -> Generated {
        let seq = self.next_seq;
        self.next_seq += 1;
        let occurred_at = now
            .with_timezone(&STORE_TIMEZONE)
            .fixed_offset()
            .trunc_subsecs(3);
        let roll: f64 = self.rng.random();
        let wire = if roll < VOID_SHARE {
            self.void(seq, occurred_at)
        } else if roll < VOID_SHARE + REFUND_SHARE {
            Some(self.refund(seq, occurred_at))
        } else {
            None
        };
        let wire = wire.unwrap_or_else(|| self.sale(seq, occurred_at));
        if wire.kind == Kind::Sale {
            if self.recent.len() == RECENT_SALES {
                self.recent.pop_front();
            }
            self.recent.push_back(wire.clone());
        }
        Generated {
            sale_id: wire.sale_id,
            seq,
            kind: wire.kind,
            currency: wire.currency,
            business_date: wire.occurred_at.with_timezone(&STORE_TIMEZONE).date_naive(),
            total_minor: wire.total_minor,
            refers_to_sale_id: wire.refers_to_sale_id,
            json: serde_json::to_string(&wire)
                .expect("a generated sale always serializes")
                .into_boxed_str(),
        }
    }

    fn currency(&mut self) -> &'static str {
        if self.rng.random_bool(FOREIGN_CURRENCY_SHARE) {
            FOREIGN_CURRENCY
        } else {
            STORE_CURRENCY
        }
    }

    fn sale(&mut self, seq: i64, occurred_at: DateTime<FixedOffset>) -> WireSale {
        let line_count = self.rng.random_range(1..=5);
        let mut basket = Basket::default();
        for _ in 0..line_count {
            let discount_percent = if self.rng.random_bool(DISCOUNTED_LINE_SHARE) {
                [10, 20, 30][self.rng.random_range(0..3)]
            } else {
                0
            };
            basket.add(self.pick_line(), discount_percent);
        }
        let tenders = self.tenders(basket.total_minor);
        let currency = self.currency();
        basket.into_sale(seq, Kind::Sale, occurred_at, currency, tenders)
    }

    fn pick_line(&mut self) -> (&'static Article, f64) {
        let article = &CATALOGUE[self.rng.random_range(0..CATALOGUE.len())];
        let quantity = if article.by_weight {
            // Scales weigh in grams: 0.150 to 2.000 kg.
            f64::from(self.rng.random_range(150..=2000_u32)) / 1000.0
        } else {
            f64::from(self.rng.random_range(1..=3_u32))
        };
        (article, quantity)
    }

    /// Cash or card mostly; sometimes part of it on a voucher.
    fn tenders(&mut self, total_minor: i64) -> Vec<WireTender> {
        let tender = |method, amount_minor| WireTender {
            method,
            amount_minor,
        };
        let roll: f64 = self.rng.random();
        if roll < 0.55 {
            return vec![tender(Method::Card, total_minor)];
        }
        if roll < 0.85 {
            return vec![tender(Method::Cash, total_minor)];
        }
        let voucher = [500, 1000, 2000][self.rng.random_range(0..3)].min(total_minor);
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

    /// A refund of one line of a recent sale (money back the way it came),
    /// or of one article returned without a receipt (cash back).
    fn refund(&mut self, seq: i64, occurred_at: DateTime<FixedOffset>) -> WireSale {
        let original = if self.rng.random_bool(REFUND_WITH_RECEIPT_SHARE) {
            self.take_recent()
        } else {
            None
        };
        if let Some(original) = original {
            let line = original.lines[self.rng.random_range(0..original.lines.len())].clone();
            // Tax in the same proportion as on the receipt, rounded down so it
            // never exceeds the refunded amount.
            let tax_minor = original.tax_minor * line.amount_minor / original.total_minor.max(1);
            let method = match original.tenders[0].method {
                Method::Card => Method::Card,
                _ => Method::Cash,
            };
            return WireSale {
                sale_id: Uuid::new_v4(),
                seq,
                kind: Kind::Refund,
                occurred_at,
                currency: original.currency,
                tenders: vec![WireTender {
                    method,
                    amount_minor: line.amount_minor,
                }],
                total_minor: line.amount_minor,
                tax_minor,
                discount_minor: 0,
                lines: vec![line],
                refers_to_sale_id: Some(original.sale_id),
            };
        }
        let mut basket = Basket::default();
        basket.add(self.pick_line(), 0);
        let tenders = vec![WireTender {
            method: Method::Cash,
            amount_minor: basket.total_minor,
        }];
        let currency = self.currency();
        basket.into_sale(seq, Kind::Refund, occurred_at, currency, tenders)
    }

    /// A void cancels a whole recent sale: it mirrors its currency and
    /// amounts (the server checks that) and copies its lines and tenders.
    fn void(&mut self, seq: i64, occurred_at: DateTime<FixedOffset>) -> Option<WireSale> {
        let target = self.take_recent()?;
        Some(WireSale {
            sale_id: Uuid::new_v4(),
            seq,
            kind: Kind::Void,
            occurred_at,
            refers_to_sale_id: Some(target.sale_id),
            ..target
        })
    }

    /// A random recent sale, which is no longer a candidate afterwards (a
    /// sale is voided at most once, and is not voided after a refund).
    fn take_recent(&mut self) -> Option<WireSale> {
        if self.recent.is_empty() {
            return None;
        }
        let index = self.rng.random_range(0..self.recent.len());
        self.recent.remove(index)
    }
}

/// Lines being rung up, with running totals.
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
        });
        self.total_minor += amount_minor;
        self.tax_minor += tax;
        self.discount_minor += discount;
    }

    fn into_sale(
        self,
        seq: i64,
        kind: Kind,
        occurred_at: DateTime<FixedOffset>,
        currency: &'static str,
        tenders: Vec<WireTender>,
    ) -> WireSale {
        WireSale {
            sale_id: Uuid::new_v4(),
            seq,
            kind,
            occurred_at,
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
mod tests {
    use std::collections::HashSet;

    // The server, as a dev-dependency only: its own rules judge the sales.
    use tillsync::domain::sale::Sale;
    use tillsync::ingest::classify::{Stored, Verdict, classify};

    use super::*;

    fn generate(seed: u64, count: usize) -> Vec<Generated> {
        let mut generator = SaleGenerator::new(seed);
        let now = Utc::now();
        (0..count).map(|_| generator.next_sale(now)).collect()
    }

    /// The server's own parsing, validation and classification (voids need
    /// their target earlier in the same batch) accept every generated sale.
    #[test]
    fn every_generated_sale_passes_the_servers_own_rules() {
        let generated = generate(7, 5000);
        let sales: Vec<Sale> = generated
            .iter()
            .map(|g| serde_json::from_str(&g.json).expect("parses as a Sale"))
            .collect();
        for sale in &sales {
            assert_eq!(sale.validate(Utc::now()), Ok(()), "{sale:?}");
        }
        let till = Uuid::new_v4();
        let refs: Vec<&Sale> = sales.iter().collect();
        let outcomes = classify(till, &refs, &Stored::new(till, &[]));
        assert!(
            outcomes.iter().all(|o| *o == Verdict::Accept),
            "{outcomes:?}"
        );
    }

    /// The server serves pushes up to `LIVE_PUSH_MAX_BYTES` as live sales
    /// and larger ones as a backlog: a till selling online (a few sales a
    /// push, up to 10) is live, an offline queue replayed 50 at a time is not.
    #[test]
    fn pushes_of_up_to_ten_sales_are_live_and_of_fifty_a_backlog() {
        use tillsync::http::middleware::admission::LIVE_PUSH_MAX_BYTES;
        let generated = generate(11, 5000);
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
    fn seqs_start_at_one_and_increase_by_one() {
        let seqs: Vec<i64> = generate(1, 100).iter().map(|g| g.seq).collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    }

    #[test]
    fn the_mix_has_refunds_voids_split_tenders_and_a_second_currency() {
        let generated = generate(3, 5000);
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

    #[test]
    fn a_sale_is_voided_at_most_once_and_only_by_its_own_till() {
        let generated = generate(11, 5000);
        let ids: HashSet<Uuid> = generated.iter().map(|g| g.sale_id).collect();
        let targets: Vec<Uuid> = generated
            .iter()
            .filter(|g| g.kind == Kind::Void)
            .filter_map(|g| g.refers_to_sale_id)
            .collect();
        let distinct: HashSet<&Uuid> = targets.iter().collect();
        assert_eq!(distinct.len(), targets.len());
        assert!(targets.iter().all(|t| ids.contains(t)));
    }

    #[test]
    fn the_same_seed_gives_the_same_sales_apart_from_their_ids() {
        let strip = |g: &Generated| {
            let mut value: serde_json::Value = serde_json::from_str(&g.json).unwrap();
            value["sale_id"] = serde_json::Value::Null;
            value["refers_to_sale_id"] = serde_json::Value::Null;
            value["occurred_at"] = serde_json::Value::Null;
            value
        };
        let first: Vec<_> = generate(42, 200).iter().map(strip).collect();
        let second: Vec<_> = generate(42, 200).iter().map(strip).collect();
        assert_eq!(first, second);
        assert_ne!(
            first,
            generate(43, 200).iter().map(strip).collect::<Vec<_>>()
        );
    }
}
