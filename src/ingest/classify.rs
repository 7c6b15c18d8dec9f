//! Decides, for each sale of a batch, whether it is new, a duplicate or a
//! conflict, given what is already stored. Pure: the caller fetches the
//! stored sales and acts on the verdicts.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::domain::sale::{Rejection, Sale, SaleKind, StoredSale};

/// What the classifier decides about one sale.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// New: to be inserted.
    Accept,
    /// Already stored with the same content.
    Duplicate,
    Reject(Rejection),
}

/// What is already stored, indexed for the checks.
pub struct Stored<'a> {
    by_id: HashMap<Uuid, &'a StoredSale>,
    seq_owner: HashMap<i64, Uuid>,
}

impl<'a> Stored<'a> {
    pub fn new(terminal_id: Uuid, rows: &'a [StoredSale]) -> Self {
        let by_id = rows.iter().map(|r| (r.sale_id, r)).collect();
        let seq_owner = rows
            .iter()
            .filter(|r| r.terminal_id == terminal_id)
            .map(|r| (r.seq, r.sale_id))
            .collect();
        Self { by_id, seq_owner }
    }
}

/// The amounts a void must mirror.
struct Target {
    terminal_id: Uuid,
    kind: SaleKind,
    currency: String,
    amounts: [i64; 3],
    voided: bool,
}

/// Classifies `sales` in order. Earlier sales of the batch count as stored
/// for later ones, so a batch may carry a sale and its void.
pub fn classify(terminal_id: Uuid, sales: &[&Sale], stored: &Stored) -> Vec<Verdict> {
    classify_with(terminal_id, sales, stored, |_, _| Ok(()))
}

/// `classify`, with a last word on every sale it would accept: `admit` gets
/// the sale (and, for a void, the sale of this batch it voids, if that is
/// where its target is) and may still reject it. A sale it rejects counts as
/// never sent for the sales after it, so no later verdict leans on it.
pub fn classify_with(
    terminal_id: Uuid,
    sales: &[&Sale],
    stored: &Stored,
    mut admit: impl FnMut(&Sale, Option<&Sale>) -> Result<(), Rejection>,
) -> Vec<Verdict> {
    let mut accepted: HashMap<Uuid, &Sale> = HashMap::new();
    let mut seqs_taken: HashSet<i64> = HashSet::new();
    let mut voided_now: HashSet<Uuid> = HashSet::new();

    sales
        .iter()
        .map(|&sale| {
            let mut verdict = classify_one(
                terminal_id,
                sale,
                stored,
                &accepted,
                &seqs_taken,
                &voided_now,
            );
            if verdict == Verdict::Accept {
                let batch_target = match sale.kind {
                    SaleKind::Void => sale
                        .refers_to_sale_id
                        .and_then(|id| accepted.get(&id).copied()),
                    _ => None,
                };
                if let Err(rejection) = admit(sale, batch_target) {
                    verdict = Verdict::Reject(rejection);
                }
            }
            if verdict == Verdict::Accept {
                accepted.insert(sale.sale_id, sale);
                seqs_taken.insert(sale.seq);
                if let (SaleKind::Void, Some(target)) = (sale.kind, sale.refers_to_sale_id) {
                    voided_now.insert(target);
                }
            }
            verdict
        })
        .collect()
}

fn classify_one(
    terminal_id: Uuid,
    sale: &Sale,
    stored: &Stored,
    accepted: &HashMap<Uuid, &Sale>,
    seqs_taken: &HashSet<i64>,
    voided_now: &HashSet<Uuid>,
) -> Verdict {
    if let Some(row) = stored.by_id.get(&sale.sale_id) {
        let same = row.terminal_id == terminal_id
            && serde_json::from_value::<Sale>(row.body.clone()).is_ok_and(|s| s == *sale);
        return if same {
            Verdict::Duplicate
        } else {
            sale_id_conflict()
        };
    }
    if let Some(earlier) = accepted.get(&sale.sale_id) {
        return if *earlier == sale {
            Verdict::Duplicate
        } else {
            sale_id_conflict()
        };
    }
    if stored.seq_owner.contains_key(&sale.seq) || seqs_taken.contains(&sale.seq) {
        return Verdict::Reject(Rejection::new(
            "seq_conflict",
            format!(
                "seq {} is already held by another sale of this terminal",
                sale.seq
            ),
        ));
    }
    if sale.kind == SaleKind::Void {
        let target_id = sale
            .refers_to_sale_id
            .expect("validated: a void names its target");
        let target = find_target(target_id, terminal_id, stored, accepted, voided_now);
        if let Err(rejection) = check_void(terminal_id, sale, target) {
            return Verdict::Reject(rejection);
        }
    }
    Verdict::Accept
}

