//! Merchants, their admin tokens, stores and terminals.

use chrono::{DateTime, NaiveTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;
use crate::domain::calendar::{CHANGE_DELAY, Calendar};
use crate::domain::terminal::Terminal;
use crate::domain::token::TokenHash;

#[derive(Debug, Clone)]
pub struct StoreRow {
    pub store_id: Uuid,
    pub name: String,
    pub timezone: String,
    pub currency: String,
    pub business_day_starts_at: NaiveTime,
    pub created_at: DateTime<Utc>,
    /// When the settings above took (or take) effect.
    pub settings_effective_from: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct TerminalRow {
    pub terminal_id: Uuid,
    pub store_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

pub async fn insert_merchant(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    name: &str,
    admin_token: &TokenHash,
) -> Result<(), DbError> {
    sqlx::query!(
        "insert into merchants (merchant_id, name) values ($1, $2)",
        merchant_id,
        name
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into admin_tokens (merchant_id, token_hash) values ($1, $2)",
        merchant_id,
        admin_token.as_bytes()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn admin_token_exists(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    token: &TokenHash,
) -> Result<bool, DbError> {
    let found = sqlx::query_scalar!(
        "select 1 as found from admin_tokens where merchant_id = $1 and token_hash = $2",
        merchant_id,
        token.as_bytes()
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// The terminal a token belongs to, unless it is unknown or revoked: enough
/// to authorise and to compute business dates without another query (its
/// store's rules over time, the ones not in force yet included).
pub async fn find_terminal_by_token(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    token: &TokenHash,
) -> Result<Option<Terminal>, DbError> {
    let row = sqlx::query!(
        r#"select t.terminal_id, t.store_id, s.currency, t.retired_at,
                  r.effective_from as "effective_from!", r.timezones as "timezones!",
                  r.day_starts_at as "day_starts_at!"
             from terminals t
             join stores s on s.merchant_id = t.merchant_id and s.store_id = t.store_id
            cross join lateral (
                  select array_agg(effective_from order by effective_from) as effective_from,
                         array_agg(timezone order by effective_from) as timezones,
                         array_agg(day_starts_at order by effective_from) as day_starts_at
                    from store_day_rules
                   where merchant_id = s.merchant_id and store_id = s.store_id) r
            where t.merchant_id = $1 and t.token_hash = $2 and t.revoked_at is null"#,
        merchant_id,
        token.as_bytes()
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Terminal {
        merchant_id,
        terminal_id: r.terminal_id,
        store_id: r.store_id,
        calendar: Calendar::stored(r.effective_from, r.timezones, r.day_starts_at),
        currency: r.currency,
        retired_at: r.retired_at,
    }))
}

/// A new store and the rule it dates its sales by, in force from now.
pub async fn insert_store(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    name: &str,
    timezone: &str,
    currency: &str,
    business_day_starts_at: NaiveTime,
) -> Result<StoreRow, DbError> {
    let row = sqlx::query_as!(
        StoreRow,
        r#"with store as (
               insert into stores (merchant_id, store_id, name, timezone, currency,
                                   business_day_starts_at)
               values ($1, $2, $3, $4, $5, $6)
               returning store_id, name, timezone, currency, business_day_starts_at, created_at
           ), rule as (
               insert into store_day_rules
                      (merchant_id, store_id, effective_from, timezone, day_starts_at)
               select $1, store_id, created_at, timezone, business_day_starts_at from store
           )
           select store_id as "store_id!", name as "name!", timezone as "timezone!",
                  currency as "currency!", business_day_starts_at as "business_day_starts_at!",
                  created_at as "created_at!", created_at as "settings_effective_from!"
             from store"#,
        merchant_id,
        Uuid::now_v7(),
        name,
        timezone,
        currency,
        business_day_starts_at
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// A store as the API shows it, `None` if the merchant has no such store.
pub async fn find_store(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    store_id: Uuid,
) -> Result<Option<StoreRow>, DbError> {
    let row = sqlx::query_as!(
        StoreRow,
        r#"select s.store_id, s.name, s.timezone, s.currency, s.business_day_starts_at,
                  s.created_at,
                  (select max(effective_from) from store_day_rules r
                    where r.merchant_id = s.merchant_id and r.store_id = s.store_id)
                    as "settings_effective_from!"
             from stores s
            where s.merchant_id = $1 and s.store_id = $2"#,
        merchant_id,
        store_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// What a change of a store's settings sets; `None` keeps a setting.
#[derive(Debug, Clone, Default)]
pub struct StoreChange {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub business_day_starts_at: Option<NaiveTime>,
}

/// Changes a store's settings. A change of how it dates sales (time zone,
/// business-day start) is a new rule in force `CHANGE_DELAY` from now:
/// sales that occurred before keep the old rule whenever they arrive.
/// `None` when the merchant has no such store.
pub async fn update_store(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    store_id: Uuid,
    change: &StoreChange,
) -> Result<Option<StoreRow>, DbError> {
    let row = sqlx::query_as!(
        StoreRow,
        r#"with old as (
               select timezone, business_day_starts_at
                 from stores
                where merchant_id = $1 and store_id = $2
                  for update
           ), store as (
               update stores s
                  set name = coalesce($3, s.name),
                      timezone = coalesce($4, s.timezone),
                      business_day_starts_at = coalesce($5, s.business_day_starts_at)
                 from old
                where s.merchant_id = $1 and s.store_id = $2
            returning s.store_id, s.name, s.timezone, s.currency, s.business_day_starts_at,
                      s.created_at,
                      (s.timezone, s.business_day_starts_at)
                        is distinct from (old.timezone, old.business_day_starts_at) as redated
           ), rule as (
               insert into store_day_rules
                      (merchant_id, store_id, effective_from, timezone, day_starts_at)
               select $1, store_id, now() + make_interval(secs => $6), timezone,
                      business_day_starts_at
                 from store
                where redated
               on conflict (merchant_id, store_id, effective_from) do update
                  set timezone = excluded.timezone, day_starts_at = excluded.day_starts_at
               returning effective_from
           )
           select store_id as "store_id!", name as "name!", timezone as "timezone!",
                  currency as "currency!", business_day_starts_at as "business_day_starts_at!",
                  created_at as "created_at!",
                  coalesce((select effective_from from rule),
                           (select max(effective_from) from store_day_rules r
                             where r.merchant_id = $1 and r.store_id = $2))
                    as "settings_effective_from!"
             from store"#,
        merchant_id,
        store_id,
        change.name,
        change.timezone,
        change.business_day_starts_at,
        CHANGE_DELAY.num_seconds() as f64
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

pub async fn store_exists(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    store_id: Uuid,
) -> Result<bool, DbError> {
    let found = sqlx::query_scalar!(
        "select 1 as found from stores where merchant_id = $1 and store_id = $2",
        merchant_id,
        store_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

pub async fn terminal_exists(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
) -> Result<bool, DbError> {
    let found = sqlx::query_scalar!(
        "select 1 as found from terminals where merchant_id = $1 and terminal_id = $2",
        merchant_id,
        terminal_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Inserts a terminal and its (empty) sync state in the caller's transaction.
pub async fn insert_terminal(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    store_id: Uuid,
    name: &str,
    token: &TokenHash,
) -> Result<TerminalRow, DbError> {
    let row = sqlx::query_as!(
        TerminalRow,
        r#"insert into terminals (merchant_id, terminal_id, store_id, name, token_hash)
           values ($1, $2, $3, $4, $5)
           returning terminal_id, store_id, name, created_at, revoked_at, retired_at"#,
        merchant_id,
        Uuid::now_v7(),
        store_id,
        name,
        token.as_bytes()
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "insert into terminal_sync (merchant_id, terminal_id) values ($1, $2)",
        merchant_id,
        row.terminal_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(row)
}

/// What taking a terminal out of use records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// A stolen till: its token stops working.
    Revoke,
    /// Out of service: its token keeps working for sales made before.
    Retire,
}

/// Marks a terminal revoked or retired (once: a second time keeps the
/// first). `None` when the merchant has no such terminal.
pub async fn withdraw_terminal(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    terminal_id: Uuid,
    withdrawal: Withdrawal,
) -> Result<Option<(TerminalRow, TokenHash)>, DbError> {
    let row = sqlx::query!(
        r#"update terminals
              set revoked_at = case when $3 then coalesce(revoked_at, now()) else revoked_at end,
                  retired_at = case when $3 then retired_at else coalesce(retired_at, now()) end
            where merchant_id = $1 and terminal_id = $2
        returning terminal_id, store_id, name, created_at, revoked_at, retired_at, token_hash"#,
        merchant_id,
        terminal_id,
        withdrawal == Withdrawal::Revoke
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        let row = TerminalRow {
            terminal_id: r.terminal_id,
            store_id: r.store_id,
            name: r.name,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            retired_at: r.retired_at,
        };
        (row, token_hash(&r.token_hash))
    }))
}

/// A stored token hash (always 32 bytes: a SHA-256).
fn token_hash(stored: &[u8]) -> TokenHash {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(stored);
    TokenHash(hash)
}

/// Tills of every merchant that are neither revoked nor retired, have pushed before, and
/// have not pushed for a day, and for three days
/// ([`crate::jobs::silent_tills`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilentTerminals {
    pub over_1d: i64,
    pub over_3d: i64,
}

pub async fn silent_terminals(conn: &mut PgConnection) -> Result<SilentTerminals, DbError> {
    let row = sqlx::query!(
        r#"select count(*) filter (where ts.last_batch_at < now() - interval '1 day') as "over_1d!",
                  count(*) filter (where ts.last_batch_at < now() - interval '3 days') as "over_3d!"
             from terminal_sync ts
             join terminals t using (merchant_id, terminal_id)
            where t.revoked_at is null and t.retired_at is null"#
    )
    .fetch_one(conn)
    .await?;
    Ok(SilentTerminals {
        over_1d: row.over_1d,
        over_3d: row.over_3d,
    })
}
