//! A till's memory: the journal of every sale it rang up, with what it
//! knows about each (queued, being sent, stored, refused), and its offline
//! queue. Plain bookkeeping, no I/O: the till's loop (`till.rs`) does the
//! talking and feeds the answers in here.
//!
//! Entries are kept in the order they were rung up, and a sale's seq is its
//! own field, not its place: a till restored from a backup hands out seqs
//! it already used, for new, different sales.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{BatchResponse, Failure, SyncView};
use super::generator::{self, Generated, Shop, Ticket};
use super::verify::{ExpectedSale, Fate};

/// The one rejection a resend can get past (the till's clock was ahead):
/// what a server that does not say `retryable` means by it.
const RETRYABLE_CODE: &str = "occurred_at_in_future";

pub struct Journal {
    /// This till's number on the store floor, to tell its own sales from
    /// those of other tills when a void names one.
    till: usize,
    /// Whether a void of a sale still on this queue is pushed ahead of it.
    voids_ahead: bool,
    /// The store its sales are built for.
    shop: Shop,
    entries: Vec<Entry>,
    /// The seq the next sale gets; it goes back when the till is restored.
    next_seq: i64,
    /// Entries waiting to be pushed, oldest first.
    queue: VecDeque<usize>,
    /// Voids pushed before the rest of the queue, in a push of their own:
    /// each names a sale still on the queue.
    ahead: Vec<usize>,
    /// How many voids went ahead of their sale.
    pushed_ahead: u64,
}

struct Entry {
    sale_id: Uuid,
    seq: i64,
    ticket: Ticket,
    /// When the customer was served: the sale's `occurred_at`.
    rung_up_at: DateTime<Utc>,
    arrived_at: Instant,
    /// Built when first needed (to be sent), not when rung up: under heavy
    /// overload most sales wait in the queue for the whole load, and
    /// building each on arrival cost the simulator CPU in proportion to the
    /// offered load, which in the recovery benchmark comes out of the
    /// server's share of the machine. Dropped again once the server has
    /// answered for it for good: a sale is about a kilobyte built, and a
    /// 30-minute soak rings up over 20 million, more than the machine's
    /// memory (docs/benchmarks.md, issue 26). Building is a pure function
    /// of the entry, so a sale built again (resent after `/v1/sync` said
    /// the server lacks it, or verified) is byte for byte the same. Boxed,
    /// so an entry without it is small.
    sale: Option<Box<Generated>>,
    state: State,
    /// When it was first taken into a push.
    first_sent: Option<Instant>,
    /// When the server first answered that it holds it.
    first_stored: Option<Instant>,
    /// The rejection code, once refused for good.
    refused: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// On the queue (or ahead of it).
    Queued,
    /// In the batch being pushed.
    Sending,
    /// The server answered `accepted` or `duplicate`.
    Stored,
    /// The server refused it for good: sending it again would not help.
    Refused,
}

/// A batch taken off the queue: retried under the same key with the same
/// bytes until the server answers it.
pub struct Batch {
    pub key: Uuid,
    /// Journal entries, in the order of the body's sales.
    pub entries: Vec<usize>,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// What a 200 changed.
#[derive(Debug, Default)]
pub struct Settled {
    /// Arrival-to-acknowledgement time of each sale acknowledged for the first time.
    pub first_acknowledged: Vec<Duration>,
    /// Seq and code of each sale refused for good.
    pub refused: Vec<(i64, String)>,
    /// Sales refused for now (`retryable`), queued again at the back.
    pub retry_later: u64,
}

impl Journal {
    pub fn new(till: usize, voids_ahead: bool, shop: Shop) -> Self {
        Self {
            till,
            voids_ahead,
            shop,
            entries: Vec::new(),
            next_seq: 1,
            queue: VecDeque::new(),
            ahead: Vec::new(),
            pushed_ahead: 0,
        }
    }

    /// Rings up a sale with the till's next seq and queues it (its contents
    /// are built when it is first taken into a batch). A void of a sale
    /// still on this till's queue goes ahead of it, when voids go ahead.
    pub fn ring_up(
        &mut self,
        sale_id: Uuid,
        ticket: Ticket,
        arrived_at: Instant,
        now: DateTime<Utc>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let index = self.entries.len();
        self.entries.push(Entry {
            sale_id,
            seq,
            ticket,
            rung_up_at: now,
            arrived_at,
            sale: None,
            state: State::Queued,
            first_sent: None,
            first_stored: None,
            refused: None,
        });
        let target_queued = match ticket {
            Ticket::Void { of } if of.till == self.till => {
                self.entries.get(of.entry).map(|e| e.state) == Some(State::Queued)
            }
            _ => false,
        };
        if self.voids_ahead && target_queued {
            self.ahead.push(index);
        } else {
            self.queue.push_back(index);
        }
    }

    /// The till is restored from a backup taken `rewind` sales ago: its
    /// next sales get seqs it already used. What it rang up since stays in
    /// the journal (the simulator's record of what happened), and on its
    /// queue if not yet sent.
    pub fn rewind(&mut self, rewind: i64) {
        self.next_seq = (self.next_seq - rewind).max(1);
    }

