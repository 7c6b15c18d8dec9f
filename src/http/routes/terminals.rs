//! The terminals resource, for a merchant admin: `POST /v1/terminals`
//! provisions a till, `POST /v1/terminals/{id}/revoke` withdraws its token
//! (a stolen till), `POST /v1/terminals/{id}/retire` takes it out of service
//! (its sales made before are still accepted whenever they arrive), and
//! `GET /v1/terminals` is the fleet view: per till what the server holds and
//! when it last pushed, so an admin sees which tills are behind.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::params;
use crate::db::DbError;
use crate::db::reports::{self, FleetRow};
use crate::db::tenancy::{self, Withdrawal};
use crate::domain::store::parse_name;
use crate::domain::token::{self, TokenKind};
use crate::error::{ApiError, ProblemCode};
use crate::http::AppState;
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::middleware::auth::MerchantAdmin;

#[derive(Deserialize)]
pub struct CreateTerminal {
    store_id: Uuid,
    name: String,
}

#[derive(Serialize)]
pub struct TerminalCreated {
    terminal_id: Uuid,
    store_id: Uuid,
    name: String,
    /// Shown once; only its hash is stored.
    token: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize)]
pub struct TerminalView {
    terminal_id: Uuid,
    store_id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    revoked: bool,
    revoked_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
}

impl From<tenancy::TerminalRow> for TerminalView {
    fn from(row: tenancy::TerminalRow) -> Self {
        Self {
            terminal_id: row.terminal_id,
            store_id: row.store_id,
            name: row.name,
            created_at: row.created_at,
            revoked: row.revoked_at.is_some(),
            revoked_at: row.revoked_at,
            retired_at: row.retired_at,
        }
    }
}

fn store_not_found() -> ApiError {
    ApiError::new(ProblemCode::StoreNotFound, "no such store")
}

fn terminal_not_found() -> ApiError {
    ApiError::new(ProblemCode::TerminalNotFound, "no such terminal")
}

/// `POST /v1/terminals`: the till's token is in this answer only.
pub async fn create(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    JsonBody(request): JsonBody<CreateTerminal>,
) -> Result<(StatusCode, Json<TerminalCreated>), ApiError> {
    let name = parse_name("name", &request.name)
        .map_err(|d| ApiError::new(ProblemCode::InvalidName, d))?;
    let (token, hash) = token::generate(TokenKind::Terminal, admin.merchant_id);

    let mut tx = state.db.begin().await?;
    // Another merchant's store is reported exactly like a missing one.
    if !tenancy::store_exists(&mut tx, admin.merchant_id, request.store_id).await? {
        return Err(store_not_found());
    }
    let row = tenancy::insert_terminal(&mut tx, admin.merchant_id, request.store_id, &name, &hash)
        .await?;
    tx.commit().await.map_err(DbError::from)?;
    tracing::info!(merchant.id = %admin.merchant_id, terminal.id = %row.terminal_id, "created terminal {}", row.terminal_id);

    let created = TerminalCreated {
        terminal_id: row.terminal_id,
        store_id: row.store_id,
        name: row.name,
        token,
        created_at: row.created_at,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// `POST /v1/terminals/{id}/revoke`: idempotent; the token stops working
/// here at once and on other instances within the auth cache TTL.
pub async fn revoke(
    state: State<AppState>,
    admin: MerchantAdmin,
    terminal_id: Path<String>,
) -> Result<Json<TerminalView>, ApiError> {
    withdraw(state, admin, terminal_id, Withdrawal::Revoke).await
}

/// `POST /v1/terminals/{id}/retire`: idempotent (the first time is kept).
/// The token keeps working, so the till's offline queue still lands: a sale
/// that occurred before `retired_at` is accepted whenever it arrives, one
/// that occurred after is refused (`terminal_retired`) and listed. The
/// retirement reaches other instances within the auth cache TTL.
pub async fn retire(
    state: State<AppState>,
    admin: MerchantAdmin,
    terminal_id: Path<String>,
) -> Result<Json<TerminalView>, ApiError> {
    withdraw(state, admin, terminal_id, Withdrawal::Retire).await
}

async fn withdraw(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    Path(terminal_id): Path<String>,
    withdrawal: Withdrawal,
) -> Result<Json<TerminalView>, ApiError> {
    let terminal_id = Uuid::try_parse(&terminal_id).map_err(|_| terminal_not_found())?;
    let mut conn = state.db.unit().await?;
    let (row, hash) =
        tenancy::withdraw_terminal(&mut conn, admin.merchant_id, terminal_id, withdrawal)
            .await?
            .ok_or_else(terminal_not_found)?;
    conn.finish().await?;
    // The cached terminal is stale either way: revoked, or with a new
    // retirement time.
    state.auth.forget(&hash);
    let what = match withdrawal {
        Withdrawal::Revoke => "revoked",
        Withdrawal::Retire => "retired",
    };
    tracing::info!(merchant.id = %admin.merchant_id, terminal.id = %terminal_id, "{what} terminal {terminal_id}");
    Ok(Json(TerminalView::from(row)))
}

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
    /// Seqs at or below `highest_seq` the server neither holds nor counts
    /// as settled.
    missing_count: i64,
    sales_stored: i64,
    revoked: bool,
    retired_at: Option<DateTime<Utc>>,
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
            missing_count: r.missing_count,
            sales_stored: r.sales_stored,
            revoked: r.revoked_at.is_some(),
            retired_at: r.retired_at,
        }
    }
}

/// `GET /v1/terminals[?store_id=...]`: the fleet view.
pub async fn list(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    QueryParams(query): QueryParams<FleetQuery>,
) -> Result<Json<Fleet>, ApiError> {
    let store_id = params::uuid("store_id", query.store_id.as_deref())?;
    let mut conn = state.db.unit().await?;
    params::check_owned(&mut conn, admin.merchant_id, store_id, None).await?;
    let rows = reports::fleet(&mut conn, admin.merchant_id, store_id).await?;
    conn.finish().await?;
    Ok(Json(Fleet {
        terminals: rows.into_iter().map(TerminalStatus::from).collect(),
    }))
}
