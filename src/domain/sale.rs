//! A sale as a till sends it, the rules a sale must satisfy on its own, and
//! what a stored sale offers to check new ones against.
//!
//! Rules that need stored data (duplicates, a seq held by another sale) live
//! in [`crate::ingest`], and what a void or refund means with its sale in
//! [`super::references`]; here is only what one sale says about itself.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::bounds::{
    EARLIEST_OCCURRED_AT, MAX_AMOUNT_MINOR, MAX_CLOCK_AHEAD_HOURS, MAX_DESCRIPTION_CHARS,
    MAX_DETAIL_CHARS, MAX_RATE_BP, MAX_SEQ, MAX_SKU_CHARS, MAX_TAX_CODE_CHARS, MAX_TAX_LINES,
    amount_in_range, check_text, truncate,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleKind {
    Sale,
    Refund,
    Void,
}

impl SaleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SaleKind::Sale => "sale",
            SaleKind::Refund => "refund",
            SaleKind::Void => "void",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenderMethod {
    Cash,
    Card,
    Voucher,
    Other,
}

/// What a line sells: an item (revenue), or value loaded onto a gift card
/// (a liability to the customer, not a sale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    #[default]
    Item,
    GiftCard,
}

impl LineKind {
    fn is_item(&self) -> bool {
        *self == LineKind::Item
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaleLine {
    #[serde(default, skip_serializing_if = "LineKind::is_item")]
    pub kind: LineKind,
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub quantity: f64,
    pub amount_minor: i64,
    /// On a refund's line: the index, in its sale's `lines`, of the line it
    /// returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to_line: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tender {
    pub method: TenderMethod,
    pub amount_minor: i64,
}

/// One tax of a sale: its code (`DE-19`), its rate in basis points, and the
/// amount; a sale's taxes add up to its `tax_minor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaxLine {
    pub code: String,
    pub rate_bp: i64,
    pub amount_minor: i64,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// One sale, refund or void. Two sales have the "same content" when they
/// compare equal with `PartialEq`: after parsing, so `+01:00` and `Z` spellings
/// of the same instant are the same, and unknown members are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    pub sale_id: Uuid,
    pub seq: i64,
    pub kind: SaleKind,
    pub occurred_at: DateTime<FixedOffset>,
    pub currency: String,
    pub lines: Vec<SaleLine>,
    pub tenders: Vec<Tender>,
    pub total_minor: i64,
    pub tax_minor: i64,
    pub discount_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to_sale_id: Option<Uuid>,
    /// Whether the tax is inside the lines' amounts (the default) or added
    /// on top of them (a US receipt).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub tax_included: bool,
    /// Passed on to staff: not revenue.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tip_minor: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub service_charge_minor: i64,
    /// Cash rounding, either way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rounding_minor: i64,
    /// The tax by code and rate, when the till says it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taxes: Vec<TaxLine>,
}

/// A sale already stored, as much of it as a new sale is classified against:
/// whose it is and its seq, and the payload that tells a resent sale from a
/// different one under the same id.
#[derive(Debug, Clone)]
pub struct StoredSale {
    pub sale_id: Uuid,
    pub terminal_id: Uuid,
    pub seq: i64,
    /// The sale as the till sent it.
    pub body: serde_json::Value,
}

/// Why a sale was rejected: a stable `code` for machines and a `detail` for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub detail: String,
}

/// The one rejection a resend can get past: a till's clock ahead of the
/// server's by more than the bound. Sent again once that time has come,
/// the same sale is accepted.
const RETRYABLE_CODES: [&str; 1] = ["occurred_at_in_future"];

impl Rejection {
    /// The detail is cut to `MAX_DETAIL_CHARS`: it may quote what the till
    /// sent, and a huge quote would only bloat the (stored) response.
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: truncate(detail.into(), MAX_DETAIL_CHARS),
        }
    }

    /// Whether sending the same sale again can ever succeed. One that
    /// cannot is refused for good: kept for the back office, and its seq
    /// counts as settled.
    pub fn retryable(&self) -> bool {
        RETRYABLE_CODES.contains(&self.code)
    }
}

