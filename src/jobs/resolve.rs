//! The resolver: every void and refund a push stores waits in
//! `pending_refs` ([`crate::db::refs`]) until this job has seen it with its
//! sale. Then, for that sale and every void and refund naming it, it works
//! out what they mean together ([`references::resolve`]: which void takes
//! the sale out of the totals, what the back office must look at), and in
//! one transaction: appends the totals deltas if the counting void changed
//! (the old one's reversal put back, the new one's taken out, each on its
//! own void's day and till: [`Deltas::try_reverse`]; the fold adds them to
//! the totals), lists the group's exceptions exactly, and lets the voids
//! and refunds it saw leave the queue.
//!
//! Why here and not at push time: a void and its sale may arrive in any
//! order, in pushes of different tills committing at the same moment, and
//! neither push can see the other's uncommitted rows. One job, on one
//! replica at a time ([`crate::db::leader`]), sees every group after its
//! facts committed, so a void takes effect exactly once whatever the order,
//! and the outcome depends on the facts alone. A push that stores a sale
//! wakes the voids and refunds waiting for it, so they take effect at the
//! next tick (a second); one whose sale is still missing is listed as
//! `unmatched_reference` and looked at again later, less often each time.
//!
//! A group that cannot be written (a reversal beyond `i64`: a sale stored
//! before the bounds) is logged and looked at again later; the others go
//! on.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{Job, Vacuuming};
use crate::db::exceptions::{self, GroupFlag};
use crate::db::leader::{self, Job as Led};
use crate::db::refs::{self, DueRef, Group};
use crate::db::totals::{self, TotalsColumns};
use crate::db::vacuum::Churned;
use crate::db::{Database, DbError};
use crate::domain::references;
use crate::domain::sale::SaleKind;
use crate::domain::totals::Deltas;

/// How often the queue is looked at.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(1);
/// Voids and refunds looked at per tick at most, so a tick ends under any
/// backlog; the rest are due at the next.
const PER_TICK: i64 = 500;

/// The resolver as a background job.
#[derive(Debug, Default)]
pub struct Resolve {
    /// Of `pending_refs`, which the resolver empties as it goes.
    vacuuming: Vacuuming,
}

impl Job for Resolve {
    const WHAT: &'static str = "resolve voids and refunds";

    fn every(&self) -> Duration {
        RESOLVE_INTERVAL
    }

    async fn step(&mut self, db: &Database) -> Result<(), DbError> {
        let mut conn = db.acquire().await?;
        tick(&mut conn).await?;
        self.vacuuming
            .when_due(&mut conn, Churned::PendingRefs)
            .await
    }
}

