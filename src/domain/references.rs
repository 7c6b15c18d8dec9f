//! What a sale's voids and refunds mean together: which void takes the sale
//! out of the totals, and what the back office must look at. Pure, and a
//! function of the facts alone (never of the order they arrived in), so
//! every delivery order of the same facts resolves the same way. The
//! resolver ([`crate::jobs::resolve`]) reads a sale with every void and
//! refund that names it, asks here, and writes what changed.
//!
//! The rules:
//! - Of the voids of a sale, the first by `occurred_at` (then `sale_id`)
//!   takes it out of the totals; each later one is a `duplicate_void`. A
//!   void of a void takes nothing out (`void_of_void`).
//! - A void whose total, tax, discount or currency differ from its sale's
//!   is a `void_mismatch` (it still takes out the sale's own amounts).
//! - Refunds adding up to more than the sale's total: `over_refund`.
//! - A refund that occurred after the counting void: `refund_of_voided_sale`;
//!   a counting void that occurred after refunds: `void_of_refunded_sale`.
//! - Refund lines naming a line of the sale (`refers_to_line`) that return
//!   more than its quantity, or a line it does not have:
//!   `line_over_returned`.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::exception::{ExceptionKind, Flag};
use super::sale::{Sale, SaleKind};

/// How a sale's voids and refunds resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The void that takes the sale out of the totals, if one does.
    pub counting_void: Option<Uuid>,
    pub flags: Vec<Flag>,
}

/// Room for rounding in summed quantities (a weight in kilograms).
const QUANTITY_EPSILON: f64 = 1e-9;

/// When a fact occurred, as an order every reader agrees on.
fn order(sale: &Sale) -> (chrono::DateTime<chrono::Utc>, Uuid) {
    (sale.occurred_at.to_utc(), sale.sale_id)
}

/// Resolves `target` with `refs`: every stored void and refund naming it.
pub fn resolve(target: &Sale, refs: &[Sale]) -> Resolution {
    let mut voids: Vec<&Sale> = refs.iter().filter(|r| r.kind == SaleKind::Void).collect();
    voids.sort_by_key(|v| order(v));
    let mut refunds: Vec<&Sale> = refs.iter().filter(|r| r.kind == SaleKind::Refund).collect();
    refunds.sort_by_key(|r| order(r));
    let mut flags = Vec::new();

    let counting_void = match target.kind {
        SaleKind::Void => {
            for void in &voids {
                flags.push(flag(
                    ExceptionKind::VoidOfVoid,
                    void.sale_id,
                    vec![void.sale_id, target.sale_id],
                    format!(
                        "void {} names void {}, which cannot be voided",
                        void.sale_id, target.sale_id
                    ),
                ));
            }
            None
        }
        SaleKind::Sale | SaleKind::Refund => voids.first().map(|v| v.sale_id),
    };
    for void in voids.iter().skip(1).filter(|_| counting_void.is_some()) {
        flags.push(flag(
            ExceptionKind::DuplicateVoid,
            void.sale_id,
            vec![void.sale_id, target.sale_id],
            format!(
                "sale {} was voided already (by void {}); void {} takes nothing out",
                target.sale_id,
                counting_void.unwrap_or_default(),
                void.sale_id
            ),
        ));
    }
    for void in &voids {
        if let Some(difference) = mismatch(void, target) {
            flags.push(flag(
                ExceptionKind::VoidMismatch,
                void.sale_id,
                vec![void.sale_id, target.sale_id],
                format!(
                    "void {} does not mirror sale {}: {difference}",
                    void.sale_id, target.sale_id
                ),
            ));
        }
    }
    flags.extend(over_refund(target, &refunds));
    if let Some(void) = counting_void.and_then(|id| voids.iter().find(|v| v.sale_id == id)) {
        flags.extend(voided_and_refunded(target, void, &refunds));
    }
    flags.extend(lines_over_returned(target, &refunds));
    Resolution {
        counting_void,
        flags,
    }
}

fn flag(kind: ExceptionKind, subject: Uuid, sale_ids: Vec<Uuid>, detail: String) -> Flag {
    Flag {
        kind,
        subject: subject.to_string(),
        sale_ids,
        detail,
    }
}

