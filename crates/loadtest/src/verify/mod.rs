//! The verdict: does the server hold every sale it acknowledged exactly
//! once, with the totals, sync state and exceptions the store's journals
//! call for? Asked through the public API only, in rounds:
//!
//! 1. `observe.rs` fetches what the server says: the store's exceptions
//!    (`GET /v1/exceptions?status=all`, every page); per till its sync
//!    state (`GET /v1/sync`), its business days (`GET
//!    /v1/sync?business_date=D`, counted from the stored rows) and its
//!    report rows by day and by tax code for each day (`GET
//!    /v1/reports/totals?terminal_id=`); and the store's report rows the
//!    same way (`store_id=`, which the server adds up from other tables).
//! 2. `expect.rs` works out, from every till's journal, which sales the
//!    server must hold (acknowledged ones; those sent without an answer if
//!    their seq is there), and from those what each figure must be.
//!    How each fact counts is in `figures.rs`.
//! 3. `checks.rs` compares the two, every column of every figure.
//!
//! Voids and refunds that arrived before their sale take effect through a
//! background resolver on the server, within about a second of the sale's
//! arrival: a round that does not pass is repeated until one does or the
//! settle deadline passes, and the last round is the verdict.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Serialize;
use tokio::time::{Instant, sleep_until, timeout_at};
use uuid::Uuid;

mod checks;
mod expect;
mod figures;
mod observe;

use super::args::AdminToken;
use super::client::Api;
use super::generator::{Generated, Kind, Money};
use checks::Findings;
use observe::Observation;

/// Between two rounds while the figures settle.
const SETTLE_POLL: Duration = Duration::from_millis(500);
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

/// What became of a sale, as its till knows it when the drain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The server answered `accepted` or `duplicate` at least once: it must
    /// hold the sale, and not holding it is a sale lost by the server.
    Acknowledged,
    /// The server refused it for good: kept and listed, never in a total.
    Refused { code: String },
    /// Sent, and never answered with a 200 (timed out, refused for load,
    /// or still in flight when the drain gave up): it is held if its seq is.
    SentUnanswered,
    /// Still on the till's queue, never sent.
    NeverSent,
}

/// What one generated sale should contribute on the server.
#[derive(Debug, Clone)]
pub struct ExpectedSale {
    pub sale_id: Uuid,
    pub seq: i64,
    pub kind: Kind,
    pub currency: &'static str,
    pub occurred_at: DateTime<FixedOffset>,
    pub business_date: NaiveDate,
    pub money: Money,
    pub refers_to_sale_id: Option<Uuid>,
    pub fate: Fate,
    /// When it was first pushed, and first acknowledged.
    pub first_sent: Option<Instant>,
    pub first_stored: Option<Instant>,
}

impl ExpectedSale {
    pub fn new(
        g: &Generated,
        fate: Fate,
        first_sent: Option<Instant>,
        first_stored: Option<Instant>,
    ) -> Self {
        Self {
            sale_id: g.sale_id,
            seq: g.seq,
            kind: g.kind,
            currency: g.currency,
            occurred_at: g.occurred_at,
            business_date: g.business_date,
            money: g.money.clone(),
            refers_to_sale_id: g.refers_to_sale_id,
            fate,
            first_sent,
            first_stored,
        }
    }
}

/// How retiring a till went: when the server says it was retired (or why
/// the call failed), and how many sales the till held unsent then.
#[derive(Debug, Clone)]
pub struct Retirement {
    pub retired_at: Result<DateTime<Utc>, String>,
    pub queued: u64,
    /// When the answer came, on the simulator's clock.
    pub answered: Instant,
}

/// One till's journal and incidents, as the verifier needs them.
#[derive(Debug, Clone)]
pub struct ExpectedTill {
    pub number: usize,
    pub terminal_id: Uuid,
    pub token: TerminalToken,
    /// Every sale it rang up, in that order.
    pub sales: Vec<ExpectedSale>,
    pub link_lost: bool,
    pub restored_by: Option<i64>,
    pub retirement: Option<Retirement>,
    pub voids_pushed_ahead: u64,
}

/// The store of the run and its tills.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub store_id: Uuid,
    pub admin: AdminToken,
    pub tills: Vec<ExpectedTill>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub tills_checked: u64,
    /// Sales the server acknowledged (or holds the seq of) and does not hold.
    pub lost: u64,
    /// Rows the server holds beyond the sales it should.
    pub duplicated: u64,
    /// (till, business date, currency) groups of the day check whose count
    /// or net differs from the journals'.
    pub mismatched_totals: u64,
    /// (till or store, business date, currency) rows of `GET
    /// /v1/reports/totals?group_by=day` with any column different from the
    /// journals'.
    pub mismatched_report_rows: u64,
    /// (till or store, business date, currency, tax code and rate) rows of
    /// `GET /v1/reports/totals?group_by=tax` with any column different from
    /// the journals', or a money member that is not `null` where the API
    /// leaves it out.
    pub mismatched_tax_rows: u64,
    /// Tills whose sync state disagrees with their journal.
    pub sync_state_mismatches: u64,
    /// Exceptions the journals call for that the server does not list, and
    /// exceptions it lists that they do not call for.
    pub exceptions_missing: u64,
    pub exceptions_unexpected: u64,
    /// Sales the server refused that it should have taken (every refusal
    /// but `terminal_retired` of a sale made after the retirement), and
    /// sales it took that occurred after their till was retired.
    pub refused_unexpectedly: u64,
    pub accepted_after_retirement: u64,
    /// Incidents the run could not bring about (a retirement the API
    /// refused): the behaviour asked for was not exercised.
    pub incidents_failed: u64,
    /// Tills (or the exception list, or the store's report rows) the
    /// server could not be asked about.
    pub unverified_tills: u64,
    pub exceptions_unverified: bool,
    pub store_rows_unverified: bool,
    /// Sales still on their till when the drain ended: never sent, or sent
    /// without an answer and not held by the server. Not a failure: the
    /// server never had them, and the run could not verify them.
    pub still_queued: u64,
    pub still_queued_never_sent: u64,
    /// Sales sent without an answer that the server does hold.
    pub unanswered_but_stored: u64,
    /// Rounds asked until the figures settled (or the settle deadline).
    pub rounds: u32,
    /// The first discrepancies found, for a person to look into.
    pub discrepancies: Vec<Discrepancy>,
}

