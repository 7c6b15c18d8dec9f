//! Realistic receipts, of both styles a back office meets: European (the
//! tax inside the prices, split over DE-19 and DE-7 by each line's rate,
//! cash sometimes rounded to 5 cents) and US (`tax_included: false`, the tax
//! added on top, US-STD and US-FOOD, a tip on some card payments). Either
//! may carry a service charge (taxed at the standard rate) or load a gift
//! card (a line of kind `gift_card`, no tax). A basket has 1 to 5 lines
//! from a small catalogue (some sold by weight, some discounted); tenders
//! are cash, card, or a voucher with either; a few sales are in a second
//! currency; a few occurred late at night, around the start of the store's
//! business day ([`StoreDay`]). A refund returns one item line of its sale
//! (naming it by `refers_to_line`, with its share of the service charge and
//! a tax split of its own) or one article without a receipt; a void mirrors
//! its sale. How often each happens is the run's [`ReceiptMix`].
//!
//! What is rung up, and of which earlier sale, is decided on the store floor
//! ([`crate::plan`]) as a [`Ticket`]; everything else about a sale is a pure
//! function of its ticket and the run's [`Shop`], here (the money in
//! `generator/receipt.rs`, the time in `generator/clock.rs`). So a sale can
//! be built whenever it is first needed, on any till, and a void rung up on
//! one till mirrors a sale of another without either till's journal looking
//! at the other's.
//!
//! The wire format is written here, not borrowed from the server's domain
//! types: the simulator is a client of the public API and may run from
//! another machine. The unit tests check every generated sale against the
//! server's own rules (the server crate is a dev-dependency of this one, for
//! that alone), so the two cannot drift apart unnoticed.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

mod catalogue;
mod clock;
mod receipt;

pub use clock::{StoreDay, parse_day_start};
use receipt::{Receipt, WireLine, WireTender};

/// The time zone of the store the run provisions; business dates follow it
/// (and its `business_day_starts_at`).
pub const STORE_TIMEZONE: Tz = chrono_tz::Europe::Berlin;
/// The store's own currency; most sales are in it.
pub const STORE_CURRENCY: &str = "EUR";
/// A second currency some sales are paid in (a border or airport shop), so
/// the per-currency totals, and the server's `currency_mismatch` flag, are
/// exercised too.
pub const FOREIGN_CURRENCY: &str = "CHF";

/// How often each kind of receipt is rung up (each a share from 0 to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReceiptMix {
    /// Receipts in the US style (the tax on top); the rest have it inside.
    pub tax_on_top_share: f64,
    /// Card payments of tax-on-top receipts that add a tip.
    pub tip_share: f64,
    /// Sales with a service charge.
    pub service_charge_share: f64,
    /// Sales that also load a gift card.
    pub gift_card_share: f64,
    /// Cash payments of tax-inside receipts rounded to 5 cents.
    pub cash_rounding_share: f64,
    /// Plain sales that occurred late at night, around the business day's
    /// start.
    pub late_night_share: f64,
}

impl Default for ReceiptMix {
    /// The command's defaults.
    fn default() -> Self {
        Self {
            tax_on_top_share: 0.3,
            tip_share: 0.5,
            service_charge_share: 0.1,
            gift_card_share: 0.03,
            cash_rounding_share: 0.5,
            late_night_share: 0.05,
        }
    }
}

/// Everything about the store that a sale's contents and business date
/// depend on, besides its ticket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shop {
    pub mix: ReceiptMix,
    pub day: StoreDay,
}

