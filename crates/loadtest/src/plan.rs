//! The store floor: which till each customer goes to, what is rung up there
//! (a sale, a refund, a void, and of which earlier sale, on whichever till of
//! the store it was rung up), and when the store's incidents happen: a till
//! that loses its link for a while, one restored from an old backup, one
//! retired while it still holds unsent sales.
//!
//! Pure and seeded: the same seed, fleet size and settings give the same
//! tills, tickets and incidents, in the same order. Incidents are placed at
//! fixed fractions of the load phase and taken in the order of the arrival
//! schedule (never of the wall clock), so they fall between the same
//! arrivals on every run. Sale ids are the exception: always new, so a rerun
//! never collides with what an earlier run stored.

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::generator::{Target, Ticket};

/// How many recent plain sales of each till stay candidates for a refund
/// with a receipt or a void.
const RECENT_SALES: usize = 32;
/// Most refunds name the sale they refund; the rest are returns without a receipt.
const REFUND_WITH_RECEIPT_SHARE: f64 = 0.7;

/// When the incidents happen, as fractions of the load phase.
const LINK_DOWN_AT: f64 = 0.30;
const LINK_BACK_AT: f64 = 0.60;
const RESTORE_AT: f64 = 0.50;
/// The till to be retired loses its link first, so it holds a queue.
const RETIRING_LINK_DOWN_AT: f64 = 0.55;
const RETIRE_AT: f64 = 0.75;

/// What the store does besides selling, as set on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreBehaviour {
    /// Share of customers whose ticket is a void of an earlier sale.
    pub void_share: f64,
    /// Share of customers bringing something back.
    pub refund_share: f64,
    /// Share of voids and refunds with a receipt rung up on another till
    /// than their sale (when that till has a recent sale to name).
    pub cross_till_share: f64,
    /// Whether one till loses its link from 30% to 60% of the load.
    pub offline_till: bool,
    /// How far back one till's seq counter goes when it is restored from a
    /// backup at half-time; 0 for no restore.
    pub restore_rewind: u32,
    /// Whether one till is retired at 75% of the load, holding a queue.
    pub retire_till: bool,
}

/// Something that happens to one till (by its number) during the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incident {
    /// The till stops pushing; it goes on ringing sales up into its queue.
    LinkDown(usize),
    LinkUp(usize),
    /// The till is restored from a backup: its seq counter goes back.
    Restore {
        till: usize,
        rewind: i64,
    },
    /// The till rings nothing more and is retired through the API; its link
    /// comes back once that is done, and it pushes what it holds.
    Retire(usize),
}

/// One customer at one till.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub till: usize,
    pub sale_id: Uuid,
    pub ticket: Ticket,
}

pub struct Planner {
    rng: StdRng,
    behaviour: StoreBehaviour,
    /// Per till, its recent plain sales not yet refunded or voided.
    recent: Vec<VecDeque<Target>>,
    /// Per till, how many sales it rang up: the journal entry of the next.
    rung: Vec<usize>,
    /// The tills customers still go to (not retired).
    active: Vec<usize>,
    incidents: VecDeque<(Duration, Incident)>,
}

impl Planner {
    pub fn new(seed: u64, tills: usize, behaviour: StoreBehaviour, load: Duration) -> Self {
        assert!(tills > 0, "a store has at least one till");
        Self {
            rng: StdRng::seed_from_u64(seed.wrapping_add(1)),
            behaviour,
            recent: vec![VecDeque::with_capacity(RECENT_SALES); tills],
            rung: vec![0; tills],
            active: (0..tills).collect(),
            incidents: incidents(tills, &behaviour, load).into(),
        }
    }

    /// When the next incident is due, from the start of the load.
    pub fn next_incident_at(&self) -> Option<Duration> {
        self.incidents.front().map(|(at, _)| *at)
    }

    /// The next incident, if it is due at `at`; a retirement takes the
    /// till out of the choice at once.
    pub fn incident_due(&mut self, at: Duration) -> Option<Incident> {
        if self.next_incident_at()? > at {
            return None;
        }
        let (_, incident) = self.incidents.pop_front()?;
        if let Incident::Retire(till) = incident {
            self.active.retain(|&t| t != till);
        }
        Some(incident)
    }

    /// The next customer: a till still in service, and what is rung up.
    pub fn arrival(&mut self) -> Arrival {
        let till = self.active[self.rng.random_range(0..self.active.len())];
        let roll: f64 = self.rng.random();
        let content: u64 = self.rng.random();
        let StoreBehaviour {
            void_share,
            refund_share,
            ..
        } = self.behaviour;
        let ticket = if roll < void_share {
            self.take_target(till).map(|of| Ticket::Void { of })
        } else if roll < void_share + refund_share {
            let of = if self.rng.random_bool(REFUND_WITH_RECEIPT_SHARE) {
                self.take_target(till)
            } else {
                None
            };
            Some(Ticket::Refund { content, of })
        } else {
            None
        };
        let ticket = ticket.unwrap_or(Ticket::Sale { content });
        let sale_id = Uuid::new_v4();
        let entry = self.rung[till];
        self.rung[till] += 1;
        if let Ticket::Sale { content } = ticket {
            let recent = &mut self.recent[till];
            if recent.len() == RECENT_SALES {
                recent.pop_front();
            }
            recent.push_back(Target {
                sale_id,
                content,
                till,
                entry,
            });
        }
        Arrival {
            till,
            sale_id,
            ticket,
        }
    }

    /// A recent sale for a void or refund at `till` to name, which is no
    /// longer a candidate afterwards (a sale is voided or refunded at most
    /// once). On another till as often as asked, falling back to this one.
    fn take_target(&mut self, till: usize) -> Option<Target> {
        let tills = self.recent.len();
        let mut choices = vec![till];
        if tills > 1 && self.rng.random_bool(self.behaviour.cross_till_share) {
            let other = self.rng.random_range(0..tills - 1);
            choices.insert(0, if other >= till { other + 1 } else { other });
        }
        for candidate in choices {
            let recent = &mut self.recent[candidate];
            if !recent.is_empty() {
                let index = self.rng.random_range(0..recent.len());
                return recent.remove(index);
            }
        }
        None
    }
}

/// The incidents of a run, in time order. Each falls on a till of its own
/// when the store has at least three: the first till loses its link, the
/// second is restored, the last is retired (never the only one).
pub fn incidents(
    tills: usize,
    behaviour: &StoreBehaviour,
    load: Duration,
) -> Vec<(Duration, Incident)> {
    let at = |fraction: f64| load.mul_f64(fraction);
    let mut incidents = Vec::new();
    if behaviour.offline_till {
        incidents.push((at(LINK_DOWN_AT), Incident::LinkDown(0)));
        incidents.push((at(LINK_BACK_AT), Incident::LinkUp(0)));
    }
    if behaviour.restore_rewind > 0 {
        let till = 1 % tills;
        let rewind = i64::from(behaviour.restore_rewind);
        incidents.push((at(RESTORE_AT), Incident::Restore { till, rewind }));
    }
    if behaviour.retire_till && tills > 1 {
        let till = tills - 1;
        incidents.push((at(RETIRING_LINK_DOWN_AT), Incident::LinkDown(till)));
        incidents.push((at(RETIRE_AT), Incident::Retire(till)));
    }
    // Stable: incidents at the same moment keep the order above.
    incidents.sort_by_key(|(at, _)| *at);
    incidents
}

#[cfg(test)]
mod tests;
