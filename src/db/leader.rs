//! Which replica runs a background job now. Every replica runs the fold of
//! store totals, the purge of stored responses and the resolver of voids
//! and refunds, but two replicas doing the same job at once only contend
//! (the fold's upserts could deadlock, the purges repeat each other's work)
//! or worse (two resolvers could both move one sale's totals). Each step of a job therefore runs
//! in a transaction that first takes the job's transaction-level advisory
//! lock with `pg_try_advisory_xact_lock`: the replica that gets it does the
//! step, the others skip it. A transaction-level lock is released at commit
//! or rollback, so it never outlives the step, cannot leak when a replica
//! dies, and works through a pooler in transaction mode (a session lock
//! would stay on whichever server connection the pooler had lent).

use sqlx::PgConnection;

use super::DbError;

/// The first key of every job lock: the two-key form of the advisory lock
/// is a space apart from the one-key form that sqlx's migrator and the
/// role-timeouts lock ([`super::pooler`]) take, so a job never waits on
/// them.
const NAMESPACE: i32 = 0x746c_7379; // "tlsy"

/// A background job only one replica runs at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The fold of store deltas into store totals ([`crate::jobs::fold`]).
    Fold = 1,
    /// The purge of stored responses past retention ([`crate::jobs::purge`]).
    Purge = 2,
    /// The resolver of voids and refunds ([`crate::jobs::resolve`]).
    Resolve = 3,
}

impl Job {
    pub const ALL: [Job; 3] = [Job::Fold, Job::Purge, Job::Resolve];

    /// The `job` label of `tillsync_background_led_elsewhere_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Fold => "fold",
            Job::Purge => "purge",
            Job::Resolve => "resolve",
        }
    }
}

/// Takes `job`'s lock for the rest of the transaction `conn` is in, if no
/// other replica holds it; true if this one leads the job now. Outside a
/// transaction the lock would end with the statement: always call inside one.
/// A step left to another replica is counted in
/// `tillsync_background_led_elsewhere_total`.
pub async fn lead(conn: &mut PgConnection, job: Job) -> Result<bool, DbError> {
    let locked = sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock($1, $2) as "locked!""#,
        NAMESPACE,
        job as i32
    )
    .fetch_one(conn)
    .await?;
    if !locked {
        metrics::counter!("tillsync_background_led_elsewhere_total", "job" => job.as_str())
            .increment(1);
    }
    Ok(locked)
}
