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

/// Count, net and the receipt's split of one currency on one business day.
#[derive(Debug, Clone)]
pub struct DayTotal {
    pub currency: String,
    pub sales_count: i64,
    pub net_minor: i64,
    pub tax_minor: i64,
    pub item_sales_minor: i64,
    pub gift_card_sales_minor: i64,
    pub tips_minor: i64,
    pub service_charges_minor: i64,
    pub rounding_minor: i64,
    pub net_sales_minor: i64,
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

/// Count, net and the receipt's split per currency of what this till
/// stored on one business day, by the report definitions: every fact
/// (sale, refund, void) counts once; net is sales less refunds less what
/// the day's voids take out, and each member of the split (tax, item sales,
/// gift cards, tips, service charges, rounding, net sales) likewise. A void
/// takes out its sale's amounts (a voided refund puts its amounts back) on
/// the void's own day, if its sale is here and it is the sale's first void
/// by (occurred_at, sale_id), as the resolver applies it to the totals
/// ([`crate::domain::references`]); a void of a void takes nothing out.
/// Worked out from the facts here (the split from their bodies, as
/// [`crate::domain::sale::Sale`] defines it), so a till's end-of-day check
/// never waits for the resolver. Added up in numeric; a sum beyond `i64`
/// fails the cast back ([`DbError::OutOfRange`]), never wraps.
async fn day_totals(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    business_date: NaiveDate,
) -> Result<Vec<DayTotal>, DbError> {
    let rows = sqlx::query_as!(
        DayTotal,
        r#"with counted as (
               -- `way`: 1 for what a sale adds, -1 for what a refund takes back
               select s.currency, 1 as fact,
                      case s.kind when 'sale' then 1 when 'refund' then -1 else 0 end as way,
                      s.total_minor, s.tax_minor, s.body::jsonb as body
                 from sales s
                where s.merchant_id = $1 and s.terminal_id = $2 and s.business_date = $3
               union all
               select t.currency, 0,
                      case t.kind when 'sale' then -1 when 'refund' then 1 else 0 end,
                      t.total_minor, t.tax_minor, t.body::jsonb
                 from sales v
                 join sales t on t.merchant_id = v.merchant_id and t.sale_id = v.refers_to_sale_id
                where v.merchant_id = $1 and v.terminal_id = $2 and v.business_date = $3
                  and v.kind = 'void'
                  and not exists (select 1 from sales w
                                   where w.merchant_id = v.merchant_id
                                     and w.refers_to_sale_id = v.refers_to_sale_id
                                     and w.kind = 'void'
                                     and (w.occurred_at, w.sale_id) < (v.occurred_at, v.sale_id))
           ), split as (
               select c.currency, c.fact, c.way, c.total_minor::numeric as total,
                      c.tax_minor::numeric as tax, l.items, l.gift_cards,
                      coalesce((c.body ->> 'tip_minor')::numeric, 0) as tips,
                      coalesce((c.body ->> 'service_charge_minor')::numeric, 0) as service,
                      coalesce((c.body ->> 'rounding_minor')::numeric, 0) as rounding,
                      l.items + coalesce((c.body ->> 'service_charge_minor')::numeric, 0)
                        - case when coalesce((c.body ->> 'tax_included')::boolean, true)
                               then c.tax_minor else 0 end as net_sales
                 from counted c
                cross join lateral (
                      select coalesce(sum((x ->> 'amount_minor')::numeric)
                                      filter (where coalesce(x ->> 'kind', 'item') = 'item'), 0)
                               as items,
                             coalesce(sum((x ->> 'amount_minor')::numeric)
                                      filter (where x ->> 'kind' = 'gift_card'), 0) as gift_cards
                        from jsonb_array_elements(c.body -> 'lines') x) l
           )
           select currency as "currency!", sum(fact)::int8 as "sales_count!",
                  sum(way * total)::int8 as "net_minor!", sum(way * tax)::int8 as "tax_minor!",
                  sum(way * items)::int8 as "item_sales_minor!",
                  sum(way * gift_cards)::int8 as "gift_card_sales_minor!",
                  sum(way * tips)::int8 as "tips_minor!",
                  sum(way * service)::int8 as "service_charges_minor!",
                  sum(way * rounding)::int8 as "rounding_minor!",
                  sum(way * net_sales)::int8 as "net_sales_minor!"
             from split
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
