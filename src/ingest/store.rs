//! Storing a batch's sales: each valid sale is classified against what is
//! stored (and the batch's earlier sales), the new ones are inserted in one
//! statement, and payloads that conflict with a stored sale are kept for
//! review.
//!
//! A till's batches are serialised by its sync row lock, but another till
//! of the merchant may commit a sale with the same id between our read and
//! our insert. The insert skips such rows instead of failing, and a round
//! that lost one classifies what is not yet stored again, against the rows
//! that now exist, up to `MAX_CLASSIFY_ROUNDS` times.
//!
//! Each sale the classifier would accept is also added to the batch's
//! totals deltas (`TotalsCheck`), checked: one whose share would take a
//! delta, or (when the stored totals were read) a stored total, beyond
//! `i64` is rejected alone with `total_out_of_range`, before anything of it
//! is stored.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::Item;
use super::classify::{Stored, Verdict, classify_with};
use super::totals_check::{TotalsCheck, total_out_of_range};
use crate::db::sales::{self, NewSales};
use crate::db::{DbError, conflicts};
use crate::domain::sale::{Sale, StoredSale};
use crate::domain::terminal::Terminal;
use crate::domain::totals::Deltas;

/// Collisions with a concurrent transaction are resolved by classifying again;
/// this bounds how often, so a pathological race ends in a retryable error.
const MAX_CLASSIFY_ROUNDS: usize = 3;

/// What storing a batch's sales came to.
pub(super) struct StoredSales {
    /// Every item's verdict, in input order.
    pub verdicts: Vec<Verdict>,
    /// The indexes of the items this transaction inserted.
    pub inserted: Vec<usize>,
    /// Stored sales that voids of this batch name, for the totals.
    pub void_targets: HashMap<Uuid, Sale>,
    /// What the inserted sales add to the till's totals.
    pub deltas: Deltas,
}

/// One classification of the pending sales against what is stored now.
struct Round<'a> {
    /// The items classified, by index, with their sales and verdicts in the same order.
    indexes: Vec<usize>,
    sales: Vec<&'a Sale>,
    verdicts: Vec<Verdict>,
    /// The deltas so far plus those of the sales this round accepted.
    deltas: Deltas,
}

/// Classifies and inserts the valid sales; invalid ones keep their rejection.
pub(super) async fn store_sales(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    batch_id: Uuid,
    items: &[Item],
    check: &mut TotalsCheck,
) -> Result<StoredSales, DbError> {
    let mut stored = StoredSales::start(items);
    let mut pending: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].sale.is_ok())
        .collect();
    for _round in 0..MAX_CLASSIFY_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let round = classify_round(tx, terminal, items, pending, &mut stored, check).await?;
        let inserted_now = insert_new(tx, terminal, batch_id, &round).await?;
        pending = stored.settle(round, &inserted_now);
        if !pending.is_empty() {
            stored.recount(items, terminal, check)?;
        }
    }
    if pending.is_empty() {
        Ok(stored)
    } else {
        Err(DbError::Contention(sqlx::Error::Protocol(
            "sales kept colliding with concurrent batches".into(),
        )))
    }
}

impl StoredSales {
    /// Before the first round: valid sales are provisionally accepted,
    /// invalid ones rejected for what parsing found.
    fn start(items: &[Item]) -> Self {
        let verdicts = items
            .iter()
            .map(|item| match &item.sale {
                Ok(_) => Verdict::Accept,
                Err(rejection) => Verdict::Reject(rejection.clone()),
            })
            .collect();
        Self {
            verdicts,
            inserted: Vec::new(),
            void_targets: HashMap::new(),
            deltas: Deltas::default(),
        }
    }

