//! `GET /v1/conflicts`: payloads rejected as `sale_id_conflict`, newest
//! first, for a person to compare with what is stored.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::auth::MerchantAdmin;
use super::extract::QueryParams;
use crate::db::conflicts::{self, ConflictRow};
use crate::error::ApiError;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ConflictList {
    conflicts: Vec<ConflictView>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct ConflictView {
    conflict_id: Uuid,
    terminal_id: Uuid,
    sale_id: Uuid,
    batch_id: Uuid,
    received_at: DateTime<Utc>,
    /// The sale as the till sent it this time.
    payload: serde_json::Value,
}

impl From<ConflictRow> for ConflictView {
    fn from(r: ConflictRow) -> Self {
        Self {
            conflict_id: r.conflict_id,
            terminal_id: r.terminal_id,
            sale_id: r.sale_id,
            batch_id: r.batch_id,
            received_at: r.received_at,
            payload: r.payload,
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<ConflictList>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;

    let mut conn = state.db.acquire().await?;
    let rows = conflicts::list(&mut conn, admin.merchant_id, before, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| {
            rows.last()
                .map(|r| encode_cursor(r.received_at, r.conflict_id))
        })
        .flatten();
    Ok(Json(ConflictList {
        conflicts: rows.into_iter().map(ConflictView::from).collect(),
        next_cursor,
    }))
}

fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.timestamp_micros()))
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let invalid = || ApiError::bad_request("invalid_cursor", "cursor is not one this API returned");
    let text = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let text = String::from_utf8(text).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
    let at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((at, Uuid::try_parse(id).map_err(|_| invalid())?))
}
