//! Stores: `POST /v1/stores` opens one, `GET /v1/stores/{id}` shows it,
//! `PATCH /v1/stores/{id}` changes its name, time zone or business-day
//! start.
//!
//! How a store dates its sales is dated itself (see
//! [`crate::domain::calendar`]): a change of time zone or business-day
//! start takes effect `CHANGE_DELAY` after the PATCH (the answer's
//! `settings_effective_from`), and every sale falls by the settings in
//! force when it occurred, whenever it arrives.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::tenancy::{self, StoreChange, StoreRow};
use crate::domain::calendar::{format_day_start, parse_day_start};
use crate::domain::store::{parse_currency, parse_name, parse_timezone};
use crate::error::{ApiError, ProblemCode};
use crate::http::AppState;
use crate::http::extract::JsonBody;
use crate::http::middleware::auth::MerchantAdmin;

#[derive(Deserialize)]
pub struct CreateStore {
    name: String,
    timezone: String,
    currency: String,
    business_day_starts_at: Option<String>,
}

/// What a PATCH may change; a member left out keeps its value. The
/// currency is not here: a store's sales are counted in it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeStore {
    name: Option<String>,
    timezone: Option<String>,
    business_day_starts_at: Option<String>,
}

#[derive(Serialize)]
pub struct StoreView {
    store_id: Uuid,
    name: String,
    timezone: String,
    currency: String,
    business_day_starts_at: String,
    created_at: DateTime<Utc>,
    settings_effective_from: DateTime<Utc>,
}

impl From<StoreRow> for StoreView {
    fn from(row: StoreRow) -> Self {
        Self {
            store_id: row.store_id,
            name: row.name,
            timezone: row.timezone,
            currency: row.currency,
            business_day_starts_at: format_day_start(row.business_day_starts_at),
            created_at: row.created_at,
            settings_effective_from: row.settings_effective_from,
        }
    }
}

fn name(raw: &str) -> Result<String, ApiError> {
    parse_name("name", raw).map_err(|d| ApiError::new(ProblemCode::InvalidName, d))
}

fn timezone(raw: &str) -> Result<String, ApiError> {
    parse_timezone(raw)
        .map(|tz| tz.name().to_owned())
        .map_err(|d| ApiError::new(ProblemCode::InvalidTimezone, d))
}

fn day_start(raw: &str) -> Result<NaiveTime, ApiError> {
    parse_day_start(raw).map_err(|d| ApiError::new(ProblemCode::InvalidBusinessDayStart, d))
}

fn store_not_found() -> ApiError {
    ApiError::new(ProblemCode::StoreNotFound, "no such store")
}

pub async fn create(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    JsonBody(request): JsonBody<CreateStore>,
) -> Result<(StatusCode, Json<StoreView>), ApiError> {
    let name = name(&request.name)?;
    let timezone = timezone(&request.timezone)?;
    let currency = parse_currency(&request.currency)
        .map_err(|d| ApiError::new(ProblemCode::InvalidCurrency, d))?;
    let starts_at = (request.business_day_starts_at.as_deref())
        .map(day_start)
        .transpose()?
        .unwrap_or(NaiveTime::MIN);

    let mut conn = state.db.unit().await?;
    let row = tenancy::insert_store(
        &mut conn,
        admin.merchant_id,
        &name,
        &timezone,
        &currency,
        starts_at,
    )
    .await?;
    conn.finish().await?;
    tracing::info!(merchant.id = %admin.merchant_id, store.id = %row.store_id, "created store {}", row.store_id);
    Ok((StatusCode::CREATED, Json(row.into())))
}

pub async fn show(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    Path(store_id): Path<String>,
) -> Result<Json<StoreView>, ApiError> {
    let store_id = Uuid::try_parse(&store_id).map_err(|_| store_not_found())?;
    let mut conn = state.db.unit().await?;
    let row = tenancy::find_store(&mut conn, admin.merchant_id, store_id)
        .await?
        .ok_or_else(store_not_found)?;
    conn.finish().await?;
    Ok(Json(row.into()))
}

pub async fn change(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    Path(store_id): Path<String>,
    JsonBody(request): JsonBody<ChangeStore>,
) -> Result<Json<StoreView>, ApiError> {
    let store_id = Uuid::try_parse(&store_id).map_err(|_| store_not_found())?;
    let change = StoreChange {
        name: request.name.as_deref().map(name).transpose()?,
        timezone: request.timezone.as_deref().map(timezone).transpose()?,
        business_day_starts_at: (request.business_day_starts_at.as_deref())
            .map(day_start)
            .transpose()?,
    };
    let mut conn = state.db.unit().await?;
    let row = tenancy::update_store(&mut conn, admin.merchant_id, store_id, &change)
        .await?
        .ok_or_else(store_not_found)?;
    conn.finish().await?;
    tracing::info!(
        merchant.id = %admin.merchant_id,
        store.id = %store_id,
        "changed store {store_id}: its settings take effect at {}",
        row.settings_effective_from
    );
    Ok(Json(row.into()))
}
