//! VACUUM of the two tables the service uses as queues: store deltas (the
//! fold deletes each about a second after a push wrote it) and pending
//! voids and refunds (the resolver deletes each once resolved). Both are
//! read from the head of an index, where the deleted rows are; until a
//! vacuum takes them out, every read walks past them. Autovacuum looks at a
//! table once a minute at best (`autovacuum_naptime`) and only past 20 % of
//! its rows dead, and may be off (as on this project's CI machine), so the
//! jobs that delete the rows vacuum their table themselves
//! ([`crate::jobs::fold`], [`crate::jobs::resolve`]).

use sqlx::{Executor, PgConnection};

use super::DbError;

/// A table the service churns like a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Churned {
    StoreDeltas,
    PendingRefs,
}

/// Vacuums and analyzes `table` (its statistics are what the planner
/// plans the jobs' statements with: a table never analyzed looks empty),
/// unless a vacuum of it runs already (another
/// replica's, or autovacuum's). A statement without parameters goes in the
/// simple query protocol: one message outside any transaction, as VACUUM
/// must be, and as a transaction pooler passes it through.
pub async fn vacuum(conn: &mut PgConnection, table: Churned) -> Result<(), DbError> {
    let statement = match table {
        Churned::StoreDeltas => "vacuum (analyze, skip_locked) store_day_deltas",
        Churned::PendingRefs => "vacuum (analyze, skip_locked) pending_refs",
    };
    conn.execute(statement).await?;
    Ok(())
}
