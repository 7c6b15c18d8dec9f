//! Decides, for each sale of a push, whether it is new, a duplicate or
//! refused, given what is already stored. Pure: the caller fetches the
//! stored sales and acts on the verdicts.
//!
//! A sale is a fact that already happened, so almost every valid one is
//! stored. It is refused only when storing it would be wrong: its `sale_id`
//! is taken by a different sale (`sale_id_conflict`: the stored one stays,
//! this payload is kept for review), or it occurred after its till was
//! retired (`terminal_retired`). A seq is not identity: a new sale holding a
//! seq another sale of the till holds (a till restored from a backup) is
//! stored, and said so, for the back office to look at. What a void or
//! refund names is not looked at here: it is stored whether or not its sale
//! is, and resolved later ([`crate::domain::references`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::sale::{Rejection, Sale, StoredSale};

/// What the classifier decides about one sale.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// New: to be stored.
    Accept,
    /// Already stored with the same content.
    Duplicate,
    Reject(Rejection),
}

/// A verdict, and for a sale accepted with a seq another sale of the till
/// holds, that sale.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub verdict: Verdict,
    pub reuses_seq_of: Option<Uuid>,
}

/// What is already stored, indexed for the checks.
pub struct Stored<'a> {
    by_id: HashMap<Uuid, &'a StoredSale>,
    seq_holder: HashMap<i64, Uuid>,
}

impl<'a> Stored<'a> {
    pub fn new(terminal_id: Uuid, rows: &'a [StoredSale]) -> Self {
        let by_id = rows.iter().map(|r| (r.sale_id, r)).collect();
        let seq_holder = rows
            .iter()
            .filter(|r| r.terminal_id == terminal_id)
            .map(|r| (r.seq, r.sale_id))
            .collect();
        Self { by_id, seq_holder }
    }
}

/// Classifies `sales` in order. Earlier sales of the push count as stored
/// for later ones.
pub fn classify(terminal_id: Uuid, sales: &[&Sale], stored: &Stored) -> Vec<Verdict> {
    classify_with(terminal_id, sales, stored, None, |_| Ok(()))
        .into_iter()
        .map(|c| c.verdict)
        .collect()
}

/// `classify`, for a till retired at `retired_at` if it is, with a last word
/// on every sale it would accept: `admit` may still refuse it. A sale
/// refused counts as never sent for the sales after it.
pub fn classify_with(
    terminal_id: Uuid,
    sales: &[&Sale],
    stored: &Stored,
    retired_at: Option<DateTime<Utc>>,
    mut admit: impl FnMut(&Sale) -> Result<(), Rejection>,
) -> Vec<Classified> {
    let mut accepted: HashMap<Uuid, &Sale> = HashMap::new();
    let mut seq_holder: HashMap<i64, Uuid> = HashMap::new();
    sales
        .iter()
        .map(|&sale| {
            let mut verdict = classify_one(terminal_id, sale, stored, &accepted, retired_at);
            if verdict == Verdict::Accept
                && let Err(rejection) = admit(sale)
            {
                verdict = Verdict::Reject(rejection);
            }
            let mut reuses_seq_of = None;
            if verdict == Verdict::Accept {
                reuses_seq_of = stored
                    .seq_holder
                    .get(&sale.seq)
                    .or_else(|| seq_holder.get(&sale.seq))
                    .copied();
                accepted.insert(sale.sale_id, sale);
                seq_holder.entry(sale.seq).or_insert(sale.sale_id);
            }
            Classified {
                verdict,
                reuses_seq_of,
            }
        })
        .collect()
}

fn classify_one(
    terminal_id: Uuid,
    sale: &Sale,
    stored: &Stored,
    accepted: &HashMap<Uuid, &Sale>,
    retired_at: Option<DateTime<Utc>>,
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
    if let Some(retired_at) = retired_at
        && sale.occurred_at.to_utc() > retired_at
    {
        return Verdict::Reject(Rejection::new(
            "terminal_retired",
            format!("this till was retired at {retired_at}; the sale occurred after that"),
        ));
    }
    Verdict::Accept
}

