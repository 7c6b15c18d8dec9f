//! Running behind a connection pooler (PgBouncer). `TILLSYNC_DB_POOLER`
//! ([`Pooler`]) says whether there is one and in which mode; it is a setting, not a
//! guess, because PgBouncer is invisible to its clients: it forwards the
//! server's version and parameters, and nothing a client can ask tells
//! session mode from transaction mode.
//!
//! What changes with a pooler:
//! - **Startup parameters.** PgBouncer refuses every startup parameter it
//!   does not know (`unsupported startup parameter`) unless it is listed in
//!   `ignore_startup_parameters`, and then it drops it. sqlx sends
//!   `extra_float_digits`, and without a pooler tillsync sends its timeouts
//!   as `options`. Behind a pooler neither is sent. (Values travel in binary
//!   with prepared statements, and Postgres 12+ prints floats exactly
//!   anyway, so `extra_float_digits` buys nothing here.)
//! - **Timeouts** come from the server: role settings in the database
//!   (`ALTER ROLE .. IN DATABASE .. SET statement_timeout`), which every
//!   server connection PgBouncer opens picks up, in any pool mode. Not
//!   `SET LOCAL` per transaction: ingest runs single statements in
//!   implicit transactions, where that would be one more round trip per
//!   statement on the hot path; and not a session `SET`, which in
//!   transaction mode sticks to whichever server connection ran it. The
//!   migration step writes the role settings ([`migrate`]), and a job reads
//!   them back every minute through the pool ([`server_timeouts`], in
//!   [`crate::jobs::server_settings`]): a timeout silently dropped is what
//!   issue 14 found.
//! - **Migrations** take sqlx's session-level advisory lock, which a
//!   transaction pooler would leave on a server connection it lends to
//!   others, and `CREATE DATABASE` needs the maintenance database. So with
//!   a pooler they go to Postgres directly: `TILLSYNC_MIGRATE_DATABASE_URL`,
//!   or `--no-migrate` beside a `tillsync migrate` job that has it.
//! - **Prepared statements** (transaction mode). A server connection may
//!   serve another client after every transaction, so a statement prepared
//!   on one is not there on the next; sqlx's statement cache is off. This
//!   does *not* make sqlx 0.8 use the unnamed statement: with the cache off
//!   it still names each statement (`sqlx_s_N`, counted per connection)
//!   and never closes it, which is the `already exists` of issue 14 when
//!   two clients' counters meet on one server connection. PgBouncer 1.18
//!   must therefore deallocate them when a client lets go of a server
//!   (`server_reset_query = DEALLOCATE ALL`, `server_reset_query_always =
//!   1`); the settings job notices when it does not ([`prepared_statements`]). And sqlx parses a
//!   statement and binds it in two round trips, each ending in a Sync:
//!   outside an explicit transaction PgBouncer may lend the server
//!   connection to another client in between, so in this mode every unit
//!   of work is a transaction ([`crate::db::unit`]). PgBouncer 1.21+ with
//!   `max_prepared_statements` re-prepares named statements wherever they
//!   are bound; that is not available here (Debian ships 1.18), untested,
//!   and so not relied on.
//!
//! Session state is otherwise not relied on: the leader lock of background
//! work ([`crate::db::leader`]) is a transaction-level advisory lock, and the
//! health probe asks in one simple-protocol query.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor, Row};

use crate::config::database_url::DatabaseUrl;
use crate::config::{DatabaseArgs, Pooler};

/// The server settings that bound how long tillsync's work may hold a
/// connection or a lock; each is set to `TILLSYNC_DB_STATEMENT_TIMEOUT`.
pub const TIMEOUT_SETTINGS: [&str; 3] = [
    "idle_in_transaction_session_timeout",
    "lock_timeout",
    "statement_timeout",
];

/// The options connections to the first server of `DATABASE_URL` are made with.
pub fn connect_options(args: &DatabaseArgs) -> PgConnectOptions {
    options_for(args.database_url.first().clone(), args)
}

/// The options every pooled connection (and the health probe) is made
/// with, for each server of `DATABASE_URL`.
pub fn options_for(url: PgConnectOptions, args: &DatabaseArgs) -> PgConnectOptions {
    match args.db_pooler {
        Pooler::None => {
            let ms = args.db_statement_timeout.as_millis().to_string();
            url.options(TIMEOUT_SETTINGS.map(|setting| (setting, ms.as_str())))
        }
        Pooler::Session => url.extra_float_digits(None),
        Pooler::Transaction => url.extra_float_digits(None).statement_cache_capacity(0),
    }
}

