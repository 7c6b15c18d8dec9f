//! What a push's totals deltas are checked against as its sales are
//! accepted ([`super::decide`]): the deltas alone, or (after the database
//! refused the push's totals as out of range) the till's stored totals plus
//! them, read with the rest of the push ([`super::read`]).

use std::collections::{BTreeSet, HashSet};

use chrono::NaiveDate;

use crate::db::{DbError, totals};
use crate::domain::sale::{Rejection, Sale};
use crate::domain::terminal::Terminal;
use crate::domain::totals::StoredTotals;

/// What the batch's totals deltas are checked against as sales are accepted.
pub struct TotalsCheck {
    /// Read the till's stored totals and check each total plus its delta.
    /// Off, only the deltas themselves are checked and the database has the
    /// last word (an upsert that overflows fails the batch, which is then
    /// pushed again with this on): a batch costs no extra read.
    against_stored: bool,
    stored: StoredTotals,
    loaded: HashSet<NaiveDate>,
}

impl TotalsCheck {
    pub fn new(against_stored: bool) -> Self {
        Self {
            against_stored,
            stored: StoredTotals::default(),
            loaded: HashSet::new(),
        }
    }

    /// The stored totals read so far (none unless checking against them).
    pub fn stored(&self) -> &StoredTotals {
        &self.stored
    }

    /// Reads the stored totals of the dates these sales fall on, unless
    /// read already.
    pub async fn load(
        &mut self,
        tx: &mut sqlx::PgConnection,
        terminal: &Terminal,
        sales: &[&Sale],
    ) -> Result<(), DbError> {
        if !self.against_stored {
            return Ok(());
        }
        let dates: BTreeSet<NaiveDate> = sales
            .iter()
            .map(|s| terminal.calendar.business_date(&s.occurred_at))
            .filter(|d| !self.loaded.contains(d))
            .collect();
        if dates.is_empty() {
            return Ok(());
        }
        let dates: Vec<NaiveDate> = dates.into_iter().collect();
        let more =
            totals::stored_on(tx, terminal.merchant_id, terminal.terminal_id, &dates).await?;
        self.stored.extend(more);
        self.loaded.extend(dates);
        Ok(())
    }
}

pub fn total_out_of_range() -> Rejection {
    Rejection::new(
        "total_out_of_range",
        "this sale would take a total of this terminal beyond the largest amount that can be stored; it was not stored",
    )
}
