//! Postgres access. `Database` owns the pool and is the one door every query
//! goes through; the repositories below are plain functions over a connection
//! or transaction, one file per table group.
//!
//! Errors are sorted here into what a client may retry (the link is down or
//! slow, two writers collided) and what is a bug, so handlers never look at
//! SQLSTATEs.

pub mod conflicts;
pub mod exceptions;
pub mod idempotency;
pub mod leader;
pub mod pooler;
pub mod primary;
pub mod push;
pub mod refs;
mod release;
pub mod reports;
pub mod sync;
pub mod tenancy;
pub mod tls;
pub mod totals;
pub mod unit;
pub mod vacuum;

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

use crate::config::{DatabaseArgs, Pooler};

/// The migrations this binary knows.
///
/// `ignore_missing`: a database may hold migrations newer than this binary
/// (a rolling deploy, where a newer replica migrated first). Such a replica
/// still starts and serves, as long as every migration is additive (new
/// tables, columns with defaults, functions: docs/deploy.md says which
/// were); without it, sqlx refuses to start with `VersionMissing`.
pub static MIGRATOR: sqlx::migrate::Migrator = {
    let mut migrator = sqlx::migrate!();
    migrator.ignore_missing = true;
    migrator
};

/// SQLSTATEs that mean "this statement could not finish in time or the server
/// is going away": the link is sick, not the request.
const UNAVAILABLE_STATES: &[&str] = &[
    "57014", // query_canceled (statement_timeout)
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53300", // too_many_connections
    "55P03", // lock_not_available: waited lock_timeout, the database is congested
    // read_only_sql_transaction: the server is a hot standby (or was
    // demoted); the link is up but useless for writes until it points at
    // a primary again, which is a retry later, not a bug.
    "25006", "08000", "08003", "08006", "08001", "08004", // connection exceptions
    // protocol_violation: what PgBouncer answers with its own errors (no
    // server connection within query_wait_timeout, pool or server down),
    // then closes the connection: see `db::pooler`.
    "08P01",
];

/// SQLSTATEs where the same transaction, run again, will most likely succeed.
const CONTENTION_STATES: &[&str] = &[
    "40001", // serialization_failure
    "40P01", // deadlock_detected
];

/// numeric_value_out_of_range: a value (a sum cast back to int8, a total
/// plus its delta) does not fit its type. Said by the data, not the link.
const OUT_OF_RANGE_STATE: &str = "22003";

/// A pooled connection idle at least this long is pinged before it is used.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);
/// How long that ping may take before the connection is dropped for a new one.
const IDLE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("transaction collided with another: {0}")]
    Contention(#[source] sqlx::Error),
    /// A total the stored data adds up to cannot be represented.
    #[error("value out of range: {0}")]
    OutOfRange(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        let state = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        match (&err, state.as_deref()) {
            (_, Some(s)) if UNAVAILABLE_STATES.contains(&s) => DbError::Unavailable(err),
            (_, Some(s)) if CONTENTION_STATES.contains(&s) => DbError::Contention(err),
            (_, Some(OUT_OF_RANGE_STATE)) => DbError::OutOfRange(err),
            (
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_),
                _,
            ) => DbError::Unavailable(err),
            _ => DbError::Other(err),
        }
    }
}

impl DbError {
    /// The error an SQLSTATE and message reported as data stand for (a
    /// push of a group write, whose errors are caught one by one), sorted
    /// as the same error raised by a statement would be.
    pub fn from_sqlstate(code: &str, message: String) -> Self {
        let err = sqlx::Error::Protocol(format!("SQLSTATE {code}: {message}"));
        if UNAVAILABLE_STATES.contains(&code) {
            DbError::Unavailable(err)
        } else if CONTENTION_STATES.contains(&code) {
            DbError::Contention(err)
        } else if code == OUT_OF_RANGE_STATE {
            DbError::OutOfRange(err)
        } else {
            DbError::Other(err)
        }
    }

    /// An error of the same kind with the same message, for each of the
    /// requests one failure answers.
    pub fn same_kind(&self) -> Self {
        let err = || {
            let source = match self {
                DbError::Unavailable(e)
                | DbError::Contention(e)
                | DbError::OutOfRange(e)
                | DbError::Other(e) => e,
            };
            sqlx::Error::Protocol(source.to_string())
        };
        match self {
            DbError::Unavailable(_) => DbError::Unavailable(err()),
            DbError::Contention(_) => DbError::Contention(err()),
            DbError::OutOfRange(_) => DbError::OutOfRange(err()),
            DbError::Other(_) => DbError::Other(err()),
        }
    }

    /// The Postgres constraint a violation names, to map it to a client error.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Other(e) => e.as_database_error().and_then(|d| d.constraint()),
            _ => None,
        }
    }
}

/// The pool, set up with explicit limits and server-side timeouts.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    /// Which server of `DATABASE_URL` the pool uses ([`primary`]).
    primary: primary::Primary,
    /// Whether a unit of work must be a transaction ([`unit::Unit`]).
    pooler: Pooler,
}

