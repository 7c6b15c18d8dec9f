//! Watch tills: one per replica, pushing a one-sale batch to that replica
//! directly every 100 ms (under the per-till rate limit), every answer
//! recorded with its time. From their timelines the drill reads, per
//! replica, how long after the promotion pushes succeeded again and what
//! was answered in between.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::json;
use tokio::task::JoinHandle;
use uuid::Uuid;

use tillsync_testkit::Till;
use tillsync_testkit::sales::sale;

/// Time between two pushes of a watch till.
const EVERY: Duration = Duration::from_millis(100);

/// One answer: when it came, and its status (or what failed instead).
type Answer = (Instant, String);

pub struct Watch {
    pub replica: String,
    answers: Arc<Mutex<Vec<Answer>>>,
    task: JoinHandle<()>,
}

impl Watch {
    /// Starts pushing to `replica` (its `http://host:port`) as `till`.
    pub fn start(client: Client, replica: String, till: Till) -> Self {
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let task = {
            let (answers, base) = (answers.clone(), replica.clone());
            tokio::spawn(async move {
                for seq in 1.. {
                    let sent = client
                        .post(format!("{base}/v1/sales/batches"))
                        .bearer_auth(&till.token)
                        .header("Idempotency-Key", Uuid::new_v4().to_string())
                        .timeout(Duration::from_secs(10))
                        .json(&json!({"sales": [sale(seq)]}))
                        .send()
                        .await;
                    let status = match sent {
                        Ok(response) => response.status().as_u16().to_string(),
                        Err(e) if e.is_timeout() => "timeout".into(),
                        Err(_) => "connection error".into(),
                    };
                    answers.lock().unwrap().push((Instant::now(), status));
                    tokio::time::sleep(EVERY).await;
                }
            })
        };
        Self {
            replica,
            answers,
            task,
        }
    }

    /// Stops pushing; what this replica answered from `killed` on.
    pub fn finish(self, killed: Instant, promoted: Instant) -> Outcome {
        self.task.abort();
        let answers = self.answers.lock().unwrap().clone();
        outcome(self.replica, &answers, killed, promoted)
    }
}

/// What one replica answered around the failover.
pub struct Outcome {
    pub replica: String,
    /// From the promotion to the first 200 answered after it.
    pub back_after: Option<Duration>,
    /// Answers from the kill until that 200, by status.
    pub meanwhile: BTreeMap<String, u64>,
    /// Answers over the whole run, by status.
    pub all: BTreeMap<String, u64>,
}

fn outcome(replica: String, answers: &[Answer], killed: Instant, promoted: Instant) -> Outcome {
    let back = answers
        .iter()
        .find(|(at, status)| *at > promoted && status == "200")
        .map(|(at, _)| *at);
    let mut meanwhile = BTreeMap::new();
    let mut all = BTreeMap::new();
    for (at, status) in answers {
        *all.entry(status.clone()).or_default() += 1;
        if *at > killed && back.is_none_or(|back| *at < back) {
            *meanwhile.entry(status.clone()).or_default() += 1;
        }
    }
    Outcome {
        replica,
        back_after: back.map(|at| at.duration_since(promoted)),
        meanwhile,
        all,
    }
}

/// `{"200": 3, "503": 7}` as `200: 3, 503: 7`.
pub fn counts(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
