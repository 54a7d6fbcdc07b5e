//! Users and their API tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use tenantdb::catalog::users;
use tenantdb::internal::plain_text;
use tenantdb::rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Admin, ApiResult, OperatorApi};
use crate::{ApiError, Json, OptionalJson, Path};

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(get_user))
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
}

/// A user, as the operator API shows it.
#[derive(Serialize, utoipa::ToSchema)]
struct User {
    id: Uuid,
    email: String,
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<users::Model> for User {
    fn from(user: users::Model) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            created_at: rfc3339(user.created_at),
        }
    }
}

/// A token just made: its secret is shown here once, never again.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedToken {
    id: Uuid,
    name: String,
    /// The bearer token.
    token: String,
}

/// `{user}`: an id or an email.
pub(super) async fn find_user(api: &OperatorApi, raw: &str) -> ApiResult<users::Model> {
    let users = api.tenancy().catalog().users();
    let found = match Uuid::parse_str(raw) {
        Ok(id) => users.find(id).await?,
        Err(_) => users.find_by_email(raw).await?,
    };
    found.ok_or_else(|| ApiError::not_found("user"))
}

fn check_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if !valid {
        return Err(ApiError::invalid(format!("email '{email}' is not an email address")));
    }
    Ok(email)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    name: String,
}

#[utoipa::path(post, path = "/v1/users", tag = "operator", request_body = NewUser, responses((status = 201, description = "the user", body = User), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden"), (status = 409, description = "conflict: email taken")))]
async fn create_user(_: Admin, State(api): State<OperatorApi>, Json(body): Json<NewUser>) -> ApiResult {
    let email = check_email(&body.email)?;
    let name = plain_text("name", &body.name, 200)?;
    let user = api.tenancy().catalog().users().create(&email, &name).await?;
    Ok((StatusCode::CREATED, Json(User::from(user))).into_response())
}

#[utoipa::path(get, path = "/v1/users/{user}", tag = "operator", params(("user" = String, Path, description = "the user's id or email")), responses((status = 200, description = "the user", body = User), (status = 404, description = "not_found")))]
async fn get_user(_: Admin, State(api): State<OperatorApi>, Path(user): Path<String>) -> ApiResult {
    Ok(Json(User::from(find_user(&api, &user).await?)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: Option<String>,
}

#[utoipa::path(post, path = "/v1/users/{user}/tokens", tag = "operator", params(("user" = String, Path, description = "the user's id or email")), request_body(content = NewToken, description = "optional: an empty body is {}"), responses((status = 201, description = "the token, shown once", body = CreatedToken), (status = 404, description = "not_found")))]
async fn create_token(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(user): Path<String>,
    OptionalJson(body): OptionalJson<NewToken>,
) -> ApiResult {
    let user = find_user(&api, &user).await?;
    let name = match body.name {
        Some(name) => plain_text("name", &name, 200)?,
        None => "api".to_owned(),
    };
    let (row, token) = api.tenancy().catalog().tokens().create(user.id, &name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: row.id,
            name: row.name,
            token,
        }),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/users/{user}/tokens/{token_id}", tag = "operator", params(("user" = String, Path, description = "the user's id or email"), ("token_id" = String, Path, description = "the token's id")), responses((status = 204, description = "revoked"), (status = 404, description = "not_found")))]
async fn revoke_token(
    _: Admin,
    State(api): State<OperatorApi>,
    Path((user, token_id)): Path<(String, String)>,
) -> ApiResult {
    let user = find_user(&api, &user).await?;
    let token_id = Uuid::parse_str(&token_id).map_err(|_| ApiError::not_found("token"))?;
    if !api.tenancy().catalog().tokens().revoke(user.id, token_id).await? {
        return Err(ApiError::not_found("token"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