impl Database {
    /// Connects lazily: the service starts and answers `/healthz` even when
    /// Postgres is down; queries fail fast with [`DbError::Unavailable`].
    ///
    /// `db_release_check_timeout` bounds the check a connection passes when
    /// it goes back to the pool ([`release`]).
    pub fn connect_lazy(args: &DatabaseArgs, db_release_check_timeout: Duration) -> Self {
        // Timeouts (statement, lock, and idle in transaction, so a stuck
        // client cannot hold locks forever) as startup options, or behind
        // a pooler as role settings: `pooler`.
        let primary = primary::Primary::new(
            args.database_url
                .clone()
                .map(|options| pooler::options_for(options, args)),
        );
        // A connection to a server `target_session_attrs` rules out is never
        // used; one opened before the pool moved to a new primary is retired.
        let (session_attrs, retire) = (primary.session_attrs(), primary.clone());
        let pool = PgPoolOptions::new()
            .after_connect(move |conn, _meta| Box::pin(primary::check_session(conn, session_attrs)))
            .max_connections(args.db_max_connections)
            .acquire_timeout(args.db_acquire_timeout)
            .max_lifetime(Some(args.db_max_lifetime))
            .idle_timeout(Some(args.db_idle_timeout))
            // sqlx pings every connection it hands out by default: a round
            // trip in front of every request. A connection returned a
            // moment ago answered the ping sqlx always makes on release, so
            // only one idle for a while (the server may have restarted
            // since) is checked before use.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let keep = retire.keeps(&meta);
                Box::pin(async move {
                    if !keep {
                        return Ok(false);
                    }
                    if meta.idle_for < IDLE_BEFORE_CHECK {
                        return Ok(true);
                    }
                    match tokio::time::timeout(IDLE_CHECK_TIMEOUT, conn.ping()).await {
                        Ok(Ok(())) => Ok(true),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Ok(false),
                    }
                })
            });
        // See [`release`]: a bounded check that the connection is sound and
        // outside any transaction. sqlx runs it in a task of its own, so it
        // is given the recorder of the application that builds the pool.
        let metrics = crate::metrics::current();
        let pool = pool.after_release(move |conn, _meta| {
            let check = release::check_returned(conn, db_release_check_timeout);
            match &metrics {
                Some(metrics) => Box::pin(metrics.scope(check)),
                None => check,
            }
        });
        Self {
            pool: pool.connect_lazy_with(primary.current()),
            primary,
            pooler: args.db_pooler,
        }
    }

    /// The options new connections are made with now (for the health probe).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.primary.current()
    }

    pub fn primary(&self) -> &primary::Primary {
        &self.primary
    }

    /// The pooler between the pool and Postgres, if any.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// A transaction on a pooled connection. The wait is recorded as acquire
    /// latency; it includes the BEGIN round trip, because sqlx offers no
    /// public way to begin a `'static` transaction on a connection acquired
    /// separately (and that round trip is waiting before the first statement
    /// all the same).
    ///
    /// A new connection that could not set up TLS is tried again at once
    /// in plain text where `sslmode=prefer` allows it ([`tls`]), as libpq
    /// would have within the one connect.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, DbError> {
        let started = Instant::now();
        let tx = match self.pool.begin().await {
            Err(e) if self.primary.fall_back_after(&self.pool, &e) => self.pool.begin().await,
            tx => tx,
        };
        record_acquire(started);
        Ok(tx?)
    }

    /// A pooled connection; with [`Database::begin`]'s plain-text fallback.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, DbError> {
        let started = Instant::now();
        let conn = match self.pool.acquire().await {
            Err(e) if self.primary.fall_back_after(&self.pool, &e) => self.pool.acquire().await,
            conn => conn,
        };
        record_acquire(started);
        Ok(conn?)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Failed attempts are recorded too: a pool that times out shows as waits
/// of `TILLSYNC_DB_ACQUIRE_TIMEOUT`, which is what requests went through.
fn record_acquire(started: Instant) {
    metrics::histogram!("tillsync_db_acquire_seconds").record(started.elapsed().as_secs_f64());
}

/// Creates the database named in `options` if it does not exist, then applies
/// every migration in `migrations/` that has not been applied yet. Both
/// connections are made as libpq would ([`tls::connect`]).
pub async fn create_and_migrate(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    // Same server, same credentials, but the maintenance database.
    let (mut admin, _) = tls::connect(&options.clone().database("postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let create = format!("create database \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&create).execute(&mut admin).await {
            Ok(_) => tracing::info!(database = %name, "created database {name}"),
            // Two instances starting at once: the other one created it.
            Err(e) if is_duplicate_database(&e) => {
                tracing::debug!(database = %name, "database {name} was created by another instance");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Saying goodbye can fail (the peer, or a proxy on the way, may already
    // have closed its end: seen as "Broken pipe" behind the test suite's
    // fault proxy); the database exists by now, so that is no reason to stop.
    if let Err(e) = admin.close().await {
        tracing::debug!(error = %e, "closing the maintenance connection failed: {e}");
    }

    // Replicas migrating at once are safe: sqlx's migrator takes a
    // session-level `pg_advisory_lock` keyed on the database name before it
    // even creates `_sqlx_migrations`, so one applies the migrations while
    // the others wait, then find nothing left to apply.
    //
    // Postgres reports "relation _sqlx_migrations already exists, skipping"
    // as a NOTICE on every run after the first: not news, and sqlx would
    // log it at INFO next to what the command prints.
    //
    // One connection, not a pool of one: a pool would connect inside sqlx,
    // without `prefer`'s fallback.
    let quiet = options
        .clone()
        .options([("client_min_messages", "warning")]);
    let (mut conn, _) = tls::connect(&quiet).await?;
    MIGRATOR.run(&mut conn).await?;
    // Applied by now; as above, a failed goodbye is no reason to stop.
    let _ = conn.close().await;
    Ok(())
}

/// Whether `create database` failed because the database exists by now.
/// 42P04 (duplicate_database) when it existed before the statement began;
/// 23505 (unique_violation on `pg_database_datname_index`) when another
/// session created it concurrently and committed first, which is what
/// replicas starting together on a fresh server see.
fn is_duplicate_database(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "42P04" || c == "23505")
}
