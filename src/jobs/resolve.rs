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
//! Every few seconds the postponed ones whose sale is stored by now are
//! woken too ([`refs::wake_found`]): a postponement and the wake-up of the
//! sale's push can pass each other unseen.
//!
//! The groups due in a tick are resolved together, in one transaction of a
//! few statements whatever their number (read them all, append the deltas
//! of every till they move, the counting voids, the exceptions, the queue).
//! One transaction a group cost some ten round trips each: a 10-minute soak
//! at 10 000 sales/s brings about 500 voids and refunds a second, and the
//! resolver, at 40 groups a second, let 300 000 of them pile up
//! (docs/benchmarks.md, "Issue 26"). Resolving them together was measured
//! before, when a reversal upserted the till-total rows every push of the
//! till writes too: pushes waited on its locks, and goodput at twice C fell
//! from 0.37 to 0.27 of C. A reversal is an appended delta now, which
//! locks nothing a push writes.
//!
//! A group that cannot be written (a reversal beyond `i64`: a sale stored
//! before the bounds) fails the tick's transaction; then each group is
//! tried alone, and the one that fails is logged and looked at again later
//! while the others go on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{Job, Vacuuming};
use crate::db::exceptions::{self, GroupFlag};
use crate::db::leader::{self, Job as Led};
use crate::db::refs::{self, DueRef, Fact, Group};
use crate::db::totals::{self, TillKey};
use crate::db::vacuum::Churned;
use crate::db::{Database, DbError};
use crate::domain::references;
use crate::domain::sale::SaleKind;
use crate::domain::totals::Deltas;

/// How often the queue is looked at.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(1);
/// How often postponed voids and refunds whose sale is stored by now are
/// woken ([`refs::wake_found`]): the longest such a one waits.
const WAKE_FOUND_EVERY: Duration = Duration::from_secs(5);
/// Voids and refunds looked at per tick at most, so a tick ends under any
/// backlog; the rest are due at the next, at once ([`Job::behind`]). Ten
/// times a soak's second of them (docs/benchmarks.md, "Issue 26").
const PER_TICK: i64 = 5000;

/// The resolver as a background job.
#[derive(Debug, Default)]
pub struct Resolve {
    /// The last tick took a full `PER_TICK`: more are due now.
    behind: bool,
    /// Of `pending_refs`, which the resolver empties as it goes.
    vacuuming: Vacuuming,
    /// When postponed ones whose sale is here were last woken.
    woke_found_at: Option<Instant>,
}

impl Job for Resolve {
    const WHAT: &'static str = "resolve voids and refunds";

    fn every(&self) -> Duration {
        RESOLVE_INTERVAL
    }

    async fn step(&mut self, db: &Database) -> Result<(), DbError> {
        self.behind = false;
        let mut conn = db.acquire().await?;
        if self
            .woke_found_at
            .is_none_or(|at| at.elapsed() >= WAKE_FOUND_EVERY)
        {
            let woken = refs::wake_found(&mut conn).await?;
            if woken > 0 {
                tracing::debug!(woken, "woke postponed voids and refunds whose sale is here");
            }
            self.woke_found_at = Some(Instant::now());
        }
        self.behind = tick(&mut conn).await? == PER_TICK as usize;
        self.vacuuming
            .when_due(&mut conn, Churned::PendingRefs)
            .await
    }

    /// A fleet selling 10 000 sales a second brings some 500 voids and
    /// refunds a second (the simulator's mix); after an outage the backlog
    /// is larger than a tick: ticks follow each other while they come full.
    fn behind(&self) -> bool {
        self.behind
    }
}

/// One tick: the due voids and refunds whose sale is missing are listed as
/// waiting and postponed; the groups of the sales the others name are
/// resolved together, in one transaction. A tick with nothing due (the
/// usual one) is one statement. Returns how many were due (none when
/// another replica leads the resolver).
pub async fn tick(conn: &mut PgConnection) -> Result<usize, DbError> {
    let due = refs::due(conn, PER_TICK).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let (found, missing): (Vec<&DueRef>, Vec<&DueRef>) = due.iter().partition(|r| r.found);
    if !missing.is_empty() {
        // Listing is idempotent and a postponement only a wait: another
        // replica doing the same at once costs nothing. The lock still keeps
        // two from writing the same rows in opposite orders.
        let mut tx = conn.begin().await?;
        if !leader::lead(&mut tx, Led::Resolve).await? {
            return Ok(0);
        }
        exceptions::list_unmatched(&mut tx, &missing).await?;
        refs::postpone(&mut tx, &missing).await?;
        tx.commit().await?;
    }

    let mut targets: Vec<(Uuid, Uuid)> = found
        .iter()
        .map(|r| (r.merchant_id, r.target_sale_id))
        .collect();
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        return Ok(due.len());
    }
    match resolve_groups(conn, &targets).await {
        Ok(Some(resolved)) => count_resolved(resolved),
        Ok(None) => return Ok(0),
        // One group that cannot be written fails them all: each is tried
        // alone, so only that one waits.
        Err(e) if is_the_datas(&e) && targets.len() > 1 => {
            if !one_by_one(conn, &due, &targets).await? {
                return Ok(0);
            }
        }
        Err(e) if is_the_datas(&e) => could_not_resolve(conn, &due, targets[0], &e).await?,
        Err(e) => return Err(e),
    }
    Ok(due.len())
}

/// Whether a failure says something about a group's data (a total out of
/// range) rather than about the database.
fn is_the_datas(error: &DbError) -> bool {
    matches!(error, DbError::OutOfRange(_) | DbError::Other(_))
}

