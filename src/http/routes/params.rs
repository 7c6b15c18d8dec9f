//! Query parameters shared by the report endpoints: dates and the ids of
//! the merchant's own stores and terminals (another merchant's id is a 404,
//! exactly like an unknown one).

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::tenancy;
use crate::error::{ApiError, ProblemCode};

pub fn date(name: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        ApiError::new(
            ProblemCode::InvalidDate,
            format!("{name} must be a date YYYY-MM-DD, not {raw:?}"),
        )
    })
}

pub fn optional_date(name: &str, raw: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    raw.map(|r| date(name, r)).transpose()
}

pub fn uuid(name: &str, raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    raw.map(|r| {
        Uuid::try_parse(r)
            .map_err(|_| ApiError::new(ProblemCode::InvalidQuery, format!("{name} must be a UUID")))
    })
    .transpose()
}

/// Checks that the store and terminal asked for are the merchant's.
pub async fn check_owned(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    store_id: Option<Uuid>,
    terminal_id: Option<Uuid>,
) -> Result<(), ApiError> {
    if let Some(store_id) = store_id {
        if !tenancy::store_exists(conn, merchant_id, store_id).await? {
            return Err(ApiError::new(ProblemCode::StoreNotFound, "no such store"));
        }
    }
    if let Some(terminal_id) = terminal_id {
        if !tenancy::terminal_exists(conn, merchant_id, terminal_id).await? {
            return Err(ApiError::new(
                ProblemCode::TerminalNotFound,
                "no such terminal",
            ));
        }
    }
    Ok(())
}
