//! The bounds every number and text of the API is held to at the edge, in
//! one place so the rules that check them and the arithmetic that relies on
//! them agree. docs/limits.md ("Limits") and `openapi.yaml` document the same
//! numbers.
//!
//! Why these numbers:
//! - Amounts and `seq` stay within 2^53 - 1 in magnitude: every JSON reader,
//!   JavaScript dashboards included (`Number.MAX_SAFE_INTEGER`), reads them
//!   exactly, and a sum of up to 1024 of them still fits in an `i64`, so the
//!   checked arithmetic downstream refuses only absurd totals. 2^53 - 1
//!   minor units is 90 trillion euros: no real sale comes near.
//! - Text carries no NUL (Postgres text and jsonb cannot hold U+0000) and
//!   has a length a receipt or a dashboard can show; lengths count Unicode
//!   characters, as JSON Schema's `maxLength` does.
//! - `occurred_at` lies after a fixed floor, not a window sliding with the
//!   clock: a sale accepted once stays acceptable when it is resent years
//!   later (deduplication by `sale_id` is permanent), while a till whose
//!   clock fell back to 1970 or year 0 after a flat RTC battery is refused.

use chrono::{DateTime, Utc};

/// The largest `seq` a till may send (`seq` is 1 to this).
pub const MAX_SEQ: i64 = (1 << 53) - 1;

/// The largest magnitude of any amount: `amount_minor` of lines and
/// tenders, `total_minor`, `tax_minor`, `discount_minor`.
pub const MAX_AMOUNT_MINOR: i64 = (1 << 53) - 1;

/// A line's `sku`: GTIN-14 and typical internal codes are far shorter.
pub const MAX_SKU_CHARS: usize = 64;

/// Longest tax code (`DE-19`, `US-NY-STATE`), in characters.
pub const MAX_TAX_CODE_CHARS: usize = 32;
/// Most taxes one sale names.
pub const MAX_TAX_LINES: usize = 16;
/// Highest tax rate, in basis points (100 000: 1000 %; some excise taxes go
/// beyond 100 %).
pub const MAX_RATE_BP: i64 = 100_000;

/// A line's `description`: a few lines of a 40-column receipt.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// Store and terminal names.
pub const MAX_NAME_CHARS: usize = 200;

/// No sale happened before 2000-01-01T00:00:00Z: tillsync started in 2026,
/// and a year before 2000 is a till clock that was reset, not a sale.
pub const EARLIEST_OCCURRED_AT: DateTime<Utc> = match DateTime::from_timestamp(946_684_800, 0) {
    Some(t) => t,
    None => panic!("2000-01-01 is a valid timestamp"),
};

/// How far in the future `occurred_at` may lie: tills' clocks drift, but not by a day.
pub const MAX_CLOCK_AHEAD_HOURS: i64 = 24;

/// A rejection's `detail` is cut to this many characters, so it never
/// echoes a huge string back (and into the stored response).
pub const MAX_DETAIL_CHARS: usize = 256;

/// Why a text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    Nul,
    /// Longer than this many characters.
    TooLong(usize),
}

impl TextProblem {
    /// The message, naming the field at fault.
    pub fn describe(self, field: &str) -> String {
        match self {
            TextProblem::Nul => format!("{field} contains a NUL character (U+0000)"),
            TextProblem::TooLong(max) => format!("{field} is longer than {max} characters"),
        }
    }
}

/// A text field's checks: no NUL, at most `max_chars` characters.
pub fn check_text(text: &str, max_chars: usize) -> Result<(), TextProblem> {
    if text.contains('\0') {
        Err(TextProblem::Nul)
    } else if text.chars().nth(max_chars).is_some() {
        Err(TextProblem::TooLong(max_chars))
    } else {
        Ok(())
    }
}

/// Whether an amount lies within ±`MAX_AMOUNT_MINOR`.
pub fn amount_in_range(amount: i64) -> bool {
    (-MAX_AMOUNT_MINOR..=MAX_AMOUNT_MINOR).contains(&amount)
}

/// `text` as Postgres `text` can hold it: a NUL (which a detail may quote
/// from what a till sent) becomes U+FFFD.
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// `text` cut to at most `max_chars` characters (at least 1), the last
/// one "…" when it was cut.
pub fn truncate(mut text: String, max_chars: usize) -> String {
    if text.chars().nth(max_chars).is_some() {
        let keep = max_chars.saturating_sub(1);
        let at = text
            .char_indices()
            .nth(keep)
            .map_or(text.len(), |(at, _)| at);
        text.truncate(at);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_what_json_readers_hold_exactly() {
        assert_eq!(MAX_SEQ, 9_007_199_254_740_991);
        assert_eq!(MAX_AMOUNT_MINOR, 9_007_199_254_740_991);
        assert_eq!(
            EARLIEST_OCCURRED_AT.to_rfc3339(),
            "2000-01-01T00:00:00+00:00"
        );
        // 1024 maximal amounts still sum inside an i64.
        assert!(MAX_AMOUNT_MINOR.checked_mul(1024).is_some());
    }

    #[test]
    fn text_is_refused_for_a_nul_or_its_length_in_characters() {
        assert_eq!(check_text("A", 1), Ok(()));
        assert_eq!(check_text("éé", 2), Ok(()));
        assert_eq!(check_text("ééé", 2), Err(TextProblem::TooLong(2)));
        assert_eq!(check_text("a\0b", 10), Err(TextProblem::Nul));
        assert_eq!(
            TextProblem::TooLong(2).describe("sku"),
            "sku is longer than 2 characters"
        );
    }

    #[test]
    fn amounts_are_in_range_up_to_the_bound_either_side() {
        assert!(amount_in_range(MAX_AMOUNT_MINOR));
        assert!(amount_in_range(-MAX_AMOUNT_MINOR));
        assert!(!amount_in_range(MAX_AMOUNT_MINOR + 1));
        assert!(!amount_in_range(i64::MIN));
    }

    #[test]
    fn truncation_cuts_at_a_character_boundary() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("ééé".into(), 2), "é…");
        assert_eq!(truncate("x".repeat(1000), 256).chars().count(), 256);
    }
}