fn sale_id_conflict() -> Verdict {
    Verdict::Reject(Rejection::new(
        "sale_id_conflict",
        "a different sale with this sale_id is already stored; the payload is kept for review",
    ))
}

/// Finds what a void names, stored or earlier in this batch (and so this terminal's).
fn find_target(
    id: Uuid,
    terminal_id: Uuid,
    stored: &Stored,
    accepted: &HashMap<Uuid, &Sale>,
    voided_now: &HashSet<Uuid>,
) -> Option<Target> {
    if let Some(row) = stored.by_id.get(&id) {
        return Some(Target {
            terminal_id: row.terminal_id,
            kind: row.kind,
            currency: row.currency.clone(),
            amounts: [row.total_minor, row.tax_minor, row.discount_minor],
            voided: row.voided || voided_now.contains(&id),
        });
    }
    accepted.get(&id).map(|s| Target {
        terminal_id,
        kind: s.kind,
        currency: s.currency.clone(),
        amounts: [s.total_minor, s.tax_minor, s.discount_minor],
        voided: voided_now.contains(&id),
    })
}

fn check_void(terminal_id: Uuid, void: &Sale, target: Option<Target>) -> Result<(), Rejection> {
    let Some(target) = target else {
        return Err(unknown_target());
    };
    // Another terminal's sale is reported as unknown: a till learns nothing
    // about sales that are not its own.
    if target.terminal_id != terminal_id {
        return Err(unknown_target());
    }
    if target.kind == SaleKind::Void {
        return Err(Rejection::new(
            "invalid_reference",
            "a void cannot void another void",
        ));
    }
    if target.voided {
        return Err(Rejection::new(
            "already_voided",
            "the referenced sale is already voided",
        ));
    }
    if target.currency != void.currency
        || target.amounts != [void.total_minor, void.tax_minor, void.discount_minor]
    {
        return Err(Rejection::new(
            "void_amounts_mismatch",
            "a void must mirror the currency, total, tax and discount of the sale it voids",
        ));
    }
    Ok(())
}

