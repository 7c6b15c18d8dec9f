//! The verdict: does the server hold every generated sale exactly once, with
//! the generated totals? Asked through the public API only, per till:
//!
//! 1. **Sync state** (`GET /v1/sync`): the highest seq and the contiguous
//!    prefix are the till's last seq, nothing is missing, and the stored count
//!    is the generated count. These are counters the server maintains.
//! 2. **Business days** (`GET /v1/sync?business_date=D` for each day the till
//!    sold on): per currency, the count and net the server computes from the
//!    stored rows against the same figures summed from the journal. Fewer
//!    rows than generated are lost sales, more are duplicates, a different net
//!    is a totals mismatch. Only this check sees a row deleted or added
//!    behind the counters' back.
//!
//! The checks themselves are in `checks.rs`, each adding to one till's
//! `Findings`. A check by sale id (a listing such as `GET /v1/sales`, once
//! the API has it) would be a third one there, and would tell which sales
//! are lost or doubled, not only how many; the aggregates cannot see a lost
//! sale and a duplicate that cancel out in one day's count.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use uuid::Uuid;

mod checks;

use super::backoff::retrying;
use super::client::{Api, Failure};
use super::generator::{Generated, Kind};
use checks::{Findings, expected_days};

/// Tills verified at the same time: enough to finish quickly, few enough
/// not to load the server being judged.
const VERIFY_CONCURRENCY: usize = 8;
/// Discrepancies listed in the report; the counts cover all of them.
const MAX_LISTED: usize = 50;

/// A terminal's bearer token. Its `Debug` never shows it.
#[derive(Clone)]
pub struct TerminalToken(String);

impl TerminalToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TerminalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TerminalToken(<redacted>)")
    }
}

/// What one generated sale should contribute on the server.
#[derive(Debug, Clone)]
pub struct ExpectedSale {
    pub sale_id: Uuid,
    pub seq: i64,
    pub kind: Kind,
    pub currency: &'static str,
    pub business_date: NaiveDate,
    pub total_minor: i64,
    pub refers_to_sale_id: Option<Uuid>,
}

impl From<&Generated> for ExpectedSale {
    fn from(g: &Generated) -> Self {
        Self {
            sale_id: g.sale_id,
            seq: g.seq,
            kind: g.kind,
            currency: g.currency,
            business_date: g.business_date,
            total_minor: g.total_minor,
            refers_to_sale_id: g.refers_to_sale_id,
        }
    }
}

/// One till's journal, as the verifier needs it.
#[derive(Debug, Clone)]
pub struct ExpectedTill {
    pub terminal_id: Uuid,
    pub token: TerminalToken,
    pub sales: Vec<ExpectedSale>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub tills_checked: u64,
    /// Generated sales the server does not hold.
    pub lost: u64,
    /// Rows the server holds beyond the generated sales.
    pub duplicated: u64,
    /// (till, business date, currency) groups whose net differs from the generated sum.
    pub mismatched_totals: u64,
    /// Tills whose sync counters disagree with their journal.
    pub sync_state_mismatches: u64,
    /// Tills the server could not be asked about (it kept failing).
    pub unverified_tills: u64,
    /// The first discrepancies found, for a person to look into.
    pub discrepancies: Vec<Discrepancy>,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.mismatched_totals == 0
            && self.sync_state_mismatches == 0
            && self.unverified_tills == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Discrepancy {
    pub terminal_id: Uuid,
    pub check: &'static str,
    pub detail: String,
}

/// How hard verification tries: retries of each request back off up to
/// `backoff_cap`, and the whole verification ends at `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct VerifyLimits {
    pub backoff_cap: Duration,
    pub timeout: Duration,
}

/// Verifies every till of the fleet. Requests that fail are retried a
/// bounded number of times; a till that still cannot be checked, or is not
/// checked within the timeout, counts as unverified, which fails the verdict.
pub async fn verify(api: &Api, fleet: Arc<[ExpectedTill]>, limits: VerifyLimits) -> Verification {
    let deadline = Instant::now() + limits.timeout;
    let backoff_cap = limits.backoff_cap;
    let permits = Arc::new(Semaphore::new(VERIFY_CONCURRENCY));
    let mut checks = JoinSet::new();
    for index in 0..fleet.len() {
        let (api, fleet, permits) = (api.clone(), fleet.clone(), permits.clone());
        checks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let till = &fleet[index];
            (till.terminal_id, check_till(&api, till, backoff_cap).await)
        });
    }
    let mut verification = Verification::default();
    loop {
        let joined = match timeout_at(deadline, checks.join_next()).await {
            Ok(Some(joined)) => joined,
            Ok(None) => break,
            Err(_) => {
                verification.unverified_tills += checks.len() as u64;
                checks.abort_all();
                tracing::warn!(
                    "verification timed out with {} tills unchecked",
                    checks.len()
                );
                break;
            }
        };
        match joined {
            Ok((_, Ok(findings))) => verification.add(findings),
            Ok((terminal_id, Err(failure))) => {
                verification.unverified_tills += 1;
                verification.list(Discrepancy {
                    terminal_id,
                    check: "unverified",
                    detail: format!("the server could not be asked: {failure}"),
                });
            }
            Err(e) => {
                verification.unverified_tills += 1;
                tracing::error!(error = %e, "a verification task failed");
            }
        }
    }
    verification
}

impl Verification {
    fn add(&mut self, findings: Findings) {
        self.tills_checked += 1;
        self.lost += findings.lost;
        self.duplicated += findings.duplicated;
        self.mismatched_totals += findings.mismatched_totals;
        self.sync_state_mismatches += u64::from(findings.sync_state_mismatch);
        for discrepancy in findings.discrepancies {
            self.list(discrepancy);
        }
    }

    fn list(&mut self, discrepancy: Discrepancy) {
        if self.discrepancies.len() < MAX_LISTED {
            self.discrepancies.push(discrepancy);
        }
    }
}

async fn check_till(
    api: &Api,
    till: &ExpectedTill,
    backoff_cap: Duration,
) -> Result<Findings, Failure> {
    let token = till.token.expose();
    let mut findings = Findings::default();
    let view = retrying(backoff_cap, || api.sync(token, None)).await?;
    findings.check_sync_state(till, &view);
    for (date, expected) in expected_days(&till.sales) {
        let view = retrying(backoff_cap, || api.sync(token, Some(date))).await?;
        let day = view
            .business_day
            .ok_or_else(|| Failure::InvalidResponse("no business_day in the answer".into()))?;
        findings.compare_day(till.terminal_id, &expected, &day);
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts connections and never answers: verification
    /// still ends, at its timeout, and says so.
    #[tokio::test]
    async fn verification_ends_at_its_timeout_with_the_tills_unverified() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let api = Api::new(&url.parse().unwrap(), Duration::from_secs(30), 2).unwrap();
        let till = |_| ExpectedTill {
            terminal_id: Uuid::new_v4(),
            token: TerminalToken::new("t".into()),
            sales: Vec::new(),
        };
        let fleet: Arc<[ExpectedTill]> = (0..3).map(till).collect();
        let limits = VerifyLimits {
            backoff_cap: Duration::from_millis(10),
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let verification = verify(&api, fleet, limits).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(verification.unverified_tills, 3);
        assert!(!verification.passed());
    }
}