    /// Records what a round settled and returns the items to classify again.
    /// An accepted sale that was not inserted collided with a transaction
    /// that committed meanwhile; then every verdict of the round but the
    /// inserts may be stale, so all of those go round again.
    fn settle(&mut self, round: Round, inserted_now: &HashSet<Uuid>) -> Vec<usize> {
        let collided = round
            .verdicts
            .iter()
            .zip(&round.sales)
            .any(|(v, s)| *v == Verdict::Accept && !inserted_now.contains(&s.sale_id));
        if !collided {
            self.deltas = round.deltas;
        }
        let mut again = Vec::new();
        for ((index, sale), verdict) in round
            .indexes
            .into_iter()
            .zip(round.sales)
            .zip(round.verdicts)
        {
            if verdict == Verdict::Accept && inserted_now.contains(&sale.sale_id) {
                self.inserted.push(index);
                self.verdicts[index] = Verdict::Accept;
            } else if collided {
                again.push(index);
            } else {
                self.verdicts[index] = verdict;
            }
        }
        again
    }

    /// After a collision, the deltas of what is inserted so far, again:
    /// the round's deltas counted sales that were not inserted. A sum that
    /// fit in a different order and no longer does is a collision too.
    fn recount(
        &mut self,
        items: &[Item],
        terminal: &Terminal,
        check: &TotalsCheck,
    ) -> Result<(), DbError> {
        let inserted: Vec<&Sale> = self
            .inserted
            .iter()
            .map(|&i| items[i].valid_sale())
            .collect();
        self.deltas = Deltas::of(&inserted, terminal.timezone, check.stored(), |id| {
            inserted
                .iter()
                .copied()
                .find(|s| s.sale_id == id)
                .or_else(|| self.void_targets.get(&id))
        })
        .map_err(|_| {
            DbError::Contention(sqlx::Error::Protocol(
                "totals of a batch changed order after a collision".into(),
            ))
        })?;
        Ok(())
    }
}

/// Fetches, in one round trip, every stored sale the pending ones could
/// collide with, and classifies them against it, adding each sale it would
/// accept to the batch's deltas (checked, see `TotalsCheck`). Stored sales
/// that a void names are kept for the totals.
async fn classify_round<'a>(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    items: &'a [Item],
    pending: Vec<usize>,
    stored: &mut StoredSales,
    check: &mut TotalsCheck,
) -> Result<Round<'a>, DbError> {
    let sales: Vec<&Sale> = pending.iter().map(|&i| items[i].valid_sale()).collect();
    let ids: Vec<Uuid> = sales
        .iter()
        .flat_map(|s| std::iter::once(s.sale_id).chain(s.refers_to_sale_id))
        .collect();
    let seqs: Vec<i64> = sales.iter().map(|s| s.seq).collect();
    let related =
        sales::find_related(tx, terminal.merchant_id, terminal.terminal_id, &ids, &seqs).await?;
    keep_void_targets(&sales, &related, &mut stored.void_targets);
    check
        .load(tx, terminal, &sales, &stored.void_targets)
        .await?;
    let mut deltas = stored.deltas.clone();
    let verdicts = classify_with(
        terminal.terminal_id,
        &sales,
        &Stored::new(terminal.terminal_id, &related),
        |sale, batch_target| {
            let target = sale
                .refers_to_sale_id
                .and_then(|id| batch_target.or_else(|| stored.void_targets.get(&id)));
            deltas
                .try_add(sale, target, terminal.timezone, check.stored())
                .map_err(|_| total_out_of_range())
        },
    );
    Ok(Round {
        indexes: pending,
        sales,
        verdicts,
        deltas,
    })
}

fn keep_void_targets(sales: &[&Sale], related: &[StoredSale], into: &mut HashMap<Uuid, Sale>) {
    let targets: HashSet<Uuid> = sales.iter().filter_map(|s| s.refers_to_sale_id).collect();
    for row in related.iter().filter(|r| targets.contains(&r.sale_id)) {
        if let Ok(target) = serde_json::from_value::<Sale>(row.body.clone()) {
            into.insert(row.sale_id, target);
        }
    }
}

/// Inserts the sales the round accepted, in one statement, and returns the
/// ids actually inserted.
async fn insert_new(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    batch_id: Uuid,
    round: &Round<'_>,
) -> Result<HashSet<Uuid>, DbError> {
    let rows = new_rows(terminal, &round.sales, &round.verdicts);
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let inserted = sales::insert(
        tx,
        terminal.merchant_id,
        terminal.terminal_id,
        terminal.store_id,
        batch_id,
        &rows,
    )
    .await?;
    Ok(inserted.into_iter().collect())
}