impl Sale {
    /// Checks every rule a sale must satisfy on its own, returning the first broken one.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), Rejection> {
        if !(1..=MAX_SEQ).contains(&self.seq) {
            return Err(Rejection::new(
                "invalid_seq",
                format!("seq must be an integer from 1 to {MAX_SEQ}"),
            ));
        }
        if iso_currency::Currency::from_code(&self.currency).is_none() {
            return Err(Rejection::new(
                "invalid_currency",
                format!("{:?} is not an ISO 4217 currency code", self.currency),
            ));
        }
        self.validate_occurred_at(now)?;
        self.validate_lines()?;
        self.validate_amounts()?;
        self.validate_reference()
    }

    fn validate_occurred_at(&self, now: DateTime<Utc>) -> Result<(), Rejection> {
        let at = self.occurred_at.with_timezone(&Utc);
        if at > now + Duration::hours(MAX_CLOCK_AHEAD_HOURS) {
            return Err(Rejection::new(
                "occurred_at_in_future",
                format!("occurred_at is more than {MAX_CLOCK_AHEAD_HOURS} hours in the future"),
            ));
        }
        if at < EARLIEST_OCCURRED_AT {
            return Err(Rejection::new(
                "occurred_at_too_old",
                "occurred_at is before 2000-01-01T00:00:00Z (is the till's clock set?)",
            ));
        }
        Ok(())
    }

    fn validate_lines(&self) -> Result<(), Rejection> {
        if self.lines.is_empty() {
            return Err(Rejection::new("no_lines", "a sale needs at least one line"));
        }
        for (i, line) in self.lines.iter().enumerate() {
            if line.sku.trim().is_empty() {
                return Err(Rejection::new(
                    "invalid_line",
                    format!("lines[{i}].sku is empty"),
                ));
            }
            if !(line.quantity.is_finite() && line.quantity > 0.0) {
                return Err(Rejection::new(
                    "invalid_line",
                    format!("lines[{i}].quantity must be a number > 0"),
                ));
            }
            if line.refers_to_line.is_some() && self.kind != SaleKind::Refund {
                return Err(Rejection::new(
                    "invalid_line",
                    format!(
                        "lines[{i}].refers_to_line: only a refund's lines name the line of its sale they return"
                    ),
                ));
            }
            let texts = [
                ("sku", Some(&line.sku), MAX_SKU_CHARS),
                (
                    "description",
                    line.description.as_ref(),
                    MAX_DESCRIPTION_CHARS,
                ),
            ];
            for (name, text, max_chars) in texts {
                if let Some(Err(problem)) = text.map(|t| check_text(t, max_chars)) {
                    let detail = problem.describe(&format!("lines[{i}].{name}"));
                    return Err(Rejection::new("invalid_text", detail));
                }
            }
        }
        Ok(())
    }

    /// The first amount outside ±`MAX_AMOUNT_MINOR`, named by its member.
    fn amount_out_of_range(&self) -> Option<String> {
        let own = [
            ("total_minor", self.total_minor),
            ("tax_minor", self.tax_minor),
            ("discount_minor", self.discount_minor),
            ("tip_minor", self.tip_minor),
            ("service_charge_minor", self.service_charge_minor),
            ("rounding_minor", self.rounding_minor),
        ];
        if let Some((name, _)) = own.iter().find(|(_, a)| !amount_in_range(*a)) {
            return Some((*name).to_owned());
        }
        if let Some(i) = (self.lines.iter()).position(|l| !amount_in_range(l.amount_minor)) {
            return Some(format!("lines[{i}].amount_minor"));
        }
        if let Some(i) = (self.taxes.iter()).position(|t| !amount_in_range(t.amount_minor)) {
            return Some(format!("taxes[{i}].amount_minor"));
        }
        (self.tenders.iter())
            .position(|t| !amount_in_range(t.amount_minor))
            .map(|i| format!("tenders[{i}].amount_minor"))
    }

    /// The sum of the item lines, and of the gift card lines (`None` if a
    /// sum does not fit).
    pub fn line_sums(&self) -> Option<(i64, i64)> {
        let sum = |kind: LineKind| {
            checked_sum(
                self.lines
                    .iter()
                    .filter(|l| l.kind == kind)
                    .map(|l| l.amount_minor),
            )
        };
        Some((sum(LineKind::Item)?, sum(LineKind::GiftCard)?))
    }

    /// What the sale adds to net sales: its item lines and service charge,
    /// less the tax inside them when the tax is included (gift cards sold,
    /// tips and rounding are not sales). `None` if it does not fit.
    pub fn net_sales_minor(&self) -> Option<i64> {
        let (items, _) = self.line_sums()?;
        let tax_inside = if self.tax_included { self.tax_minor } else { 0 };
        items
            .checked_add(self.service_charge_minor)?
            .checked_sub(tax_inside)
    }

    fn validate_amounts(&self) -> Result<(), Rejection> {
        if let Some(name) = self.amount_out_of_range() {
            return Err(Rejection::new(
                "amount_out_of_range",
                format!("{name} must be within ±{MAX_AMOUNT_MINOR}"),
            ));
        }
        if self.total_minor < 0 {
            return Err(Rejection::new(
                "negative_total",
                "total_minor must be >= 0 (a refund's kind says which way the money went)",
            ));
        }
        if self.tax_minor < 0
            || self.discount_minor < 0
            || self.tip_minor < 0
            || self.service_charge_minor < 0
        {
            return Err(Rejection::new(
                "negative_amount",
                "tax_minor, discount_minor, tip_minor and service_charge_minor must be >= 0",
            ));
        }
        if self.tax_minor > self.total_minor {
            return Err(Rejection::new(
                "tax_exceeds_total",
                "tax_minor exceeds total_minor",
            ));
        }
        self.validate_taxes()?;
        // total = lines + (tax when added on top) + tip + service charge + rounding
        let tax_on_top = if self.tax_included { 0 } else { self.tax_minor };
        let expected = checked_sum(self.lines.iter().map(|l| l.amount_minor).chain([
            tax_on_top,
            self.tip_minor,
            self.service_charge_minor,
            self.rounding_minor,
        ]));
        if expected != Some(self.total_minor) {
            return Err(Rejection::new(
                "lines_total_mismatch",
                "total_minor must be the sum of lines[].amount_minor, plus tax_minor when \
                 tax_included is false, plus tip_minor, service_charge_minor and rounding_minor",
            ));
        }
        if self.net_sales_minor().is_none() {
            return Err(Rejection::new(
                "amount_out_of_range",
                "the sale's net sales do not fit a 64-bit integer",
            ));
        }
        let tenders_sum = checked_sum(self.tenders.iter().map(|t| t.amount_minor));
        if tenders_sum != Some(self.total_minor) {
            return Err(Rejection::new(
                "tenders_total_mismatch",
                "the sum of tenders[].amount_minor differs from total_minor",
            ));
        }
        Ok(())
    }

    /// The taxes by code: each code named once, a rate from 0 to
    /// `MAX_RATE_BP`, an amount >= 0, and together the sale's tax.
    fn validate_taxes(&self) -> Result<(), Rejection> {
        if self.taxes.is_empty() {
            return Ok(());
        }
        let invalid = |detail: String| Err(Rejection::new("invalid_taxes", detail));
        if self.taxes.len() > MAX_TAX_LINES {
            return invalid(format!("at most {MAX_TAX_LINES} taxes a sale"));
        }
        for (i, tax) in self.taxes.iter().enumerate() {
            if let Err(problem) = check_text(&tax.code, MAX_TAX_CODE_CHARS) {
                return invalid(problem.describe(&format!("taxes[{i}].code")));
            }
            if tax.code.trim().is_empty() {
                return invalid(format!("taxes[{i}].code is empty"));
            }
            if !(0..=MAX_RATE_BP).contains(&tax.rate_bp) {
                return invalid(format!(
                    "taxes[{i}].rate_bp must be from 0 to {MAX_RATE_BP} (basis points: 1900 is 19 %)"
                ));
            }
            if tax.amount_minor < 0 {
                return invalid(format!("taxes[{i}].amount_minor must be >= 0"));
            }
            if self.taxes[..i].iter().any(|t| t.code == tax.code) {
                return invalid(format!("taxes[{i}].code {:?} is named twice", tax.code));
            }
        }
        if checked_sum(self.taxes.iter().map(|t| t.amount_minor)) != Some(self.tax_minor) {
            return Err(Rejection::new(
                "taxes_total_mismatch",
                "the sum of taxes[].amount_minor differs from tax_minor",
            ));
        }
        Ok(())
    }

    fn validate_reference(&self) -> Result<(), Rejection> {
        match (self.kind, self.refers_to_sale_id) {
            (SaleKind::Void, None) => Err(Rejection::new(
                "void_target_missing",
                "a void must name the sale it voids in refers_to_sale_id",
            )),
            (_, Some(target)) if target == self.sale_id => Err(Rejection::new(
                "invalid_reference",
                "refers_to_sale_id names the sale itself",
            )),
            _ => Ok(()),
        }
    }
}

