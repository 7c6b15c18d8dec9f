//! `POST /v1/terminals` and `POST /v1/terminals/{id}/revoke`: a merchant
//! admin provisions tills and withdraws their tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::auth::MerchantAdmin;
use super::extract::JsonBody;
use crate::db::{DbError, tenancy};
use crate::domain::store::parse_name;
use crate::domain::token::{self, TokenKind};
use crate::error::{ApiError, ProblemCode};

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
}

fn store_not_found() -> ApiError {
    ApiError::new(ProblemCode::StoreNotFound, "no such store")
}

fn terminal_not_found() -> ApiError {
    ApiError::new(ProblemCode::TerminalNotFound, "no such terminal")
}

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

pub async fn revoke(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    Path(terminal_id): Path<String>,
) -> Result<Json<TerminalView>, ApiError> {
    let terminal_id = Uuid::try_parse(&terminal_id).map_err(|_| terminal_not_found())?;
    let mut conn = state.db.acquire().await?;
    let (row, hash) = tenancy::revoke_terminal(&mut conn, admin.merchant_id, terminal_id)
        .await?
        .ok_or_else(terminal_not_found)?;
    state.auth.forget(&hash);
    tracing::info!(merchant.id = %admin.merchant_id, terminal.id = %terminal_id, "revoked terminal {terminal_id}");
    Ok(Json(TerminalView {
        terminal_id: row.terminal_id,
        store_id: row.store_id,
        name: row.name,
        created_at: row.created_at,
        revoked: row.revoked_at.is_some(),
        revoked_at: row.revoked_at,
    }))
}
