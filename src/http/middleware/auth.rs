//! Who is calling: the first step of the request path after the router.
//! Bearer tokens are resolved to a merchant admin or a terminal and the
//! result is put in the request's extensions for the steps after it.
//!
//! Resolved tokens are cached for a short TTL (at most 5 s, checked in
//! config) so a busy till does not cost a query per request; that TTL is the
//! bound on how long a revoked token keeps working on another instance. The
//! instance that revokes forgets the token at once. Unknown tokens are never
//! cached: a token created a moment ago must work on its first request. A
//! lookup goes through the health layer like any other database work.
//!
//! While the database cannot be asked, a token seen valid recently (within
//! the stale-report TTL) is still recognised, so dashboards get their last
//! good reports during an outage; everything that needs the database is
//! refused by admission anyway, and revoking needs the database too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moka::sync::Cache;
use uuid::Uuid;

use super::arrival::Arrived;
use crate::db::{Database, DbError, tenancy};
use crate::domain::terminal::Terminal;
use crate::domain::token::{self, PresentedToken, TokenHash, TokenKind};
use crate::error::{ApiError, ProblemCode};
use crate::health::{Gate, Priority};
use crate::http::AppState;

/// Enough entries for every till of a large fleet; each is a few hundred bytes.
const CACHE_CAPACITY: u64 = 200_000;

#[derive(Debug, Clone)]
pub enum Principal {
    MerchantAdmin { merchant_id: Uuid },
    Terminal(Terminal),
}

#[derive(Clone)]
pub struct Authenticator {
    db: Database,
    gate: Gate,
    cache: Arc<Cache<TokenHash, Principal>>,
    last_known: Arc<Cache<TokenHash, Principal>>,
}

impl Authenticator {
    pub fn new(db: Database, gate: Gate, ttl: Duration, outage_ttl: Duration) -> Self {
        let cache = |ttl| {
            Arc::new(
                Cache::builder()
                    .max_capacity(CACHE_CAPACITY)
                    .time_to_live(ttl)
                    .build(),
            )
        };
        Self {
            db,
            gate,
            cache: cache(ttl),
            last_known: cache(outage_ttl),
        }
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        arrived: Instant,
    ) -> Result<Principal, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials)
            .and_then(token::parse)
            .ok_or_else(ApiError::unauthorized)?;
        if let Some(principal) = self.cache.get(&presented.hash) {
            return Ok(principal);
        }
        let found = self
            .gate
            .run(Priority::Auth, arrived, self.look_up(&presented))
            .await;
        let principal = match found {
            Ok(Ok(Some(principal))) => principal,
            Ok(Ok(None)) => return Err(ApiError::unauthorized()),
            // The database cannot be asked: a token seen valid lately still
            // counts, so dashboards get their last good reports.
            Err(refusal) => return self.last_known_or(&presented.hash, || refusal.into()),
            Ok(Err(e @ DbError::Unavailable(_))) => {
                return self.last_known_or(&presented.hash, || e.into());
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        self.cache.insert(presented.hash, principal.clone());
        self.last_known.insert(presented.hash, principal.clone());
        Ok(principal)
    }

    /// The principal of a token seen valid lately, or `unusable()` as the answer.
    fn last_known_or(
        &self,
        hash: &TokenHash,
        unusable: impl FnOnce() -> ApiError,
    ) -> Result<Principal, ApiError> {
        match self.last_known.get(hash) {
            Some(principal) => {
                tracing::debug!("database unavailable: recognised a recently seen token");
                Ok(principal)
            }
            None => Err(unusable()),
        }
    }

    async fn look_up(&self, presented: &PresentedToken) -> Result<Option<Principal>, DbError> {
        let mut conn = self.db.unit().await?;
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
                    .map(Principal::Terminal)
            }
        };
        conn.finish().await?;
        Ok(principal)
    }

    /// Forgets a token at once on this instance (after a revoke).
    pub fn forget(&self, hash: &TokenHash) {
        self.cache.invalidate(hash);
        self.last_known.invalidate(hash);
    }
}

/// The credentials of a `Bearer` authorization (the scheme is case-insensitive).
fn bearer_credentials(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credentials.trim())
}

/// Middleware: resolves the caller or answers 401.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let arrived = Arrived::of(&request);
    match state.auth.authenticate(request.headers(), arrived).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

fn principal(parts: &Parts) -> Result<&Principal, ApiError> {
    parts
        .extensions
        .get::<Principal>()
        .ok_or_else(ApiError::unauthorized)
}

fn wrong_kind(needed: &str) -> ApiError {
    ApiError::new(
        ProblemCode::Forbidden,
        format!("this endpoint needs a {needed} token"),
    )
}

/// The caller is a merchant admin.
pub struct MerchantAdmin {
    pub merchant_id: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for MerchantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match principal(parts)? {
            Principal::MerchantAdmin { merchant_id } => Ok(MerchantAdmin {
                merchant_id: *merchant_id,
            }),
            Principal::Terminal(_) => Err(wrong_kind("merchant admin")),
        }
    }
}

/// The caller is a terminal (till).
impl<S: Send + Sync> FromRequestParts<S> for Terminal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match principal(parts)? {
            Principal::Terminal(terminal) => Ok(terminal.clone()),
            Principal::MerchantAdmin { .. } => Err(wrong_kind("terminal")),
        }
    }
}