/// How a void's amounts differ from its sale's, if they do.
fn mismatch(void: &Sale, target: &Sale) -> Option<String> {
    let pairs = [
        ("total_minor", void.total_minor, target.total_minor),
        ("tax_minor", void.tax_minor, target.tax_minor),
        ("discount_minor", void.discount_minor, target.discount_minor),
    ];
    let mut differences: Vec<String> = pairs
        .iter()
        .filter(|(_, mine, theirs)| mine != theirs)
        .map(|(name, mine, theirs)| format!("{name} {mine}, the sale's {theirs}"))
        .collect();
    if void.currency != target.currency {
        differences.push(format!(
            "currency {}, the sale's {}",
            void.currency, target.currency
        ));
    }
    (!differences.is_empty()).then(|| differences.join("; "))
}

fn over_refund(target: &Sale, refunds: &[&Sale]) -> Option<Flag> {
    // Summed wide: amounts are bounded, their number is not.
    let refunded: i128 = refunds.iter().map(|r| i128::from(r.total_minor)).sum();
    (refunded > i128::from(target.total_minor)).then(|| {
        let mut sale_ids = vec![target.sale_id];
        sale_ids.extend(refunds.iter().map(|r| r.sale_id));
        flag(
            ExceptionKind::OverRefund,
            target.sale_id,
            sale_ids,
            format!(
                "{} refunds of sale {} add up to {refunded}, more than its total of {}",
                refunds.len(),
                target.sale_id,
                target.total_minor
            ),
        )
    })
}

fn voided_and_refunded(target: &Sale, void: &Sale, refunds: &[&Sale]) -> Vec<Flag> {
    let (before, after): (Vec<&Sale>, Vec<&Sale>) =
        refunds.iter().partition(|r| order(r) < order(void));
    let mut flags: Vec<Flag> = after
        .iter()
        .map(|refund| {
            flag(
                ExceptionKind::RefundOfVoidedSale,
                refund.sale_id,
                vec![refund.sale_id, target.sale_id, void.sale_id],
                format!(
                    "refund {} returns money for sale {}, which void {} had voided",
                    refund.sale_id, target.sale_id, void.sale_id
                ),
            )
        })
        .collect();
    if !before.is_empty() {
        let mut sale_ids = vec![void.sale_id, target.sale_id];
        sale_ids.extend(before.iter().map(|r| r.sale_id));
        flags.push(flag(
            ExceptionKind::VoidOfRefundedSale,
            void.sale_id,
            sale_ids,
            format!(
                "void {} takes out sale {}, which {} refund(s) had already returned money for",
                void.sale_id,
                target.sale_id,
                before.len()
            ),
        ));
    }
    flags
}

