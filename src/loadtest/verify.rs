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
//! Each check adds to [`Findings`]. A check by sale id (a listing such as
//! `GET /v1/sales`, once the API has it) would be a third one, and would
//! tell which sales are lost or doubled, not only how many; the aggregates
//! cannot see a lost sale and a duplicate that cancel out in one day's count.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use uuid::Uuid;

use super::backoff::retrying;
use super::client::{Api, BusinessDay, Failure, SyncView};
use super::generator::{Generated, Kind};

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

/// What the checks found about one till.
#[derive(Debug, Default)]
struct Findings {
    lost: u64,
    duplicated: u64,
    mismatched_totals: u64,
    sync_state_mismatch: bool,
    discrepancies: Vec<Discrepancy>,
}

/// Count and net of a group of sales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Figures {
    sales_count: i64,
    net_minor: i64,
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

/// Per business date and currency, what the journal says the server must
/// hold, with the report definitions: a sale adds its total to net, a refund
/// subtracts it, a void adds nothing and neither does the sale it voids;
/// every row counts in `sales_count`.
fn expected_days(sales: &[ExpectedSale]) -> BTreeMap<NaiveDate, BTreeMap<&'static str, Figures>> {
    let voided: std::collections::HashSet<Uuid> = sales
        .iter()
        .filter(|s| s.kind == Kind::Void)
        .filter_map(|s| s.refers_to_sale_id)
        .collect();
    let mut days: BTreeMap<NaiveDate, BTreeMap<&'static str, Figures>> = BTreeMap::new();
    for sale in sales {
        let figures = days
            .entry(sale.business_date)
            .or_default()
            .entry(sale.currency)
            .or_default();
        figures.sales_count += 1;
        figures.net_minor += match sale.kind {
            Kind::Sale if voided.contains(&sale.sale_id) => 0,
            Kind::Sale => sale.total_minor,
            Kind::Refund => -sale.total_minor,
            Kind::Void => 0,
        };
    }
    days
}

impl Findings {
    fn check_sync_state(&mut self, till: &ExpectedTill, view: &SyncView) {
        let last_seq = till.sales.last().map_or(0, |s| s.seq);
        let generated = till.sales.len() as i64;
        let agrees = view.highest_seq == last_seq
            && view.contiguous_through_seq == last_seq
            && view.missing_seq_ranges.is_empty()
            && view.sales_stored == generated;
        if !agrees {
            self.sync_state_mismatch = true;
            self.discrepancies.push(Discrepancy {
                terminal_id: till.terminal_id,
                check: "sync_state",
                detail: format!(
                    "expected highest and contiguous seq {last_seq} and {generated} stored, \
                     server has highest {}, contiguous {}, {} stored, missing {:?}",
                    view.highest_seq,
                    view.contiguous_through_seq,
                    view.sales_stored,
                    view.missing_seq_ranges
                ),
            });
        }
    }

