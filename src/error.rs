//! The one error type of the HTTP layer: every failure a client can see, as an
//! RFC 9457 problem document with a stable `code`. 5xx bodies say nothing
//! internal; the cause is logged once, where the error is converted.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Serialize;

use crate::db::DbError;

/// Retry-After for a sick database is spread over this many seconds so a
/// fleet that was told to wait does not come back in one wave.
const RETRY_AFTER_SPREAD_S: std::ops::RangeInclusive<u32> = 2..=10;

/// The `code` of a problem response, left in the response's extensions so
/// middleware (admission, metrics) can tell outcomes apart without parsing
/// the body.
#[derive(Debug, Clone, Copy)]
pub struct ProblemCode(pub &'static str);

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub retry_after_s: Option<u32>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    pub fn database_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; retry after the indicated delay",
        )
        .retry_after(rand::rng().random_range(RETRY_AFTER_SPREAD_S))
    }

    pub fn overloaded(retry_after_s: u32) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is taking all the work the database can handle; retry after the indicated delay",
        )
        .retry_after(retry_after_s)
    }

    pub fn unavailable_for(retry_after_s: u32) -> Self {
        Self::database_unavailable().retry_after(retry_after_s)
    }

    pub fn deadline_exceeded(retry_after_s: u32) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded",
            "the request did not finish within its deadline; it is safe to retry",
        )
        .retry_after(retry_after_s)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an unexpected error occurred; it has been logged",
        )
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds.max(1));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
        };
        let body = serde_json::to_vec(&problem).expect("a problem document always serializes");
        let mut response = (self.status, body).into_response();
        response.extensions_mut().insert(ProblemCode(self.code));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                ApiError::database_unavailable()
            }
            DbError::Contention(source) => {
                tracing::warn!(error = %source, "transaction kept colliding with concurrent ones");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "contention",
                    "the request collided with concurrent ones; retry it",
                )
                .retry_after(1)
            }
            DbError::Other(source) => {
                tracing::error!(error = %source, "database error");
                ApiError::internal()
            }
        }
    }
}
