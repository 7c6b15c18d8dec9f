//! `GET /v1/exceptions`: what the back office must look at, newest first,
//! keyset-paginated, filtered by store, terminal, kind and status (open by
//! default); and `POST /v1/exceptions/{exception_id}/resolve`: an admin
//! marks one resolved with a note. The server flags facts it cannot square;
//! it never drops them ([`crate::domain::exception`]).

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{cursor, params};
use crate::db::exceptions::{self, ExceptionRow, Filter, Status};
use crate::domain::bounds::check_text;
use crate::domain::exception::ExceptionKind;
use crate::error::{ApiError, ProblemCode};
use crate::http::AppState;
use crate::http::extract::{JsonBody, QueryParams};
use crate::http::middleware::auth::MerchantAdmin;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// Longest resolution note, in characters.
const MAX_NOTE_CHARS: usize = 1000;

#[derive(Deserialize)]
pub struct ListQuery {
    store_id: Option<String>,
    terminal_id: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ExceptionList {
    exceptions: Vec<ExceptionView>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ExceptionView {
    exception_id: Uuid,
    kind: String,
    status: &'static str,
    store_id: Uuid,
    terminal_id: Option<Uuid>,
    /// The facts it is about, the subject's own first.
    sale_ids: Vec<Uuid>,
    seq: Option<i64>,
    /// For a payload refused for good: why.
    code: Option<String>,
    detail: String,
    /// For a payload refused for good: as the till sent it.
    payload: Option<serde_json::Value>,
    opened_at: DateTime<Utc>,
    /// How long it has been open (or was, until resolved), in seconds.
    age_s: i64,
    resolved_at: Option<DateTime<Utc>>,
    note: Option<String>,
}

impl ExceptionView {
    fn of(row: ExceptionRow, now: DateTime<Utc>) -> Self {
        let until = row.resolved_at.unwrap_or(now);
        Self {
            exception_id: row.exception_id,
            kind: row.kind,
            status: if row.resolved_at.is_some() {
                "resolved"
            } else {
                "open"
            },
            store_id: row.store_id,
            terminal_id: row.terminal_id,
            sale_ids: row.sale_ids,
            seq: row.seq,
            code: row.code,
            detail: row.detail,
            // Stored as the till sent it, so it parses; should it not, it
            // is shown as the text it is.
            payload: row
                .payload
                .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))),
            opened_at: row.opened_at,
            age_s: (until - row.opened_at).num_seconds().max(0),
            resolved_at: row.resolved_at,
            note: row.note,
        }
    }
}

fn invalid_query(detail: String) -> ApiError {
    ApiError::new(ProblemCode::InvalidQuery, detail)
}

/// `GET /v1/exceptions`.
pub async fn list(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<ExceptionList>, ApiError> {
    let store_id = params::uuid("store_id", query.store_id.as_deref())?;
    let terminal_id = params::uuid("terminal_id", query.terminal_id.as_deref())?;
    let kind = query
        .kind
        .as_deref()
        .map(|k| {
            ExceptionKind::parse(k).ok_or_else(|| {
                let known: Vec<&str> = ExceptionKind::ALL.iter().map(|k| k.as_str()).collect();
                invalid_query(format!("kind must be one of {}", known.join(", ")))
            })
        })
        .transpose()?;
    let status = match query.status.as_deref() {
        None | Some("open") => Status::Open,
        Some("resolved") => Status::Resolved,
        Some("all") => Status::All,
        Some(_) => return Err(invalid_query("status must be open, resolved or all".into())),
    };
    let filter = Filter {
        store_id,
        terminal_id,
        kind,
        status,
        before: query.cursor.as_deref().map(cursor::decode).transpose()?,
        limit: cursor::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
    };

    let mut conn = state.db.unit().await?;
    params::check_owned(&mut conn, admin.merchant_id, store_id, terminal_id).await?;
    let rows = exceptions::list(&mut conn, admin.merchant_id, &filter).await?;
    conn.finish().await?;
    let next_cursor = (rows.len() as i64 == filter.limit)
        .then(|| {
            rows.last()
                .map(|r| cursor::encode(r.opened_at, r.exception_id))
        })
        .flatten();
    let now = Utc::now();
    Ok(Json(ExceptionList {
        exceptions: rows
            .into_iter()
            .map(|r| ExceptionView::of(r, now))
            .collect(),
        next_cursor,
    }))
}

#[derive(Deserialize)]
pub struct Resolve {
    note: String,
}

fn exception_not_found() -> ApiError {
    ApiError::new(ProblemCode::ExceptionNotFound, "no such exception")
}

/// `POST /v1/exceptions/{exception_id}/resolve`: idempotent; resolving again
/// replaces the note and keeps the first time.
pub async fn resolve(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    Path(exception_id): Path<String>,
    JsonBody(request): JsonBody<Resolve>,
) -> Result<Json<ExceptionView>, ApiError> {
    let exception_id = Uuid::try_parse(&exception_id).map_err(|_| exception_not_found())?;
    let note = request.note.trim();
    if note.is_empty() {
        return Err(ApiError::new(
            ProblemCode::InvalidNote,
            "note must say how it was resolved",
        ));
    }
    check_text(note, MAX_NOTE_CHARS)
        .map_err(|problem| ApiError::new(ProblemCode::InvalidNote, problem.describe("note")))?;

    let mut conn = state.db.unit().await?;
    let row = exceptions::resolve(&mut conn, admin.merchant_id, exception_id, note)
        .await?
        .ok_or_else(exception_not_found)?;
    conn.finish().await?;
    tracing::info!(merchant.id = %admin.merchant_id, exception.id = %exception_id, "resolved exception {exception_id}");
    Ok(Json(ExceptionView::of(row, Utc::now())))
}