    /// The next batch: the voids waiting ahead, if any, else up to
    /// `batch_size` sales from the head of the queue, in order; one request
    /// body under a new Idempotency-Key.
    pub fn take_batch(&mut self, batch_size: usize, now: Instant) -> Option<Batch> {
        let entries: Vec<usize> = if self.ahead.is_empty() {
            let take = self.queue.len().min(batch_size);
            self.queue.drain(..take).collect()
        } else {
            let take = self.ahead.len().min(batch_size);
            self.pushed_ahead += take as u64;
            self.ahead.drain(..take).collect()
        };
        if entries.is_empty() {
            return None;
        }
        let mut body = Vec::with_capacity(entries.len() * 512 + 16);
        body.extend_from_slice(b"{\"sales\":[");
        for (i, &index) in entries.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let entry = &mut self.entries[index];
            entry.state = State::Sending;
            entry.first_sent.get_or_insert(now);
            body.extend_from_slice(built(entry, &self.shop).json.as_bytes());
        }
        body.extend_from_slice(b"]}");
        Some(Batch {
            key: Uuid::new_v4(),
            entries,
            body,
            attempts: 0,
        })
    }

    /// Applies a 200: stored sales leave the queue for good, and so do sales
    /// refused for good (the server keeps and lists them); a sale refused
    /// for now goes back to the end of the queue. An answer that does not
    /// fit the batch changes nothing.
    pub fn settle(
        &mut self,
        batch: &Batch,
        response: &BatchResponse,
        now: Instant,
    ) -> Result<Settled, Failure> {
        if response.results.len() != batch.entries.len() {
            return Err(Failure::InvalidResponse(format!(
                "{} results for {} sales",
                response.results.len(),
                batch.entries.len()
            )));
        }
        let pairs = || batch.entries.iter().zip(&response.results);
        if let Some((&index, _)) =
            pairs().find(|(index, result)| result.sale_id != Some(self.entries[**index].sale_id))
        {
            return Err(Failure::InvalidResponse(format!(
                "results out of order at seq {}",
                self.entries[index].seq
            )));
        }
        let mut settled = Settled::default();
        for (&index, result) in pairs() {
            let entry = &mut self.entries[index];
            if matches!(result.status.as_str(), "accepted" | "duplicate") {
                entry.state = State::Stored;
                entry.sale = None;
                if entry.first_stored.is_none() {
                    entry.first_stored = Some(now);
                    settled
                        .first_acknowledged
                        .push(now.duration_since(entry.arrived_at));
                }
                continue;
            }
            let code = result.code.clone().unwrap_or_else(|| result.status.clone());
            let retryable = result.retryable.unwrap_or(code == RETRYABLE_CODE);
            if retryable {
                entry.state = State::Queued;
                self.queue.push_back(index);
                settled.retry_later += 1;
            } else {
                entry.state = State::Refused;
                entry.sale = None;
                entry.refused = Some(code.clone());
                settled.refused.push((entry.seq, code));
            }
        }
        Ok(settled)
    }

    /// Puts back at the head of the queue, in the order rung up, every sale
    /// believed stored whose seq the server reports missing: in a gap, or
    /// above its highest seq. Returns how many.
    pub fn requeue_missing(&mut self, view: &SyncView) -> u64 {
        let missing = |seq: i64| {
            seq > view.highest_seq
                || view
                    .missing_seq_ranges
                    .iter()
                    .any(|&[from, to]| (from..=to).contains(&seq))
        };
        let lost: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].state == State::Stored && missing(self.entries[i].seq))
            .collect();
        for &index in lost.iter().rev() {
            self.entries[index].state = State::Queued;
            self.queue.push_front(index);
        }
        lost.len() as u64
    }

    /// Sales neither acknowledged nor refused for good: queued, or in a
    /// push not answered yet.
    pub fn undelivered(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(e.state, State::Queued | State::Sending))
            .count() as u64
    }

    /// Voids pushed ahead of their sale so far.
    pub fn voids_pushed_ahead(&self) -> u64 {
        self.pushed_ahead
    }

    /// Every sale rung up, with its fate, as the verifier needs it. Sales
    /// not built now are built for it and dropped at once, not kept.
    pub fn expected(&self) -> Vec<ExpectedSale> {
        self.entries
            .iter()
            .map(|entry| {
                let fate = fate(entry);
                let (first_sent, first_stored) = (entry.first_sent, entry.first_stored);
                let rebuilt;
                let sale = match &entry.sale {
                    Some(sale) => sale,
                    None => {
                        rebuilt = build(entry, &self.shop);
                        &rebuilt
                    }
                };
                ExpectedSale::new(sale, fate, first_sent, first_stored)
            })
            .collect()
    }
}

/// What became of a sale, as far as its till knows.
fn fate(entry: &Entry) -> Fate {
    match (entry.state, &entry.refused) {
        (State::Refused, Some(code)) => Fate::Refused { code: code.clone() },
        // Acknowledged once: the server must hold it, even if a later
        // `/v1/sync` said otherwise and it is queued again.
        _ if entry.first_stored.is_some() => Fate::Acknowledged,
        _ if entry.first_sent.is_some() => Fate::SentUnanswered,
        _ => Fate::NeverSent,
    }
}

/// The entry's sale, built on first use.
fn built<'a>(entry: &'a mut Entry, shop: &Shop) -> &'a Generated {
    if entry.sale.is_none() {
        entry.sale = Some(Box::new(build(entry, shop)));
    }
    entry.sale.as_ref().expect("built above")
}

/// The entry's sale, built from what the entry keeps.
fn build(entry: &Entry, shop: &Shop) -> Generated {
    generator::build(
        entry.sale_id,
        entry.seq,
        entry.rung_up_at,
        &entry.ticket,
        shop,
    )
}

#[cfg(test)]
mod tests;
