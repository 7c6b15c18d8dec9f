//! A connection for a unit of work that opens no transaction of its own
//! (a token lookup, a list, a single insert): `Database::unit`.
//!
//! Straight to Postgres, or through a session pooler, it is a pooled
//! connection and costs nothing more. Behind PgBouncer 1.18 in transaction
//! mode it is a transaction: sqlx parses a statement and binds it in two
//! round trips, each ending in a Sync, and outside a transaction PgBouncer
//! may give the server connection to another client in between, so the
//! bind lands where the statement was never prepared (or where another
//! client's statement of that name is). Inside a transaction the server
//! connection stays lent to this client until `finish` commits. Only that
//! mode pays the BEGIN and COMMIT round trips (`db::pooler`).

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, Transaction};

use super::pooler::Pooler;
use super::{Database, DbError};

/// Statements run on it through `&mut unit` like on a connection; work
/// that writes must end with [`Unit::finish`], or, in transaction mode,
/// it is rolled back.
pub enum Unit {
    Connection(PoolConnection<Postgres>),
    Transaction(Transaction<'static, Postgres>),
}

impl Database {
    /// A connection for one unit of work (see the module).
    pub async fn unit(&self) -> Result<Unit, DbError> {
        Ok(match self.pooler {
            Pooler::Transaction => Unit::Transaction(self.begin().await?),
            Pooler::None | Pooler::Session => Unit::Connection(self.acquire().await?),
        })
    }
}

impl Unit {
    /// Ends the unit: commits it when it is a transaction.
    pub async fn finish(self) -> Result<(), DbError> {
        match self {
            Unit::Connection(_) => Ok(()),
            Unit::Transaction(tx) => Ok(tx.commit().await?),
        }
    }
}

impl Deref for Unit {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Unit::Connection(conn) => conn,
            Unit::Transaction(tx) => tx,
        }
    }
}

impl DerefMut for Unit {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Unit::Connection(conn) => conn,
            Unit::Transaction(tx) => tx,
        }
    }
}
