//! One simulated till: the loop that pushes its offline queue to the
//! server (the queue itself and the journal are in `journal.rs`).
//!
//! Sales are put on the queue by the arrival scheduler, never by this loop,
//! so slow answers make the queue grow instead of slowing arrivals. The loop
//! keeps one batch in flight, as a till does: up to `batch_size` sales from
//! the head of the queue under a fresh Idempotency-Key. A failed batch is
//! kept and sent again with the same key and the same bytes, after the
//! server's `Retry-After` or a backoff. Every `sync_interval`, and once its
//! queue is empty while draining, the till asks `GET /v1/sync` what the
//! server holds and queues again any sale it believed stored that the
//! server reports missing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, sleep_until};
use uuid::Uuid;

use super::backoff::Backoff;
use super::client::{Api, BatchResponse, Failure};
use super::generator::Shop;
use super::journal::{Batch, Journal};
use super::plan::Arrival;
use super::stats::{InFlight, LiveCounters, TillStats};
use super::verify::{ExpectedTill, Retirement, TerminalToken};

/// Where the run is; every till watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sales arrive.
    Load,
    /// No more arrivals: empty the queues, but stop at `until` whatever is left.
    Drain { until: Instant },
}

#[derive(Debug, Clone)]
pub struct TillSettings {
    pub batch_size: usize,
    pub sync_interval: Duration,
    pub backoff_cap: Duration,
}

pub struct Till {
    /// The till's number on the store floor (0 for the first provisioned).
    pub number: usize,
    pub terminal_id: Uuid,
    token: TerminalToken,
    /// Shared by the arrival scheduler (which rings sales up) and this
    /// till's loop (which pushes them); held only for bookkeeping, never
    /// across a request.
    journal: Mutex<Journal>,
    /// Rung when a sale is queued, so an idle till pushes at once.
    wake: Notify,
    /// Whether the till's link is up; while it is down the till rings sales
    /// up into its queue and pushes nothing.
    link: watch::Sender<bool>,
    /// What the store floor did to this till, for the verdict.
    incidents: Mutex<TillIncidents>,
}

/// The incidents one till went through.
#[derive(Debug, Clone, Default)]
struct TillIncidents {
    link_lost: bool,
    restored_by: Option<i64>,
    retirement: Option<Retirement>,
}

impl Till {
    pub fn new(
        number: usize,
        terminal_id: Uuid,
        token: TerminalToken,
        voids_ahead: bool,
        shop: Shop,
    ) -> Self {
        Self {
            number,
            terminal_id,
            token,
            journal: Mutex::new(Journal::new(number, voids_ahead, shop)),
            wake: Notify::new(),
            link: watch::Sender::new(true),
            incidents: Mutex::new(TillIncidents::default()),
        }
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn incidents(&self) -> MutexGuard<'_, TillIncidents> {
        self.incidents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A customer at this till: the sale is rung up (with the till's next
    /// seq) and queued. `arrived_at` is the scheduled arrival, which latency
    /// is measured from even when the scheduler runs late.
    pub fn arrive(
        &self,
        arrival: &Arrival,
        arrived_at: Instant,
        now: DateTime<Utc>,
        live: &LiveCounters,
    ) {
        self.journal()
            .ring_up(arrival.sale_id, arrival.ticket, arrived_at, now);
        LiveCounters::add(&live.generated, 1);
        LiveCounters::change(&live.queued, 1);
        self.wake.notify_one();
    }

    /// The link goes down (the till stops pushing) or comes back.
    pub fn set_link(&self, up: bool) {
        if !up {
            self.incidents().link_lost = true;
        }
        self.link.send_replace(up);
        tracing::debug!(terminal.id = %self.terminal_id, link.up = up, "till {} link {}", self.terminal_id, if up { "back" } else { "down" });
    }

    /// The till is restored from a backup: its seq counter goes back.
    pub fn restore(&self, rewind: i64) {
        self.journal().rewind(rewind);
        self.incidents().restored_by = Some(rewind);
        tracing::debug!(terminal.id = %self.terminal_id, rewind, "till {} restored from a backup, seq counter back by {rewind}", self.terminal_id);
    }

    /// Records how retiring this till went, with what it held then.
    pub fn record_retirement(&self, retired_at: Result<DateTime<Utc>, String>) {
        let queued = self.undelivered();
        self.incidents().retirement = Some(Retirement {
            retired_at,
            queued,
            answered: Instant::now(),
        });
    }

    /// What the verifier compares the server against.
    pub fn expected(&self) -> ExpectedTill {
        let incidents = self.incidents().clone();
        let journal = self.journal();
        ExpectedTill {
            number: self.number,
            terminal_id: self.terminal_id,
            token: self.token.clone(),
            sales: journal.expected(),
            link_lost: incidents.link_lost,
            restored_by: incidents.restored_by,
            retirement: incidents.retirement,
            voids_pushed_ahead: journal.voids_pushed_ahead(),
        }
    }

    /// Whether the till's link is up.
    #[cfg(test)]
    pub fn link_up(&self) -> bool {
        *self.link.borrow()
    }

    /// Sales neither acknowledged nor refused for good.
    pub fn undelivered(&self) -> u64 {
        self.journal().undelivered()
    }

    /// Pushes until the drain ends: the queue is empty and the server
    /// misses nothing, or the drain deadline passed.
    pub async fn run(
        self: Arc<Self>,
        api: Api,
        settings: TillSettings,
        phase: watch::Receiver<Phase>,
        live: Arc<LiveCounters>,
    ) -> TillStats {
        let mut stats = TillStats::default();
        tokio::select! {
            () = drain_deadline(phase.clone()) => {
                tracing::debug!(terminal.id = %self.terminal_id, "till {} stopped at the drain deadline", self.terminal_id);
            }
            () = self.push_loop(&api, &settings, phase, &live, &mut stats) => {}
        }
        stats
    }

    async fn push_loop(
        &self,
        api: &Api,
        settings: &TillSettings,
        mut phase: watch::Receiver<Phase>,
        live: &LiveCounters,
        stats: &mut TillStats,
    ) {
        let mut backoff = Backoff::new(settings.backoff_cap);
        let mut batch: Option<Batch> = None;
        let mut next_sync = Instant::now() + settings.sync_interval;
        let mut link = self.link.subscribe();
        loop {
            // A till without its link pushes nothing (a batch in flight when
            // it went down was sent already); it waits, ringing sales up.
            let up = *link.borrow_and_update();
            if !up && link.wait_for(|up| *up).await.is_ok() {
                // Back online: ask at once what the server missed meanwhile.
                next_sync = Instant::now();
            }
            if Instant::now() >= next_sync {
                let _ = self.sync_and_requeue(api, live, stats).await;
                next_sync = Instant::now() + settings.sync_interval;
            }
            if batch.is_none() {
                batch = self
                    .journal()
                    .take_batch(settings.batch_size, Instant::now());
            }
            let draining = matches!(*phase.borrow(), Phase::Drain { .. });
            match batch.as_mut() {
                Some(pending) => match self.push(api, pending, live, stats).await {
                    Ok(()) => {
                        batch = None;
                        backoff.reset();
                    }
                    Err(failure) => sleep(backoff.next_delay(failure.retry_after())).await,
                },
                // Queue empty at the end: the server must confirm it holds
                // everything before this till is done.
                None if draining => match self.sync_and_requeue(api, live, stats).await {
                    Ok(0) => return,
                    Ok(_) => backoff.reset(),
                    Err(failure) => sleep(backoff.next_delay(failure.retry_after())).await,
                },
                None => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = sleep_until(next_sync) => {}
                        _ = phase.changed() => {}
                        _ = link.changed() => {}
                    }
                }
            }
        }
    }

