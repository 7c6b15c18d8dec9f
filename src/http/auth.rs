//! Who is calling: bearer tokens resolved to a merchant admin or a terminal.
//!
//! Resolved tokens are cached for a short TTL (at most 5 s, checked in
//! config) so a busy till does not cost a query per request; that TTL is the
//! bound on how long a revoked token keeps working on another instance. The
//! instance that revokes forgets the token at once. Unknown tokens are never
//! cached: a token created a moment ago must work on its first request.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use moka::sync::Cache;
use uuid::Uuid;

use super::AppState;
use crate::db::{Database, tenancy};
use crate::domain::token::{self, TokenHash, TokenKind};
use crate::error::ApiError;
use crate::ingest::Pusher;

/// Enough entries for every till of a large fleet; each is a few hundred bytes.
const CACHE_CAPACITY: u64 = 200_000;

#[derive(Debug, Clone)]
pub enum Principal {
    MerchantAdmin { merchant_id: Uuid },
    Terminal(Pusher),
}

#[derive(Clone)]
pub struct Authenticator {
    db: Database,
    cache: Arc<Cache<TokenHash, Principal>>,
}

impl Authenticator {
    pub fn new(db: Database, ttl: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(ttl)
            .build();
        Self {
            db,
            cache: Arc::new(cache),
        }
    }

    pub async fn authenticate(&self, parts: &Parts) -> Result<Principal, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials)
            .and_then(token::parse)
            .ok_or_else(ApiError::unauthorized)?;
        if let Some(principal) = self.cache.get(&presented.hash) {
            return Ok(principal);
        }
        let mut conn = self.db.acquire().await?;
        let principal = match presented.kind {
            TokenKind::MerchantAdmin => {
                tenancy::admin_token_exists(&mut conn, presented.merchant_id, &presented.hash)
                    .await?
                    .then_some(Principal::MerchantAdmin {
                        merchant_id: presented.merchant_id,
                    })
            }
            TokenKind::Terminal => {
                tenancy::find_terminal_by_token(&mut conn, presented.merchant_id, &presented.hash)
                    .await?
                    .map(|t| {
                        let timezone = t.timezone.parse().unwrap_or_else(|_| {
                            tracing::error!(terminal.id = %t.terminal_id, "store has an unknown time zone; using UTC");
                            chrono_tz::UTC
                        });
                        Principal::Terminal(Pusher {
                            merchant_id: presented.merchant_id,
                            terminal_id: t.terminal_id,
                            store_id: t.store_id,
                            timezone,
                        })
                    })
            }
        };
        let principal = principal.ok_or_else(ApiError::unauthorized)?;
        self.cache.insert(presented.hash, principal.clone());
        Ok(principal)
    }

    /// Forgets a token at once on this instance (after a revoke).
    pub fn forget(&self, hash: &TokenHash) {
        self.cache.invalidate(hash);
    }
}

/// The credentials of a `Bearer` authorization (the scheme is case-insensitive).
fn bearer_credentials(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credentials.trim())
}

fn wrong_kind(needed: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this endpoint needs a {needed} token"),
    )
}

/// The caller is a merchant admin.
pub struct MerchantAdmin {
    pub merchant_id: Uuid,
}

impl FromRequestParts<AppState> for MerchantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth.authenticate(parts).await? {
            Principal::MerchantAdmin { merchant_id } => Ok(MerchantAdmin { merchant_id }),
            Principal::Terminal(_) => Err(wrong_kind("merchant admin")),
        }
    }
}

/// The caller is a terminal (till).
pub struct TerminalCaller(pub Pusher);

impl FromRequestParts<AppState> for TerminalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth.authenticate(parts).await? {
            Principal::Terminal(pusher) => Ok(TerminalCaller(pusher)),
            Principal::MerchantAdmin { .. } => Err(wrong_kind("terminal")),
        }
    }
}