impl Default for Shop {
    /// The command's defaults: the usual mix, business days from 04:00.
    fn default() -> Self {
        Self {
            mix: ReceiptMix::default(),
            day: StoreDay {
                timezone: STORE_TIMEZONE,
                starts_at: NaiveTime::from_hms_opt(4, 0, 0).expect("04:00 is a time"),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sale,
    Refund,
    Void,
}

/// What the store floor decided when a customer came to a till. `content`
/// seeds everything else (basket, style, tenders, currency, the line
/// refunded, a late-night time).
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

/// One tax code of a receipt, as `taxes` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaxAmount {
    pub code: &'static str,
    pub rate_bp: i64,
    pub amount_minor: i64,
}

/// A receipt's money as a back office splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub total_minor: i64,
    pub tax_minor: i64,
    pub discount_minor: i64,
    /// Whether the tax is inside the lines (European) or on top (US).
    pub tax_included: bool,
    /// The item lines, and the gift card lines.
    pub item_sales_minor: i64,
    pub gift_card_sales_minor: i64,
    pub tip_minor: i64,
    pub service_charge_minor: i64,
    pub rounding_minor: i64,
    /// Empty only for a receipt with no taxed line.
    pub taxes: Vec<TaxAmount>,
}

impl Default for Money {
    fn default() -> Self {
        Self {
            total_minor: 0,
            tax_minor: 0,
            discount_minor: 0,
            tax_included: true,
            item_sales_minor: 0,
            gift_card_sales_minor: 0,
            tip_minor: 0,
            service_charge_minor: 0,
            rounding_minor: 0,
            taxes: Vec::new(),
        }
    }
}

impl Money {
    /// The API's net sales: item lines and service charge, less the tax
    /// when it is inside them.
    pub fn net_sales_minor(&self) -> i64 {
        let tax_inside = if self.tax_included { self.tax_minor } else { 0 };
        self.item_sales_minor + self.service_charge_minor - tax_inside
    }
}

/// A sale as `POST /v1/sales/batches` takes it; members at their default
/// are left out, as a till that does not know them would.
#[derive(Serialize)]
struct WireSale<'a> {
    sale_id: Uuid,
    seq: i64,
    kind: Kind,
    occurred_at: DateTime<FixedOffset>,
    currency: &'static str,
    lines: &'a [WireLine],
    tenders: &'a [WireTender],
    total_minor: i64,
    tax_minor: i64,
    discount_minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refers_to_sale_id: Option<Uuid>,
    #[serde(skip_serializing_if = "is_true")]
    tax_included: bool,
    #[serde(skip_serializing_if = "is_zero")]
    tip_minor: i64,
    #[serde(skip_serializing_if = "is_zero")]
    service_charge_minor: i64,
    #[serde(skip_serializing_if = "is_zero")]
    rounding_minor: i64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    taxes: &'a [TaxAmount],
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_zero(value: &i64) -> bool {
    *value == 0
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
    pub money: Money,
    pub refers_to_sale_id: Option<Uuid>,
    pub json: Box<str>,
}

/// The sale `ticket` stands for, rung up at `rung_up_at` under `sale_id`
/// and `seq` in `shop`.
pub fn build(
    sale_id: Uuid,
    seq: i64,
    rung_up_at: DateTime<Utc>,
    ticket: &Ticket,
    shop: &Shop,
) -> Generated {
    let occurred = match ticket {
        Ticket::Sale { content } => clock::occurred_at(rung_up_at, *content, &shop.mix, &shop.day),
        _ => rung_up_at,
    };
    let occurred_at = occurred
        .with_timezone(&shop.day.timezone)
        .fixed_offset()
        .trunc_subsecs(3);
    let (receipt, refers_to_sale_id): (Receipt, _) = match ticket {
        Ticket::Sale { content } => (receipt::sale(*content, &shop.mix), None),
        Ticket::Refund { content, of: None } => {
            (receipt::return_without_receipt(*content, &shop.mix), None)
        }
        Ticket::Refund {
            content,
            of: Some(of),
        } => (
            receipt::refund_of(*content, of.content, &shop.mix),
            Some(of.sale_id),
        ),
        Ticket::Void { of } => (receipt::sale(of.content, &shop.mix), Some(of.sale_id)),
    };
    let money = receipt.money;
    let wire = WireSale {
        sale_id,
        seq,
        kind: ticket.kind(),
        occurred_at,
        currency: receipt.currency,
        lines: &receipt.lines,
        tenders: &receipt.tenders,
        total_minor: money.total_minor,
        tax_minor: money.tax_minor,
        discount_minor: money.discount_minor,
        refers_to_sale_id,
        tax_included: money.tax_included,
        tip_minor: money.tip_minor,
        service_charge_minor: money.service_charge_minor,
        rounding_minor: money.rounding_minor,
        taxes: &money.taxes,
    };
    let json = serde_json::to_string(&wire)
        .expect("a generated sale always serializes")
        .into_boxed_str();
    Generated {
        sale_id,
        seq,
        kind: ticket.kind(),
        currency: receipt.currency,
        occurred_at,
        business_date: shop.day.business_date(&occurred_at),
        money,
        refers_to_sale_id,
        json,
    }
}

#[cfg(test)]
pub(crate) mod tests;
