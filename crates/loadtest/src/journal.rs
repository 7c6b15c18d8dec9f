//! A till's memory: the journal of every sale it rang up, with what it
//! knows about each (waiting, stored, rejected), and its offline queue.
//! Plain bookkeeping, no I/O: the till's loop (`till.rs`) does the talking
//! and feeds the answers in here.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{BatchResponse, Failure, SyncView};
use super::generator::{Generated, SaleGenerator};
use super::verify::ExpectedSale;

pub struct Journal {
    generator: SaleGenerator,
    /// Every sale rung up; the sale with seq `n` is at index `n - 1`.
    entries: Vec<Entry>,
    /// How many entries, from the first, have their sale built.
    built: usize,
    /// Seqs waiting to be pushed, oldest first.
    queue: VecDeque<i64>,
}

struct Entry {
    /// Built when first needed (to be sent, or verified), not when rung up,
    /// in seq order so the contents are the same either way. Under heavy
    /// overload most sales wait in the queue for the whole load; building
    /// each as it arrived cost the simulator CPU in proportion to the
    /// offered load, which in the recovery benchmark comes out of the
    /// server's share of the machine.
    sale: Option<Generated>,
    /// When the customer was served: the sale's `occurred_at`.
    rung_up_at: DateTime<Utc>,
    arrived_at: Instant,
    state: State,
    /// Whether the server acknowledged it at least once (its latency is
    /// taken then, not again after a resend).
    ever_stored: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// On the queue or in the batch being pushed.
    Pending,
    /// The server answered `accepted` or `duplicate`.
    Stored,
    /// The server answered `rejected`: sending it again would not help.
    Rejected,
}

/// A batch taken off the queue: retried under the same key with the same
/// bytes until the server answers it.
pub struct Batch {
    pub key: Uuid,
    pub seqs: Vec<i64>,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// What a 200 changed.
#[derive(Debug, Default)]
pub struct Settled {
    /// Arrival-to-acknowledgement time of each sale acknowledged for the first time.
    pub first_acknowledged: Vec<Duration>,
    /// Seq and rejection code of each rejected sale.
    pub rejected: Vec<(i64, String)>,
    /// Sales put back on the queue: voids the server refused because it
    /// lost the sale they name after acknowledging it, and those sales.
    pub requeued: u64,
}

impl Journal {
    pub fn new(seed: u64) -> Self {
        Self {
            generator: SaleGenerator::new(seed),
            entries: Vec::new(),
            built: 0,
            queue: VecDeque::new(),
        }
    }

    /// Rings up the till's next sale and queues it (its contents are built
    /// when it is first taken into a batch).
    pub fn ring_up(&mut self, arrived_at: Instant, now: DateTime<Utc>) {
        self.entries.push(Entry {
            sale: None,
            rung_up_at: now,
            arrived_at,
            state: State::Pending,
            ever_stored: false,
        });
        self.queue.push_back(self.entries.len() as i64);
    }

    /// Builds the sales up to and including `seq`, in order.
    fn build_through(&mut self, seq: i64) {
        let through = seq_index(seq) + 1;
        if through <= self.built {
            return;
        }
        for entry in &mut self.entries[self.built..through] {
            let sale = self.generator.next_sale(entry.rung_up_at);
            debug_assert_eq!(seq_index(sale.seq), self.built, "built in seq order");
            entry.sale = Some(sale);
            self.built += 1;
        }
    }

    /// Up to `batch_size` sales from the head of the queue, in order, as
    /// one request body under a new Idempotency-Key.
    pub fn take_batch(&mut self, batch_size: usize) -> Option<Batch> {
        if self.queue.is_empty() {
            return None;
        }
        let take = self.queue.len().min(batch_size);
        let seqs: Vec<i64> = self.queue.drain(..take).collect();
        if let Some(&last) = seqs.iter().max() {
            self.build_through(last);
        }
        let mut body = Vec::with_capacity(seqs.len() * 512 + 16);
        body.extend_from_slice(b"{\"sales\":[");
        for (i, seq) in seqs.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(self.sale(*seq).json.as_bytes());
        }
        body.extend_from_slice(b"]}");
        Some(Batch {
            key: Uuid::new_v4(),
            seqs,
            body,
            attempts: 0,
        })
    }

