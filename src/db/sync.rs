//! Per-terminal sync state: what the server holds from each till. Ingest
//! reads it with the rest of a push ([`super::push::read`]), works out the
//! next one without I/O, and its write stores it only if the row is still
//! the one it read (no lock held in between); `view` reads it for
//! `GET /v1/sync`.
//!
//! `terminal_sync` is written by the same statement as the push's sales,
//! so reading it is one row; only the gap list and the day check look at
//! sales, and only at this till's rows above its contiguous prefix or on one
//! business day.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;

/// At most this many missing ranges are reported; the till asks again after resending.
pub const MAX_MISSING_RANGES: i64 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct SyncState {
    pub highest_seq: i64,
    pub contiguous_through_seq: i64,
    pub sales_stored: i64,
    pub last_batch_at: Option<DateTime<Utc>>,
}

/// Count and net of one currency on one business day.
#[derive(Debug, Clone)]
pub struct DayTotal {
    pub currency: String,
    pub sales_count: i64,
    pub net_minor: i64,
}

/// The till's stored or settled seqs above `after` (settled: refused for
/// good, or declared skipped), ascending, each once, at most `limit` of
/// them. Two index range scans, on (merchant_id, terminal_id, seq).
pub async fn seqs_above(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<i64>, DbError> {
    let seqs = sqlx::query_scalar!(
        r#"select u.seq as "seq!" from (
               (select seq from sales
                 where merchant_id = $1 and terminal_id = $2 and seq > $3
                 order by seq limit $4)
               union
               (select seq from settled_seqs
                 where merchant_id = $1 and terminal_id = $2 and seq > $3
                 order by seq limit $4)) u
            order by u.seq
            limit $4"#,
        merchant_id,
        terminal_id,
        after,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(seqs)
}

/// What the server holds from a till, as the till asks for it.
#[derive(Debug, Clone)]
pub struct SyncView {
    pub state: SyncState,
    /// The first gaps above the contiguous prefix, inclusive `[from, to]`,
    /// at most `MAX_MISSING_RANGES` of them.
    pub missing_seq_ranges: Vec<[i64; 2]>,
    /// The day check: per currency on the business day asked for, if any.
    pub day_totals: Option<Vec<DayTotal>>,
}

/// The till's sync state, its gaps and (when a business date is given) that
/// day's totals. The gaps are looked for only when the state says there are
/// some, so a till that is up to date costs one row.
pub async fn view(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    business_date: Option<NaiveDate>,
) -> Result<SyncView, DbError> {
    let state = current(conn, merchant_id, terminal_id).await?;
    let missing_seq_ranges = if state.highest_seq > state.contiguous_through_seq {
        missing_ranges(conn, merchant_id, terminal_id, state.contiguous_through_seq).await?
    } else {
        Vec::new()
    };
    let day_totals = match business_date {
        Some(date) => Some(day_totals(conn, merchant_id, terminal_id, date).await?),
        None => None,
    };
    Ok(SyncView {
        state,
        missing_seq_ranges,
        day_totals,
    })
}

/// The sync row as it is, without locking it.
async fn current(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
) -> Result<SyncState, DbError> {
    let state = sqlx::query_as!(
        SyncState,
        r#"select highest_seq, contiguous_through_seq, sales_stored, last_batch_at
             from terminal_sync where merchant_id = $1 and terminal_id = $2"#,
        merchant_id,
        terminal_id
    )
    .fetch_one(conn)
    .await?;
    Ok(state)
}

/// The first gaps above the contiguous prefix, as inclusive `[from, to]`
/// ranges: seqs neither stored nor settled.
///
/// Seq arithmetic is done in `numeric`: a till may hold `i64::MAX` (stored
/// before the edge bounded seqs), and `seq + 1` on it would fail the query
/// for good. Where a gap exists, `seq + 1` and `next_seq - 1` lie between two
/// stored values, so the casts back to `int8` always fit.
async fn missing_ranges(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    contiguous_through_seq: i64,
) -> Result<Vec<[i64; 2]>, DbError> {
    let rows = sqlx::query!(
        r#"select (seq::numeric + 1)::int8 as "from_seq!", (next_seq::numeric - 1)::int8 as "to_seq!"
             from (select seq, lead(seq) over (order by seq) as next_seq
                     from (select $3::int8 as seq
                           union all
                           select seq from sales
                            where merchant_id = $1 and terminal_id = $2 and seq > $3
                           union all
                           select seq from settled_seqs
                            where merchant_id = $1 and terminal_id = $2 and seq > $3) held
                  ) gaps
            where next_seq::numeric > seq::numeric + 1
            order by seq
            limit $4"#,
        merchant_id,
        terminal_id,
        contiguous_through_seq,
        MAX_MISSING_RANGES
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| [r.from_seq, r.to_seq]).collect())
}

/// Count and net per currency of what this till stored on one business
/// day, by the report definitions: every fact (sale, refund, void) counts
/// once; net is sales less refunds less what the day's voids take out. A
/// void takes out its sale's amount (a voided refund puts its amount back)
/// on the void's own day, if its sale is here and it is the sale's first
/// void by (occurred_at, sale_id), as the resolver applies it to the totals
/// ([`crate::domain::references`]); a void of a void takes nothing out.
/// Worked out from the facts here, so a till's end-of-day check never waits
/// for the resolver. Added up in numeric; a net beyond `i64` fails the cast
/// back ([`DbError::OutOfRange`]), never wraps.
async fn day_totals(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    business_date: NaiveDate,
) -> Result<Vec<DayTotal>, DbError> {
    let rows = sqlx::query_as!(
        DayTotal,
        r#"with counted as (
               select s.currency, 1 as fact,
                      case s.kind when 'sale' then s.total_minor::numeric
                                  when 'refund' then -(s.total_minor::numeric)
                                  else 0 end as net
                 from sales s
                where s.merchant_id = $1 and s.terminal_id = $2 and s.business_date = $3
               union all
               select t.currency, 0,
                      case t.kind when 'sale' then -(t.total_minor::numeric)
                                  when 'refund' then t.total_minor::numeric
                                  else 0 end
                 from sales v
                 join sales t on t.merchant_id = v.merchant_id and t.sale_id = v.refers_to_sale_id
                where v.merchant_id = $1 and v.terminal_id = $2 and v.business_date = $3
                  and v.kind = 'void'
                  and not exists (select 1 from sales w
                                   where w.merchant_id = v.merchant_id
                                     and w.refers_to_sale_id = v.refers_to_sale_id
                                     and w.kind = 'void'
                                     and (w.occurred_at, w.sale_id) < (v.occurred_at, v.sale_id))
           )
           select currency as "currency!", sum(fact)::int8 as "sales_count!",
                  coalesce(sum(net), 0)::int8 as "net_minor!"
             from counted
            group by currency
            order by currency"#,
        merchant_id,
        terminal_id,
        business_date
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