fn unknown_target() -> Rejection {
    Rejection::new(
        "void_target_unknown",
        "refers_to_sale_id names no sale of this terminal; push the sale before its void",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TILL: Uuid = Uuid::from_u128(1);
    const OTHER_TILL: Uuid = Uuid::from_u128(2);

    fn sale(id: u128, seq: i64, kind: &str, refers: Option<u128>) -> Sale {
        serde_json::from_value(json!({
            "sale_id": Uuid::from_u128(id), "seq": seq, "kind": kind,
            "occurred_at": "2026-11-20T10:00:00Z", "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1, "amount_minor": 500}],
            "tenders": [{"method": "cash", "amount_minor": 500}],
            "total_minor": 500, "tax_minor": 80, "discount_minor": 0,
            "refers_to_sale_id": refers.map(Uuid::from_u128),
        }))
        .unwrap()
    }

    fn stored(s: &Sale, terminal_id: Uuid, voided: bool) -> StoredSale {
        StoredSale {
            sale_id: s.sale_id,
            terminal_id,
            seq: s.seq,
            kind: s.kind,
            currency: s.currency.clone(),
            total_minor: s.total_minor,
            tax_minor: s.tax_minor,
            discount_minor: s.discount_minor,
            body: serde_json::to_value(s).unwrap(),
            voided,
        }
    }

    fn codes(verdicts: &[Verdict]) -> Vec<&str> {
        verdicts
            .iter()
            .map(|o| match o {
                Verdict::Accept => "accept",
                Verdict::Duplicate => "duplicate",
                Verdict::Reject(r) => r.code,
            })
            .collect()
    }

    #[test]
    fn stored_sales_are_duplicates_or_conflicts_by_content() {
        let a = sale(10, 1, "sale", None);
        let rows = [stored(&a, TILL, false)];
        let mut changed = a.clone();
        changed.tax_minor = 81;
        let out = classify(TILL, &[&a, &changed], &Stored::new(TILL, &rows));
        assert_eq!(codes(&out), ["duplicate", "sale_id_conflict"]);
    }

    #[test]
    fn the_same_sale_from_another_till_is_a_conflict() {
        let a = sale(10, 1, "sale", None);
        let rows = [stored(&a, OTHER_TILL, false)];
        let out = classify(TILL, &[&a], &Stored::new(TILL, &rows));
        assert_eq!(codes(&out), ["sale_id_conflict"]);
    }

    #[test]
    fn a_new_sale_reusing_a_seq_is_a_seq_conflict() {
        let a = sale(10, 1, "sale", None);
        let rows = [stored(&a, TILL, false)];
        let b = sale(11, 1, "sale", None);
        let c = sale(12, 2, "sale", None);
        let d = sale(13, 2, "sale", None);
        let out = classify(TILL, &[&b, &c, &d], &Stored::new(TILL, &rows));
        assert_eq!(codes(&out), ["seq_conflict", "accept", "seq_conflict"]);
    }

    #[test]
    fn repeats_inside_one_batch_are_duplicates_or_conflicts() {
        let a = sale(10, 1, "sale", None);
        let mut changed = a.clone();
        changed.total_minor = 0;
        let out = classify(TILL, &[&a, &a, &changed], &Stored::new(TILL, &[]));
        assert_eq!(codes(&out), ["accept", "duplicate", "sale_id_conflict"]);
    }

    #[test]
    fn a_void_needs_a_known_unvoided_target_with_the_same_amounts() {
        let a = sale(10, 1, "sale", None);
        let other = sale(20, 9, "sale", None);
        let rows = [stored(&a, TILL, false), stored(&other, OTHER_TILL, false)];
        let void_a = sale(11, 2, "void", Some(10));
        let void_a_again = sale(12, 3, "void", Some(10));
        let void_unknown = sale(13, 4, "void", Some(99));
        let void_other_till = sale(14, 5, "void", Some(20));
        let b = sale(15, 6, "sale", None);
        let mut void_b_wrong = sale(16, 7, "void", Some(15));
        void_b_wrong.tax_minor = 0;
        let out = classify(
            TILL,
            &[
                &void_a,
                &void_a_again,
                &void_unknown,
                &void_other_till,
                &b,
                &void_b_wrong,
            ],
            &Stored::new(TILL, &rows),
        );
        assert_eq!(
            codes(&out),
            [
                "accept",
                "already_voided",
                "void_target_unknown",
                "void_target_unknown",
                "accept",
                "void_amounts_mismatch"
            ]
        );
    }

    #[test]
    fn a_sale_admit_refuses_counts_as_never_sent_for_the_sales_after_it() {
        let a = sale(10, 1, "sale", None);
        let void_a = sale(11, 2, "void", Some(10));
        let same_seq = sale(12, 1, "sale", None);
        let mut seen_targets = Vec::new();
        let out = classify_with(
            TILL,
            &[&a, &void_a, &same_seq],
            &Stored::new(TILL, &[]),
            |s, target| {
                seen_targets.push(target.map(|t| t.sale_id));
                if s.sale_id == a.sale_id {
                    Err(Rejection::new("total_out_of_range", "full"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(
            codes(&out),
            ["total_out_of_range", "void_target_unknown", "accept"]
        );
        assert_eq!(seen_targets, [None, None]);
    }

    #[test]
    fn a_stored_void_target_already_voided_is_refused() {
        let a = sale(10, 1, "sale", None);
        let rows = [stored(&a, TILL, true)];
        let out = classify(
            TILL,
            &[&sale(11, 2, "void", Some(10))],
            &Stored::new(TILL, &rows),
        );
        assert_eq!(codes(&out), ["already_voided"]);
    }
}