    /// Applies a 200: stored sales leave the queue for good, and so do
    /// rejected ones (sending them again would not help; the verdict counts
    /// them). An answer that does not fit the batch changes nothing.
    pub fn settle(
        &mut self,
        batch: &Batch,
        response: &BatchResponse,
        now: Instant,
    ) -> Result<Settled, Failure> {
        if response.results.len() != batch.seqs.len() {
            return Err(Failure::InvalidResponse(format!(
                "{} results for {} sales",
                response.results.len(),
                batch.seqs.len()
            )));
        }
        let pairs = || batch.seqs.iter().zip(&response.results);
        if let Some((seq, _)) =
            pairs().find(|(seq, result)| result.sale_id != Some(self.sale(**seq).sale_id))
        {
            return Err(Failure::InvalidResponse(format!(
                "results out of order at seq {seq}"
            )));
        }
        let mut settled = Settled::default();
        let mut lost_and_requeued = Vec::new();
        let mut behind_queued_target = Vec::new();
        for (seq, result) in pairs() {
            if matches!(result.status.as_str(), "accepted" | "duplicate") {
                let entry = self.entry_mut(*seq);
                entry.state = State::Stored;
                if !entry.ever_stored {
                    entry.ever_stored = true;
                    settled
                        .first_acknowledged
                        .push(now.duration_since(entry.arrived_at));
                }
            } else if let Some(target) = self.lost_target(*seq, result.code.as_deref()) {
                // The server acknowledged the sale this void names and has
                // lost it since: a till sends both again, the sale first.
                // (The void is still `Pending`: it is in this batch.) A
                // `/v1/sync` may already have put the sale back on the queue
                // while this batch waited to be retried: then only the void
                // goes back, right behind it.
                if self.entry(target).state == State::Pending {
                    behind_queued_target.push((target, *seq));
                } else {
                    self.entry_mut(target).state = State::Pending;
                    lost_and_requeued.extend([target, *seq]);
                }
            } else {
                let entry = self.entry_mut(*seq);
                entry.state = State::Rejected;
                let code = result.code.as_ref().unwrap_or(&result.status);
                settled.rejected.push((*seq, code.clone()));
            }
        }
        lost_and_requeued.sort_unstable();
        for &seq in lost_and_requeued.iter().rev() {
            self.queue.push_front(seq);
        }
        for &(target, void) in &behind_queued_target {
            let at = self.queue.iter().position(|&queued| queued == target);
            match at {
                Some(at) => self.queue.insert(at + 1, void),
                // Not queued after all (cannot happen: a pending sale not in
                // this batch is on the queue); sending it last is safe.
                None => self.queue.push_back(void),
            }
        }
        settled.requeued = (lost_and_requeued.len() + behind_queued_target.len()) as u64;
        Ok(settled)
    }

    /// For a void refused as `void_target_unknown`: the seq of the sale it
    /// names, if the server acknowledged that sale once (and lost it since):
    /// held as stored, or already queued again after a `/v1/sync`.
    fn lost_target(&self, seq: i64, code: Option<&str>) -> Option<i64> {
        if code != Some("void_target_unknown") {
            return None;
        }
        let target = self.sale(seq).refers_to_sale_id?;
        let at = self.entries[..self.built]
            .iter()
            .position(|e| e.sale.as_ref().is_some_and(|s| s.sale_id == target))?;
        let target_seq = at as i64 + 1;
        let entry = self.entry(target_seq);
        let lost =
            entry.state == State::Stored || (entry.state == State::Pending && entry.ever_stored);
        lost.then_some(target_seq)
    }

    /// Puts back at the head of the queue, in seq order, every sale
    /// believed stored that the server reports missing: in a gap, or above
    /// its highest seq. Returns how many.
    pub fn requeue_missing(&mut self, view: &SyncView) -> u64 {
        let last = self.entries.len() as i64;
        let above_highest = [[view.highest_seq.max(0) + 1, last]];
        let mut missing: Vec<i64> = view
            .missing_seq_ranges
            .iter()
            .chain(&above_highest)
            .flat_map(|&[from, to]| from.max(1)..=to.min(last))
            .filter(|&seq| self.entry(seq).state == State::Stored)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for &seq in missing.iter().rev() {
            self.entry_mut(seq).state = State::Pending;
            self.queue.push_front(seq);
        }
        missing.len() as u64
    }

