//! The one error type of the HTTP layer: every failure a client can see, as an
//! RFC 9457 problem document with a stable `code`. 5xx bodies say nothing
//! internal; the cause is logged once, where the error is converted.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::health::Refusal;

/// Declares the problem codes: each variant with its stable `code` string
/// and the one HTTP status it is always sent with.
macro_rules! problem_codes {
    ($($variant:ident => $code:literal, $status:ident;)+) => {
        /// Every `code` a problem document can carry. Handlers build errors
        /// from these, middleware (admission, metrics) tells outcomes apart by
        /// them (the value is left in the response's extensions), and the
        /// OpenAPI and README drift tests read [`ProblemCode::ALL`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemCode {
            $($variant,)+
        }

        impl ProblemCode {
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant,)+];

            /// The stable `code` member.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $code,)+
                }
            }

            /// The status this code is always sent with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ProblemCode::$variant => StatusCode::$status,)+
                }
            }
        }
    };
}

problem_codes! {
    InvalidJson => "invalid_json", BAD_REQUEST;
    UnreadableBody => "unreadable_body", BAD_REQUEST;
    InvalidQuery => "invalid_query", BAD_REQUEST;
    InvalidBusinessDate => "invalid_business_date", BAD_REQUEST;
    InvalidLimit => "invalid_limit", BAD_REQUEST;
    InvalidCursor => "invalid_cursor", BAD_REQUEST;
    InvalidDate => "invalid_date", BAD_REQUEST;
    InvalidRange => "invalid_range", BAD_REQUEST;
    RangeTooLarge => "range_too_large", BAD_REQUEST;
    InvalidGroupBy => "invalid_group_by", BAD_REQUEST;
    IdempotencyKeyMissing => "idempotency_key_missing", BAD_REQUEST;
    IdempotencyKeyInvalid => "idempotency_key_invalid", BAD_REQUEST;
    Unauthorized => "unauthorized", UNAUTHORIZED;
    Forbidden => "forbidden", FORBIDDEN;
    NotFound => "not_found", NOT_FOUND;
    StoreNotFound => "store_not_found", NOT_FOUND;
    TerminalNotFound => "terminal_not_found", NOT_FOUND;
    ExceptionNotFound => "exception_not_found", NOT_FOUND;
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED;
    RequestTimeout => "request_timeout", REQUEST_TIMEOUT;
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    InvalidBody => "invalid_body", UNPROCESSABLE_ENTITY;
    InvalidName => "invalid_name", UNPROCESSABLE_ENTITY;
    InvalidNote => "invalid_note", UNPROCESSABLE_ENTITY;
    InvalidTimezone => "invalid_timezone", UNPROCESSABLE_ENTITY;
    InvalidBusinessDayStart => "invalid_business_day_start", UNPROCESSABLE_ENTITY;
    InvalidCurrency => "invalid_currency", UNPROCESSABLE_ENTITY;
    InvalidBatch => "invalid_batch", UNPROCESSABLE_ENTITY;
    BatchEmpty => "batch_empty", UNPROCESSABLE_ENTITY;
    BatchTooLarge => "batch_too_large", UNPROCESSABLE_ENTITY;
    IdempotencyKeyReused => "idempotency_key_reused", UNPROCESSABLE_ENTITY;
    TotalOutOfRange => "total_out_of_range", UNPROCESSABLE_ENTITY;
    RateLimited => "rate_limited", TOO_MANY_REQUESTS;
    InternalError => "internal_error", INTERNAL_SERVER_ERROR;
    DatabaseUnavailable => "database_unavailable", SERVICE_UNAVAILABLE;
    Overloaded => "overloaded", SERVICE_UNAVAILABLE;
    DeadlineExceeded => "deadline_exceeded", SERVICE_UNAVAILABLE;
    Contention => "contention", SERVICE_UNAVAILABLE;
}

impl ProblemCode {
    /// The health layer's reason behind a database-related 503, whose
    /// `Retry-After` the layer chooses (see [`crate::http::middleware::retry_after`]).
    pub fn refusal(self) -> Option<Refusal> {
        match self {
            ProblemCode::DatabaseUnavailable => Some(Refusal::Unavailable),
            ProblemCode::Overloaded => Some(Refusal::Overloaded),
            ProblemCode::DeadlineExceeded => Some(Refusal::DeadlineExceeded),
            _ => None,
        }
    }

    /// RFC 9457 asks that a problem of type `about:blank` (every one here)
    /// carry the status's own reason phrase as its title.
    pub fn title(self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ProblemCode,
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
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ProblemCode::Unauthorized,
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    // The database's 503s carry no Retry-After of their own: the health
    // layer adds it (`http::middleware::retry_after`), one source for all of them.

    pub fn database_unavailable() -> Self {
        Self::new(
            ProblemCode::DatabaseUnavailable,
            "the database is unavailable; retry after the indicated delay",
        )
    }

    pub fn overloaded() -> Self {
        Self::new(
            ProblemCode::Overloaded,
            "the service is taking all the work the database can handle; retry after the indicated delay",
        )
    }

    pub fn deadline_exceeded() -> Self {
        Self::new(
            ProblemCode::DeadlineExceeded,
            "the request did not finish within its deadline; it is safe to retry",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            ProblemCode::InternalError,
            "an unexpected error occurred; it has been logged",
        )
    }

    /// A total the stored data adds up to cannot be given exactly. Neither
    /// the server failing nor worth a retry: the question has to change.
    pub fn total_out_of_range(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::TotalOutOfRange, detail)
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds.max(1));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let problem = Problem {
            kind: "about:blank",
            title: self.code.title(),
            status: status.as_u16(),
            code: self.code.as_str(),
            detail: &self.detail,
        };
        let body = serde_json::to_vec(&problem).expect("a problem document always serializes");
        let mut response = (status, body).into_response();
        response.extensions_mut().insert(self.code);
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

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unavailable => ApiError::database_unavailable(),
            Refusal::Overloaded => ApiError::overloaded(),
            Refusal::DeadlineExceeded => ApiError::deadline_exceeded(),
        }
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
                    ProblemCode::Contention,
                    "the request collided with concurrent ones; retry it",
                )
                .retry_after(1)
            }
            DbError::OutOfRange(source) => {
                tracing::warn!(error = %source, "a total is out of range");
                ApiError::total_out_of_range(
                    "a total of the stored data is beyond the range that can be represented",
                )
            }
            DbError::Other(source) => {
                tracing::error!(error = %source, "database error");
                ApiError::internal()
            }
        }
    }
}
