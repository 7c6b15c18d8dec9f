//! A receipt's contents and money from its seed: the basket, the style of
//! tax, the service charge, the tax split by code, how it is paid (with a
//! tip, or rounded in cash), and a refund of one of its lines. Every
//! receipt balances by the API's rule: `total_minor` = the lines + the tax
//! when it is on top + tip + service charge + rounding = the tenders.
//!
//! Sums are of at most 6 lines of at most a few hundred units each: far
//! from any bound of `i64` or of the API.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::catalogue::{self, GIFT_CARD_DESCRIPTION, GIFT_CARD_SKU, GIFT_CARD_VALUES_MINOR};
use super::catalogue::{Style, TaxClass};
use super::{FOREIGN_CURRENCY, Money, ReceiptMix, STORE_CURRENCY, TaxAmount};

const FOREIGN_CURRENCY_SHARE: f64 = 0.03;
/// Per line; with 3 lines on average about one sale in ten has a discount.
const DISCOUNTED_LINE_SHARE: f64 = 0.035;
/// Tips, as a percentage of the item lines before tax.
const TIP_PERCENTS: [i64; 3] = [15, 18, 20];
/// Cash is rounded to this many minor units (5 cents, as in the
/// Netherlands or Finland).
const CASH_STEP_MINOR: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum LineKind {
    Item,
    GiftCard,
}