    /// Sales never acknowledged (or reported missing and not yet resent).
    pub fn undelivered(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.state == State::Pending)
            .count() as u64
    }

    /// Every sale rung up, as the verifier needs it (building those never sent).
    pub fn expected(&mut self) -> Vec<ExpectedSale> {
        if !self.entries.is_empty() {
            self.build_through(self.entries.len() as i64);
        }
        self.entries
            .iter()
            .filter_map(|e| e.sale.as_ref())
            .map(ExpectedSale::from)
            .collect()
    }

    /// A sale already taken into a batch (so built).
    fn sale(&self, seq: i64) -> &Generated {
        self.entry(seq)
            .sale
            .as_ref()
            .expect("a sale is built when it is first taken into a batch")
    }

    fn entry(&self, seq: i64) -> &Entry {
        &self.entries[seq_index(seq)]
    }

    fn entry_mut(&mut self, seq: i64) -> &mut Entry {
        &mut self.entries[seq_index(seq)]
    }
}

/// Seqs on the queue and in batches come from the journal, so they index it.
fn seq_index(seq: i64) -> usize {
    usize::try_from(seq - 1).expect("journal seqs start at 1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SaleResult;
    use crate::generator::Kind;

    fn journal_with(sales: usize) -> Journal {
        let mut journal = Journal::new(1);
        for _ in 0..sales {
            journal.ring_up(Instant::now(), Utc::now());
        }
        journal
    }

    fn answer(journal: &Journal, batch: &Batch, status: &str) -> BatchResponse {
        BatchResponse {
            results: batch
                .seqs
                .iter()
                .map(|seq| SaleResult {
                    sale_id: Some(journal.sale(*seq).sale_id),
                    status: status.into(),
                    code: (status == "rejected").then(|| "invalid_line".into()),
                })
                .collect(),
        }
    }

    fn view(highest_seq: i64, missing: Vec<[i64; 2]>) -> SyncView {
        SyncView {
            highest_seq,
            contiguous_through_seq: 0,
            missing_seq_ranges: missing,
            sales_stored: 0,
            business_day: None,
        }
    }

    #[test]
    fn a_batch_takes_the_head_of_the_queue_in_order() {
        let mut journal = journal_with(5);
        let batch = journal.take_batch(3).unwrap();
        assert_eq!(batch.seqs, [1, 2, 3]);
        let body: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        let seqs: Vec<i64> = body["sales"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(journal.take_batch(3).unwrap().seqs, [4, 5]);
        assert!(journal.take_batch(3).is_none());
    }

    #[test]
    fn stored_and_rejected_sales_are_settled_and_latency_is_taken_once() {
        let mut journal = journal_with(4);
        let batch = journal.take_batch(2).unwrap();
        let settled = journal
            .settle(
                &batch,
                &answer(&journal, &batch, "accepted"),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(settled.first_acknowledged.len(), 2);
        // The server lost them; resent and acknowledged again as duplicates.
        journal.requeue_missing(&view(0, vec![]));
        let resend = journal.take_batch(2).unwrap();
        assert_eq!(resend.seqs, [1, 2]);
        let settled = journal
            .settle(
                &resend,
                &answer(&journal, &resend, "duplicate"),
                Instant::now(),
            )
            .unwrap();
        assert!(settled.first_acknowledged.is_empty());

        let batch = journal.take_batch(2).unwrap();
        let settled = journal
            .settle(
                &batch,
                &answer(&journal, &batch, "rejected"),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(
            settled.rejected,
            [(3, "invalid_line".into()), (4, "invalid_line".into())]
        );
        assert_eq!(journal.undelivered(), 0);
    }

    /// A journal whose sales before its first void are stored, with that
    /// void alone in the batch in flight; the void's seq, and its sale's.
    fn a_void_in_flight() -> (Journal, i64, i64, Batch) {
        let mut journal = journal_with(400);
        let expected = journal.expected();
        let void = expected
            .iter()
            .position(|s| s.kind == Kind::Void)
            .expect("the generator makes a void within 400 sales") as i64
            + 1;
        let target = expected[seq_index(void)].refers_to_sale_id.unwrap();
        let target_seq = expected.iter().position(|s| s.sale_id == target).unwrap() as i64 + 1;
        let before = journal.take_batch(void as usize - 1).unwrap();
        let answered = answer(&journal, &before, "accepted");
        journal.settle(&before, &answered, Instant::now()).unwrap();

        let batch = journal.take_batch(1).unwrap();
        assert_eq!(batch.seqs, [void]);
        (journal, void, target_seq, batch)
    }

    #[test]
    fn a_void_refused_because_the_server_lost_its_sale_is_sent_again_after_that_sale() {
        let (mut journal, void, target_seq, batch) = a_void_in_flight();
        let mut refused = answer(&journal, &batch, "rejected");
        refused.results[0].code = Some("void_target_unknown".into());
        let settled = journal.settle(&batch, &refused, Instant::now()).unwrap();
        assert!(settled.rejected.is_empty());
        assert_eq!(settled.requeued, 2);
        assert_eq!(journal.take_batch(2).unwrap().seqs, [target_seq, void]);
    }

    /// The drill's case: the void's batch waits out a 503 during the
    /// failover, a `/v1/sync` meanwhile puts the lost sale back on the
    /// queue, then the void is refused. It goes back right behind its sale.
    #[test]
    fn a_void_refused_after_a_sync_requeued_its_sale_goes_back_behind_that_sale() {
        let (mut journal, void, target_seq, batch) = a_void_in_flight();
        // The server lost everything from the target on.
        let requeued = journal.requeue_missing(&view(target_seq - 1, vec![]));
        assert_eq!(requeued, (void - target_seq) as u64);
        let mut refused = answer(&journal, &batch, "rejected");
        refused.results[0].code = Some("void_target_unknown".into());
        let settled = journal.settle(&batch, &refused, Instant::now()).unwrap();
        assert!(settled.rejected.is_empty());
        assert_eq!(settled.requeued, 1);
        let resent = journal.take_batch(400).unwrap().seqs;
        let at = |seq: i64| resent.iter().position(|&s| s == seq).unwrap();
        assert_eq!(at(void), at(target_seq) + 1, "{resent:?}");
        assert_eq!(resent.iter().filter(|&&s| s == target_seq).count(), 1);
    }

    #[test]
    fn an_answer_that_does_not_fit_the_batch_changes_nothing() {
        let mut journal = journal_with(2);
        let batch = journal.take_batch(2).unwrap();
        let mut wrong = answer(&journal, &batch, "accepted");
        wrong.results.swap(0, 1);
        assert!(journal.settle(&batch, &wrong, Instant::now()).is_err());
        wrong.results.pop();
        assert!(journal.settle(&batch, &wrong, Instant::now()).is_err());
        assert_eq!(journal.undelivered(), 2);
    }

    #[test]
    fn stored_sales_the_server_reports_missing_go_back_to_the_head_of_the_queue() {
        let mut journal = journal_with(10);
        let batch = journal.take_batch(8).unwrap();
        journal
            .settle(
                &batch,
                &answer(&journal, &batch, "accepted"),
                Instant::now(),
            )
            .unwrap();
        // 3..=4 in a gap, 8 above the highest seq; 9 and 10 were never sent.
        assert_eq!(journal.requeue_missing(&view(7, vec![[3, 4]])), 3);
        assert_eq!(journal.take_batch(10).unwrap().seqs, [3, 4, 8, 9, 10]);
        assert_eq!(journal.undelivered(), 5);
    }

    #[test]
    fn sales_not_yet_acknowledged_are_not_queued_twice() {
        let mut journal = journal_with(4);
        let _in_flight = journal.take_batch(4).unwrap();
        assert_eq!(journal.requeue_missing(&view(0, vec![])), 0);
        assert!(journal.take_batch(4).is_none());
    }
}
