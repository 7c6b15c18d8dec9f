//! `GET /v1/sales`: stored sales, newest first, keyset-paginated, filtered
//! by store, terminal and business-date range.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{cursor, params};
use crate::db::reports::{self, SaleRow, SalesPage};
use crate::error::{ApiError, ProblemCode};
use crate::http::AppState;
use crate::http::extract::QueryParams;
use crate::http::middleware::auth::MerchantAdmin;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize)]
pub struct SalesQuery {
    store_id: Option<String>,
    terminal_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct SalesList {
    sales: Vec<Value>,
    next_cursor: Option<String>,
}

/// The sale as the till sent it, with where and when it was stored.
fn view(row: SaleRow) -> Value {
    let mut sale = row.body;
    if let Some(fields) = sale.as_object_mut() {
        fields.insert(
            "terminal_id".into(),
            Value::from(row.terminal_id.to_string()),
        );
        fields.insert("store_id".into(), Value::from(row.store_id.to_string()));
        fields.insert(
            "business_date".into(),
            Value::from(row.business_date.to_string()),
        );
        fields.insert(
            "received_at".into(),
            serde_json::to_value(row.received_at).unwrap_or(Value::Null),
        );
    }
    sale
}

pub async fn list(
    State(state): State<AppState>,
    admin: MerchantAdmin,
    QueryParams(query): QueryParams<SalesQuery>,
) -> Result<Json<SalesList>, ApiError> {
    let page = SalesPage {
        merchant_id: admin.merchant_id,
        store_id: params::uuid("store_id", query.store_id.as_deref())?,
        terminal_id: params::uuid("terminal_id", query.terminal_id.as_deref())?,
        from: params::optional_date("from", query.from.as_deref())?,
        to: params::optional_date("to", query.to.as_deref())?,
        before: query.cursor.as_deref().map(cursor::decode).transpose()?,
        limit: cursor::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
    };
    if let (Some(from), Some(to)) = (page.from, page.to) {
        if from > to {
            return Err(ApiError::new(ProblemCode::InvalidRange, "from is after to"));
        }
    }
    let mut conn = reports::read_transaction(&state.db).await?;
    params::check_owned(
        &mut conn,
        admin.merchant_id,
        page.store_id,
        page.terminal_id,
    )
    .await?;
    let rows = reports::sales_page(&mut conn, &page).await?;
    let next_cursor = (rows.len() as i64 == page.limit)
        .then(|| {
            rows.last()
                .map(|r| cursor::encode(r.occurred_at, r.sale_id))
        })
        .flatten();
    Ok(Json(SalesList {
        sales: rows.into_iter().map(view).collect(),
        next_cursor,
    }))
}
