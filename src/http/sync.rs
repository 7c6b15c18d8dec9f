//! `GET /v1/sync`: what the server holds from the calling till, so it can
//! trim its offline queue, resend what is missing, and check its end-of-day
//! report before clearing it.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::extract::QueryParams;
use crate::db::sync::{self, DayTotal};
use crate::domain::terminal::Terminal;
use crate::error::{ApiError, ProblemCode};

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
}

impl From<DayTotal> for CurrencyTotal {
    fn from(t: DayTotal) -> Self {
        Self {
            currency: t.currency,
            sales_count: t.sales_count,
            net_minor: t.net_minor,
        }
    }
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
    let mut conn = state.db.acquire().await?;
    let view = sync::view(
        &mut conn,
        terminal.merchant_id,
        terminal.terminal_id,
        business_date,
    )
    .await?;
    let business_day = business_date
        .zip(view.day_totals)
        .map(|(date, totals)| BusinessDay {
            business_date: date,
            sales_count: totals.iter().map(|t| t.sales_count).sum(),
            totals: totals.into_iter().map(CurrencyTotal::from).collect(),
        });
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

fn parse_business_date(raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        ApiError::new(
            ProblemCode::InvalidBusinessDate,
            "business_date must be YYYY-MM-DD",
        )
    })
}
