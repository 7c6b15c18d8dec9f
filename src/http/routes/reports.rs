//! `GET /v1/reports/totals`: totals per group and currency from the totals
//! tables, with how complete they are.
//!
//! This handler runs its work through the health layer itself (at report
//! priority) instead of behind the route layer: when the database cannot
//! answer (link down, overloaded, deadline passed) it serves the last good
//! copy of the same query, marked `Warning: 110 - "Response is Stale"` with
//! its `Age`, and answers 503 only when it has none.
//!
//! Sums are added up wide by Postgres (`sum(bigint)` is numeric) and cast
//! back to `bigint`, which refuses (22003) a total beyond `i64`; each number
//! is then answered only if every JSON reader holds it exactly (2^53 - 1).
//! Beyond either: `422 total_out_of_range`, never a wrapped or rounded
//! number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::params;
use crate::db::DbError;
use crate::db::reports::{self, Completeness, Scope, TotalsRow};
use crate::domain::totals::{self, MAX_EXACT_TOTAL, OutOfRange};
use crate::error::{ApiError, ProblemCode};
use crate::health::{Judged, Priority, Signal};
use crate::http::AppState;
use crate::http::extract::QueryParams;
use crate::http::middleware::arrival::Arrived;
use crate::http::middleware::auth::MerchantAdmin;

/// Longest range one request may add up.
const MAX_RANGE_DAYS: i64 = 366;
/// Stale copies kept (one per distinct query of a merchant).
const STALE_CAPACITY: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupBy {
    None,
    Day,
    Hour,
    Store,
    Terminal,
    Tender,
    Tax,
}