fn count_resolved(groups: usize) {
    metrics::counter!("tillsync_references_resolved_total").increment(groups as u64);
}

/// Resolves each group of `targets` in a transaction of its own; those
/// that cannot be written wait. False if another replica leads now.
async fn one_by_one(
    conn: &mut PgConnection,
    due: &[DueRef],
    targets: &[(Uuid, Uuid)],
) -> Result<bool, DbError> {
    for &target in targets {
        match resolve_groups(conn, &[target]).await {
            Ok(Some(resolved)) => count_resolved(resolved),
            Ok(None) => return Ok(false),
            Err(e) if is_the_datas(&e) => could_not_resolve(conn, due, target, &e).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Logs a group that could not be written and puts its voids and refunds
/// of this tick off.
async fn could_not_resolve(
    conn: &mut PgConnection,
    due: &[DueRef],
    (merchant_id, target_sale_id): (Uuid, Uuid),
    error: &DbError,
) -> Result<(), DbError> {
    tracing::warn!(
        merchant.id = %merchant_id, sale.id = %target_sale_id, %error,
        "could not resolve the voids and refunds of sale {target_sale_id}; will retry later"
    );
    postpone_group(conn, merchant_id, due, target_sale_id).await
}

/// Resolves the groups of `targets` (`(merchant_id, target_sale_id)`) in
/// one transaction of a few statements, whatever their number: the groups
/// read at once, each worked out ([`references::resolve`]), then the
/// totals of every till they move, the counting voids, the exceptions and
/// the queue written a statement each. Returns how many groups it
/// resolved; `None` if another replica leads the resolver now.
async fn resolve_groups(
    conn: &mut PgConnection,
    targets: &[(Uuid, Uuid)],
) -> Result<Option<usize>, DbError> {
    let mut tx = conn.begin().await?;
    if !leader::lead(&mut tx, Led::Resolve).await? {
        return Ok(None);
    }
    // Found by `due` a moment ago; facts are never deleted.
    let groups = refs::groups(&mut tx, targets).await?;
    let mut changes: BTreeMap<TillKey, Deltas> = BTreeMap::new();
    let mut counting = Vec::new();
    let mut flags = Vec::new();
    let mut seen = Vec::new();
    for group in &groups {
        let merchant_id = group.merchant_id;
        let target_sale_id = group.target.sale.sale_id;
        let ref_sales: Vec<_> = group.refs.iter().map(|f| f.sale.clone()).collect();
        let resolution = references::resolve(&group.target.sale, &ref_sales);
        if resolution.counting_void != group.applied_void {
            move_reversal(&mut changes, group, resolution.counting_void)?;
            counting.push((merchant_id, target_sale_id, resolution.counting_void));
        }
        flags.extend(resolution.flags.into_iter().map(|flag| {
            let subject = flag.sale_ids.first().copied();
            let fact = std::iter::once(&group.target)
                .chain(&group.refs)
                .find(|f| Some(f.sale.sale_id) == subject)
                .unwrap_or(&group.target);
            GroupFlag {
                merchant_id,
                target_sale_id,
                store_id: fact.store_id,
                terminal_id: fact.terminal_id,
                flag,
            }
        }));
        seen.extend(group.refs.iter().map(|f| (merchant_id, f.sale.sale_id)));
    }
    if !counting.is_empty() {
        refs::set_applied_voids(&mut tx, &counting).await?;
    }
    let resolved: Vec<(Uuid, Uuid)> = groups
        .iter()
        .map(|g| (g.merchant_id, g.target.sale.sale_id))
        .collect();
    exceptions::replace_groups(&mut tx, &resolved, &flags).await?;
    refs::resolved(&mut tx, &seen).await?;
    if !changes.is_empty() {
        totals::add(&mut tx, &changes).await?;
    }
    tx.commit().await?;
    Ok(Some(groups.len()))
}

/// Adds to `changes` the reversal of the void the totals counted put back
/// (if it is still stored) and the one of `counting` taken out (if any),
/// each on its own void's till, day and hour.
fn move_reversal(
    changes: &mut BTreeMap<TillKey, Deltas>,
    group: &Group,
    counting: Option<Uuid>,
) -> Result<(), DbError> {
    let target = &group.target;
    if target.sale.kind == SaleKind::Void {
        return Ok(());
    }
    let void_named = |id: Option<Uuid>| group.refs.iter().find(|f| Some(f.sale.sale_id) == id);
    let out_of_range =
        |_| DbError::OutOfRange(sqlx::Error::Protocol("a total would overflow".into()));
    let till = |fact: &Fact| (group.merchant_id, fact.terminal_id, fact.store_id);
    if let Some(old) = void_named(group.applied_void) {
        changes
            .entry(till(old))
            .or_default()
            .try_reverse(&old.sale, &target.sale, &old.calendar, true)
            .map_err(out_of_range)?;
    }
    if let Some(new) = void_named(counting) {
        changes
            .entry(till(new))
            .or_default()
            .try_reverse(&new.sale, &target.sale, &new.calendar, false)
            .map_err(out_of_range)?;
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
    let stuck: Vec<&DueRef> = due
        .iter()
        .filter(|r| r.merchant_id == merchant_id && r.target_sale_id == target_sale_id)
        .collect();
    let mut tx = conn.begin().await?;
    refs::postpone(&mut tx, &stuck).await?;
    tx.commit().await?;
    Ok(())
}
