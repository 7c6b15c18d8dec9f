//! One round of asking the server what it holds: the store's exceptions;
//! per till (a few tills at a time) its sync state, its business days and
//! its report rows (by day, and by tax code for each day); and the store's
//! report rows, the same way. Each request is retried a bounded number of
//! times; a till (or the store's rows) that still cannot be asked about is
//! an error in its place, and the verdict counts it as unverified.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::expect::ambiguous;
use super::{ExpectedTill, Fleet};
use crate::backoff::retrying;
use crate::client::{
    Api, BusinessDay, Failure, ListedException, ReportScope, SyncView, TaxRow, TotalsRow,
};

/// Pages of one listing read at most; beyond, the answer counts as failed
/// (a listing that never ends is not one to judge by).
const MAX_PAGES: usize = 10_000;

/// What the server said in one round.
pub(super) struct Observation {
    pub exceptions: Result<Vec<ListedException>, Failure>,
    /// In the fleet's order.
    pub tills: Vec<Result<TillObservation, Failure>>,
    /// The store's report rows, on every date any till's sales fall on.
    pub store: Result<ObservedRows, Failure>,
}

/// A till's or the store's report rows, as the server answered them.
#[derive(Debug, Default)]
pub(super) struct ObservedRows {
    /// `GET /v1/reports/totals?group_by=day` from the first date to the last.
    pub totals: Vec<TotalsRow>,
    /// `GET /v1/reports/totals?group_by=tax` of each date.
    pub taxes: BTreeMap<NaiveDate, Vec<TaxRow>>,
}

/// What the server said about one till.
pub(super) struct TillObservation {
    pub sync: SyncView,
    /// One per business date the till rang a sale up on, in date order.
    pub days: Vec<BusinessDay>,
    /// The till's report rows on those dates.
    pub rows: ObservedRows,
    /// The ids the server lists for the till on the dates of sales whose
    /// presence the sync state cannot tell (a reused seq); empty if none.
    pub listed: HashSet<Uuid>,
}

/// One round, asking about `concurrency` tills at a time (at least one).
pub(super) async fn observe(
    api: &Api,
    fleet: Arc<Fleet>,
    backoff_cap: Duration,
    concurrency: usize,
) -> Observation {
    let exceptions = all_exceptions(api, &fleet, backoff_cap).await;
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut asks = JoinSet::new();
    for index in 0..fleet.tills.len() {
        let (api, fleet, permits) = (api.clone(), fleet.clone(), permits.clone());
        asks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let till = &fleet.tills[index];
            let admin = fleet.admin.expose();
            (index, observe_till(&api, admin, till, backoff_cap).await)
        });
    }
    let mut tills: Vec<Result<TillObservation, Failure>> = (0..fleet.tills.len())
        .map(|_| Err(Failure::InvalidResponse("not asked".into())))
        .collect();
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((index, observed)) => tills[index] = observed,
            Err(e) => tracing::error!(error = %e, "a verification task failed"),
        }
    }
    let dates: BTreeSet<NaiveDate> = (fleet.tills.iter())
        .flat_map(|t| t.sales.iter().map(|s| s.business_date))
        .collect();
    let scope = ReportScope::Store(fleet.store_id);
    let store = report_rows(api, fleet.admin.expose(), scope, &dates, backoff_cap).await;
    Observation {
        exceptions,
        tills,
        store,
    }
}

async fn all_exceptions(
    api: &Api,
    fleet: &Fleet,
    backoff_cap: Duration,
) -> Result<Vec<ListedException>, Failure> {
    let admin = fleet.admin.expose();
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (page, next) = retrying(backoff_cap, || {
            api.exceptions_page(admin, fleet.store_id, cursor.as_deref())
        })
        .await?;
        listed.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(listed),
        }
    }
    Err(Failure::InvalidResponse(format!(
        "the exception list goes on beyond {MAX_PAGES} pages"
    )))
}

async fn observe_till(
    api: &Api,
    admin: &str,
    till: &ExpectedTill,
    backoff_cap: Duration,
) -> Result<TillObservation, Failure> {
    let token = till.token.expose();
    let sync = retrying(backoff_cap, || api.sync(token, None)).await?;
    let dates: BTreeSet<NaiveDate> = till.sales.iter().map(|s| s.business_date).collect();
    let mut days = Vec::with_capacity(dates.len());
    for &date in &dates {
        let view = retrying(backoff_cap, || api.sync(token, Some(date))).await?;
        let day = view
            .business_day
            .ok_or_else(|| Failure::InvalidResponse("no business_day in the answer".into()))?;
        days.push(day);
    }
    let scope = ReportScope::Till(till.terminal_id);
    let rows = report_rows(api, admin, scope, &dates, backoff_cap).await?;
    let unclear: BTreeSet<NaiveDate> = ambiguous(till, &sync)
        .iter()
        .map(|sale| sale.business_date)
        .collect();
    let mut listed = HashSet::new();
    for &date in &unclear {
        listed.extend(sale_ids(api, admin, till.terminal_id, date, backoff_cap).await?);
    }
    Ok(TillObservation {
        sync,
        days,
        rows,
        listed,
    })
}

/// The report rows of `scope` on `dates`: by day over all of them, and by
/// tax code one date at a time (a tax row has no date of its own).
async fn report_rows(
    api: &Api,
    admin: &str,
    scope: ReportScope,
    dates: &BTreeSet<NaiveDate>,
    backoff_cap: Duration,
) -> Result<ObservedRows, Failure> {
    let (Some(&from), Some(&to)) = (dates.first(), dates.last()) else {
        return Ok(ObservedRows::default());
    };
    let totals = retrying(backoff_cap, || api.day_totals(admin, scope, (from, to))).await?;
    let mut taxes = BTreeMap::new();
    for &date in dates {
        let rows = retrying(backoff_cap, || api.tax_totals(admin, scope, date)).await?;
        taxes.insert(date, rows);
    }
    Ok(ObservedRows { totals, taxes })
}

/// Every sale id the server lists for one till on one business date.
async fn sale_ids(
    api: &Api,
    admin: &str,
    terminal_id: Uuid,
    date: NaiveDate,
    backoff_cap: Duration,
) -> Result<Vec<Uuid>, Failure> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (page, next) = retrying(backoff_cap, || {
            api.sale_ids_page(admin, terminal_id, (date, date), cursor.as_deref())
        })
        .await?;
        ids.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
    Err(Failure::InvalidResponse(format!(
        "the sales of till {terminal_id} on {date} go on beyond {MAX_PAGES} pages"
    )))
}
