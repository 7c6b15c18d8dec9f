//! The raw phase, the floor the HTTP path is held against: Postgres itself
//! writing as many fresh rows per transaction as a push carries, into a lean
//! table (uuid key, a few columns, one jsonb), from as many connections as
//! there were tills. One transaction per batch: for batch 1 a single-row
//! `INSERT ... VALUES` committed alone, above that one
//! `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`, autocommit.

use std::sync::Arc;
use std::time::Instant;

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::Phase;
use crate::body::sale_json;
use crate::measure::{Clock, Measured, Tally, measure};

/// The lean table: what the issue defines the floor with, not tillsync's
/// `sales` (which has more columns and indexes).
const CREATE_TABLE: &str = "create table ingest_rows (
    id uuid primary key,
    till integer not null,
    seq bigint not null,
    total_minor bigint not null,
    stored_at timestamptz not null default now(),
    body jsonb not null
)";

const INSERT_ONE: &str = "insert into ingest_rows (id, till, seq, total_minor, body)
    values ($1, $2, $3, $4, $5::jsonb)
    on conflict do nothing";

const INSERT_BATCH: &str = "insert into ingest_rows (id, till, seq, total_minor, body)
    select id, $2, seq, total_minor, body::jsonb
    from unnest($1::uuid[], $3::int8[], $4::int8[], $5::text[]) as r(id, seq, total_minor, body)
    on conflict do nothing";

/// The rows' contents but their ids and seqs: the same sales the HTTP
/// phase pushes (only the ids need to be fresh for the rows to be new).
struct Rows {
    totals: Vec<i64>,
    bodies: Vec<String>,
}

impl Rows {
    fn new(batch: usize) -> Self {
        let bodies: Vec<String> = (0..batch)
            .map(|position| sale_json(position, Uuid::new_v4(), position as u64 + 1))
            .collect();
        let totals = (0..batch).map(|p| 1000 + (p % 500) as i64).collect();
        Self { totals, bodies }
    }
}

/// `database_url` names an empty database, created by the caller.
pub async fn raw_phase(database_url: &str, phase: Phase) -> Measured {
    let mut setup = PgConnection::connect(database_url)
        .await
        .expect("the bench database");
    setup.execute(CREATE_TABLE).await.expect("the lean table");
    setup.close().await.ok();
    let mut connections = Vec::with_capacity(phase.tills);
    for _ in 0..phase.tills {
        connections.push(
            PgConnection::connect(database_url)
                .await
                .expect("a connection"),
        );
    }
    let rows = Arc::new(Rows::new(phase.batch));
    let clock = Clock::start(phase.warmup, phase.measure);
    let workers = connections
        .into_iter()
        .zip(0..)
        .map(|(mut conn, till): (PgConnection, i32)| {
            let rows = rows.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut seq = 1;
                while clock.running() {
                    let began = Instant::now();
                    insert(&mut conn, &rows, till, seq).await;
                    seq += rows.bodies.len() as i64;
                    tally.record(&clock, began);
                }
                conn.close().await.ok();
                tally
            })
        })
        .collect();
    measure(clock, phase.batch, None, workers).await
}

/// One transaction of fresh rows, `seq` onwards; asserts every row is new.
async fn insert(conn: &mut PgConnection, rows: &Rows, till: i32, seq: i64) {
    let batch = rows.bodies.len();
    let inserted = if batch == 1 {
        sqlx::query(INSERT_ONE)
            .bind(Uuid::new_v4())
            .bind(till)
            .bind(seq)
            .bind(rows.totals[0])
            .bind(&rows.bodies[0])
            .execute(&mut *conn)
            .await
    } else {
        let ids: Vec<Uuid> = (0..batch).map(|_| Uuid::new_v4()).collect();
        let seqs: Vec<i64> = (seq..seq + batch as i64).collect();
        sqlx::query(INSERT_BATCH)
            .bind(ids)
            .bind(till)
            .bind(seqs)
            .bind(&rows.totals)
            .bind(&rows.bodies)
            .execute(&mut *conn)
            .await
    };
    let inserted = inserted.expect("the insert").rows_affected();
    assert_eq!(inserted, batch as u64, "every row is fresh");
}
