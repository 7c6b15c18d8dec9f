//! The exactly-once verdict of the HTTP phase: after the last push is
//! answered, what the database holds for each till must be exactly what
//! the service said it committed. A push answered 200 with its whole batch
//! accepted is committed; a refused one (503) is sent again with the same
//! sales. Per till, these must all equal the sales answered as accepted:
//! the sales stored, the till's sync row (`sales_stored`, and its
//! contiguous prefix, as every till sends seqs 1, 2, 3, ...), and the count
//! in its day totals, which every push updates in its own transaction. A
//! lost sale makes one of them smaller, a sale stored or counted twice
//! larger.

use std::collections::HashMap;
use std::fmt;

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// What the database holds for one till.
#[derive(Debug, sqlx::FromRow)]
struct Held {
    terminal_id: Uuid,
    stored: i64,
    sales_stored: i64,
    contiguous_through_seq: i64,
    counted: i64,
}

/// The outcome over all tills of a phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verdict {
    /// Sales answered as committed, over all tills.
    pub committed: i64,
    /// Tills whose stored sales, sync row or totals fall short of it.
    pub tills_short: usize,
    /// Tills holding or counting more than it.
    pub tills_over: usize,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.tills_short == 0 && self.tills_over == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            write!(f, "passed ({} sales)", self.committed)
        } else {
            write!(
                f,
                "FAILED: {} tills short, {} tills over ({} sales answered as committed)",
                self.tills_short, self.tills_over, self.committed
            )
        }
    }
}

/// Checks the database against `committed`: each till's sales answered as
/// accepted. A till the database does not know counts as short.
pub async fn check(database_url: &str, committed: &HashMap<Uuid, i64>) -> Verdict {
    let mut conn = PgConnection::connect(database_url)
        .await
        .expect("the bench database");
    let held: Vec<Held> = sqlx::query_as(
        "select y.terminal_id,
                (select count(*) from sales s
                  where s.merchant_id = y.merchant_id and s.terminal_id = y.terminal_id) as stored,
                y.sales_stored, y.contiguous_through_seq,
                (select coalesce(sum(d.sales_count), 0)::int8
                   from (select sales_count from sales_day_totals
                          where merchant_id = y.merchant_id and terminal_id = y.terminal_id
                         union all
                         select sales_count from store_day_deltas
                          where merchant_id = y.merchant_id and terminal_id = y.terminal_id) d)
                  as counted
           from terminal_sync y",
    )
    .fetch_all(&mut conn)
    .await
    .expect("what the bench database holds");
    conn.close().await.ok();
    let held: HashMap<Uuid, Held> = held.into_iter().map(|h| (h.terminal_id, h)).collect();
    let mut verdict = Verdict::default();
    for (till, &sales) in committed {
        verdict.committed += sales;
        let figures = held
            .get(till)
            .map(|h| {
                [
                    h.stored,
                    h.sales_stored,
                    h.contiguous_through_seq,
                    h.counted,
                ]
            })
            .unwrap_or_default();
        if figures.iter().any(|&n| n < sales) {
            verdict.tills_short += 1;
        } else if figures.iter().any(|&n| n > sales) {
            verdict.tills_over += 1;
        }
    }
    verdict
}