    fn compare_day(
        &mut self,
        terminal_id: Uuid,
        expected: &BTreeMap<&'static str, Figures>,
        day: &BusinessDay,
    ) {
        let stored: BTreeMap<&str, Figures> = day
            .totals
            .iter()
            .map(|t| {
                let figures = Figures {
                    sales_count: t.sales_count,
                    net_minor: t.net_minor,
                };
                (t.currency.as_str(), figures)
            })
            .collect();
        let currencies: std::collections::BTreeSet<&str> = expected
            .keys()
            .copied()
            .chain(stored.keys().copied())
            .collect();
        for currency in currencies {
            let want = expected.get(currency).copied().unwrap_or_default();
            let have = stored.get(currency).copied().unwrap_or_default();
            if want == have {
                continue;
            }
            let difference = have.sales_count - want.sales_count;
            if difference < 0 {
                self.lost += difference.unsigned_abs();
            } else {
                self.duplicated += difference.unsigned_abs();
            }
            if want.net_minor != have.net_minor {
                self.mismatched_totals += 1;
            }
            self.discrepancies.push(Discrepancy {
                terminal_id,
                check: "business_day",
                detail: format!(
                    "{} {currency}: expected {} sales with net {}, server has {} with net {}",
                    day.business_date,
                    want.sales_count,
                    want.net_minor,
                    have.sales_count,
                    have.net_minor
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::client::CurrencyTotal;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
    }

    fn sale(seq: i64, kind: Kind, currency: &'static str, total: i64) -> ExpectedSale {
        ExpectedSale {
            sale_id: Uuid::new_v4(),
            seq,
            kind,
            currency,
            business_date: date(),
            total_minor: total,
            refers_to_sale_id: None,
        }
    }

    fn day(totals: &[(&str, i64, i64)]) -> BusinessDay {
        BusinessDay {
            business_date: date(),
            sales_count: totals.iter().map(|t| t.1).sum(),
            totals: totals
                .iter()
                .map(|&(currency, sales_count, net_minor)| CurrencyTotal {
                    currency: currency.into(),
                    sales_count,
                    net_minor,
                })
                .collect(),
        }
    }

    fn journal() -> Vec<ExpectedSale> {
        let kept = sale(1, Kind::Sale, "EUR", 1000);
        let voided = sale(2, Kind::Sale, "EUR", 500);
        let mut void = sale(3, Kind::Void, "EUR", 500);
        void.refers_to_sale_id = Some(voided.sale_id);
        let refund = sale(4, Kind::Refund, "EUR", 200);
        let foreign = sale(5, Kind::Sale, "CHF", 700);
        vec![kept, voided, void, refund, foreign]
    }

    fn compare(stored: &[(&str, i64, i64)]) -> Findings {
        let mut findings = Findings::default();
        let expected = expected_days(&journal());
        findings.compare_day(Uuid::nil(), &expected[&date()], &day(stored));
        findings
    }

    #[test]
    fn voids_and_voided_sales_count_as_rows_but_not_in_net() {
        let days = expected_days(&journal());
        let eur = days[&date()]["EUR"];
        assert_eq!(
            eur,
            Figures {
                sales_count: 4,
                net_minor: 800
            }
        );
        assert_eq!(days[&date()]["CHF"].net_minor, 700);
    }

    #[test]
    fn matching_figures_find_nothing() {
        let findings = compare(&[("CHF", 1, 700), ("EUR", 4, 800)]);
        assert_eq!(
            (
                findings.lost,
                findings.duplicated,
                findings.mismatched_totals
            ),
            (0, 0, 0)
        );
        assert!(findings.discrepancies.is_empty());
    }

    #[test]
    fn fewer_rows_are_lost_more_rows_are_duplicated_and_nets_are_compared() {
        let lost = compare(&[("CHF", 1, 700), ("EUR", 3, -200)]);
        assert_eq!(
            (lost.lost, lost.duplicated, lost.mismatched_totals),
            (1, 0, 1)
        );
        let doubled = compare(&[("CHF", 2, 1400), ("EUR", 4, 800)]);
        assert_eq!(
            (doubled.lost, doubled.duplicated, doubled.mismatched_totals),
            (0, 1, 1)
        );
        let missing_currency = compare(&[("EUR", 4, 800)]);
        assert_eq!(missing_currency.lost, 1);
        let extra_currency = compare(&[("CHF", 1, 700), ("EUR", 4, 800), ("USD", 1, 5)]);
        assert_eq!(extra_currency.duplicated, 1);
        let wrong_net = compare(&[("CHF", 1, 700), ("EUR", 4, 801)]);
        assert_eq!(
            (
                wrong_net.lost,
                wrong_net.duplicated,
                wrong_net.mismatched_totals
            ),
            (0, 0, 1)
        );
    }

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
            sales: journal(),
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

    #[test]
    fn sync_counters_must_match_the_journal() {
        let till = ExpectedTill {
            terminal_id: Uuid::nil(),
            token: TerminalToken::new("t".into()),
            sales: journal(),
        };
        let view = |highest_seq, missing: Vec<[i64; 2]>, sales_stored| SyncView {
            highest_seq,
            contiguous_through_seq: highest_seq,
            missing_seq_ranges: missing,
            sales_stored,
            business_day: None,
        };
        let mut good = Findings::default();
        good.check_sync_state(&till, &view(5, vec![], 5));
        assert!(!good.sync_state_mismatch);
        for bad_view in [
            view(4, vec![], 4),
            view(5, vec![[2, 2]], 4),
            view(5, vec![], 6),
        ] {
            let mut bad = Findings::default();
            bad.check_sync_state(&till, &bad_view);
            assert!(bad.sync_state_mismatch, "{bad_view:?}");
        }
    }
}
