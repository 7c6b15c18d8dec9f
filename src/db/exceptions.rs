//! What the back office must look at ([`crate::domain::exception`]): listed
//! by pushes (payloads refused for good, seqs held twice) and by the
//! resolver (what a sale's voids and refunds mean together, and those still
//! waiting for their sale); read newest first and marked resolved by an
//! admin. One row per (kind, subject), so listing again changes nothing.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;
use super::refs::DueRef;
use crate::domain::exception::{ExceptionKind, Flag};

/// A listed exception as stored.
#[derive(Debug, Clone)]
pub struct ExceptionRow {
    pub exception_id: Uuid,
    pub kind: String,
    pub store_id: Uuid,
    pub terminal_id: Option<Uuid>,
    pub sale_ids: Vec<Uuid>,
    pub seq: Option<i64>,
    pub code: Option<String>,
    pub detail: String,
    /// A refused payload, as JSON text.
    pub payload: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
}

/// Which exceptions a listing wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Resolved,
    All,
}

/// What to list: the filters, and the keyset cursor (opened_at,
/// exception_id) of the last row of the previous page.
#[derive(Debug, Clone)]
pub struct Filter {
    pub store_id: Option<Uuid>,
    pub terminal_id: Option<Uuid>,
    pub kind: Option<ExceptionKind>,
    pub status: Status,
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    filter: &Filter,
) -> Result<Vec<ExceptionRow>, DbError> {
    let (before_at, before_id) = filter.before.unzip();
    let rows = sqlx::query_as!(
        ExceptionRow,
        r#"select exception_id, kind, store_id, terminal_id, sale_ids, seq, code, detail,
                  payload, opened_at, resolved_at, note
             from exceptions
            where merchant_id = $1
              and ($2::uuid is null or store_id = $2)
              and ($3::uuid is null or terminal_id = $3)
              and ($4::text is null or kind = $4)
              and ($5::text = 'all' or ($5 = 'open') = (resolved_at is null))
              and ($6::timestamptz is null or (opened_at, exception_id) < ($6, $7))
            order by opened_at desc, exception_id desc
            limit $8"#,
        merchant_id,
        filter.store_id,
        filter.terminal_id,
        filter.kind.map(ExceptionKind::as_str),
        match filter.status {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::All => "all",
        },
        before_at,
        before_id,
        filter.limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Marks one resolved with `note` (again: the note is replaced, the first
/// time kept). `None` when the merchant has no such exception.
pub async fn resolve(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    exception_id: Uuid,
    note: &str,
) -> Result<Option<ExceptionRow>, DbError> {
    let row = sqlx::query_as!(
        ExceptionRow,
        r#"update exceptions
              set resolved_at = coalesce(resolved_at, now()), note = $3
            where merchant_id = $1 and exception_id = $2
        returning exception_id, kind, store_id, terminal_id, sale_ids, seq, code, detail,
                  payload, opened_at, resolved_at, note"#,
        merchant_id,
        exception_id,
        note
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A flag of a sale's group, with the group's sale and the till and store
/// of its subject.
#[derive(Debug, Clone)]
pub struct GroupFlag {
    pub merchant_id: Uuid,
    pub target_sale_id: Uuid,
    pub flag: Flag,
    pub store_id: Uuid,
    pub terminal_id: Uuid,
}

/// Makes what is listed for the voids and refunds of each sale of `groups`
/// (`(merchant_id, target_sale_id)`) be exactly its `flags`, in one
/// statement: new ones listed, changed ones updated (more refunds, another
/// counting void: open again if an admin had resolved them), open ones that
/// no longer hold (a void that waited for this sale) taken off. A resolved
/// one stays, with its note, whatever happens to it.
pub async fn replace_groups(
    conn: &mut PgConnection,
    groups: &[(Uuid, Uuid)],
    flags: &[GroupFlag],
) -> Result<(), DbError> {
    let (group_merchants, group_targets): (Vec<Uuid>, Vec<Uuid>) = groups.iter().copied().unzip();
    let merchants: Vec<Uuid> = flags.iter().map(|f| f.merchant_id).collect();
    let targets: Vec<Uuid> = flags.iter().map(|f| f.target_sale_id).collect();
    let kinds: Vec<&str> = flags.iter().map(|f| f.flag.kind.as_str()).collect();
    let subjects: Vec<&str> = flags.iter().map(|f| f.flag.subject.as_str()).collect();
    let stores: Vec<Uuid> = flags.iter().map(|f| f.store_id).collect();
    let terminals: Vec<Uuid> = flags.iter().map(|f| f.terminal_id).collect();
    let sale_ids: Vec<String> = flags
        .iter()
        .map(|f| {
            let ids: Vec<String> = f.flag.sale_ids.iter().map(Uuid::to_string).collect();
            ids.join(",")
        })
        .collect();
    let details: Vec<&str> = flags.iter().map(|f| f.flag.detail.as_str()).collect();
    sqlx::query!(
        r#"with f as (
               select *
                 from unnest($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::uuid[],
                             $8::uuid[], $9::text[], $10::text[])
                      as f(merchant_id, target_sale_id, kind, subject, store_id, terminal_id,
                           sale_ids, detail)
           ), gone as (
               delete from exceptions e
                using unnest($1::uuid[], $2::uuid[]) as g(merchant_id, target_sale_id)
                where e.merchant_id = g.merchant_id and e.target_sale_id = g.target_sale_id
                  and e.resolved_at is null
                  and not exists (select 1 from f
                                   where f.merchant_id = e.merchant_id
                                     and f.target_sale_id = e.target_sale_id
                                     and f.kind = e.kind and f.subject = e.subject)
           )
           insert into exceptions as e
                  (merchant_id, exception_id, kind, subject, store_id, terminal_id,
                   target_sale_id, sale_ids, detail)
           select f.merchant_id, gen_random_uuid(), f.kind, f.subject, f.store_id,
                  f.terminal_id, f.target_sale_id, string_to_array(f.sale_ids, ',')::uuid[],
                  f.detail
             from f
           on conflict (merchant_id, kind, subject) do update
              set sale_ids = excluded.sale_ids, detail = excluded.detail,
                  target_sale_id = excluded.target_sale_id,
                  resolved_at = case when excluded.sale_ids = e.sale_ids
                                     then e.resolved_at end"#,
        &group_merchants,
        &group_targets,
        &merchants,
        &targets,
        &kinds as &[&str],
        &subjects as &[&str],
        &stores,
        &terminals,
        &sale_ids,
        &details as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Lists each of these voids and refunds, whose sale is not here, as
/// waiting for it (once: listing it again changes nothing), open since it
/// was stored. The resolver takes it off with its sale's group.
pub async fn list_unmatched(conn: &mut PgConnection, refs: &[&DueRef]) -> Result<(), DbError> {
    let merchants: Vec<Uuid> = refs.iter().map(|r| r.merchant_id).collect();
    let sale_ids: Vec<Uuid> = refs.iter().map(|r| r.sale_id).collect();
    let targets: Vec<Uuid> = refs.iter().map(|r| r.target_sale_id).collect();
    let stores: Vec<Uuid> = refs.iter().map(|r| r.store_id).collect();
    let terminals: Vec<Uuid> = refs.iter().map(|r| r.terminal_id).collect();
    let stored_at: Vec<DateTime<Utc>> = refs.iter().map(|r| r.stored_at).collect();
    sqlx::query!(
        r#"insert into exceptions
                  (merchant_id, exception_id, kind, subject, store_id, terminal_id,
                   target_sale_id, sale_ids, detail, opened_at)
           select u.merchant_id, gen_random_uuid(), 'unmatched_reference', u.sale_id::text,
                  u.store_id, u.terminal_id, u.target_sale_id, array[u.sale_id],
                  format('%s names sale %s, which has not arrived', u.sale_id, u.target_sale_id),
                  u.stored_at
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                         $6::timestamptz[])
                  as u(merchant_id, sale_id, target_sale_id, store_id, terminal_id, stored_at)
           on conflict (merchant_id, kind, subject) do nothing"#,
        &merchants,
        &sale_ids,
        &targets,
        &stores,
        &terminals,
        &stored_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Open exceptions of every merchant, per kind: how many, and since when the
/// oldest is open.
pub async fn open_by_kind(
    conn: &mut PgConnection,
) -> Result<Vec<(String, i64, DateTime<Utc>)>, DbError> {
    let rows = sqlx::query!(
        r#"select kind, count(*) as "open!", min(opened_at) as "oldest!"
             from exceptions
            where resolved_at is null
            group by kind"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.kind, r.open, r.oldest))
        .collect())
}