/// One tick: the due voids and refunds whose sale is missing are listed as
/// waiting and postponed; each sale the others name is resolved with its
/// whole group, in a transaction of its own. A tick with nothing due (the
/// usual one) is one statement.
pub async fn tick(conn: &mut PgConnection) -> Result<(), DbError> {
    let due = refs::due(conn, PER_TICK).await?;
    if due.is_empty() {
        return Ok(());
    }
    let (found, missing): (Vec<&DueRef>, Vec<&DueRef>) = due.iter().partition(|r| r.found);
    if !missing.is_empty() {
        // Listing is idempotent and a postponement only a wait: another
        // replica doing the same at once costs nothing. The lock still keeps
        // two from writing the same rows in opposite orders.
        let mut tx = conn.begin().await?;
        if !leader::lead(&mut tx, Led::Resolve).await? {
            return Ok(());
        }
        exceptions::list_unmatched(&mut tx, &missing).await?;
        let merchants: Vec<Uuid> = missing.iter().map(|r| r.merchant_id).collect();
        let sale_ids: Vec<Uuid> = missing.iter().map(|r| r.sale_id).collect();
        refs::postpone(&mut tx, &merchants, &sale_ids).await?;
        tx.commit().await?;
    }

    let mut targets: Vec<(Uuid, Uuid)> = found
        .iter()
        .map(|r| (r.merchant_id, r.target_sale_id))
        .collect();
    targets.sort();
    targets.dedup();
    for (merchant_id, target_sale_id) in targets {
        match resolve_group(conn, merchant_id, target_sale_id).await {
            Ok(true) => {
                metrics::counter!("tillsync_references_resolved_total").increment(1);
            }
            Ok(false) => {}
            Err(e @ (DbError::OutOfRange(_) | DbError::Other(_))) => {
                tracing::warn!(
                    merchant.id = %merchant_id, sale.id = %target_sale_id, error = %e,
                    "could not resolve the voids and refunds of sale {target_sale_id}; looked at again later"
                );
                postpone_group(conn, merchant_id, &due, target_sale_id).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Resolves one sale's group in a transaction of its own; false if another
/// replica leads the resolver now.
async fn resolve_group(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    target_sale_id: Uuid,
) -> Result<bool, DbError> {
    let mut tx = conn.begin().await?;
    if !leader::lead(&mut tx, Led::Resolve).await? {
        return Ok(false);
    }
    // Found by `due` a moment ago; facts are never deleted.
    let Some(group) = refs::group(&mut tx, merchant_id, target_sale_id).await? else {
        return Ok(false);
    };
    let ref_sales: Vec<_> = group.refs.iter().map(|f| f.sale.clone()).collect();
    let resolution = references::resolve(&group.target.sale, &ref_sales);
    if resolution.counting_void != group.applied_void {
        move_reversal(&mut tx, merchant_id, &group, resolution.counting_void).await?;
        refs::set_applied_void(
            &mut tx,
            merchant_id,
            target_sale_id,
            resolution.counting_void,
        )
        .await?;
    }
    let flags: Vec<GroupFlag> = resolution
        .flags
        .into_iter()
        .map(|flag| {
            let subject = flag.sale_ids.first().copied();
            let fact = std::iter::once(&group.target)
                .chain(&group.refs)
                .find(|f| Some(f.sale.sale_id) == subject)
                .unwrap_or(&group.target);
            GroupFlag {
                store_id: fact.store_id,
                terminal_id: fact.terminal_id,
                flag,
            }
        })
        .collect();
    exceptions::replace_group(&mut tx, merchant_id, target_sale_id, &flags).await?;
    let seen: Vec<Uuid> = group.refs.iter().map(|f| f.sale.sale_id).collect();
    refs::resolved(&mut tx, merchant_id, &seen).await?;
    tx.commit().await?;
    Ok(true)
}

/// Puts back the reversal of the void the totals counted (if it is still
/// stored) and takes out the one of `counting` (if any), each on its own
/// void's till, day and hour.
async fn move_reversal(
    tx: &mut PgConnection,
    merchant_id: Uuid,
    group: &Group,
    counting: Option<Uuid>,
) -> Result<(), DbError> {
    let target = &group.target;
    if target.sale.kind == SaleKind::Void {
        return Ok(());
    }
    let void_named = |id: Option<Uuid>| group.refs.iter().find(|f| Some(f.sale.sale_id) == id);
    // Per (till, store): what its totals gain.
    let mut changes: BTreeMap<(Uuid, Uuid), Deltas> = BTreeMap::new();
    let out_of_range =
        |_| DbError::OutOfRange(sqlx::Error::Protocol("a total would overflow".into()));
    if let Some(old) = void_named(group.applied_void) {
        changes
            .entry((old.terminal_id, old.store_id))
            .or_default()
            .try_reverse(&old.sale, &target.sale, &old.calendar, true)
            .map_err(out_of_range)?;
    }
    if let Some(new) = void_named(counting) {
        changes
            .entry((new.terminal_id, new.store_id))
            .or_default()
            .try_reverse(&new.sale, &target.sale, &new.calendar, false)
            .map_err(out_of_range)?;
    }
    for ((terminal_id, store_id), deltas) in changes {
        let columns = TotalsColumns::of(&deltas);
        totals::add(tx, merchant_id, terminal_id, store_id, &columns).await?;
    }
    Ok(())
}

/// A group that could not be written: its voids and refunds in this tick
/// are looked at again later, not every second.
async fn postpone_group(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    due: &[DueRef],
    target_sale_id: Uuid,
) -> Result<(), DbError> {
    let stuck: Vec<Uuid> = due
        .iter()
        .filter(|r| r.merchant_id == merchant_id && r.target_sale_id == target_sale_id)
        .map(|r| r.sale_id)
        .collect();
    let merchants = vec![merchant_id; stuck.len()];
    let mut tx = conn.begin().await?;
    refs::postpone(&mut tx, &merchants, &stuck).await?;
    tx.commit().await?;
    Ok(())
}