fn new_rows(terminal: &Terminal, sales: &[&Sale], verdicts: &[Verdict]) -> NewSales {
    let mut rows = NewSales::default();
    for (sale, _) in sales
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| **v == Verdict::Accept)
    {
        rows.sale_id.push(sale.sale_id);
        rows.seq.push(sale.seq);
        rows.kind.push(sale.kind.as_str().to_owned());
        rows.occurred_at.push(sale.occurred_at.to_utc());
        rows.business_date
            .push(sale.business_date(terminal.timezone));
        rows.currency.push(sale.currency.clone());
        rows.total_minor.push(sale.total_minor);
        rows.tax_minor.push(sale.tax_minor);
        rows.discount_minor.push(sale.discount_minor);
        rows.refers_to_sale_id.push(sale.refers_to_sale_id);
        rows.body
            .push(serde_json::to_value(sale).expect("a sale always serializes"));
    }
    rows
}

/// Keeps the payloads rejected as `sale_id_conflict`, so a person can see
/// what the till sent under an id that was already taken.
pub(super) async fn save_conflicts(
    tx: &mut sqlx::PgConnection,
    terminal: &Terminal,
    batch_id: Uuid,
    items: &[Item],
    verdicts: &[Verdict],
) -> Result<(), DbError> {
    let conflicting: Vec<&Sale> = items
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, Verdict::Reject(r) if r.code == "sale_id_conflict"))
        .filter_map(|(item, _)| item.sale.as_ref().ok())
        .collect();
    if conflicting.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = conflicting.iter().map(|s| s.sale_id).collect();
    let payloads: Vec<serde_json::Value> = conflicting
        .iter()
        .map(|s| serde_json::to_value(s).expect("a sale always serializes"))
        .collect();
    conflicts::insert(
        tx,
        terminal.merchant_id,
        terminal.terminal_id,
        batch_id,
        &ids,
        &payloads,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: u128, seq: i64) -> Item {
        let sale: Sale = serde_json::from_value(json!({
            "sale_id": Uuid::from_u128(id), "seq": seq, "kind": "sale",
            "occurred_at": "2026-11-20T10:00:00Z", "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1, "amount_minor": 500}],
            "tenders": [{"method": "cash", "amount_minor": 500}],
            "total_minor": 500, "tax_minor": 80, "discount_minor": 0,
        }))
        .unwrap();
        Item {
            sale_id: Some(sale.sale_id),
            sale: Ok(sale),
        }
    }

    fn round(items: &[Item], verdicts: Vec<Verdict>) -> Round<'_> {
        Round {
            indexes: (0..items.len()).collect(),
            sales: items.iter().map(Item::valid_sale).collect(),
            verdicts,
            deltas: Deltas::default(),
        }
    }

    #[test]
    fn a_round_without_collisions_settles_every_verdict() {
        let items = [item(1, 1), item(2, 2), item(3, 3)];
        let mut stored = StoredSales::start(&items);
        let verdicts = vec![Verdict::Accept, Verdict::Duplicate, Verdict::Accept];
        let inserted_now = HashSet::from([Uuid::from_u128(1), Uuid::from_u128(3)]);
        let again = stored.settle(round(&items, verdicts.clone()), &inserted_now);
        assert!(again.is_empty());
        assert_eq!(stored.inserted, [0, 2]);
        assert_eq!(stored.verdicts, verdicts);
    }

    #[test]
    fn an_accepted_sale_not_inserted_sends_all_but_the_inserted_round_again() {
        let items = [item(1, 1), item(2, 2), item(3, 3)];
        let mut stored = StoredSales::start(&items);
        let verdicts = vec![Verdict::Accept, Verdict::Accept, Verdict::Duplicate];
        let inserted_now = HashSet::from([Uuid::from_u128(1)]);
        let again = stored.settle(round(&items, verdicts), &inserted_now);
        assert_eq!(again, [1, 2]);
        assert_eq!(stored.inserted, [0]);
    }
}