impl LineKind {
    fn is_item(&self) -> bool {
        *self == LineKind::Item
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Method {
    Cash,
    Card,
    Voucher,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct WireLine {
    #[serde(skip_serializing_if = "LineKind::is_item")]
    pub kind: LineKind,
    pub sku: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'static str>,
    pub quantity: f64,
    pub amount_minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refers_to_line: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct WireTender {
    pub method: Method,
    pub amount_minor: i64,
}

/// A receipt's contents: what is sent, and the money as the back office
/// splits it.
pub(super) struct Receipt {
    pub currency: &'static str,
    pub lines: Vec<WireLine>,
    pub tenders: Vec<WireTender>,
    pub money: Money,
    style: Style,
    /// Per line, its tax class (`None` for a gift card).
    classes: Vec<Option<TaxClass>>,
}

/// A plain sale's receipt, from its seed alone.
pub(super) fn sale(content: u64, mix: &ReceiptMix) -> Receipt {
    let mut rng = StdRng::seed_from_u64(content);
    let mut lines = Vec::new();
    let mut discount_minor = 0;
    for _ in 0..rng.random_range(1..=5) {
        let discount_percent = if rng.random_bool(DISCOUNTED_LINE_SHARE) {
            [10, 20, 30][rng.random_range(0..3)]
        } else {
            0
        };
        let (line, discount) = item_line(catalogue::pick(&mut rng), discount_percent);
        discount_minor += discount;
        lines.push(line);
    }
    let style = style(&mut rng, mix);
    if rng.random_bool(mix.gift_card_share) {
        let value = GIFT_CARD_VALUES_MINOR[rng.random_range(0..GIFT_CARD_VALUES_MINOR.len())];
        lines.push((gift_card_line(value), None));
    }
    let items = item_sum(&lines);
    let service_charge = if rng.random_bool(mix.service_charge_share) {
        round_div(items * style.service_charge_percent(), 100)
    } else {
        0
    };
    let currency = currency(&mut rng);
    let mut receipt = Receipt::priced(style, lines, service_charge, currency);
    receipt.money.discount_minor = discount_minor;
    let payment = Payment::draw(&mut rng);
    let before_payment = receipt.money.total_minor;
    if style == Style::TaxOnTop
        && payment.has_card_part(before_payment)
        && rng.random_bool(mix.tip_share)
    {
        let percent = TIP_PERCENTS[rng.random_range(0..TIP_PERCENTS.len())];
        receipt.money.tip_minor = round_div(items * percent, 100);
    }
    if style == Style::TaxInside
        && payment == Payment::Cash
        && rng.random_bool(mix.cash_rounding_share)
    {
        receipt.money.rounding_minor = cash_rounding(before_payment);
    }
    receipt.money.total_minor += receipt.money.tip_minor + receipt.money.rounding_minor;
    receipt.tenders = payment.tenders(receipt.money.total_minor);
    receipt
}

/// A refund of one item line of the sale of seed `sale_content`, naming it,
/// in the sale's style and currency: the line, its share of the service
/// charge, a tax split of its own, money back the way it came (card, or
/// cash, rounded as cash is), and never more than the sale's total. No tip
/// goes back.
pub(super) fn refund_of(content: u64, sale_content: u64, mix: &ReceiptMix) -> Receipt {
    let mut rng = StdRng::seed_from_u64(content);
    let original = sale(sale_content, mix);
    let items: Vec<usize> = (0..original.lines.len())
        .filter(|&i| original.classes[i].is_some())
        .collect();
    let index = items[rng.random_range(0..items.len())];
    let line = WireLine {
        refers_to_line: Some(index),
        ..original.lines[index].clone()
    };
    let service_charge = original.money.service_charge_minor * line.amount_minor
        / original.money.item_sales_minor.max(1);
    let lines = vec![(line, original.classes[index])];
    let mut refund = Receipt::priced(original.style, lines, service_charge, original.currency);
    let method = match original.tenders[0].method {
        Method::Card => Method::Card,
        _ => Method::Cash,
    };
    refund.round_cash(&mut rng, mix, method);
    // Rounded the other way than the sale was, a refund of a sale's only
    // line would return more than was paid: it returns what was paid.
    let excess = refund.money.total_minor - original.money.total_minor;
    if excess > 0 {
        refund.money.rounding_minor -= excess;
        refund.money.total_minor -= excess;
    }
    refund.tenders = vec![tender(method, refund.money.total_minor)];
    refund
}

/// One article brought back without a receipt: cash back.
pub(super) fn return_without_receipt(content: u64, mix: &ReceiptMix) -> Receipt {
    let mut rng = StdRng::seed_from_u64(content);
    let lines = vec![item_line(catalogue::pick(&mut rng), 0).0];
    let style = style(&mut rng, mix);
    let currency = currency(&mut rng);
    let mut refund = Receipt::priced(style, lines, 0, currency);
    refund.round_cash(&mut rng, mix, Method::Cash);
    refund.tenders = vec![tender(Method::Cash, refund.money.total_minor)];
    refund
}

impl Receipt {
    /// The lines with their service charge and tax, before payment: the
    /// total is what the lines, the service charge and a tax on top add to.
    fn priced(
        style: Style,
        lines: Vec<(WireLine, Option<TaxClass>)>,
        service_charge_minor: i64,
        currency: &'static str,
    ) -> Self {
        let item_sales_minor = item_sum(&lines);
        let all: i64 = lines.iter().map(|(l, _)| l.amount_minor).sum();
        let taxes = taxes(style, &lines, service_charge_minor);
        let tax_minor: i64 = taxes.iter().map(|t| t.amount_minor).sum();
        let tax_on_top = if style == Style::TaxOnTop {
            tax_minor
        } else {
            0
        };
        let (lines, classes) = lines.into_iter().unzip();
        Receipt {
            currency,
            lines,
            tenders: Vec::new(),
            money: Money {
                total_minor: all + service_charge_minor + tax_on_top,
                tax_minor,
                tax_included: style == Style::TaxInside,
                item_sales_minor,
                gift_card_sales_minor: all - item_sales_minor,
                service_charge_minor,
                taxes,
                ..Money::default()
            },
            style,
            classes,
        }
    }

    /// Cash paid back on a receipt with the tax inside is rounded, as often
    /// as cash payments are.
    fn round_cash(&mut self, rng: &mut StdRng, mix: &ReceiptMix, method: Method) {
        if self.style == Style::TaxInside
            && method == Method::Cash
            && rng.random_bool(mix.cash_rounding_share)
        {
            self.money.rounding_minor = cash_rounding(self.money.total_minor);
            self.money.total_minor += self.money.rounding_minor;
        }
    }
}

/// The tax by code: per class, on its item lines (and the service charge,
/// at the standard rate), rounded once per code as a fiscal receipt does.
/// Only the codes the receipt has a base for; gift cards have no tax.
fn taxes(
    style: Style,
    lines: &[(WireLine, Option<TaxClass>)],
    service_charge_minor: i64,
) -> Vec<TaxAmount> {
    let mut taxes = Vec::with_capacity(2);
    for class in [TaxClass::Standard, TaxClass::Reduced] {
        let in_class = lines.iter().filter(|(_, c)| *c == Some(class));
        let mut base: i64 = in_class.clone().map(|(l, _)| l.amount_minor).sum();
        let mut taxed = in_class.count() > 0;
        if class == TaxClass::Standard && service_charge_minor > 0 {
            base += service_charge_minor;
            taxed = true;
        }
        if taxed {
            let (code, rate_bp) = style.rate(class);
            taxes.push(TaxAmount {
                code,
                rate_bp,
                amount_minor: style.tax_on(base, rate_bp),
            });
        }
    }
    taxes
}

/// How a customer pays, drawn before the total is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payment {
    Card,
    Cash,
    /// A voucher of this value (or the total, if less), the rest by `rest`.
    Voucher {
        value: i64,
        rest: Method,
    },
}

impl Payment {
    /// Card or cash mostly; sometimes part of it on a voucher.
    fn draw(rng: &mut StdRng) -> Self {
        let roll: f64 = rng.random();
        if roll < 0.55 {
            return Payment::Card;
        }
        if roll < 0.85 {
            return Payment::Cash;
        }
        let value = [500, 1000, 2000][rng.random_range(0..3)];
        let rest = if roll < 0.95 {
            Method::Card
        } else {
            Method::Cash
        };
        Payment::Voucher { value, rest }
    }

    /// Whether a card pays some of `total` (where a tip can go).
    fn has_card_part(self, total: i64) -> bool {
        match self {
            Payment::Card => true,
            Payment::Cash => false,
            Payment::Voucher { value, rest } => rest == Method::Card && total > value,
        }
    }

    fn tenders(self, total: i64) -> Vec<WireTender> {
        match self {
            Payment::Card => vec![tender(Method::Card, total)],
            Payment::Cash => vec![tender(Method::Cash, total)],
            Payment::Voucher { value, rest } => {
                let voucher = value.min(total);
                let mut tenders = vec![tender(Method::Voucher, voucher)];
                if total > voucher {
                    tenders.push(tender(rest, total - voucher));
                }
                tenders
            }
        }
    }
}

fn tender(method: Method, amount_minor: i64) -> WireTender {
    WireTender {
        method,
        amount_minor,
    }
}

/// An article line, its discount taken off; and the discount.
fn item_line(
    (article, quantity): (&'static catalogue::Article, f64),
    discount_percent: i64,
) -> ((WireLine, Option<TaxClass>), i64) {
    let full = (article.unit_price_minor as f64 * quantity).round() as i64;
    let discount = full * discount_percent / 100;
    let line = WireLine {
        kind: LineKind::Item,
        sku: article.sku,
        description: article.description,
        quantity,
        amount_minor: full - discount,
        refers_to_line: None,
    };
    ((line, Some(article.class)), discount)
}

fn gift_card_line(value: i64) -> WireLine {
    WireLine {
        kind: LineKind::GiftCard,
        sku: GIFT_CARD_SKU,
        description: Some(GIFT_CARD_DESCRIPTION),
        quantity: 1.0,
        amount_minor: value,
        refers_to_line: None,
    }
}

fn item_sum(lines: &[(WireLine, Option<TaxClass>)]) -> i64 {
    lines
        .iter()
        .filter(|(l, _)| l.kind == LineKind::Item)
        .map(|(l, _)| l.amount_minor)
        .sum()
}

fn style(rng: &mut StdRng, mix: &ReceiptMix) -> Style {
    if rng.random_bool(mix.tax_on_top_share) {
        Style::TaxOnTop
    } else {
        Style::TaxInside
    }
}

fn currency(rng: &mut StdRng) -> &'static str {
    if rng.random_bool(FOREIGN_CURRENCY_SHARE) {
        FOREIGN_CURRENCY
    } else {
        STORE_CURRENCY
    }
}

/// What rounding `total` to the nearest cash step adds (-2 to 2 cents).
fn cash_rounding(total: i64) -> i64 {
    let rounded = (total + CASH_STEP_MINOR / 2) / CASH_STEP_MINOR * CASH_STEP_MINOR;
    rounded - total
}

/// `numerator / denominator` rounded half up, for amounts >= 0.
fn round_div(numerator: i64, denominator: i64) -> i64 {
    (numerator + denominator / 2) / denominator
}
