//! `GET /v1/sync`: what the server holds from the calling till, so it can
//! trim its offline queue, resend what is missing, and check its end-of-day
//! report before clearing it.
//!
//! The day check's net is added up in numeric; a net beyond what every JSON
//! reader holds exactly (rows stored before amounts were bounded) is `422
//! total_out_of_range` for that question only: the plain sync state does not
//! depend on amounts and is always answered.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::DbError;
use crate::db::sync::{self, DayTotal};
use crate::domain::terminal::Terminal;
use crate::domain::totals::{self, MAX_EXACT_TOTAL, OutOfRange};
use crate::error::{ApiError, ProblemCode};
use crate::http::AppState;
use crate::http::extract::QueryParams;

#[derive(Deserialize)]
pub struct SyncQuery {
    business_date: Option<String>,
}

#[derive(Serialize)]
pub struct SyncResponse {
    terminal_id: Uuid,
    highest_seq: i64,
    contiguous_through_seq: i64,
    missing_seq_ranges: Vec<[i64; 2]>,
    sales_stored: i64,
    last_batch_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    business_day: Option<BusinessDay>,
}

#[derive(Serialize)]
struct BusinessDay {
    business_date: NaiveDate,
    sales_count: i64,
    totals: Vec<CurrencyTotal>,
}

#[derive(Serialize)]
struct CurrencyTotal {
    currency: String,
    sales_count: i64,
    net_minor: i64,
    tax_minor: i64,
    item_sales_minor: i64,
    gift_card_sales_minor: i64,
    tips_minor: i64,
    service_charges_minor: i64,
    rounding_minor: i64,
    net_sales_minor: i64,
}

impl TryFrom<DayTotal> for CurrencyTotal {
    type Error = OutOfRange;

    fn try_from(t: DayTotal) -> Result<Self, OutOfRange> {
        Ok(Self {
            currency: t.currency,
            sales_count: t.sales_count,
            net_minor: totals::exact(t.net_minor)?,
            tax_minor: totals::exact(t.tax_minor)?,
            item_sales_minor: totals::exact(t.item_sales_minor)?,
            gift_card_sales_minor: totals::exact(t.gift_card_sales_minor)?,
            tips_minor: totals::exact(t.tips_minor)?,
            service_charges_minor: totals::exact(t.service_charges_minor)?,
            rounding_minor: totals::exact(t.rounding_minor)?,
            net_sales_minor: totals::exact(t.net_sales_minor)?,
        })
    }
}

/// The day check cannot be answered exactly.
fn day_out_of_range() -> ApiError {
    ApiError::total_out_of_range(format!(
        "a total of this terminal on that business day is beyond {MAX_EXACT_TOTAL} in magnitude \
         (2^53 - 1, the largest integer every JSON reader holds exactly); the sync state \
         without business_date is still answered"
    ))
}

pub async fn get(
    State(state): State<AppState>,
    terminal: Terminal,
    QueryParams(query): QueryParams<SyncQuery>,
) -> Result<Json<SyncResponse>, ApiError> {
    let business_date = query
        .business_date
        .as_deref()
        .map(parse_business_date)
        .transpose()?;
    let mut conn = state.db.unit().await?;
    let view = sync::view(
        &mut conn,
        terminal.merchant_id,
        terminal.terminal_id,
        business_date,
    )
    .await
    .map_err(|e| match e {
        DbError::OutOfRange(_) => day_out_of_range(),
        e => e.into(),
    })?;
    conn.finish().await?;
    let business_day = match business_date.zip(view.day_totals) {
        Some((date, day)) => {
            Some(business_day(date, day).map_err(|OutOfRange| day_out_of_range())?)
        }
        None => None,
    };
    Ok(Json(SyncResponse {
        terminal_id: terminal.terminal_id,
        highest_seq: view.state.highest_seq,
        contiguous_through_seq: view.state.contiguous_through_seq,
        missing_seq_ranges: view.missing_seq_ranges,
        sales_stored: view.state.sales_stored,
        last_batch_at: view.state.last_batch_at,
        business_day,
    }))
}

fn business_day(date: NaiveDate, day: Vec<DayTotal>) -> Result<BusinessDay, OutOfRange> {
    let sales_count = day
        .iter()
        .try_fold(0i64, |sum, t| sum.checked_add(t.sales_count))
        .ok_or(OutOfRange)?;
    Ok(BusinessDay {
        business_date: date,
        sales_count,
        totals: day
            .into_iter()
            .map(CurrencyTotal::try_from)
            .collect::<Result<_, _>>()?,
    })
}

fn parse_business_date(raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        ApiError::new(
            ProblemCode::InvalidBusinessDate,
            "business_date must be YYYY-MM-DD",
        )
    })
}
