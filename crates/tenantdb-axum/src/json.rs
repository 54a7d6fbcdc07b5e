//! JSON bodies with docs/API.md's error shape. axum's own `Json` answers a
//! malformed body with a plain-text 400/415/422; [`Json`] answers every
//! rejection (malformed JSON, a wrong content type, a body too large or
//! cut off, unknown or mistyped fields, text holding a NUL character, which
//! PostgreSQL cannot store) with `400 invalid_request` in the JSON shape,
//! before the handler runs, so nothing is written.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body (extractor) or answer (response). As an extractor its
/// rejections are [`ApiError`]s: `400 invalid_request` with
/// `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => from_value(value).map(Self),
            Err(rejection) => Err(ApiError::invalid(describe(&rejection))),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`;
/// anything else must be valid JSON for `T` (no content type required).
/// Rejections as [`Json`]'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::invalid(format!("the body could not be read: {}", e.body_text())))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid body: {e}")))?;
        from_value(value).map(Self)
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

pub(crate) fn nul_refused() -> ApiError {
    ApiError::invalid("text must not contain NUL characters")
}

fn describe(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => "the body must be JSON (Content-Type: application/json)".into(),
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".into(),
        // serde's message names the field and what was expected; it holds
        // no SQL or internals.
        JsonRejection::JsonDataError(err) => format!("invalid body: {}", err.body_text()),
        JsonRejection::BytesRejection(err) => format!("the body could not be read: {}", err.body_text()),
        _ => "invalid body".into(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, header};

    use super::*;

    async fn parse(content_type: Option<&str>, body: &'static str) -> Result<serde_json::Value, ApiError> {
        let mut request = axum::http::Request::builder().method("POST").uri("/");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(axum::body::Body::from(body)).unwrap();
        Json::<serde_json::Value>::from_request(request, &())
            .await
            .map(|Json(v)| v)
    }

    #[tokio::test]
    async fn every_rejection_is_an_invalid_request_in_the_error_shape() {
        let json = Some("application/json");
        for (content_type, body) in [
            (json, "{\"a\":"),
            (Some("text/plain"), "{}"),
            (None, "{}"),
            (json, "{\"a\":\"x\\u0000\"}"),
        ] {
            let err = parse(content_type, body).await.unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{body}"
            );
        }
        assert_eq!(parse(json, "{\"a\":1}").await.unwrap()["a"], 1);
    }
}
