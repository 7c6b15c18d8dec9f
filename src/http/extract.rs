//! Extractors that turn axum's rejections into problem documents, so a
//! malformed body or query gets the same error shape as everything else.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ProblemCode};

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::new(ProblemCode::InvalidJson, e.body_text()))
            }
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::new(ProblemCode::InvalidBody, e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                ProblemCode::UnsupportedMediaType,
                "send the body as application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(body_rejection(e)),
            Err(other) => Err(ApiError::new(
                ProblemCode::UnreadableBody,
                other.body_text(),
            )),
        }
    }
}

/// Query-string parameters.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|e: QueryRejection| ApiError::new(ProblemCode::InvalidQuery, e.body_text()))
    }
}

/// A body that could not be read: too large, or the connection broke.
pub fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        super::body::too_large()
    } else {
        ApiError::new(ProblemCode::UnreadableBody, e.body_text())
    }
}
