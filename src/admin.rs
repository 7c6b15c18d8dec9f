//! `tillsync admin ...`: bootstrap commands that talk to the database
//! directly, for the operator who has no token yet.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::config::DatabaseArgs;
use crate::db::{self, Database, DbError, tenancy};
use crate::domain::store::parse_name;
use crate::domain::token::{self, TokenKind};

/// Creates a merchant with its first admin token; returns what to print.
pub async fn create_merchant(database: &DatabaseArgs, name: &str) -> anyhow::Result<Value> {
    let name = parse_name("--name", name).map_err(anyhow::Error::msg)?;
    // On the primary, where the merchant is then written too.
    let mut database = database.clone();
    database.database_url = db::primary::locate(&database.database_url).await?;
    db::pooler::migrate(&database).await?;
    let db = Database::connect_lazy(&database, Duration::from_secs(1));
    let merchant_id = Uuid::now_v7();
    let (admin_token, hash) = token::generate(TokenKind::MerchantAdmin, merchant_id);
    let mut tx = db.begin().await?;
    tenancy::insert_merchant(&mut tx, merchant_id, &name, &hash).await?;
    tx.commit().await.map_err(DbError::from)?;
    db.close().await;
    Ok(json!({"merchant_id": merchant_id, "admin_token": admin_token}))
}