    async fn push(
        &self,
        api: &Api,
        batch: &mut Batch,
        live: &LiveCounters,
        stats: &mut TillStats,
    ) -> Result<(), Failure> {
        if batch.attempts > 0 {
            stats.retries += 1;
        }
        batch.attempts += 1;
        stats.requests += 1;
        let started = Instant::now();
        let answer = {
            let _in_flight = InFlight::start(&live.in_flight);
            api.push_batch(self.token.expose(), batch.key, batch.body.clone())
                .await
        };
        let elapsed = started.elapsed();
        stats.record_request(elapsed);
        let outcome = answer.and_then(|response| self.settle(batch, &response, live, stats));
        match &outcome {
            Ok(()) => {
                stats.record_answer(elapsed, "200");
                stats.count_status("200".into());
            }
            Err(failure) => {
                stats.record_answer(elapsed, &failure.bucket());
                stats.count_status(failure.bucket());
                LiveCounters::add(&live.errors, 1);
                tracing::debug!(
                    terminal.id = %self.terminal_id, batch.key = %batch.key, attempt = batch.attempts,
                    "push of batch {} failed: {failure}", batch.key
                );
            }
        }
        outcome
    }

    /// Applies a 200 to the journal and counts what it changed.
    fn settle(
        &self,
        batch: &Batch,
        response: &BatchResponse,
        live: &LiveCounters,
        stats: &mut TillStats,
    ) -> Result<(), Failure> {
        let settled = self.journal().settle(batch, response, Instant::now())?;
        for latency in &settled.first_acknowledged {
            stats.record_sale(*latency);
        }
        live.record_sales(&settled.first_acknowledged);
        LiveCounters::add(&live.acknowledged, settled.first_acknowledged.len() as u64);
        for (seq, code) in settled.refused {
            tracing::warn!(terminal.id = %self.terminal_id, sale.seq = seq, code, "the server refused generated sale seq {seq} for good");
            *stats.rejected.entry(code).or_default() += 1;
        }
        stats.retried_later += settled.retry_later;
        LiveCounters::change(
            &live.queued,
            settled.retry_later as i64 - batch.entries.len() as i64,
        );
        Ok(())
    }

    /// Asks what the server holds; returns how many sales went back on the queue.
    async fn sync_and_requeue(
        &self,
        api: &Api,
        live: &LiveCounters,
        stats: &mut TillStats,
    ) -> Result<u64, Failure> {
        match api.sync(self.token.expose(), None).await {
            Ok(view) => {
                let requeued = self.journal().requeue_missing(&view);
                if requeued > 0 {
                    tracing::debug!(terminal.id = %self.terminal_id, requeued, "server misses {requeued} sales of till {}; resending", self.terminal_id);
                }
                stats.resent += requeued;
                LiveCounters::change(&live.queued, requeued as i64);
                Ok(requeued)
            }
            Err(failure) => {
                stats.count_sync_failure(failure.bucket());
                Err(failure)
            }
        }
    }
}

/// Resolves when the drain deadline has passed.
async fn drain_deadline(mut phase: watch::Receiver<Phase>) {
    loop {
        let current = *phase.borrow_and_update();
        if let Phase::Drain { until } = current {
            sleep_until(until).await;
            return;
        }
        if phase.changed().await.is_err() {
            // The run is gone; nobody waits for this till any more.
            return;
        }
    }
}