/// Sums amounts, `None` on overflow (a crafted payload must not wrap around).
fn checked_sum(mut amounts: impl Iterator<Item = i64>) -> Option<i64> {
    amounts.try_fold(0i64, |acc, a| acc.checked_add(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::Calendar;
    use serde_json::json;

    fn sale(overrides: serde_json::Value) -> Sale {
        let mut base = json!({
            "sale_id": "7b1c1d1e-8a8c-4c44-9a55-7f4f7a8f0a01",
            "seq": 1,
            "kind": "sale",
            "occurred_at": "2026-11-20T10:00:00+01:00",
            "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1, "amount_minor": 1000}],
            "tenders": [{"method": "card", "amount_minor": 1000}],
            "total_minor": 1000,
            "tax_minor": 160,
            "discount_minor": 0
        });
        for (k, v) in overrides.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-21T00:00:00Z".parse().unwrap()
    }

    fn code(s: &Sale) -> Option<&'static str> {
        s.validate(now()).err().map(|r| r.code)
    }

    #[test]
    fn a_balanced_sale_is_valid() {
        assert_eq!(code(&sale(json!({}))), None);
    }

    #[test]
    fn each_rule_has_its_own_code() {
        assert_eq!(code(&sale(json!({"seq": 0}))), Some("invalid_seq"));
        assert_eq!(
            code(&sale(json!({"currency": "EURO"}))),
            Some("invalid_currency")
        );
        assert_eq!(
            code(&sale(json!({"currency": "XYZ"}))),
            Some("invalid_currency")
        );
        assert_eq!(
            code(&sale(json!({"occurred_at": "2026-11-22T01:00:00Z"}))),
            Some("occurred_at_in_future")
        );
        assert_eq!(code(&sale(json!({"lines": []}))), Some("no_lines"));
        assert_eq!(
            code(&sale(
                json!({"lines": [{"sku": "A", "quantity": 0, "amount_minor": 1000}]})
            )),
            Some("invalid_line")
        );
        assert_eq!(
            code(&sale(json!({"tax_minor": 1001}))),
            Some("tax_exceeds_total")
        );
        assert_eq!(
            code(&sale(json!({"discount_minor": -1}))),
            Some("negative_amount")
        );
        assert_eq!(
            code(&sale(json!({"total_minor": 999}))),
            Some("lines_total_mismatch")
        );
        assert_eq!(
            code(&sale(
                json!({"tenders": [{"method": "cash", "amount_minor": 900}]})
            )),
            Some("tenders_total_mismatch")
        );
        assert_eq!(
            code(&sale(json!({"kind": "void"}))),
            Some("void_target_missing")
        );
    }

    #[test]
    fn bounds_have_their_own_codes() {
        let max = MAX_AMOUNT_MINOR;
        assert_eq!(code(&sale(json!({"seq": MAX_SEQ}))), None);
        assert_eq!(
            code(&sale(json!({"seq": MAX_SEQ + 1}))),
            Some("invalid_seq")
        );
        assert_eq!(
            code(&sale(json!({"occurred_at": "1999-12-31T23:59:59Z"}))),
            Some("occurred_at_too_old")
        );
        let line = |sku: &str, description: &str| json!({"lines": [{"sku": sku, "description": description, "quantity": 1, "amount_minor": 1000}]});
        assert_eq!(code(&sale(line(&"S".repeat(64), &"d".repeat(256)))), None);
        assert_eq!(code(&sale(line("S\0", "d"))), Some("invalid_text"));
        assert_eq!(
            code(&sale(line("S", &"d".repeat(257)))),
            Some("invalid_text")
        );
        assert_eq!(
            code(&sale(json!({"discount_minor": max + 1}))),
            Some("amount_out_of_range")
        );
        let offsetting = sale(json!({"tenders": [
            {"method": "card", "amount_minor": max + 1001},
            {"method": "cash", "amount_minor": -max - 1}
        ]}));
        assert_eq!(code(&offsetting), Some("amount_out_of_range"));
        assert_eq!(
            offsetting.validate(now()).unwrap_err().detail,
            format!("tenders[0].amount_minor must be within ±{max}")
        );
    }

    #[test]
    fn a_rejection_never_carries_a_huge_detail() {
        let r = Rejection::new("invalid_sale", "x".repeat(10_000));
        assert_eq!(r.detail.chars().count(), MAX_DETAIL_CHARS);
    }

    #[test]
    fn an_overflowing_sum_is_a_mismatch_not_a_wraparound() {
        // Each amount within its bound, the 1025 of them beyond an i64.
        let line = json!({"sku": "A", "quantity": 1, "amount_minor": MAX_AMOUNT_MINOR});
        let s = sale(json!({"lines": vec![line; 1025]}));
        assert_eq!(code(&s), Some("lines_total_mismatch"));
        assert_eq!(checked_sum([i64::MAX, i64::MAX, 1002].into_iter()), None);
    }

    #[test]
    fn the_same_instant_in_another_offset_is_the_same_content() {
        assert_eq!(
            sale(json!({})),
            sale(json!({"occurred_at": "2026-11-20T09:00:00Z"}))
        );
        assert_ne!(sale(json!({})), sale(json!({"tax_minor": 161})));
    }

    #[test]
    fn business_date_follows_the_store_time_zone() {
        let late = sale(json!({"occurred_at": "2026-11-20T23:30:00Z"}));
        let berlin = Calendar::fixed(chrono_tz::Europe::Berlin);
        assert_eq!(
            berlin.business_date(&late.occurred_at).to_string(),
            "2026-11-21"
        );
        let utc = Calendar::fixed(chrono_tz::UTC);
        assert_eq!(
            utc.business_date(&late.occurred_at).to_string(),
            "2026-11-20"
        );
    }
}
