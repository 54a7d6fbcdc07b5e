//! Settings: free-form JSON values by key.

use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, ApiResult, OperatorApi};
use crate::{ApiError, Json, Path};

/// A setting: a key and its JSON value.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Setting {
    key: String,
    value: Value,
}

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(get_settings))
        .routes(routes!(put_setting))
}

#[utoipa::path(get, path = "/v1/settings", tag = "operator", responses((status = 200, description = "every setting: {key: value}", body = std::collections::BTreeMap<String, serde_json::Value>), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn get_settings(_: Admin, State(api): State<OperatorApi>) -> ApiResult {
    let all = api.tenancy().catalog().settings().all().await?;
    let map: serde_json::Map<String, Value> = all.into_iter().map(|s| (s.key, s.value)).collect();
    Ok(Json(Value::Object(map)).into_response())
}

#[utoipa::path(put, path = "/v1/settings/{key}", tag = "operator", params(("key" = String, Path, description = "1-200 of a-z, 0-9, '.', '_' and '-'")), request_body(content = serde_json::Value, description = "any JSON value"), responses((status = 200, description = "the setting", body = Setting), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn put_setting(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(key): Path<String>,
    Json(value): Json<Value>,
) -> ApiResult {
    let valid = !key.is_empty()
        && key.len() <= 200
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !valid {
        return Err(ApiError::invalid(
            "setting keys are 1-200 of a-z, 0-9, '.', '_' and '-'",
        ));
    }
    api.tenancy().catalog().settings().put(&key, value.clone()).await?;
    Ok(Json(Setting { key, value }).into_response())
}
