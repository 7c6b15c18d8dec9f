//! `POST /v1/stores`: a merchant admin opens a store.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::tenancy::{self, StoreRow};
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
}

#[derive(Serialize)]
pub struct StoreView {
    store_id: Uuid,
    name: String,
    timezone: String,
    currency: String,
    created_at: DateTime<Utc>,
}

impl From<StoreRow> for StoreView {
    fn from(row: StoreRow) -> Self {
        Self {
            store_id: row.store_id,
            name: row.name,
            timezone: row.timezone,
            currency: row.currency,
            created_at: row.created_at,
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    JsonBody(request): JsonBody<CreateStore>,
) -> Result<(StatusCode, Json<StoreView>), ApiError> {
    let name = parse_name("name", &request.name)
        .map_err(|d| ApiError::new(ProblemCode::InvalidName, d))?;
    let timezone = parse_timezone(&request.timezone)
        .map_err(|d| ApiError::new(ProblemCode::InvalidTimezone, d))?;
    let currency = parse_currency(&request.currency)
        .map_err(|d| ApiError::new(ProblemCode::InvalidCurrency, d))?;

    let mut conn = state.db.unit().await?;
    let row = tenancy::insert_store(
        &mut conn,
        admin.merchant_id,
        &name,
        timezone.name(),
        &currency,
    )
    .await?;
    conn.finish().await?;
    tracing::info!(merchant.id = %admin.merchant_id, store.id = %row.store_id, "created store {}", row.store_id);
    Ok((StatusCode::CREATED, Json(row.into())))
}
