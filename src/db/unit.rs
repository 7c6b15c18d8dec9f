//! A connection for a unit of work that opens no transaction of its own
//! (a token lookup, a list, a single insert): [`Database::unit`](super::Database::unit).
//!
//! Straight to Postgres, or through a session pooler, it is a pooled
//! connection and costs nothing more. Behind PgBouncer 1.18 in transaction
//! mode it is a transaction: sqlx parses a statement and binds it in two
//! round trips, each ending in a Sync, and outside a transaction PgBouncer
//! may give the server connection to another client in between, so the
//! bind lands where the statement was never prepared (or where another
//! client's statement of that name is). Inside a transaction the server
//! connection stays lent to this client until `finish` commits. Only that
//! mode pays the BEGIN and COMMIT round trips ([`super::pooler`]).
//!
//! A writer that runs one unit after another (the group committer) keeps
//! its connection between them ([`Kept`]): each time a connection goes back
//! to the pool it costs two round trips, the release check ([`super::release`])
//! and sqlx's own ping, which for a group of one or two pushes is as many
//! round trips as the group's write itself. A kept connection is never
//! inside a stray transaction (its units are not cancelled half-way: the
//! committer's writes do not belong to a request), and it goes back
//! through the pool's checks whenever a unit on it fails, the pool moved to
//! another server, or it has been kept for `KEEP_AT_MOST`.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Postgres, Transaction};

use super::{Database, DbError};
use crate::config::Pooler;

/// Statements run on it through `&mut unit` like on a connection; work
/// that writes must end with [`Unit::finish`], or, in transaction mode,
/// it is rolled back.
pub enum Unit<'c> {
    Connection(PoolConnection<Postgres>),
    Kept(&'c mut PgConnection),
    Transaction(Transaction<'c, Postgres>),
}

/// How long a writer keeps a connection out of the pool at most; then it
/// goes back through the pool's checks (its lifetime, the server it leads
/// to) and the writer takes another.
const KEEP_AT_MOST: Duration = Duration::from_secs(10);

/// A connection kept out of the pool between units of work (see the
/// module). Dropping it returns it to the pool.
pub struct Kept {
    conn: PoolConnection<Postgres>,
    since: Instant,
    pooler: Pooler,
}

impl Database {
    /// A connection for one unit of work (see the module).
    pub async fn unit(&self) -> Result<Unit<'static>, DbError> {
        Ok(match self.pooler {
            Pooler::Transaction => Unit::Transaction(self.begin().await?),
            Pooler::None | Pooler::Session => Unit::Connection(self.acquire().await?),
        })
    }

    /// A connection to keep between units of work.
    pub async fn keep(&self) -> Result<Kept, DbError> {
        Ok(Kept {
            conn: self.acquire().await?,
            since: Instant::now(),
            pooler: self.pooler,
        })
    }

    /// Whether `kept` may run another unit: false once it has been kept
    /// too long or the pool has moved to another server since it was taken.
    pub fn still_keeps(&self, kept: &Kept) -> bool {
        kept.since.elapsed() < KEEP_AT_MOST && !self.primary.moved_since(kept.since)
    }
}

impl Kept {
    /// A unit of work on the kept connection.
    pub async fn unit(&mut self) -> Result<Unit<'_>, DbError> {
        Ok(match self.pooler {
            Pooler::Transaction => Unit::Transaction(self.conn.begin().await?),
            Pooler::None | Pooler::Session => Unit::Kept(&mut self.conn),
        })
    }
}

impl Unit<'_> {
    /// Ends the unit: commits it when it is a transaction.
    pub async fn finish(self) -> Result<(), DbError> {
        match self {
            Unit::Connection(_) | Unit::Kept(_) => Ok(()),
            Unit::Transaction(tx) => Ok(tx.commit().await?),
        }
    }
}

impl Deref for Unit<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Unit::Connection(conn) => conn,
            Unit::Kept(conn) => conn,
            Unit::Transaction(tx) => tx,
        }
    }
}

impl DerefMut for Unit<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Unit::Connection(conn) => conn,
            Unit::Kept(conn) => conn,
            Unit::Transaction(tx) => tx,
        }
    }
}
