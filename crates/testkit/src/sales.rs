//! Builders for valid sales, with amounts that balance.

use serde_json::{Value, json};
use uuid::Uuid;

/// A valid sale of `total` cents: two lines, paid by card.
pub fn sale_of(seq: i64, total: i64) -> Value {
    let first = total / 2;
    json!({
        "sale_id": Uuid::new_v4(),
        "seq": seq,
        "kind": "sale",
        "occurred_at": "2026-11-20T10:15:00+01:00",
        "currency": "EUR",
        "lines": [
            {"sku": "COFFEE", "description": "Flat white", "quantity": 1, "amount_minor": first},
            {"sku": "CAKE", "quantity": 0.5, "amount_minor": total - first}
        ],
        "tenders": [{"method": "card", "amount_minor": total}],
        "total_minor": total,
        "tax_minor": total / 10,
        "discount_minor": 0
    })
}

pub fn sale(seq: i64) -> Value {
    sale_of(seq, 1250)
}

/// The sale with some members replaced.
pub fn with(mut sale: Value, changes: Value) -> Value {
    for (key, value) in changes.as_object().unwrap() {
        sale[key] = value.clone();
    }
    sale
}

/// A refund of `total` cents, optionally naming the sale it refunds.
pub fn refund_of(seq: i64, total: i64, refers_to: Option<&Value>) -> Value {
    let mut refund = with(
        sale_of(seq, total),
        json!({"kind": "refund", "tenders": [{"method": "cash", "amount_minor": total}]}),
    );
    if let Some(original) = refers_to {
        refund["refers_to_sale_id"] = original["sale_id"].clone();
    }
    refund
}

/// A void that mirrors `target`.
pub fn void_of(seq: i64, target: &Value) -> Value {
    with(
        target.clone(),
        json!({
            "sale_id": Uuid::new_v4(),
            "seq": seq,
            "kind": "void",
            "refers_to_sale_id": target["sale_id"].clone(),
        }),
    )
}
