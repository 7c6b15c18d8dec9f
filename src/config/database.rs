//! The database settings: where Postgres is (`DATABASE_URL`, parsed by
//! [`database_url`](super::database_url)), whether a pooler stands in
//! between, and the pool's limits and timeouts. What they change is the
//! database layer's business ([`crate::db`], [`crate::db::pooler`]).

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::database_url::DatabaseUrl;
use super::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL, with one host or libpq's list
    /// (`postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write`,
    /// as `pg_autoctl show uri` prints it): connections go only to a server
    /// `target_session_attrs` allows (read-write, primary or any, the
    /// default), and follow a failover to the next one. The database is
    /// created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tillsync",
        value_parser = DatabaseUrl::parse,
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,

    /// The pooler between tillsync and Postgres, if any (PgBouncer's
    /// `pool_mode`): behind one, no startup parameters are sent and the
    /// timeouts are role settings (docs/deploy.md, PgBouncer).
    #[arg(long, env = "TILLSYNC_DB_POOLER", value_enum, default_value_t = Pooler::None)]
    pub db_pooler: Pooler,

    /// Postgres itself, for `CREATE DATABASE` and migrations, when
    /// `DATABASE_URL` goes through a pooler [default: DATABASE_URL, only without a pooler].
    #[arg(
        long,
        env = "TILLSYNC_MIGRATE_DATABASE_URL",
        value_parser = DatabaseUrl::parse,
        hide_env_values = true
    )]
    pub migrate_database_url: Option<DatabaseUrl>,

    /// Most connections the pool opens to Postgres.
    #[arg(long, env = "TILLSYNC_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// How long a request may wait for a pooled connection (or a new one to connect).
    #[arg(long, env = "TILLSYNC_DB_ACQUIRE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Server-side `statement_timeout`: Postgres cancels any statement running longer.
    #[arg(long, env = "TILLSYNC_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// Connections older than this are closed and replaced, so load spreads after a failover.
    #[arg(long, env = "TILLSYNC_DB_MAX_LIFETIME", default_value = "30m", value_parser = parse_duration)]
    pub db_max_lifetime: Duration,

    /// Idle connections above the minimum are closed after this long.
    #[arg(long, env = "TILLSYNC_DB_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub db_idle_timeout: Duration,
}

/// Whether a pooler stands between tillsync and Postgres, and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Pooler {
    /// Straight to Postgres: timeouts are sent as startup options.
    #[default]
    None,
    /// PgBouncer `pool_mode = session`.
    Session,
    /// PgBouncer `pool_mode = transaction`.
    Transaction,
}