impl GroupBy {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        Ok(match raw.unwrap_or("none") {
            "none" => GroupBy::None,
            "day" => GroupBy::Day,
            "hour" => GroupBy::Hour,
            "store" => GroupBy::Store,
            "terminal" => GroupBy::Terminal,
            "tender" => GroupBy::Tender,
            "tax" => GroupBy::Tax,
            other => {
                return Err(ApiError::new(
                    ProblemCode::InvalidGroupBy,
                    format!(
                        "group_by must be none, day, hour, store, terminal, tender or tax, not {other:?}"
                    ),
                ));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            GroupBy::None => "none",
            GroupBy::Day => "day",
            GroupBy::Hour => "hour",
            GroupBy::Store => "store",
            GroupBy::Terminal => "terminal",
            GroupBy::Tender => "tender",
            GroupBy::Tax => "tax",
        }
    }
}

#[derive(Deserialize)]
pub struct TotalsQuery {
    from: Option<String>,
    to: Option<String>,
    store_id: Option<String>,
    terminal_id: Option<String>,
    group_by: Option<String>,
}

/// A validated request; its `key` names it in the stale-copy cache.
struct TotalsRequest {
    scope: Scope,
    group_by: GroupBy,
}

impl TotalsRequest {
    fn parse(merchant_id: Uuid, query: &TotalsQuery) -> Result<Self, ApiError> {
        let required = |name: &str, raw: &Option<String>| {
            raw.clone().ok_or_else(|| {
                ApiError::new(
                    ProblemCode::InvalidQuery,
                    format!("{name} is required (YYYY-MM-DD)"),
                )
            })
        };
        let from = params::date("from", &required("from", &query.from)?)?;
        let to = params::date("to", &required("to", &query.to)?)?;
        if from > to {
            return Err(ApiError::new(ProblemCode::InvalidRange, "from is after to"));
        }
        if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
            return Err(ApiError::new(
                ProblemCode::RangeTooLarge,
                format!("a report covers at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(Self {
            scope: Scope {
                merchant_id,
                from,
                to,
                store_id: params::uuid("store_id", query.store_id.as_deref())?,
                terminal_id: params::uuid("terminal_id", query.terminal_id.as_deref())?,
            },
            group_by: GroupBy::parse(query.group_by.as_deref())?,
        })
    }

    fn key(&self) -> String {
        let s = &self.scope;
        format!(
            "{}|{}|{}|{:?}|{:?}|{}",
            s.merchant_id,
            s.from,
            s.to,
            s.store_id,
            s.terminal_id,
            self.group_by.as_str()
        )
    }
}

/// The last good answer of each totals query, served while the database is not.
#[derive(Clone)]
pub struct StaleCopies {
    copies: Arc<Cache<String, Arc<StaleCopy>>>,
}

struct StaleCopy {
    body: Bytes,
    made: Instant,
}

impl StaleCopies {
    pub fn new(ttl: Duration) -> Self {
        let copies = Cache::builder()
            .max_capacity(STALE_CAPACITY)
            .time_to_live(ttl)
            .build();
        Self {
            copies: Arc::new(copies),
        }
    }
}

#[derive(Serialize)]
struct TotalsReport {
    from: NaiveDate,
    to: NaiveDate,
    group_by: &'static str,
    generated_at: DateTime<Utc>,
    rows: Vec<Value>,
    completeness: CompletenessView,
}

#[derive(Serialize)]
struct CompletenessView {
    terminals: i64,
    terminals_with_gaps: i64,
    terminals_never_synced: i64,
    oldest_last_seen_at: Option<DateTime<Utc>>,
}

impl From<Completeness> for CompletenessView {
    fn from(c: Completeness) -> Self {
        Self {
            terminals: c.terminals,
            terminals_with_gaps: c.terminals_with_gaps,
            terminals_never_synced: c.terminals_never_synced,
            oldest_last_seen_at: c.oldest_last_seen_at,
        }
    }
}

/// A total of this report that cannot be answered exactly.
fn out_of_range() -> ApiError {
    ApiError::total_out_of_range(format!(
        "a total of this report is beyond {MAX_EXACT_TOTAL} in magnitude (2^53 - 1, the largest \
         integer every JSON reader holds exactly); narrow the query (fewer days, one store or \
         one terminal) or group it more finely"
    ))
}

fn row_view(row: TotalsRow, group_by: GroupBy) -> Result<Value, OutOfRange> {
    let mut group = Map::new();
    match group_by {
        GroupBy::None => {}
        GroupBy::Day => {
            group.insert("business_date".into(), json!(row.business_date));
        }
        GroupBy::Hour => {
            group.insert("business_date".into(), json!(row.business_date));
            group.insert("hour".into(), json!(row.hour));
        }
        GroupBy::Store => {
            group.insert("store_id".into(), json!(row.store_id));
        }
        GroupBy::Terminal => {
            group.insert("store_id".into(), json!(row.store_id));
            group.insert("terminal_id".into(), json!(row.terminal_id));
        }
        GroupBy::Tender => {
            group.insert("method".into(), json!(row.method));
        }
        GroupBy::Tax => {
            group.insert("tax_code".into(), json!(row.tax_code));
            group.insert("rate_bp".into(), json!(row.rate_bp));
        }
    }
    // A member a row is not split by is null (discounts and tax per tender,
    // everything but tax per tax code).
    let exact = |value: Option<i64>| value.map(totals::exact).transpose();
    let net = match (row.gross_minor, row.refunds_minor) {
        (Some(gross), Some(refunds)) => Some(totals::net(gross, refunds)?),
        _ => None,
    };
    Ok(json!({
        "group": group,
        "currency": row.currency,
        "sales_count": totals::exact(row.sales_count)?,
        "refunds_count": totals::exact(row.refunds_count)?,
        "voids_count": totals::exact(row.voids_count)?,
        "gross_minor": exact(row.gross_minor)?,
        "refunds_minor": exact(row.refunds_minor)?,
        "discounts_minor": exact(row.discounts_minor)?,
        "tax_minor": exact(row.tax_minor)?,
        "net_minor": net,
        "item_sales_minor": exact(row.item_sales_minor)?,
        "gift_card_sales_minor": exact(row.gift_card_sales_minor)?,
        "tips_minor": exact(row.tips_minor)?,
        "service_charges_minor": exact(row.service_charges_minor)?,
        "rounding_minor": exact(row.rounding_minor)?,
        "net_sales_minor": exact(row.net_sales_minor)?,
    }))
}

/// Why no fresh answer could be made.
enum Failure {
    /// The database could not be used (link, load, deadline): worth a
    /// stale copy.
    Unusable(ApiError),
    /// The request itself is wrong (404, 400): no copy helps.
    Request(ApiError),
}

/// Why computing a report failed, for the health layer to judge.
enum ComputeError {
    Db(DbError),
    Request(ApiError),
}

impl Judged for ComputeError {
    fn signal(&self) -> Signal {
        match self {
            ComputeError::Db(e) => e.signal(),
            ComputeError::Request(_) => Signal::Healthy,
        }
    }
}

pub async fn totals(
    State(state): State<AppState>,
    Arrived(arrived): Arrived,
    admin: MerchantAdmin,
    QueryParams(query): QueryParams<TotalsQuery>,
) -> Result<Response, ApiError> {
    let request = TotalsRequest::parse(admin.merchant_id, &query)?;
    let key = request.key();
    match fresh(&state, &request, arrived).await {
        Ok(body) => {
            state.stale_totals.copies.insert(
                key,
                Arc::new(StaleCopy {
                    body: body.clone(),
                    made: Instant::now(),
                }),
            );
            Ok(json_response(body, None))
        }
        Err(Failure::Request(e)) => Err(e),
        Err(Failure::Unusable(refused)) => match state.stale_totals.copies.get(&key) {
            Some(copy) => Ok(json_response(copy.body.clone(), Some(copy.made.elapsed()))),
            None => Err(refused),
        },
    }
}

/// This handler goes through the health layer itself (not behind the route
/// layer) so that a refusal can still be answered from a stale copy.
async fn fresh(
    state: &AppState,
    request: &TotalsRequest,
    arrived: Instant,
) -> Result<Bytes, Failure> {
    let computed = state
        .gate
        .run(Priority::Report, arrived, compute(state, request))
        .await;
    match computed {
        Ok(Ok(body)) => Ok(body),
        Err(refusal) => Err(Failure::Unusable(refusal.into())),
        Ok(Err(ComputeError::Request(e))) => Err(Failure::Request(e)),
        Ok(Err(ComputeError::Db(e))) => Err(match e {
            DbError::Unavailable(_) | DbError::Contention(_) => Failure::Unusable(e.into()),
            // The data adds up beyond i64: no copy helps, the question must change.
            DbError::OutOfRange(_) => Failure::Request(out_of_range()),
            DbError::Other(_) => Failure::Request(e.into()),
        }),
    }
}

async fn compute(state: &AppState, request: &TotalsRequest) -> Result<Bytes, ComputeError> {
    let scope = &request.scope;
    let mut conn = reports::read_transaction(&state.db)
        .await
        .map_err(ComputeError::Db)?;
    params::check_owned(
        &mut conn,
        scope.merchant_id,
        scope.store_id,
        scope.terminal_id,
    )
    .await
    .map_err(ComputeError::Request)?;
    let rows = match request.group_by {
        GroupBy::Hour => reports::hourly_totals(&mut conn, scope).await,
        GroupBy::Tender => reports::tender_totals(&mut conn, scope).await,
        GroupBy::Tax => reports::tax_totals(&mut conn, scope).await,
        GroupBy::Terminal => reports::daily_totals(&mut conn, scope, "terminal").await,
        other if scope.terminal_id.is_some() => {
            reports::daily_totals(&mut conn, scope, other.as_str()).await
        }
        // Without a terminal in the question, a row per store and day is enough.
        other => reports::store_totals(&mut conn, scope, other.as_str()).await,
    }
    .map_err(ComputeError::Db)?;
    let completeness = reports::completeness(&mut conn, scope)
        .await
        .map_err(ComputeError::Db)?;
    let report = TotalsReport {
        from: scope.from,
        to: scope.to,
        group_by: request.group_by.as_str(),
        generated_at: Utc::now(),
        rows: rows
            .into_iter()
            .map(|r| row_view(r, request.group_by))
            .collect::<Result<_, _>>()
            .map_err(|OutOfRange| ComputeError::Request(out_of_range()))?,
        completeness: completeness.into(),
    };
    Ok(Bytes::from(
        serde_json::to_vec(&report).expect("a report always serializes"),
    ))
}

fn json_response(body: Bytes, stale_for: Option<Duration>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(age) = stale_for {
        headers.insert(
            header::WARNING,
            HeaderValue::from_static("110 - \"Response is Stale\""),
        );
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    response
}