/// Where migrations go: Postgres itself. Without a pooler that is
/// `DATABASE_URL`; with one it must be given apart.
pub fn migration_url(args: &DatabaseArgs) -> anyhow::Result<DatabaseUrl> {
    match (&args.migrate_database_url, args.db_pooler) {
        (Some(direct), _) => Ok(direct.clone()),
        (None, Pooler::None) => Ok(args.database_url.clone()),
        (None, _) => anyhow::bail!(
            "with TILLSYNC_DB_POOLER set, migrations must reach Postgres directly, not through \
             the pooler: set TILLSYNC_MIGRATE_DATABASE_URL (--migrate-database-url), or start \
             with --no-migrate beside a `tillsync migrate` job that has it"
        ),
    }
}

/// Creates the database if needed and applies migrations, on Postgres
/// directly; behind a pooler, also writes the timeouts as role settings
/// of the migrating role in that database (the role PgBouncer should log
/// in as: docs/deploy.md).
pub async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    // On the primary, when the URL lists several servers.
    let direct = super::primary::locate(&migration_url(args)?).await?;
    super::create_and_migrate(direct.first()).await?;
    if args.db_pooler != Pooler::None {
        set_role_timeouts(direct.first(), args.db_statement_timeout).await?;
    }
    Ok(())
}

/// `ALTER ROLE CURRENT_USER IN DATABASE .. SET ..` for each timeout. Any
/// role may set its own defaults; in one database only, so nothing else
/// the role runs elsewhere changes. New server sessions pick them up.
///
/// Replicas starting together write the same catalog row at once, which
/// Postgres answers with "tuple concurrently updated": so the statements
/// run as one simple query, which is one implicit transaction, behind a
/// transaction-level advisory lock that makes them take turns.
async fn set_role_timeouts(
    direct: &PgConnectOptions,
    statement_timeout: Duration,
) -> anyhow::Result<()> {
    let database = direct.get_database().unwrap_or("postgres");
    let database = format!("\"{}\"", database.replace('"', "\"\""));
    let ms = statement_timeout.as_millis();
    let mut statements =
        String::from("select pg_advisory_xact_lock(hashtext('tillsync.role_timeouts'));");
    for setting in TIMEOUT_SETTINGS {
        statements.push_str(&format!(
            " alter role current_user in database {database} set {setting} = '{ms}ms';"
        ));
    }
    let (mut conn, _) = super::tls::connect(direct).await?;
    conn.execute(statements.as_str()).await?;
    tracing::info!(
        timeout_ms = ms as u64,
        "timeouts of {ms} ms set as role settings in the database, for connections through the pooler"
    );
    // The settings are stored; a failed goodbye changes nothing.
    let _ = conn.close().await;
    Ok(())
}

/// The timeouts a session of this connection's server runs with, by name.
/// One simple-protocol query: a single round trip that a transaction
/// pooler cannot split.
pub async fn server_timeouts(
    conn: &mut PgConnection,
) -> Result<Vec<(String, Duration)>, sqlx::Error> {
    // A plain `&str` is sent as a simple query.
    let rows = conn
        .fetch_all(
            "select name, setting from pg_settings where name in \
             ('idle_in_transaction_session_timeout', 'lock_timeout', 'statement_timeout') \
             order by name",
        )
        .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let setting: String = row.try_get(1)?;
            // pg_settings gives these three in milliseconds.
            let ms = setting
                .parse::<u64>()
                .map_err(|e| sqlx::Error::ColumnDecode {
                    index: "setting".into(),
                    source: Box::new(e),
                })?;
            Ok((name, Duration::from_millis(ms)))
        })
        .collect()
}

/// Prepared statements the session holds. In transaction mode, as the
/// first statement of a transaction: what earlier clients of this server
/// connection left there, which PgBouncer 1.18 must deallocate
/// (`server_reset_query = DEALLOCATE ALL`, `server_reset_query_always = 1`)
/// or the next `sqlx_s_N` of another client collides with it.
pub async fn prepared_statements(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let row = conn
        .fetch_one("select count(*) from pg_prepared_statements")
        .await?;
    row.try_get(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_args(argv: &[&str]) -> DatabaseArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            database: DatabaseArgs,
        }
        let argv = std::iter::once("tillsync").chain(argv.iter().copied());
        <Only as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .database
    }

    #[test]
    fn behind_a_pooler_migrations_need_a_direct_url() {
        let pooled = ["--database-url", "postgres://u@pooler:6432/db"];
        let none = database_args(&pooled);
        assert_eq!(migration_url(&none).unwrap().first().get_port(), 6432);
        for mode in ["session", "transaction"] {
            let args = database_args(&[&pooled[..], &["--db-pooler", mode]].concat());
            let refused = migration_url(&args).unwrap_err().to_string();
            assert!(
                refused.contains("TILLSYNC_MIGRATE_DATABASE_URL"),
                "{refused}"
            );
            let direct = ["--migrate-database-url", "postgres://u@db:5432/db"];
            let args = database_args(&[&pooled[..], &["--db-pooler", mode], &direct].concat());
            assert_eq!(migration_url(&args).unwrap().first().get_port(), 5432);
        }
    }
}