fn lines_over_returned(target: &Sale, refunds: &[&Sale]) -> Vec<Flag> {
    // Per line of the sale: the quantity returned, and by which refunds.
    let mut returned: BTreeMap<u32, (f64, Vec<Uuid>)> = BTreeMap::new();
    for refund in refunds {
        for line in &refund.lines {
            if let Some(index) = line.refers_to_line {
                let entry = returned.entry(index).or_default();
                entry.0 += line.quantity;
                if !entry.1.contains(&refund.sale_id) {
                    entry.1.push(refund.sale_id);
                }
            }
        }
    }
    returned
        .into_iter()
        .filter_map(|(index, (quantity, by))| {
            let sold = target.lines.get(index as usize).map(|l| l.quantity);
            let detail = match sold {
                None => format!(
                    "refund lines return line {index} of sale {}, which has {} line(s)",
                    target.sale_id,
                    target.lines.len()
                ),
                Some(sold) if quantity > sold + QUANTITY_EPSILON => format!(
                    "refunds return {quantity} of line {index} of sale {}, which sold {sold}",
                    target.sale_id
                ),
                Some(_) => return None,
            };
            let mut sale_ids = vec![target.sale_id];
            sale_ids.extend(by);
            Some(Flag {
                kind: ExceptionKind::LineOverReturned,
                subject: format!("{}:{index}", target.sale_id),
                sale_ids,
                detail,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fact(id: u128, kind: &str, minute: u32, total: i64, refers: Option<u128>) -> Sale {
        serde_json::from_value(json!({
            "sale_id": Uuid::from_u128(id), "seq": id, "kind": kind,
            "occurred_at": format!("2026-11-20T10:{minute:02}:00Z"), "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 2, "amount_minor": total}],
            "tenders": [{"method": "card", "amount_minor": total}],
            "total_minor": total, "tax_minor": total / 10, "discount_minor": 0,
            "refers_to_sale_id": refers.map(Uuid::from_u128),
        }))
        .unwrap()
    }

    fn kinds(resolution: &Resolution) -> Vec<(&'static str, String)> {
        let mut kinds: Vec<_> = resolution
            .flags
            .iter()
            .map(|f| (f.kind.as_str(), f.subject.clone()))
            .collect();
        kinds.sort();
        kinds
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn the_first_void_counts_whichever_arrived_first() {
        let sale = fact(1, "sale", 0, 1000, None);
        let early = fact(9, "void", 5, 1000, Some(1));
        let late = fact(2, "void", 7, 1000, Some(1));
        for refs in [
            vec![early.clone(), late.clone()],
            vec![late.clone(), early.clone()],
        ] {
            let resolution = resolve(&sale, &refs);
            assert_eq!(resolution.counting_void, Some(id(9)));
            assert_eq!(kinds(&resolution), [("duplicate_void", id(2).to_string())]);
        }
    }

    #[test]
    fn a_void_that_does_not_mirror_its_sale_still_counts_and_is_flagged() {
        let sale = fact(1, "sale", 0, 1000, None);
        let void = fact(2, "void", 5, 900, Some(1));
        let resolution = resolve(&sale, &[void]);
        assert_eq!(resolution.counting_void, Some(id(2)));
        assert_eq!(kinds(&resolution), [("void_mismatch", id(2).to_string())]);
        assert!(resolution.flags[0].detail.contains("total_minor 900"));
    }

    #[test]
    fn a_void_of_a_void_takes_nothing_out() {
        let void = fact(1, "void", 0, 1000, Some(7));
        let resolution = resolve(&void, &[fact(2, "void", 5, 1000, Some(1))]);
        assert_eq!(resolution.counting_void, None);
        assert_eq!(kinds(&resolution), [("void_of_void", id(2).to_string())]);
    }

    #[test]
    fn refunds_beyond_the_total_are_flagged_on_the_sale() {
        let sale = fact(1, "sale", 0, 1000, None);
        let refunds = [
            fact(2, "refund", 5, 600, Some(1)),
            fact(3, "refund", 6, 400, Some(1)),
        ];
        assert!(
            resolve(&sale, &refunds).flags.is_empty(),
            "exactly the total"
        );
        let more = [
            refunds[0].clone(),
            refunds[1].clone(),
            fact(4, "refund", 7, 1, Some(1)),
        ];
        let resolution = resolve(&sale, &more);
        assert_eq!(kinds(&resolution), [("over_refund", id(1).to_string())]);
        assert_eq!(resolution.flags[0].sale_ids, [id(1), id(2), id(3), id(4)]);
    }

    #[test]
    fn a_voided_and_refunded_sale_is_flagged_by_which_came_first() {
        let sale = fact(1, "sale", 0, 1000, None);
        let void = fact(5, "void", 10, 1000, Some(1));
        let before = fact(3, "refund", 5, 100, Some(1));
        let after = fact(4, "refund", 15, 100, Some(1));
        let resolution = resolve(&sale, &[after, void, before]);
        assert_eq!(
            kinds(&resolution),
            [
                ("refund_of_voided_sale", id(4).to_string()),
                ("void_of_refunded_sale", id(5).to_string()),
            ]
        );
    }

    #[test]
    fn refund_lines_may_not_return_more_than_the_line_sold() {
        let sale = fact(1, "sale", 0, 1000, None);
        let returning = |id: u128, line: u32, quantity: f64| -> Sale {
            let mut refund = fact(id, "refund", 5, 100, Some(1));
            refund.lines[0].refers_to_line = Some(line);
            refund.lines[0].quantity = quantity;
            refund
        };
        let fine = [returning(2, 0, 1.0), returning(3, 0, 1.0)];
        assert!(resolve(&sale, &fine).flags.is_empty(), "2 of 2 returned");
        let over = [returning(2, 0, 1.5), returning(3, 0, 1.0)];
        assert_eq!(
            kinds(&resolve(&sale, &over)),
            [("line_over_returned", format!("{}:0", id(1)))]
        );
        let unknown = [returning(2, 3, 1.0)];
        let resolution = resolve(&sale, &unknown);
        assert!(resolution.flags[0].detail.contains("which has 1 line"));
    }
}
