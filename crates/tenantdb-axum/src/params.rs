//! Path segments and pages with docs/API.md's error shape: a segment or query
//! that is not valid percent-encoded UTF-8, not of the expected type, or
//! that encodes a NUL character is `400 invalid_request`.

use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::json::nul_refused;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest `limit`.
pub const MAX_LIMIT: u64 = 500;

/// axum's `Path<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if encodes_nul(parts.uri.path()) {
            return Err(nul_refused());
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
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

/// axum's `Query<T>` whose rejections are [`ApiError`]s (`400
/// invalid_request` naming the parameter).
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(encodes_nul) {
            return Err(nul_refused());
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|e: QueryRejection| ApiError::invalid(format!("invalid query: {}", e.body_text())))
    }
}

/// Whether a raw path or query string encodes a NUL character.
fn encodes_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    limit: Option<u64>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatusPage<F> {
    limit: Option<u64>,
    cursor: Option<String>,
    status: Option<F>,
}

/// The query of a listing, `?limit=&cursor=`: docs/API.md's pagination. Any
/// other query parameter is `400 invalid_request`.
#[derive(Debug, Clone)]
pub struct Page {
    /// 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] if not given.
    pub limit: u64,
    /// The last id of the previous page.
    pub cursor: Option<Uuid>,
}

/// The query of a listing that filters by a status,
/// `?limit=&cursor=&status=`: `F` is the status type (its serde names are
/// the values accepted; any other is `400 invalid_request`).
#[derive(Debug, Clone)]
pub struct StatusPage<F> {
    /// The page asked for.
    pub page: Page,
    /// The status to filter by, if one was given.
    pub status: Option<F>,
}

fn query<T: DeserializeOwned>(parts: &Parts) -> Result<T, ApiError> {
    if parts.uri.query().is_some_and(encodes_nul) {
        return Err(nul_refused());
    }
    let axum::extract::Query(raw) = axum::extract::Query::<T>::try_from_uri(&parts.uri)
        .map_err(|e: QueryRejection| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    Ok(raw)
}

impl Page {
    fn new(limit: Option<u64>, cursor: Option<String>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let cursor = cursor
            .map(|c| Uuid::parse_str(&c).map_err(|_| ApiError::invalid("cursor is not one this API gave")))
            .transpose()?;
        Ok(Self { limit, cursor })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw: RawPage = query(parts)?;
        Self::new(raw.limit, raw.cursor)
    }
}

impl<F: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for StatusPage<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw: RawStatusPage<F> = query(parts)?;
        Ok(Self {
            page: Page::new(raw.limit, raw.cursor)?,
            status: raw.status,
        })
    }
}

impl Page {
    /// `{"items": [...], "next_cursor": ...}`: the cursor is `last_id`
    /// when the page is full (there may be more). The items are serialized
    /// where they are, not copied into a JSON value first.
    pub fn answer<T: serde::Serialize>(&self, items: Vec<T>, last_id: Option<Uuid>) -> PageOf<T> {
        let next_cursor = (items.len() as u64 == self.limit).then_some(last_id).flatten();
        PageOf { items, next_cursor }
    }
}

/// A page of a listing, as [`Page::answer`] makes it: serializes to
/// `{"items": [...], "next_cursor": "..." | null}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PageOf<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_percent_encoded_nul_counts_as_one() {
        assert!(encodes_nul("/v1/users/a%00b"));
        assert!(!encodes_nul("/v1/users/a%20b%0A"));
    }
}
