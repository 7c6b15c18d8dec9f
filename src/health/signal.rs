//! What finished database work says about the database, as a typed value:
//! the limit learns from it and a link failure wakes the probe. Every kind
//! of work the gate runs says it through `Judged`, so no caller classifies
//! outcomes by hand or by matching error strings.

use crate::db::DbError;

/// What one piece of admitted work says about the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// It finished: its latency is what the limit learns from.
    Healthy,
    /// It collided with concurrent work (deadlock, serialization failure):
    /// the database is busy, the link is fine. The limit shrinks.
    Contended,
    /// The link failed, or the work did not finish in time: the limit
    /// shrinks and the probe checks the link at once.
    LinkFailure,
    /// It ended in a way that says nothing about the database (a client
    /// error, a bug): nothing is learned.
    Silent,
}

/// A result of database work that can say what it means for the database.
pub trait Judged {
    fn signal(&self) -> Signal;
}

impl Judged for DbError {
    fn signal(&self) -> Signal {
        match self {
            DbError::Unavailable(_) => Signal::LinkFailure,
            DbError::Contention(_) => Signal::Contended,
            DbError::OutOfRange(_) | DbError::Other(_) => Signal::Silent,
        }
    }
}

impl<T, E: Judged> Judged for Result<T, E> {
    fn signal(&self) -> Signal {
        match self {
            Ok(_) => Signal::Healthy,
            Err(e) => e.signal(),
        }
    }
}
