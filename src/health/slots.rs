//! The slots in front of the pool: at most `limit` database-bound
//! operations run at once (the limit adapts, see [`super::limit`]); more may wait in
//! a queue, live ingest ahead of backlog ingest ahead of admin ahead of
//! reports and background work, as long as their
//! expected wait is short; everything else is refused at once, so an
//! overloaded service answers fast instead of queueing until every deadline
//! has passed.
//!
//! The queue is bounded by time, not by a count: a request joins it only if
//! the requests ahead of it, at the pace the database is finishing them now,
//! leave it a wait within `max_wait`. A fixed count was measured to be wrong
//! both ways: a fleet whose tills each keep one push in flight is a hundred
//! waiters at half of capacity (32 places refused a third of one till's
//! pushes while the database kept up), and the same count is seconds of
//! waiting when every request is slow. The count (`max_waiting`) stays only
//! as a cap on memory.
//!
//! Lower priorities may use only part of the queue, so ingest always finds
//! room while reports are already being shed. A waiter whose deadline passes
//! leaves the queue: its work is dropped, not done late.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::limit::Gradient;
use super::signal::Signal;

/// What a request is for; earlier variants are served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// The write of a group of pushes (`crate::ingest`): one statement for
    /// up to 64 pushes already admitted, each of them waiting for it. Served
    /// first, and never refused for the queue's length (only its deadline
    /// or the link bounds it): refusing it would refuse every push in it.
    Group = 0,
    /// Looking up a token not seen lately: one short query, and the request
    /// behind it queues for its own work afterwards. Served before the
    /// requests' own work, so one request does not wait its turn twice.
    Auth = 1,
    /// Tills pushing the sales they just made (a small batch; the push
    /// waits for its group without a slot, its read takes one) and reading
    /// their sync state.
    Ingest = 2,
    /// Tills sending a large batch: most often an offline queue replayed
    /// after an outage. Served after live pushes, so while a backlog drains
    /// at the pace of the database, the sales being made now still go
    /// through at once instead of waiting behind it ([`crate::http::middleware::admission`]
    /// tells the two apart by size).
    Backlog = 3,
    /// Provisioning by merchant admins.
    Admin = 4,
    /// Dashboards reading reports.
    Report = 5,
    /// The service's own maintenance (folding store totals, purging stored
    /// responses). Served last, and never learned from: its run time is not
    /// a request's latency, and its failures may be its own.
    Background = 6,
}

impl Priority {
    pub const ALL: [Priority; 7] = [
        Priority::Group,
        Priority::Auth,
        Priority::Ingest,
        Priority::Backlog,
        Priority::Admin,
        Priority::Report,
        Priority::Background,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Group => "group",
            Priority::Auth => "auth",
            Priority::Ingest => "ingest",
            Priority::Backlog => "backlog",
            Priority::Admin => "admin",
            Priority::Report => "report",
            Priority::Background => "background",
        }
    }

    /// Whether the limit learns from work of this priority.
    pub fn learned_from(self) -> bool {
        self != Priority::Background
    }

    /// The share of the queue (its places and its wait) this priority may use.
    fn queue_share(self) -> f64 {
        match self {
            Priority::Group | Priority::Auth | Priority::Ingest | Priority::Backlog => 1.0,
            Priority::Admin => 0.75,
            Priority::Report | Priority::Background => 0.5,
        }
    }
}

/// How much may wait for a slot.
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    /// Longest expected wait a request may join the queue with.
    pub max_wait: Duration,
    /// Most requests waiting at once, whatever their expected wait.
    pub max_waiting: usize,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue (or this priority's share of it) is full: the wait would
    /// be too long, or too many are waiting.
    QueueFull,
    /// The request's deadline passed while it waited.
    Expired,
    /// The link went down while it waited.
    LinkDown,
}

/// What a waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// A slot is yours.
    Admitted,
    /// The link is down: nothing in the queue will be served soon.
    LinkDown,
}

/// A snapshot for metrics and readiness.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub limit: usize,
    /// The lowest the limit goes: a limit held here says the database has
    /// been slow or failing for a while.
    pub min_limit: usize,
    pub in_flight: usize,
    pub queued: usize,
}

pub struct Slots {
    state: Mutex<State>,
    bounds: QueueBounds,
}

