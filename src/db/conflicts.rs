//! Payloads rejected as `sale_id_conflict`, kept for a person to review.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Clone)]
pub struct ConflictRow {
    pub conflict_id: Uuid,
    pub terminal_id: Uuid,
    pub sale_id: Uuid,
    pub batch_id: Uuid,
    pub payload: serde_json::Value,
    pub received_at: DateTime<Utc>,
}

/// Newest first; `before` is the keyset cursor (received_at, conflict_id) of
/// the last row of the previous page.
pub async fn list(
    conn: &mut PgConnection,
    merchant_id: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ConflictRow>, DbError> {
    let (before_at, before_id) = before.unzip();
    let rows = sqlx::query_as!(
        ConflictRow,
        r#"select conflict_id, terminal_id, sale_id, batch_id, payload, received_at
             from sale_conflicts
            where merchant_id = $1
              and ($2::timestamptz is null or (received_at, conflict_id) < ($2, $3))
            order by received_at desc, conflict_id desc
            limit $4"#,
        merchant_id,
        before_at,
        before_id,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
