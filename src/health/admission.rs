//! Admission control in front of the pool: at most `limit` database-bound
//! requests run at once (the limit adapts, see `limit.rs`); a few more may
//! wait in a small queue, ingest ahead of admin ahead of reports; everything
//! else is refused at once, so an overloaded service answers fast instead of
//! queueing until every deadline has passed.
//!
//! Lower priorities may use only part of the queue, so ingest always finds
//! room while reports are already being shed. A waiter whose deadline passes
//! leaves the queue: its work is dropped, not done late.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::limit::Gradient;

/// What a request is for; earlier variants are served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Tills pushing sales and reading their sync state.
    Ingest = 0,
    /// Provisioning by merchant admins.
    Admin = 1,
    /// Dashboards reading reports.
    Report = 2,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Ingest, Priority::Admin, Priority::Report];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Ingest => "ingest",
            Priority::Admin => "admin",
            Priority::Report => "report",
        }
    }

    /// The share of the queue this priority may fill.
    fn queue_share(self, max_queue: usize) -> usize {
        match self {
            Priority::Ingest => max_queue,
            Priority::Admin => max_queue * 3 / 4,
            Priority::Report => max_queue / 2,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue (or this priority's share of it) is full.
    QueueFull,
    /// The request's deadline passed while it waited.
    Expired,
}

/// How an admitted operation ended, for the limit to learn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Timed out or hit link trouble: the database is struggling.
    Failure,
    /// Ended in a way that says nothing about the database (client error).
    Ignore,
}

/// A snapshot for metrics and readiness.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub limit: usize,
    pub in_flight: usize,
    pub queued: usize,
}

pub struct Admission {
    state: Mutex<State>,
    max_queue: usize,
}

struct State {
    limiter: Gradient,
    in_flight: usize,
    queues: [VecDeque<Waiter>; 3],
    next_waiter_id: u64,
    last_shed: Option<Instant>,
}

struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

impl State {
    fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Hands free slots to waiters, highest priority first.
    fn fill(&mut self) {
        while self.in_flight < self.limiter.limit() {
            let Some(waiter) = self.queues.iter_mut().find_map(VecDeque::pop_front) else {
                return;
            };
            if waiter.wake.send(()).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    fn remove_waiter(&mut self, id: u64) -> bool {
        for queue in &mut self.queues {
            if let Some(at) = queue.iter().position(|w| w.id == id) {
                queue.remove(at);
                return true;
            }
        }
        false
    }
}

impl Admission {
    pub fn new(limiter: Gradient, max_queue: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                limiter,
                in_flight: 0,
                queues: Default::default(),
                next_waiter_id: 0,
                last_shed: None,
            }),
            max_queue,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counts half
        // updated (every update is one statement), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot until `deadline`, or refuses at once when the queue is full.
    pub async fn acquire(
        self: &Arc<Self>,
        priority: Priority,
        deadline: Instant,
    ) -> Result<Permit, Shed> {
        let (id, admitted) = {
            let mut state = self.lock();
            if state.in_flight < state.limiter.limit() && state.queued() == 0 {
                state.in_flight += 1;
                return Ok(self.permit());
            }
            if state.queued() >= priority.queue_share(self.max_queue) {
                state.last_shed = Some(Instant::now());
                return Err(Shed::QueueFull);
            }
            let (wake, admitted) = oneshot::channel();
            state.next_waiter_id += 1;
            let id = state.next_waiter_id;
            state.queues[priority as usize].push_back(Waiter { id, wake });
            (id, admitted)
        };
        let mut admitted = admitted;
        match tokio::time::timeout_at(deadline.into(), &mut admitted).await {
            Ok(Ok(())) => Ok(self.permit()),
            _ => {
                let mut state = self.lock();
                state.last_shed = Some(Instant::now());
                if !state.remove_waiter(id) && admitted.try_recv().is_ok() {
                    // A slot was handed over just as the deadline passed:
                    // give it back to the next waiter.
                    state.in_flight -= 1;
                    state.fill();
                }
                Err(Shed::Expired)
            }
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            admission: self.clone(),
            started: Instant::now(),
            outcome: Outcome::Ignore,
        }
    }

    pub fn load(&self) -> Load {
        let state = self.lock();
        Load {
            limit: state.limiter.limit(),
            in_flight: state.in_flight,
            queued: state.queued(),
        }
    }

    /// Whether anything was refused within `window`.
    pub fn shed_within(&self, window: Duration) -> bool {
        self.lock()
            .last_shed
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Drops the limit to its minimum so a recovering database is ramped up slowly.
    pub fn restart(&self) {
        self.lock().limiter.restart();
    }
}

/// A running admitted operation; dropping it frees the slot.
pub struct Permit {
    admission: Arc<Admission>,
    started: Instant,
    outcome: Outcome,
}

impl Permit {
    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        let in_flight = state.in_flight;
        match self.outcome {
            Outcome::Success => state.limiter.on_success(self.started.elapsed(), in_flight),
            Outcome::Failure => state.limiter.on_failure(),
            Outcome::Ignore => {}
        }
        state.in_flight -= 1;
        state.fill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn within_the_limit_requests_are_admitted_at_once() {
        let admission = Admission::new(Gradient::new(2, 2, 2), 4);
        let a = admission.acquire(Priority::Report, soon()).await.unwrap();
        let _b = admission.acquire(Priority::Report, soon()).await.unwrap();
        assert_eq!(admission.load().in_flight, 2);
        drop(a);
        assert_eq!(admission.load().in_flight, 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_reports_get_less_of_it() {
        let admission = Admission::new(Gradient::new(1, 1, 1), 4);
        let _running = admission.acquire(Priority::Ingest, soon()).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let admission = admission.clone();
            waiting.push(tokio::spawn(async move {
                admission
                    .acquire(Priority::Report, soon())
                    .await
                    .map(|_| ())
            }));
        }
        tokio::task::yield_now().await;
        while admission.load().queued < 2 {
            tokio::task::yield_now().await;
        }
        // Reports may use half of the queue: it is theirs no more.
        let refused = admission.acquire(Priority::Report, soon()).await;
        assert_eq!(refused.err(), Some(Shed::QueueFull));
        assert!(admission.shed_within(Duration::from_secs(1)));
        // Ingest still finds room.
        let ingest = {
            let admission = admission.clone();
            tokio::spawn(async move {
                admission
                    .acquire(Priority::Ingest, soon())
                    .await
                    .map(|_| ())
            })
        };
        while admission.load().queued < 3 {
            tokio::task::yield_now().await;
        }
        drop(_running);
        // The freed slot goes to ingest, queued last but more important.
        assert_eq!(ingest.await.unwrap(), Ok(()));
        for w in waiting {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_waiter_whose_deadline_passes_is_dropped() {
        let admission = Admission::new(Gradient::new(1, 1, 1), 4);
        let running = admission.acquire(Priority::Ingest, soon()).await.unwrap();
        let late = admission
            .acquire(Priority::Ingest, Instant::now() + Duration::from_millis(50))
            .await;
        assert_eq!(late.err(), Some(Shed::Expired));
        assert_eq!(admission.load().queued, 0);
        drop(running);
        assert_eq!(admission.load().in_flight, 0);
    }
}