struct State {
    limiter: Gradient,
    in_flight: usize,
    queues: [VecDeque<Waiter>; Priority::ALL.len()],
    next_waiter_id: u64,
    last_shed: Option<Instant>,
}

struct Waiter {
    id: u64,
    wake: oneshot::Sender<Turn>,
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
            if waiter.wake.send(Turn::Admitted).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    /// Waiters that would be served before a new one of `priority`.
    fn waiting_ahead_of(&self, priority: Priority) -> usize {
        self.queues[..=priority as usize]
            .iter()
            .map(VecDeque::len)
            .sum()
    }

    /// Whether a new waiter of `priority` would fit in its share of the queue.
    fn has_room_for(&self, priority: Priority, bounds: &QueueBounds) -> bool {
        if priority == Priority::Group {
            return true;
        }
        let share = priority.queue_share();
        if self.queued() as f64 >= bounds.max_waiting as f64 * share {
            return false;
        }
        // Until the first operation since a (re)start has been timed, the
        // pace is unknown: only the count bounds the queue.
        let Some(latency) = self.limiter.recent_latency() else {
            return true;
        };
        // Slots free up at `limit / latency` per second (Little's law); the
        // new waiter is served after everyone ahead of it.
        let ahead = self.waiting_ahead_of(priority) + 1;
        let expected_wait = latency.mul_f64(ahead as f64 / self.limiter.limit() as f64);
        expected_wait <= bounds.max_wait.mul_f64(share)
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

impl Slots {
    pub fn new(limiter: Gradient, bounds: QueueBounds) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                limiter,
                in_flight: 0,
                queues: Default::default(),
                next_waiter_id: 0,
                last_shed: None,
            }),
            bounds,
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
            if !state.has_room_for(priority, &self.bounds) {
                state.last_shed = Some(Instant::now());
                return Err(Shed::QueueFull);
            }
            let (wake, admitted) = oneshot::channel();
            state.next_waiter_id += 1;
            let id = state.next_waiter_id;
            state.queues[priority as usize].push_back(Waiter { id, wake });
            (id, admitted)
        };
        let mut waiting = Waiting {
            slots: self,
            id,
            turn: admitted,
            answered: false,
        };
        match tokio::time::timeout_at(deadline.into(), &mut waiting.turn).await {
            Ok(Ok(turn)) => {
                waiting.answered = true;
                match turn {
                    Turn::Admitted => Ok(self.permit()),
                    Turn::LinkDown => Err(Shed::LinkDown),
                }
            }
            // The deadline passed; dropping `waiting` leaves the queue.
            _ => {
                self.lock().last_shed = Some(Instant::now());
                Err(Shed::Expired)
            }
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            slots: self.clone(),
            started: Instant::now(),
            signal: Signal::Silent,
        }
    }

    pub fn load(&self) -> Load {
        let state = self.lock();
        Load {
            limit: state.limiter.limit(),
            min_limit: state.limiter.min_limit(),
            in_flight: state.in_flight,
            queued: state.queued(),
        }
    }

    /// Records a refusal made elsewhere (a push whose group would be too
    /// long in coming), for readiness and the status lights.
    pub fn note_shed(&self) {
        self.lock().last_shed = Some(Instant::now());
    }

    /// Whether anything was refused within `window`.
    pub fn shed_within(&self, window: Duration) -> bool {
        self.lock()
            .last_shed
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Tells everyone waiting that the link is down: they are answered now
    /// instead of when their deadlines pass.
    pub fn refuse_waiting(&self) {
        let mut state = self.lock();
        state.last_shed = Some(Instant::now());
        for queue in &mut state.queues {
            for waiter in queue.drain(..) {
                let _ = waiter.wake.send(Turn::LinkDown);
            }
        }
    }

    /// Drops the limit to its minimum so a recovering database is ramped up slowly.
    pub fn restart(&self) {
        self.lock().limiter.restart();
    }
}

