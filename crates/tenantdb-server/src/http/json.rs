//! Request parsing with API.md's error shape: malformed JSON, a wrong
//! content type, an oversized body, unknown or mistyped fields, bad query
//! strings and text holding a NUL character (PostgreSQL cannot store one)
//! are all `400 invalid_request`, and nothing is written.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tenantdb_axum::ApiError;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

/// `Json<T>` whose rejections are `ApiError`s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(value)) => from_value(value).map(Self),
            Err(rejection) => Err(ApiError::invalid(describe(&rejection))),
        }
    }
}

/// `T` from a JSON value that holds no NUL character in any string or key.
fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if holds_nul(&value) {
        return Err(nul_refused());
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))
}

fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

fn nul_refused() -> ApiError {
    ApiError::invalid("text must not contain NUL characters")
}

/// Whether a raw path or query string encodes a NUL character.
fn encodes_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

fn describe(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => "the body must be JSON (Content-Type: application/json)".into(),
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".into(),
        // serde's message names the field and what was expected; it holds
        // no SQL or internals.
        JsonRejection::JsonDataError(err) => format!("invalid body: {}", err.body_text()),
        JsonRejection::BytesRejection(_) => format!("the body could not be read (at most {} bytes)", super::BODY_LIMIT),
        _ => "invalid body".into(),
    }
}

/// `Path<T>` whose rejections (a segment that is not valid percent-encoded
/// UTF-8, or not of the expected type) are `ApiError`s.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if encodes_nul(parts.uri.path()) {
            return Err(nul_refused());
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::invalid(format!(
                "invalid path: {}",
                match &rejection {
                    PathRejection::FailedToDeserializePathParams(err) => err.body_text(),
                    other => other.body_text(),
                }
            ))),
        }
    }
}

/// A body that may be left out: empty means `T::default()`; anything else
/// must be valid JSON for `T`.
pub fn optional_json<T: DeserializeOwned + Default>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|_| {
        ApiError::invalid(format!(
            "the body could not be read (at most {} bytes)",
            super::BODY_LIMIT
        ))
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))?;
    from_value(value)
}

/// `?limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    limit: Option<u64>,
    cursor: Option<String>,
    status: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub limit: u64,
    pub cursor: Option<uuid::Uuid>,
    pub status: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(encodes_nul) {
            return Err(nul_refused());
        }
        let Query(raw) = Query::<RawPage>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
        let limit = raw.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let cursor = raw
            .cursor
            .map(|c| uuid::Uuid::parse_str(&c).map_err(|_| ApiError::invalid("cursor is not one this API gave")))
            .transpose()?;
        Ok(Self {
            limit,
            cursor,
            status: raw.status,
        })
    }
}

/// `{"items": [...], "next_cursor": ...}`.
pub fn page<T: serde::Serialize>(items: Vec<T>, limit: u64, last_id: Option<uuid::Uuid>) -> serde_json::Value {
    let next = (items.len() as u64 == limit).then_some(last_id).flatten();
    serde_json::json!({ "items": items, "next_cursor": next })
}
