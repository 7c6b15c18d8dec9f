//! What the store floor did during the run, counted from the tills'
//! journals: how many voids and refunds named a sale of another till, how
//! many reached the server before their sale, and how each incident went.
//! It shows the behaviours were exercised, not whether the server got them
//! right (that is the verdict's).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::generator::Kind;
use crate::verify::{ExpectedSale, ExpectedTill, Fleet};

#[derive(Debug, Default, Serialize)]
pub struct Incidents {
    pub voids: u64,
    /// Refunds that name the sale they refund (with a receipt).
    pub refunds_naming_a_sale: u64,
    /// Of those voids and refunds, rung up on another till than their sale.
    pub on_another_till: u64,
    /// Voids and refunds the server acknowledged before their sale was
    /// first sent (or whose sale was never sent).
    pub stored_before_their_sale: u64,
    /// Voids a till pushed ahead of its own sale, in a push of their own.
    pub voids_pushed_ahead: u64,
    /// The till that lost its link for a while.
    pub offline_till: Option<Uuid>,
    pub restored_till: Option<RestoredTill>,
    pub retired_till: Option<RetiredTill>,
}

#[derive(Debug, Serialize)]
pub struct RestoredTill {
    pub terminal_id: Uuid,
    /// How far its seq counter went back.
    pub rewind: i64,
    /// Seqs it used for two (or more) different sales.
    pub seqs_reused: u64,
}

#[derive(Debug, Serialize)]
pub struct RetiredTill {
    pub terminal_id: Uuid,
    /// As the server answered; `None` when the retirement failed.
    pub retired_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Sales it held unsent when it was retired.
    pub queued_at_retirement: u64,
    /// Of its sales, those first acknowledged after the retirement.
    pub acknowledged_after: u64,
}

impl Incidents {
    pub fn of(fleet: &Fleet) -> Self {
        let mut incidents = Incidents::default();
        let rung_on: HashMap<Uuid, (usize, &ExpectedSale)> = fleet
            .tills
            .iter()
            .flat_map(|t| t.sales.iter().map(move |s| (s.sale_id, (t.number, s))))
            .collect();
        for till in &fleet.tills {
            incidents.voids_pushed_ahead += till.voids_pushed_ahead;
            for sale in &till.sales {
                incidents.count_reference(till.number, sale, &rung_on);
            }
            if till.link_lost && till.retirement.is_none() {
                incidents.offline_till = Some(till.terminal_id);
            }
            if let Some(rewind) = till.restored_by {
                incidents.restored_till = Some(RestoredTill {
                    terminal_id: till.terminal_id,
                    rewind,
                    seqs_reused: seqs_reused(till),
                });
            }
            incidents.retired_till = incidents.retired_till.or_else(|| retired(till));
        }
        incidents
    }

    fn count_reference(
        &mut self,
        till: usize,
        sale: &ExpectedSale,
        rung_on: &HashMap<Uuid, (usize, &ExpectedSale)>,
    ) {
        let Some(target) = sale.refers_to_sale_id else {
            return;
        };
        match sale.kind {
            Kind::Void => self.voids += 1,
            Kind::Refund => self.refunds_naming_a_sale += 1,
            Kind::Sale => return,
        }
        let Some(&(target_till, target)) = rung_on.get(&target) else {
            return;
        };
        if target_till != till {
            self.on_another_till += 1;
        }
        let first = match (sale.first_stored, target.first_sent) {
            (Some(stored), Some(sent)) => stored < sent,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.stored_before_their_sale += u64::from(first);
    }
}

fn seqs_reused(till: &ExpectedTill) -> u64 {
    let mut seen = HashSet::new();
    let reused: HashSet<i64> = till
        .sales
        .iter()
        .filter(|s| !seen.insert(s.seq))
        .map(|s| s.seq)
        .collect();
    reused.len() as u64
}

fn retired(till: &ExpectedTill) -> Option<RetiredTill> {
    let retirement = till.retirement.as_ref()?;
    let acknowledged_after = till
        .sales
        .iter()
        .filter(|s| s.first_stored.is_some_and(|at| at >= retirement.answered))
        .count() as u64;
    Some(RetiredTill {
        terminal_id: till.terminal_id,
        retired_at: retirement.retired_at.as_ref().ok().copied(),
        error: retirement.retired_at.as_ref().err().cloned(),
        queued_at_retirement: retirement.queued,
        acknowledged_after,
    })
}
