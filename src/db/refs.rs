//! Voids and refunds waiting for the resolver ([`crate::jobs::resolve`]):
//! every one a push stores enters `pending_refs`, and leaves once the
//! resolver has seen it with its sale. Here: which are due, a sale with
//! every void and refund naming it (a group; many in one statement), which void of a sale the totals count
//! now (`void_effects`), and leaving the queue.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;
use crate::domain::calendar::Calendar;
use crate::domain::sale::Sale;

/// How long a void or refund whose sale is not here waits before it is
/// looked at again, at most (it doubles from a second). A push that stores
/// the sale wakes it at once; this only bounds how long one that raced that
/// push can wait.
const LONGEST_RECHECK_S: f64 = 60.0;

/// A void or refund due to be looked at.
#[derive(Debug, Clone)]
pub struct DueRef {
    pub merchant_id: Uuid,
    pub sale_id: Uuid,
    pub target_sale_id: Uuid,
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    pub stored_at: DateTime<Utc>,
    /// When it was due, as read: a postponement leaves it alone if a push
    /// has changed it since.
    pub next_check_at: DateTime<Utc>,
    /// Whether the sale it names is stored.
    pub found: bool,
}

/// Up to `limit` voids and refunds due now, longest due first.
pub async fn due(conn: &mut PgConnection, limit: i64) -> Result<Vec<DueRef>, DbError> {
    let rows = sqlx::query_as!(
        DueRef,
        r#"select q.merchant_id, q.sale_id, q.target_sale_id, q.terminal_id, q.store_id,
                  q.stored_at, q.next_check_at,
                  exists (select 1 from sales t
                           where t.merchant_id = q.merchant_id
                             and t.sale_id = q.target_sale_id) as "found!"
             from pending_refs q
            where q.next_check_at <= now()
            order by q.next_check_at
            limit $1"#,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Looks at these again later, each a little later than the last time;
/// but not one whose sale is stored by now, nor one a push has woken since
/// it was read (its `next_check_at` changed), which stay due. A push wakes
/// only postponed ones, so a void read as missing just before its sale's
/// push committed used to be postponed for up to a minute with its sale
/// here: at five times C, 26 outlived the verifier's 30 s of settling.
pub async fn postpone(conn: &mut PgConnection, due: &[&DueRef]) -> Result<(), DbError> {
    let merchant_ids: Vec<Uuid> = due.iter().map(|r| r.merchant_id).collect();
    let sale_ids: Vec<Uuid> = due.iter().map(|r| r.sale_id).collect();
    let read_due_at: Vec<DateTime<Utc>> = due.iter().map(|r| r.next_check_at).collect();
    sqlx::query!(
        r#"update pending_refs q
              set checks = q.checks + 1,
                  next_check_at = now() + make_interval(secs => least(power(2, q.checks), $4))
             from unnest($1::uuid[], $2::uuid[], $3::timestamptz[])
                  as u(merchant_id, sale_id, read_due_at)
            where q.merchant_id = u.merchant_id and q.sale_id = u.sale_id
              and q.next_check_at = u.read_due_at
              and not exists (select 1 from sales t
                               where t.merchant_id = q.merchant_id
                                 and t.sale_id = q.target_sale_id)"#,
        &merchant_ids,
        &sale_ids,
        &read_due_at,
        LONGEST_RECHECK_S
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Wakes the postponed voids and refunds whose sale is stored by now; how
/// many. A push wakes the postponed ones naming its sales, but a void the
/// resolver read as missing while the sale's push was committing can be
/// postponed after that push's wake ran and before its commit showed: each
/// statement saw the other's rows as they were before. It then waited out
/// its postponement (up to a minute) with its sale here: at five times C,
/// 13 tills' voids outlived the verifier's 30 s of settling. The resolver
/// runs this every few seconds ([`crate::jobs::resolve`]), so no such void
/// waits longer than that.
pub async fn wake_found(conn: &mut PgConnection) -> Result<u64, DbError> {
    let woken = sqlx::query!(
        r#"update pending_refs q
              set next_check_at = now()
            where q.next_check_at > now()
              and exists (select 1 from sales t
                           where t.merchant_id = q.merchant_id
                             and t.sale_id = q.target_sale_id)"#
    )
    .execute(conn)
    .await?;
    Ok(woken.rows_affected())
}

/// A stored fact with what its totals need: its till and how that till's
/// store dates sales.
#[derive(Debug, Clone)]
pub struct Fact {
    pub sale: Sale,
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    pub calendar: Calendar,
}

/// A sale with every void and refund naming it, and the void the totals
/// count now.
#[derive(Debug, Clone)]
pub struct Group {
    pub merchant_id: Uuid,
    pub target: Fact,
    pub refs: Vec<Fact>,
    pub applied_void: Option<Uuid>,
}

/// The group of each `(merchant_id, target_sale_id)`, in one statement;
/// a sale that is not stored has none.
pub async fn groups(
    conn: &mut PgConnection,
    targets: &[(Uuid, Uuid)],
) -> Result<Vec<Group>, DbError> {
    let (merchant_ids, target_ids): (Vec<Uuid>, Vec<Uuid>) = targets.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"with t as (
               select * from unnest($1::uuid[], $2::uuid[]) as t(merchant_id, target_sale_id)
           ), facts as (
               select t.merchant_id, t.target_sale_id, s.sale_id, s.terminal_id, s.store_id,
                      s.body
                 from t
                 join sales s on s.merchant_id = t.merchant_id and s.sale_id = t.target_sale_id
               union all
               select t.merchant_id, t.target_sale_id, s.sale_id, s.terminal_id, s.store_id,
                      s.body
                 from t
                 join sales s on s.merchant_id = t.merchant_id
                             and s.refers_to_sale_id = t.target_sale_id
           )
           select f.merchant_id as "merchant_id!", f.target_sale_id as "target_sale_id!",
                  f.sale_id as "sale_id!", f.terminal_id as "terminal_id!",
                  f.store_id as "store_id!", f.body as "body!",
                  v.void_sale_id as "applied_void?",
                  r.effective_from as "effective_from!", r.timezones as "timezones!",
                  r.day_starts_at as "day_starts_at!"
             from facts f
             left join void_effects v
               on v.merchant_id = f.merchant_id and v.target_sale_id = f.target_sale_id
            cross join lateral (
                  select array_agg(effective_from order by effective_from) as effective_from,
                         array_agg(timezone order by effective_from) as timezones,
                         array_agg(day_starts_at order by effective_from) as day_starts_at
                    from store_day_rules
                   where merchant_id = f.merchant_id and store_id = f.store_id) r"#,
        &merchant_ids,
        &target_ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut found: BTreeMap<(Uuid, Uuid), Gathered> = BTreeMap::new();
    for row in rows {
        // Every stored body is a sale the server parsed and wrote itself.
        let sale: Sale = serde_json::from_value(row.body)
            .map_err(|e| DbError::Other(sqlx::Error::Decode(Box::new(e))))?;
        let fact = Fact {
            sale,
            terminal_id: row.terminal_id,
            store_id: row.store_id,
            calendar: Calendar::stored(row.effective_from, row.timezones, row.day_starts_at),
        };
        let gathered = found
            .entry((row.merchant_id, row.target_sale_id))
            .or_default();
        gathered.applied_void = row.applied_void;
        if row.sale_id == row.target_sale_id {
            gathered.target = Some(fact);
        } else {
            gathered.refs.push(fact);
        }
    }
    Ok(found
        .into_iter()
        .filter_map(|((merchant_id, _), gathered)| {
            Some(Group {
                merchant_id,
                target: gathered.target?,
                refs: gathered.refs,
                applied_void: gathered.applied_void,
            })
        })
        .collect())
}

/// A group as its rows come: the sale itself (if stored), the facts naming
/// it, the counting void.
#[derive(Default)]
struct Gathered {
    target: Option<Fact>,
    refs: Vec<Fact>,
    applied_void: Option<Uuid>,
}

/// Records which void of each sale the totals count now (none: the sale
/// counts in full): `(merchant_id, target_sale_id, void)`.
pub async fn set_applied_voids(
    conn: &mut PgConnection,
    changes: &[(Uuid, Uuid, Option<Uuid>)],
) -> Result<(), DbError> {
    let merchant_ids: Vec<Uuid> = changes.iter().map(|c| c.0).collect();
    let target_ids: Vec<Uuid> = changes.iter().map(|c| c.1).collect();
    let void_ids: Vec<Option<Uuid>> = changes.iter().map(|c| c.2).collect();
    sqlx::query!(
        r#"with c as (
               select * from unnest($1::uuid[], $2::uuid[], $3::uuid[])
                      as c(merchant_id, target_sale_id, void_sale_id)
           ), gone as (
               delete from void_effects v
                using c
                where c.void_sale_id is null
                  and v.merchant_id = c.merchant_id and v.target_sale_id = c.target_sale_id
           )
           insert into void_effects (merchant_id, target_sale_id, void_sale_id)
           select c.merchant_id, c.target_sale_id, c.void_sale_id
             from c
            where c.void_sale_id is not null
           on conflict (merchant_id, target_sale_id) do update
              set void_sale_id = excluded.void_sale_id"#,
        &merchant_ids,
        &target_ids,
        &void_ids as &[Option<Uuid>]
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// These voids and refunds (`(merchant_id, sale_id)`) were seen with their
/// sale: they leave the queue.
pub async fn resolved(conn: &mut PgConnection, seen: &[(Uuid, Uuid)]) -> Result<(), DbError> {
    let (merchant_ids, sale_ids): (Vec<Uuid>, Vec<Uuid>) = seen.iter().copied().unzip();
    sqlx::query!(
        "delete from pending_refs q
          using unnest($1::uuid[], $2::uuid[]) as u(merchant_id, sale_id)
          where q.merchant_id = u.merchant_id and q.sale_id = u.sale_id",
        &merchant_ids,
        &sale_ids
    )
    .execute(conn)
    .await?;
    Ok(())
}
