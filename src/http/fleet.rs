//! `GET /v1/terminals`: the fleet view. Per till what the server holds and
//! when it last pushed, so an admin sees which tills are behind.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::auth::MerchantAdmin;
use super::extract::QueryParams;
use super::params;
use crate::db::reports::{self, FleetRow};
use crate::error::ApiError;

#[derive(Deserialize)]
pub struct FleetQuery {
    store_id: Option<String>,
}

#[derive(Serialize)]
pub struct Fleet {
    terminals: Vec<TerminalStatus>,
}

#[derive(Serialize)]
struct TerminalStatus {
    terminal_id: Uuid,
    store_id: Uuid,
    name: String,
    /// When the till last pushed a batch.
    last_seen_at: Option<DateTime<Utc>>,
    highest_seq: i64,
    contiguous_through_seq: i64,
    /// Seqs at or below `highest_seq` the server does not hold.
    missing_count: i64,
    sales_stored: i64,
    revoked: bool,
}

impl From<FleetRow> for TerminalStatus {
    fn from(r: FleetRow) -> Self {
        Self {
            terminal_id: r.terminal_id,
            store_id: r.store_id,
            name: r.name,
            last_seen_at: r.last_seen_at,
            highest_seq: r.highest_seq,
            contiguous_through_seq: r.contiguous_through_seq,
            // Stored seqs are distinct and within 1..=highest_seq.
            missing_count: r.highest_seq - r.sales_stored,
            sales_stored: r.sales_stored,
            revoked: r.revoked_at.is_some(),
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    QueryParams(query): QueryParams<FleetQuery>,
) -> Result<Json<Fleet>, ApiError> {
    let store_id = params::uuid("store_id", query.store_id.as_deref())?;
    let mut conn = state.db.acquire().await?;
    params::check_owned(&mut conn, admin.merchant_id, store_id, None).await?;
    let rows = reports::fleet(&mut conn, admin.merchant_id, store_id).await?;
    Ok(Json(Fleet {
        terminals: rows.into_iter().map(TerminalStatus::from).collect(),
    }))
}