impl Verification {
    /// Nothing lost, doubled or different; sales still queued on tills do
    /// not count against it (they are reported on their own).
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.mismatched_totals == 0
            && self.mismatched_report_rows == 0
            && self.mismatched_tax_rows == 0
            && self.sync_state_mismatches == 0
            && self.exceptions_missing == 0
            && self.exceptions_unexpected == 0
            && self.refused_unexpectedly == 0
            && self.accepted_after_retirement == 0
            && self.incidents_failed == 0
            && self.unverified_tills == 0
            && !self.exceptions_unverified
            && !self.store_rows_unverified
    }

    fn add(&mut self, findings: Findings) {
        self.lost += findings.lost;
        self.duplicated += findings.duplicated;
        self.mismatched_totals += findings.mismatched_totals;
        self.mismatched_report_rows += findings.mismatched_report_rows;
        self.mismatched_tax_rows += findings.mismatched_tax_rows;
        self.sync_state_mismatches += u64::from(findings.sync_state_mismatch);
        self.exceptions_missing += findings.exceptions_missing;
        self.exceptions_unexpected += findings.exceptions_unexpected;
        self.refused_unexpectedly += findings.refused_unexpectedly;
        self.accepted_after_retirement += findings.accepted_after_retirement;
        self.incidents_failed += findings.incidents_failed;
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

#[derive(Debug, Clone, Serialize)]
pub struct Discrepancy {
    /// The till concerned; `None` for the store's exception list and report
    /// rows.
    pub terminal_id: Option<Uuid>,
    pub check: &'static str,
    pub detail: String,
}

/// How hard verification tries: retries of each request back off up to
/// `backoff_cap`; rounds repeat until the figures settle or `settle`
/// passed; the whole verification ends at `timeout`; `concurrency` tills
/// are asked about at the same time.
#[derive(Debug, Clone, Copy)]
pub struct VerifyLimits {
    pub backoff_cap: Duration,
    pub settle: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
}

/// Verifies the whole store. A till the server could not be asked about,
/// or not within the timeout, counts as unverified, which fails the verdict.
pub async fn verify(api: &Api, fleet: Arc<Fleet>, limits: VerifyLimits) -> Verification {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let settle_by = (started + limits.settle).min(deadline);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let asked = observe::observe(api, fleet.clone(), limits.backoff_cap, limits.concurrency);
        let Ok(observation) = timeout_at(deadline, asked).await else {
            tracing::warn!("verification timed out in round {rounds}");
            return Verification {
                unverified_tills: fleet.tills.len() as u64,
                exceptions_unverified: true,
                store_rows_unverified: true,
                rounds,
                ..Verification::default()
            };
        };
        let mut verification = judge(&fleet, &observation);
        verification.rounds = rounds;
        let next_round = Instant::now() + SETTLE_POLL;
        if verification.passed() || next_round >= settle_by {
            return verification;
        }
        tracing::debug!(
            round = rounds,
            discrepancies = verification.discrepancies.len(),
            "figures not settled yet in round {rounds}; asking again"
        );
        sleep_until(next_round).await;
    }
}

/// The verdict on one round of answers.
fn judge(fleet: &Fleet, observation: &Observation) -> Verification {
    let refused_listed: HashSet<Uuid> = match &observation.exceptions {
        Ok(listed) => listed
            .iter()
            .filter(|e| e.kind == "refused")
            .flat_map(|e| e.sale_ids.iter().copied())
            .collect(),
        Err(_) => HashSet::new(),
    };
    let presence = expect::presence(fleet, &observation.tills, &refused_listed);
    let expected = expect::expected(fleet, &presence);
    let mut verification = Verification {
        still_queued: presence.still_queued,
        still_queued_never_sent: presence.never_sent,
        unanswered_but_stored: presence.unanswered_stored,
        ..Verification::default()
    };
    for ((till, wanted), observed) in fleet
        .tills
        .iter()
        .zip(&expected.tills)
        .zip(&observation.tills)
    {
        match observed {
            Ok(observed) => {
                verification.tills_checked += 1;
                verification.add(checks::check_till(till, wanted, observed));
            }
            Err(failure) => {
                verification.unverified_tills += 1;
                verification.list(Discrepancy {
                    terminal_id: Some(till.terminal_id),
                    check: "unverified",
                    detail: format!("the server could not be asked: {failure}"),
                });
            }
        }
    }
    match &observation.store {
        Ok(rows) => verification.add(checks::check_store(&expected.store, rows)),
        Err(failure) => {
            verification.store_rows_unverified = true;
            verification.list(Discrepancy {
                terminal_id: None,
                check: "unverified",
                detail: format!("the store's report rows could not be read: {failure}"),
            });
        }
    }
    match &observation.exceptions {
        Ok(listed) => verification.add(checks::compare_exceptions(&expected.exceptions, listed)),
        Err(failure) => {
            verification.exceptions_unverified = true;
            verification.list(Discrepancy {
                terminal_id: None,
                check: "unverified",
                detail: format!("the exception list could not be read: {failure}"),
            });
        }
    }
    verification.add(checks::refusals(fleet, &presence));
    verification
}

#[cfg(test)]
mod tests;
