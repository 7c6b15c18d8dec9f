//! `GET /v1/conflicts`: payloads rejected as `sale_id_conflict`, newest
//! first, for a person to compare with what is stored.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cursor;
use crate::db::conflicts::{self, ConflictRow};
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::QueryParams;
use crate::http::middleware::auth::MerchantAdmin;

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
    let limit = cursor::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = query.cursor.as_deref().map(cursor::decode).transpose()?;

    let mut conn = state.db.unit().await?;
    let rows = conflicts::list(&mut conn, admin.merchant_id, before, limit).await?;
    conn.finish().await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| {
            rows.last()
                .map(|r| cursor::encode(r.received_at, r.conflict_id))
        })
        .flatten();
    Ok(Json(ConflictList {
        conflicts: rows.into_iter().map(ConflictView::from).collect(),
        next_cursor,
    }))
}
