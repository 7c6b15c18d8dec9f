//! Properties of the batch parser and the sale rules, on generated input:
//! any JSON in place of any member of a sale, in place of the whole sale,
//! beside it as unknown or repeated members, or as the whole body. Each sale
//! comes out valid or rejected with a documented code, never as a panic,
//! and the batch fails only when its envelope is malformed. The JSON is
//! generated as text, so it can hold what `serde_json::Value` cannot: lone
//! surrogates, integers beyond 64 bits, `1e400`, repeated keys.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::Value;

use super::parse_batch;
use crate::domain::bounds::{
    EARLIEST_OCCURRED_AT, MAX_DESCRIPTION_CHARS, MAX_SEQ, MAX_SKU_CHARS, amount_in_range,
};
use crate::domain::sale::Sale;
use crate::ingest::Item;

fn now() -> DateTime<Utc> {
    "2026-11-21T00:00:00Z".parse().unwrap()
}

/// The per-sale codes openapi.yaml documents (`RejectionCode`).
static DOCUMENTED_CODES: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let doc: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["components"]["schemas"]["RejectionCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect()
});

/// A valid sale's members as JSON text; `LINE` and `TENDER` are its only
/// line and tender.
const SALE: &[(&str, &str)] = &[
    ("sale_id", r#""7b1c1d1e-8a8c-4c44-9a55-7f4f7a8f0a01""#),
    ("seq", "1"),
    ("kind", r#""sale""#),
    ("occurred_at", r#""2026-11-20T10:00:00+01:00""#),
    ("currency", r#""EUR""#),
    ("lines", "[LINE]"),
    ("tenders", "[TENDER]"),
    ("total_minor", "1000"),
    ("tax_minor", "160"),
    ("discount_minor", "0"),
];
const LINE: &[(&str, &str)] = &[
    ("sku", r#""A""#),
    ("description", r#""Flat white""#),
    ("quantity", "1.5"),
    ("amount_minor", "1000"),
];
const TENDER: &[(&str, &str)] = &[("method", r#""card""#), ("amount_minor", "1000")];

/// Where a generated value goes: a member of the sale, of its line or of
/// its tender (optional members included, so they can be added).
#[derive(Debug, Clone, Copy)]
enum Slot {
    Sale(&'static str),
    Line(&'static str),
    Tender(&'static str),
}

fn slots() -> Vec<Slot> {
    let mut slots: Vec<Slot> = SALE.iter().map(|(k, _)| Slot::Sale(k)).collect();
    slots.push(Slot::Sale("refers_to_sale_id"));
    slots.extend(LINE.iter().map(|(k, _)| Slot::Line(k)));
    slots.extend(TENDER.iter().map(|(k, _)| Slot::Tender(k)));
    slots
}

/// An object's text from its members, `replace` (key, text) put in place
/// of the member of that name or added when there is none.
fn object(members: &[(&str, &str)], replace: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = members
        .iter()
        .map(|&(key, value)| match replace {
            Some((k, v)) if k == key => format!(r#""{key}": {v}"#),
            _ => format!(r#""{key}": {value}"#),
        })
        .collect();
    if let Some((k, v)) = replace.filter(|(k, _)| members.iter().all(|(m, _)| m != k)) {
        parts.push(format!(r#""{k}": {v}"#));
    }
    format!("{{{}}}", parts.join(", "))
}

/// The valid sale with `value` in `slot`.
fn sale_with(slot: Slot, value: &str) -> String {
    let line = object(
        LINE,
        matches!(slot, Slot::Line(_)).then_some((key(slot), value)),
    );
    let tender = object(
        TENDER,
        matches!(slot, Slot::Tender(_)).then_some((key(slot), value)),
    );
    object(
        SALE,
        matches!(slot, Slot::Sale(_)).then_some((key(slot), value)),
    )
    .replace("LINE", &line)
    .replace("TENDER", &tender)
}

fn key(slot: Slot) -> &'static str {
    match slot {
        Slot::Sale(k) | Slot::Line(k) | Slot::Tender(k) => k,
    }
}

fn valid_sale() -> String {
    sale_with(Slot::Sale("seq"), "1")
}

/// JSON text for a string: any characters (NUL included, escaped as JSON
/// does), lengths at the text bounds, or escapes `serde_json` would never
/// write (lone surrogates).
fn json_string() -> impl Strategy<Value = String> {
    let quoted = |s: String| serde_json::to_string(&s).unwrap();
    prop_oneof![
        any::<String>().prop_map(quoted),
        proptest::collection::vec(any::<char>(), 0..300)
            .prop_map(move |cs| quoted(cs.into_iter().collect())),
        (
            prop_oneof![Just(64usize), Just(65), Just(256), Just(257), Just(5000)],
            any::<char>()
        )
            .prop_map(move |(n, c)| quoted(c.to_string().repeat(n))),
        prop_oneof![
            Just(r#""\u0000""#),
            Just(r#""A\u0000B""#),
            Just(r#""\ud800""#),
            Just(r#""x\udc00""#),
            Just(r#""\ud83d\ude00""#),
            Just(r#""\ud800\u0041""#),
            Just(r#""EUR""#),
            Just(r#""sale""#),
            Just(r#""void""#),
            Just(r#""refund""#),
            Just(r#""cash""#),
            Just(r#""7b1c1d1e-8a8c-4c44-9a55-7f4f7a8f0a01""#),
            Just(r#""0000-01-01T00:00:00Z""#),
            Just(r#""1999-12-31T23:59:59Z""#),
            Just(r#""9999-12-31T23:59:59+23:59""#),
            Just(r#""2026-11-20T10:00:00""#),
        ]
        .prop_map(str::to_owned),
    ]
}

/// JSON text for a number: any i64 or f64, the bounds and just beyond,
/// integers beyond 64 bits, and numbers no f64 holds.
fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).unwrap()),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(MAX_SEQ),
            Just(MAX_SEQ + 1),
            Just(-MAX_SEQ - 1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(1 << 62),
        ]
        .prop_map(|n| n.to_string()),
        prop_oneof![
            Just("99999999999999999999"),
            Just("-99999999999999999999"),
            Just("18446744073709551616"),
            Just("1e30"),
            Just("1e400"),
            Just("-1e400"),
            Just("1.0"),
            Just("-0"),
            Just("0.5"),
            Just("5e-324"),
        ]
        .prop_map(str::to_owned),
    ]
}

/// Keys for generated objects: the sale's own members (so a member can
/// come twice) and others.
fn json_key() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = SALE
        .iter()
        .chain(LINE)
        .chain(TENDER)
        .map(|(k, _)| *k)
        .chain(["refers_to_sale_id", "extra"])
        .collect();
    prop_oneof![
        proptest::sample::select(known).prop_map(|k| format!(r#""{k}""#)),
        json_string(),
    ]
}

/// Any JSON value, as text.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop_oneof![Just("null"), Just("true"), Just("false")].prop_map(str::to_owned),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec((json_key(), inner), 0..6).prop_map(|members| {
                let members: Vec<String> =
                    members.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
            // The valid sale nested somewhere.
            Just(valid_sale()),
        ]
    })
}

/// What must hold for every item: a valid sale that breaks no bound, or a
/// rejection with a documented code.
fn check_item(item: &Item) -> Result<(), TestCaseError> {
    match &item.sale {
        Ok(sale) => check_within_bounds(sale),
        Err(rejection) => {
            prop_assert!(
                DOCUMENTED_CODES.contains(rejection.code),
                "undocumented code {:?} ({})",
                rejection.code,
                rejection.detail
            );
            prop_assert!(!rejection.detail.is_empty());
            Ok(())
        }
    }
}

/// An accepted sale can be stored (no NUL for jsonb) and read exactly by
/// any JSON reader.
fn check_within_bounds(sale: &Sale) -> Result<(), TestCaseError> {
    prop_assert!(sale.validate(now()).is_ok());
    let stored = serde_json::to_string(sale).unwrap();
    prop_assert!(
        !stored.contains("\\u0000"),
        "a NUL would be stored: {stored}"
    );
    prop_assert!((1..=MAX_SEQ).contains(&sale.seq));
    prop_assert!(sale.occurred_at >= EARLIEST_OCCURRED_AT);
    let amounts = [sale.total_minor, sale.tax_minor, sale.discount_minor];
    let lines = sale.lines.iter().map(|l| l.amount_minor);
    let tenders = sale.tenders.iter().map(|t| t.amount_minor);
    prop_assert!(
        amounts
            .into_iter()
            .chain(lines)
            .chain(tenders)
            .all(amount_in_range)
    );
    for line in &sale.lines {
        prop_assert!(line.sku.chars().count() <= MAX_SKU_CHARS);
        let description = line.description.as_deref().unwrap_or("");
        prop_assert!(description.chars().count() <= MAX_DESCRIPTION_CHARS);
    }
    Ok(())
}

/// Parses a batch of these sales, which must succeed: its envelope is well formed.
fn parse_sales(sales: &[String]) -> Result<Vec<Item>, TestCaseError> {
    let body = format!(r#"{{"sales": [{}]}}"#, sales.join(", "));
    match parse_batch(body.as_bytes(), now()) {
        Ok(batch) => {
            let items = batch.items;
            prop_assert_eq!(items.len(), sales.len());
            for item in &items {
                check_item(item)?;
            }
            Ok(items)
        }
        Err(e) => Err(TestCaseError::fail(format!(
            "a well-formed envelope failed the batch: {} {}: {body}",
            e.code.as_str(),
            e.detail
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_json_in_place_of_any_member_is_a_sale_or_a_rejection(
        slot in proptest::sample::select(slots()),
        value in json_value(),
    ) {
        let sale = sale_with(slot, &value);
        let items = parse_sales(&[valid_sale(), sale.clone(), valid_sale()])?;
        prop_assert!(items[0].sale.is_ok() && items[2].sale.is_ok());
        // Whatever the member, the sale_id is still read for the result.
        if !matches!(slot, Slot::Sale("sale_id")) {
            prop_assert!(items[1].sale_id.is_some(), "no sale_id read from {}", sale);
        }
    }

    #[test]
    fn any_json_in_place_of_a_whole_sale_is_rejected_alone(value in json_value()) {
        let items = parse_sales(&[valid_sale(), value.clone()])?;
        prop_assert!(items[0].sale.is_ok());
        if !value.contains("7b1c1d1e") {
            prop_assert!(items[1].sale.is_err(), "not a sale, yet accepted: {value}");
        }
    }

    #[test]
    fn unknown_and_repeated_members_never_fail_the_batch(
        extra in proptest::collection::vec((json_key(), json_value()), 1..4),
        at_start in any::<bool>(),
    ) {
        let members: Vec<String> = extra.iter().map(|(k, v)| format!("{k}: {v}, ")).collect();
        let valid = valid_sale();
        let sale = if at_start {
            format!("{{{}{}", members.concat(), &valid[1..])
        } else {
            let inner = &valid[1..valid.len() - 1];
            format!("{{{inner}, {}}}", members.concat().trim_end_matches(", "))
        };
        let items = parse_sales(std::slice::from_ref(&sale))?;
        let repeats_a_member = extra
            .iter()
            .any(|(k, _)| SALE.iter().any(|(m, _)| *k == format!(r#""{m}""#)));
        if repeats_a_member {
            let code = items[0].sale.as_ref().err().map(|r| r.code);
            prop_assert_eq!(code, Some("invalid_sale"), "a repeated member: {}", sale);
        }
    }

    #[test]
    fn a_batch_fails_only_for_a_malformed_envelope_and_only_with_a_4xx(
        body in prop_oneof![
            json_value().prop_map(String::into_bytes),
            json_value().prop_map(|v| format!(r#"{{"sales": {v}}}"#).into_bytes()),
            json_value().prop_map(|v| format!(r#"{{"sales": [{v}], "sales": []}}"#).into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ],
    ) {
        match parse_batch(&body, now()) {
            Ok(batch) => {
                let is_object = body.trim_ascii_start().starts_with(b"{");
                prop_assert!(is_object, "a batch that is not an object");
                prop_assert!((1..=500).contains(&batch.items.len()));
                for item in &batch.items {
                    check_item(item)?;
                }
            }
            Err(e) => {
                prop_assert!(e.code.status().is_client_error(), "{:?}", e.code);
                let codes = ["invalid_json", "invalid_batch", "batch_empty", "batch_too_large"];
                prop_assert!(codes.contains(&e.code.as_str()), "{:?}", e.code);
            }
        }
    }
}

#[test]
fn the_template_is_a_valid_sale_in_every_slot_it_has() {
    for slot in slots() {
        let original = [SALE, LINE, TENDER]
            .concat()
            .into_iter()
            .find(|(k, _)| *k == key(slot))
            .map(|(_, v)| v);
        if let Some(original) = original.filter(|v| !v.contains("LINE") && !v.contains("TENDER")) {
            let items = parse_batch(
                format!(r#"{{"sales": [{}]}}"#, sale_with(slot, original)).as_bytes(),
                now(),
            )
            .unwrap()
            .items;
            assert!(items[0].sale.is_ok(), "{slot:?}");
        }
    }
}

#[test]
fn a_batchs_newest_sale_is_the_latest_valid_one_whatever_its_offset() {
    let at = |occurred: &str, seq: &str| {
        object(SALE, Some(("occurred_at", occurred)))
            .replace(r#""seq": 1"#, &format!(r#""seq": {seq}"#))
            .replace("LINE", &object(LINE, None))
            .replace("TENDER", &object(TENDER, None))
    };
    let sales = [
        at(r#""2026-11-20T10:00:00+01:00""#, "1"),
        // The latest instant, written in another offset.
        at(r#""2026-11-20T05:30:00-05:00""#, "2"),
        at(r#""2026-11-20T11:00:00+01:00""#, "3"),
        // Later still, but rejected: it is no sale.
        at(r#""2026-11-20T11:00:00+01:00""#, "-1"),
    ];
    let body = format!(r#"{{"sales": [{}]}}"#, sales.join(", "));
    let batch = parse_batch(body.as_bytes(), now()).unwrap();
    assert!(batch.items[3].sale.is_err());
    let newest: DateTime<Utc> = "2026-11-20T10:30:00Z".parse().unwrap();
    assert_eq!(batch.newest_sale(), Some(newest));

    let only_rejected = format!(r#"{{"sales": [{}]}}"#, sales[3]);
    let batch = parse_batch(only_rejected.as_bytes(), now()).unwrap();
    assert_eq!(batch.newest_sale(), None);
}
