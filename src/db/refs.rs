//! Voids and refunds waiting for the resolver ([`crate::jobs::resolve`]):
//! every one a push stores enters `pending_refs`, and leaves once the
//! resolver has seen it with its sale. Here: which are due, a sale with
//! every void and refund naming it, which void of a sale the totals count
//! now (`void_effects`), and leaving the queue.

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
    /// Whether the sale it names is stored.
    pub found: bool,
}

/// Up to `limit` voids and refunds due now, longest due first.
pub async fn due(conn: &mut PgConnection, limit: i64) -> Result<Vec<DueRef>, DbError> {
    let rows = sqlx::query_as!(
        DueRef,
        r#"select q.merchant_id, q.sale_id, q.target_sale_id, q.terminal_id, q.store_id,
                  q.stored_at,
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

/// Looks at these again later, each a little later than the last time.
pub async fn postpone(
    conn: &mut PgConnection,
    merchant_ids: &[Uuid],
    sale_ids: &[Uuid],
) -> Result<(), DbError> {
    sqlx::query!(
        r#"update pending_refs q
              set checks = q.checks + 1,
                  next_check_at = now() + make_interval(secs => least(power(2, q.checks), $3))
             from unnest($1::uuid[], $2::uuid[]) as u(merchant_id, sale_id)
            where q.merchant_id = u.merchant_id and q.sale_id = u.sale_id"#,
        merchant_ids,
        sale_ids,
        LONGEST_RECHECK_S
    )
    .execute(conn)
    .await?;
    Ok(())
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
    pub target: Fact,
    pub refs: Vec<Fact>,
    pub applied_void: Option<Uuid>,
}

/// The group of `target_sale_id`, or `None` if that sale is not stored.
pub async fn group(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    target_sale_id: Uuid,
) -> Result<Option<Group>, DbError> {
    let rows = sqlx::query!(
        r#"with facts as (
               select s.sale_id, s.terminal_id, s.store_id, s.body
                 from sales s
                where s.merchant_id = $1 and s.sale_id = $2
               union all
               select s.sale_id, s.terminal_id, s.store_id, s.body
                 from sales s
                where s.merchant_id = $1 and s.refers_to_sale_id = $2
           )
           select f.sale_id as "sale_id!", f.terminal_id as "terminal_id!",
                  f.store_id as "store_id!", f.body as "body!",
                  r.effective_from as "effective_from!", r.timezones as "timezones!",
                  r.day_starts_at as "day_starts_at!"
             from facts f
            cross join lateral (
                  select array_agg(effective_from order by effective_from) as effective_from,
                         array_agg(timezone order by effective_from) as timezones,
                         array_agg(day_starts_at order by effective_from) as day_starts_at
                    from store_day_rules
                   where merchant_id = $1 and store_id = f.store_id) r"#,
        merchant_id,
        target_sale_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let applied_void = sqlx::query_scalar!(
        "select void_sale_id from void_effects where merchant_id = $1 and target_sale_id = $2",
        merchant_id,
        target_sale_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let mut target = None;
    let mut refs = Vec::new();
    for row in rows {
        let sale_id = row.sale_id;
        // Every stored body is a sale the server parsed and wrote itself.
        let sale: Sale = serde_json::from_value(row.body)
            .map_err(|e| DbError::Other(sqlx::Error::Decode(Box::new(e))))?;
        let fact = Fact {
            sale,
            terminal_id: row.terminal_id,
            store_id: row.store_id,
            calendar: Calendar::stored(row.effective_from, row.timezones, row.day_starts_at),
        };
        if sale_id == target_sale_id {
            target = Some(fact);
        } else {
            refs.push(fact);
        }
    }
    Ok(target.map(|target| Group {
        target,
        refs,
        applied_void,
    }))
}

/// Records which void of `target_sale_id` the totals count now (none: the
/// sale counts in full).
pub async fn set_applied_void(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    target_sale_id: Uuid,
    void: Option<Uuid>,
) -> Result<(), DbError> {
    match void {
        Some(void_sale_id) => {
            sqlx::query!(
                "insert into void_effects (merchant_id, target_sale_id, void_sale_id)
                 values ($1, $2, $3)
                 on conflict (merchant_id, target_sale_id) do update
                    set void_sale_id = excluded.void_sale_id",
                merchant_id,
                target_sale_id,
                void_sale_id
            )
            .execute(conn)
            .await?;
        }
        None => {
            sqlx::query!(
                "delete from void_effects where merchant_id = $1 and target_sale_id = $2",
                merchant_id,
                target_sale_id
            )
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// These voids and refunds were seen with their sale: they leave the queue.
pub async fn resolved(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    sale_ids: &[Uuid],
) -> Result<(), DbError> {
    sqlx::query!(
        "delete from pending_refs where merchant_id = $1 and sale_id = any($2)",
        merchant_id,
        sale_ids
    )
    .execute(conn)
    .await?;
    Ok(())
}
