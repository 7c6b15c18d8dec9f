//! The state of the link to Postgres (`ok`, `degraded`, `unavailable`), since
//! when, and the last changes, decided from probe results and real-query
//! failures. Each change is logged once, when it happens.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many past changes are kept for the status page.
const TRANSITIONS_KEPT: usize = 20;
/// Good probes in a row needed to leave `degraded` (one slow probe is noise).
const GOOD_PROBES_TO_RECOVER: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Ok,
    Degraded,
    Unavailable,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Ok => "ok",
            LinkState::Degraded => "degraded",
            LinkState::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub from: LinkState,
    pub to: LinkState,
    pub reason: String,
}

/// What one probe saw.
#[derive(Debug, Clone)]
pub enum ProbeResult {
    Answered(Duration),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct LinkSnapshot {
    pub state: LinkState,
    pub since: DateTime<Utc>,
    pub last_probe_latency: Option<Duration>,
    pub transitions: Vec<Transition>,
}

pub struct LinkMonitor {
    inner: Mutex<Inner>,
    failures_to_unavailable: u32,
    db_degraded_latency: Duration,
}

struct Inner {
    state: LinkState,
    since: DateTime<Utc>,
    consecutive_failures: u32,
    consecutive_good: u32,
    last_probe_latency: Option<Duration>,
    transitions: VecDeque<Transition>,
}

impl LinkMonitor {
    pub fn new(failures_to_unavailable: u32, db_degraded_latency: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: LinkState::Ok,
                since: Utc::now(),
                consecutive_failures: 0,
                consecutive_good: 0,
                last_probe_latency: None,
                transitions: VecDeque::new(),
            }),
            failures_to_unavailable: failures_to_unavailable.max(1),
            db_degraded_latency,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> LinkState {
        self.lock().state
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        let inner = self.lock();
        LinkSnapshot {
            state: inner.state,
            since: inner.since,
            last_probe_latency: inner.last_probe_latency,
            transitions: inner.transitions.iter().cloned().collect(),
        }
    }

    /// Learns from a probe; returns the change it caused, if any.
    pub fn record_probe(&self, result: &ProbeResult) -> Option<Transition> {
        let mut inner = self.lock();
        let (next, reason) = match result {
            ProbeResult::Answered(latency) => {
                inner.last_probe_latency = Some(*latency);
                inner.consecutive_failures = 0;
                let ms = latency.as_millis();
                if *latency > self.db_degraded_latency {
                    inner.consecutive_good = 0;
                    (
                        LinkState::Degraded,
                        format!("probe answered slowly ({ms} ms)"),
                    )
                } else {
                    inner.consecutive_good += 1;
                    let next = match inner.state {
                        LinkState::Degraded if inner.consecutive_good < GOOD_PROBES_TO_RECOVER => {
                            LinkState::Degraded
                        }
                        _ => LinkState::Ok,
                    };
                    (next, format!("probe answered in {ms} ms"))
                }
            }
            ProbeResult::Failed(error) => {
                inner.consecutive_good = 0;
                inner.consecutive_failures += 1;
                let next = if inner.consecutive_failures >= self.failures_to_unavailable {
                    LinkState::Unavailable
                } else {
                    LinkState::Degraded.max_severity(inner.state)
                };
                (next, format!("probe failed: {error}"))
            }
        };
        transition(&mut inner, next, reason)
    }

    /// A real query failed for link reasons (I/O error, timeout): not proof
    /// of an outage, but enough to stop calling the link healthy.
    pub fn record_query_failure(&self) -> Option<Transition> {
        let mut inner = self.lock();
        inner.consecutive_good = 0;
        let next = LinkState::Degraded.max_severity(inner.state);
        transition(&mut inner, next, "queries are failing".to_owned())
    }
}

impl LinkState {
    fn severity(self) -> u8 {
        match self {
            LinkState::Ok => 0,
            LinkState::Degraded => 1,
            LinkState::Unavailable => 2,
        }
    }

    fn max_severity(self, other: LinkState) -> LinkState {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

fn transition(inner: &mut Inner, next: LinkState, reason: String) -> Option<Transition> {
    if next == inner.state {
        return None;
    }
    let change = Transition {
        at: Utc::now(),
        from: inner.state,
        to: next,
        reason,
    };
    match next {
        LinkState::Ok => {
            tracing::info!(db.state = next.as_str(), reason = %change.reason, "database link is ok again")
        }
        _ => {
            tracing::warn!(db.state = next.as_str(), reason = %change.reason, "database link is {}", next.as_str())
        }
    }
    inner.state = next;
    inner.since = change.at;
    if inner.transitions.len() == TRANSITIONS_KEPT {
        inner.transitions.pop_front();
    }
    inner.transitions.push_back(change.clone());
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor() -> LinkMonitor {
        LinkMonitor::new(2, Duration::from_millis(250))
    }

    fn ok(ms: u64) -> ProbeResult {
        ProbeResult::Answered(Duration::from_millis(ms))
    }

    fn failed() -> ProbeResult {
        ProbeResult::Failed("timed out".into())
    }

    #[test]
    fn two_failed_probes_make_the_link_unavailable_and_one_good_probe_brings_it_back() {
        let m = monitor();
        assert_eq!(m.record_probe(&failed()).unwrap().to, LinkState::Degraded);
        assert_eq!(
            m.record_probe(&failed()).unwrap().to,
            LinkState::Unavailable
        );
        assert!(
            m.record_probe(&failed()).is_none(),
            "a change is reported once"
        );
        let back = m.record_probe(&ok(3)).unwrap();
        assert_eq!(
            (back.from, back.to),
            (LinkState::Unavailable, LinkState::Ok)
        );
        assert_eq!(m.snapshot().transitions.len(), 3);
    }

    #[test]
    fn slow_probes_degrade_and_two_fast_ones_recover() {
        let m = monitor();
        assert_eq!(m.record_probe(&ok(400)).unwrap().to, LinkState::Degraded);
        assert!(m.record_probe(&ok(5)).is_none());
        assert_eq!(m.record_probe(&ok(5)).unwrap().to, LinkState::Ok);
    }

    #[test]
    fn failing_queries_degrade_but_never_recover_the_link() {
        let m = monitor();
        assert_eq!(m.record_query_failure().unwrap().to, LinkState::Degraded);
        m.record_probe(&failed());
        m.record_probe(&failed());
        assert_eq!(m.state(), LinkState::Unavailable);
        assert!(m.record_query_failure().is_none());
        assert_eq!(m.state(), LinkState::Unavailable);
    }
}