fn sale_id_conflict() -> Verdict {
    Verdict::Reject(Rejection::new(
        "sale_id_conflict",
        "a different sale with this sale_id is already stored; the payload is kept for review",
    ))
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

    fn stored(s: &Sale, terminal_id: Uuid) -> StoredSale {
        StoredSale {
            sale_id: s.sale_id,
            terminal_id,
            seq: s.seq,
            body: serde_json::to_value(s).unwrap(),
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
        let rows = [stored(&a, TILL)];
        let mut changed = a.clone();
        changed.tax_minor = 81;
        let out = classify(TILL, &[&a, &changed], &Stored::new(TILL, &rows));
        assert_eq!(codes(&out), ["duplicate", "sale_id_conflict"]);
    }

    #[test]
    fn the_same_sale_from_another_till_is_a_conflict() {
        let a = sale(10, 1, "sale", None);
        let rows = [stored(&a, OTHER_TILL)];
        let out = classify(TILL, &[&a], &Stored::new(TILL, &rows));
        assert_eq!(codes(&out), ["sale_id_conflict"]);
    }

    #[test]
    fn a_new_sale_reusing_a_seq_is_stored_and_names_the_sale_holding_it() {
        let a = sale(10, 1, "sale", None);
        let rows = [stored(&a, TILL)];
        let b = sale(11, 1, "sale", None);
        let c = sale(12, 2, "sale", None);
        let d = sale(13, 2, "sale", None);
        let out = classify_with(TILL, &[&b, &c, &d], &Stored::new(TILL, &rows), None, |_| {
            Ok(())
        });
        let reused: Vec<Option<Uuid>> = out.iter().map(|c| c.reuses_seq_of).collect();
        assert!(out.iter().all(|c| c.verdict == Verdict::Accept));
        assert_eq!(reused, [Some(a.sale_id), None, Some(c.sale_id)]);
    }

    #[test]
    fn repeats_inside_one_push_are_duplicates_or_conflicts() {
        let a = sale(10, 1, "sale", None);
        let mut changed = a.clone();
        changed.total_minor = 0;
        let out = classify(TILL, &[&a, &a, &changed], &Stored::new(TILL, &[]));
        assert_eq!(codes(&out), ["accept", "duplicate", "sale_id_conflict"]);
    }

    #[test]
    fn voids_and_refunds_are_stored_whatever_they_name() {
        let void_unknown = sale(13, 4, "void", Some(99));
        let refund_unknown = sale(14, 5, "refund", Some(98));
        let out = classify(
            TILL,
            &[&void_unknown, &refund_unknown],
            &Stored::new(TILL, &[]),
        );
        assert_eq!(codes(&out), ["accept", "accept"]);
    }

    #[test]
    fn a_retired_till_s_sales_are_accepted_up_to_its_retirement() {
        let retired: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let at_retirement = sale(10, 1, "sale", None);
        let mut after = sale(11, 2, "sale", None);
        after.occurred_at = "2026-11-20T10:00:01Z".parse().unwrap();
        let out = classify_with(
            TILL,
            &[&at_retirement, &after],
            &Stored::new(TILL, &[]),
            Some(retired),
            |_| Ok(()),
        );
        let verdicts: Vec<Verdict> = out.into_iter().map(|c| c.verdict).collect();
        assert_eq!(codes(&verdicts), ["accept", "terminal_retired"]);
    }

    #[test]
    fn a_sale_admit_refuses_counts_as_never_sent_for_the_sales_after_it() {
        let a = sale(10, 1, "sale", None);
        let same_id = a.clone();
        let same_seq = sale(12, 1, "sale", None);
        let out = classify_with(
            TILL,
            &[&a, &same_id, &same_seq],
            &Stored::new(TILL, &[]),
            None,
            |s| {
                if s.sale_id == a.sale_id {
                    Err(Rejection::new("total_out_of_range", "full"))
                } else {
                    Ok(())
                }
            },
        );
        let verdicts: Vec<Verdict> = out.iter().map(|c| c.verdict.clone()).collect();
        assert_eq!(
            codes(&verdicts),
            ["total_out_of_range", "total_out_of_range", "accept"]
        );
        assert_eq!(out[2].reuses_seq_of, None, "the refused sale holds no seq");
    }
}