/// A place in the queue, until its turn is taken. Dropped unanswered, because
/// the deadline passed or because the request was abandoned (its client hung
/// up and the server dropped the handler), it leaves the queue, and a slot
/// handed to it in the meantime goes to the next waiter. Without this, every
/// request abandoned between being handed a slot and taking it kept that
/// slot for good: after a simulated fleet hung up at once (the end of a load
/// test's drain), every slot was held by nobody and every request waited
/// out its deadline.
struct Waiting<'a> {
    slots: &'a Slots,
    id: u64,
    turn: oneshot::Receiver<Turn>,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut state = self.slots.lock();
        // Under the lock a waiter is either still queued or was already sent
        // its turn (the receiver is alive here, so sending cannot have failed).
        if !state.remove_waiter(self.id) && matches!(self.turn.try_recv(), Ok(Turn::Admitted)) {
            state.in_flight -= 1;
            state.fill();
        }
    }
}

/// A running admitted operation; dropping it frees the slot, and the limit
/// learns from the signal it was given (none unless set).
pub struct Permit {
    slots: Arc<Slots>,
    started: Instant,
    signal: Signal,
}

impl Permit {
    pub fn set_signal(&mut self, signal: Signal) {
        self.signal = signal;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        let in_flight = state.in_flight;
        match self.signal {
            Signal::Healthy => state.limiter.on_success(self.started.elapsed(), in_flight),
            Signal::Contended | Signal::LinkFailure => state.limiter.on_failure(),
            Signal::Silent => {}
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

    /// A queue bounded only by its number of places.
    fn places(max_waiting: usize) -> QueueBounds {
        QueueBounds {
            max_wait: Duration::from_secs(3600),
            max_waiting,
        }
    }

    fn queue_in_background(
        slots: &Arc<Slots>,
        priority: Priority,
    ) -> tokio::task::JoinHandle<Result<(), Shed>> {
        let slots = slots.clone();
        crate::metrics::spawn(async move { slots.acquire(priority, soon()).await.map(|_| ()) })
    }

    async fn until_queued(slots: &Slots, n: usize) {
        while slots.load().queued < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn within_the_limit_requests_are_admitted_at_once() {
        let slots = Slots::new(Gradient::new(2, 2, 2), places(4));
        let a = slots.acquire(Priority::Report, soon()).await.unwrap();
        let _b = slots.acquire(Priority::Report, soon()).await.unwrap();
        assert_eq!(slots.load().in_flight, 2);
        drop(a);
        assert_eq!(slots.load().in_flight, 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_reports_get_less_of_it() {
        let slots = Slots::new(Gradient::new(1, 1, 1), places(4));
        let running = slots.acquire(Priority::Ingest, soon()).await.unwrap();
        let waiting = [
            queue_in_background(&slots, Priority::Report),
            queue_in_background(&slots, Priority::Report),
        ];
        until_queued(&slots, 2).await;
        // Reports may use half of the queue: it is theirs no more.
        let refused = slots.acquire(Priority::Report, soon()).await;
        assert_eq!(refused.err(), Some(Shed::QueueFull));
        assert!(slots.shed_within(Duration::from_secs(1)));
        // Ingest still finds room.
        let ingest = queue_in_background(&slots, Priority::Ingest);
        until_queued(&slots, 3).await;
        drop(running);
        // The freed slot goes to ingest, queued last but more important.
        assert_eq!(ingest.await.unwrap(), Ok(()));
        for w in waiting {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_group_write_finds_room_when_the_queue_is_full() {
        let slots = Slots::new(Gradient::new(1, 1, 1), places(2));
        let running = slots.acquire(Priority::Ingest, soon()).await.unwrap();
        let waiting = [
            queue_in_background(&slots, Priority::Auth),
            queue_in_background(&slots, Priority::Ingest),
        ];
        until_queued(&slots, 2).await;
        let refused = slots.acquire(Priority::Ingest, soon()).await;
        assert_eq!(refused.err(), Some(Shed::QueueFull));
        let group = queue_in_background(&slots, Priority::Group);
        until_queued(&slots, 3).await;
        drop(running);
        assert_eq!(group.await.unwrap(), Ok(()));
        for w in waiting {
            assert_eq!(w.await.unwrap(), Ok(()));
        }
    }

    #[tokio::test]
    async fn a_live_push_is_served_before_a_backlog_queued_ahead_of_it() {
        let slots = Slots::new(Gradient::new(1, 1, 1), places(8));
        let running = slots.acquire(Priority::Backlog, soon()).await.unwrap();
        let backlog = [
            queue_in_background(&slots, Priority::Backlog),
            queue_in_background(&slots, Priority::Backlog),
        ];
        until_queued(&slots, 2).await;
        let live = {
            let slots = slots.clone();
            crate::metrics::spawn(async move { slots.acquire(Priority::Ingest, soon()).await })
        };
        until_queued(&slots, 3).await;
        drop(running);
        // The freed slot goes to the live push, queued last.
        let _live = live.await.unwrap().expect("admitted");
        assert_eq!(slots.load().queued, 2, "the backlog still waits");
        for w in backlog {
            w.abort();
        }
    }

    #[tokio::test]
    async fn the_queue_takes_only_what_can_be_served_within_the_longest_wait() {
        // One slot, operations take 40 ms: the n-th waiter expects n * 40 ms.
        let mut limiter = Gradient::new(1, 1, 1);
        limiter.on_success(Duration::from_millis(40), 1);
        let bounds = QueueBounds {
            max_wait: Duration::from_millis(100),
            max_waiting: 1000,
        };
        let slots = Slots::new(limiter, bounds);
        let running = slots.acquire(Priority::Ingest, soon()).await.unwrap();
        let first = queue_in_background(&slots, Priority::Ingest);
        until_queued(&slots, 1).await;
        // A report would wait 80 ms, beyond its half of the 100 ms.
        let report = slots.acquire(Priority::Report, soon()).await;
        assert_eq!(report.err(), Some(Shed::QueueFull));
        // A second push would wait 80 ms: within; a third 120 ms: refused at once.
        let second = queue_in_background(&slots, Priority::Ingest);
        until_queued(&slots, 2).await;
        let third = slots.acquire(Priority::Ingest, soon()).await;
        assert_eq!(third.err(), Some(Shed::QueueFull));
        drop(running);
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(second.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn when_the_link_goes_down_every_waiter_is_answered_at_once() {
        let slots = Slots::new(Gradient::new(1, 1, 1), places(4));
        let running = slots.acquire(Priority::Ingest, soon()).await.unwrap();
        let waiting = [
            queue_in_background(&slots, Priority::Ingest),
            queue_in_background(&slots, Priority::Report),
        ];
        until_queued(&slots, 2).await;
        slots.refuse_waiting();
        for waiter in waiting {
            assert_eq!(waiter.await.unwrap(), Err(Shed::LinkDown));
        }
        assert_eq!(slots.load().queued, 0);
        drop(running);
        assert_eq!(slots.load().in_flight, 0);
    }

    #[tokio::test]
    async fn a_waiter_whose_deadline_passes_is_dropped() {
        let slots = Slots::new(Gradient::new(1, 1, 1), places(4));
        let running = slots.acquire(Priority::Ingest, soon()).await.unwrap();
        let late = slots
            .acquire(Priority::Ingest, Instant::now() + Duration::from_millis(50))
            .await;
        assert_eq!(late.err(), Some(Shed::Expired));
        assert_eq!(slots.load().queued, 0);
        drop(running);
        assert_eq!(slots.load().in_flight, 0);
    }

    /// A request abandoned after it was handed a slot but before it took
    /// it (its client hung up) must not keep the slot.
    #[tokio::test]
    async fn an_abandoned_waiter_gives_back_the_slot_it_was_handed() {
        use futures::FutureExt;
        let slots = Slots::new(Gradient::new(1, 1, 1), places(4));
        let running = slots.acquire(Priority::Ingest, soon()).await.unwrap();
        let mut abandoned = Box::pin(slots.acquire(Priority::Ingest, soon()));
        assert!((&mut abandoned).now_or_never().is_none(), "queued");
        assert_eq!(slots.load().queued, 1);
        // The slot is handed to the waiter, which never looks again.
        drop(running);
        assert_eq!(slots.load().in_flight, 1);
        drop(abandoned);
        assert_eq!(slots.load().in_flight, 0);
        // And an abandoned waiter that was never served leaves the queue.
        let running = slots.acquire(Priority::Ingest, soon()).await.unwrap();
        let mut abandoned = Box::pin(slots.acquire(Priority::Ingest, soon()));
        assert!((&mut abandoned).now_or_never().is_none(), "queued");
        drop(abandoned);
        assert_eq!(slots.load().queued, 0);
        drop(running);
        let next = slots.acquire(Priority::Ingest, soon()).now_or_never();
        assert!(matches!(next, Some(Ok(_))), "the slot is free again");
    }
}
