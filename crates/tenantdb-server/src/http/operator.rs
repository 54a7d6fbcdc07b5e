//! The operator API (admin token): users, tokens, tenants and their
//! databases, members, subscriptions, settings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tenantdb::catalog::{MemberRole, SubscriptionStatus, memberships, subscriptions, users};
use tenantdb::names::plain_text;
use tenantdb::view::rfc3339;
use tenantdb::{NewTenant, TenantRef, TenantStatus, TenantView};
use tenantdb_axum::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Admin;
use super::json::{ApiJson, ApiPath, Page, optional_json, page};

type ApiResult<T = Response> = Result<T, ApiError>;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(get_user))
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_tenants))
        .routes(routes!(get_tenant, patch_tenant))
        .routes(routes!(get_database))
        .routes(routes!(list_members))
        .routes(routes!(put_member, delete_member))
        .routes(routes!(get_subscription, put_subscription))
        .routes(routes!(get_settings))
        .routes(routes!(put_setting))
        .routes(routes!(start_migration))
        .routes(routes!(get_migration))
}

/// Routes whose work runs in the provisioner: no request timeout.
pub fn provisioning_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant))
        .routes(routes!(delete_tenant))
        .routes(routes!(rename_database))
        .routes(routes!(retry_database))
}

// ---- helpers ----------------------------------------------------------------

/// `{tenant}`: an id or a slug; a malformed one cannot exist.
fn tenant_ref(raw: &str) -> ApiResult<TenantRef> {
    TenantRef::parse(raw).map_err(|_| ApiError::tenant_not_found())
}

async fn tenant_view(state: &AppState, tenant: &TenantRef) -> ApiResult<TenantView> {
    Ok(state.tenancy.tenant(tenant).await?)
}

fn user_json(user: &users::Model) -> Value {
    json!({ "id": user.id, "email": user.email, "name": user.name, "created_at": rfc3339(user.created_at) })
}

fn membership_json(m: &memberships::Model) -> Value {
    json!({ "tenant_id": m.tenant_id, "user_id": m.user_id, "role": m.role, "created_at": rfc3339(m.created_at) })
}

fn subscription_json(s: &subscriptions::Model) -> Value {
    json!({
        "tenant_id": s.tenant_id, "plan": s.plan, "status": s.status, "seats": s.seats,
        "current_period_end": s.current_period_end.map(rfc3339),
        "created_at": rfc3339(s.created_at), "updated_at": rfc3339(s.updated_at),
    })
}

/// `{user}`: an id or an email.
async fn find_user(state: &AppState, raw: &str) -> ApiResult<users::Model> {
    let users = state.tenancy.catalog().users();
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

// ---- users and tokens -------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    name: String,
}

#[utoipa::path(post, path = "/v1/users", tag = "operator", request_body = NewUser, responses((status = 201, description = "the user"), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden"), (status = 409, description = "conflict: email taken")))]
async fn create_user(_: Admin, State(state): State<AppState>, ApiJson(body): ApiJson<NewUser>) -> ApiResult {
    let email = check_email(&body.email)?;
    let name = plain_text("name", &body.name, 200)?;
    let user = state.tenancy.catalog().users().create(&email, &name).await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

#[utoipa::path(get, path = "/v1/users/{user}", tag = "operator", params(("user" = String, Path, description = "the user's id or email")), responses((status = 200, description = "the user"), (status = 404, description = "not_found")))]
async fn get_user(_: Admin, State(state): State<AppState>, ApiPath(user): ApiPath<String>) -> ApiResult {
    Ok(Json(user_json(&find_user(&state, &user).await?)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: Option<String>,
}

#[utoipa::path(post, path = "/v1/users/{user}/tokens", tag = "operator", params(("user" = String, Path, description = "the user's id or email")), request_body(content = NewToken, description = "optional: an empty body is {}"), responses((status = 201, description = "{id, name, token}: the token is shown once"), (status = 404, description = "not_found")))]
async fn create_token(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let body: NewToken = optional_json(body)?;
    let user = find_user(&state, &user).await?;
    let name = match body.name {
        Some(name) => plain_text("name", &name, 200)?,
        None => "api".to_owned(),
    };
    let (row, token) = state.tenancy.catalog().tokens().create(user.id, &name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": row.id, "name": row.name, "token": token })),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/users/{user}/tokens/{token_id}", tag = "operator", params(("user" = String, Path, description = "the user's id or email"), ("token_id" = String, Path, description = "the token's id")), responses((status = 204, description = "revoked"), (status = 404, description = "not_found")))]
async fn revoke_token(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((user, token_id)): ApiPath<(String, String)>,
) -> ApiResult {
    let user = find_user(&state, &user).await?;
    let token_id = Uuid::parse_str(&token_id).map_err(|_| ApiError::not_found("token"))?;
    if !state.tenancy.catalog().tokens().revoke(user.id, token_id).await? {
        return Err(ApiError::not_found("token"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- tenants ----------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: String,
    owner_user_id: Option<Uuid>,
    database_name: Option<String>,
    plan: Option<String>,
}

#[utoipa::path(post, path = "/v1/tenants", tag = "operator", request_body = CreateTenant, responses((status = 201, description = "the tenant, its database ACTIVE"), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden"), (status = 409, description = "conflict"), (status = 502, description = "provisioning_failed")))]
async fn create_tenant(_: Admin, State(state): State<AppState>, ApiJson(body): ApiJson<CreateTenant>) -> ApiResult {
    let catalog = state.tenancy.catalog();
    // Check everything before anything is made.
    if let Some(owner) = body.owner_user_id
        && catalog.users().find(owner).await?.is_none()
    {
        return Err(ApiError::invalid(format!("owner_user_id: no user {owner}")));
    }
    let plan = body.plan.as_deref().map(|p| plain_text("plan", p, 100)).transpose()?;
    let name = Some(plain_text("name", &body.name, 200)?);
    let row = state
        .tenancy
        .provisioner()
        .create_tenant(NewTenant {
            slug: body.slug,
            name,
            database_name: body.database_name,
            owner_user_id: body.owner_user_id,
            plan,
        })
        .await?;
    let view = tenant_view(&state, &TenantRef::Id(row.tenant_id.into())).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants", tag = "operator", responses((status = 200, description = "a page of tenants"), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn list_tenants(_: Admin, State(state): State<AppState>, page_query: Page) -> ApiResult {
    let status = match page_query.status.as_deref() {
        None => None,
        Some("ACTIVE") => Some(TenantStatus::Active),
        Some("SUSPENDED") => Some(TenantStatus::Suspended),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status '{other}' is not ACTIVE or SUSPENDED"
            )));
        }
    };
    let items = state
        .tenancy
        .list_tenants(status, page_query.cursor, page_query.limit)
        .await?;
    let last = items.last().map(|t| t.id);
    Ok(Json(page(items, page_query.limit, last)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the tenant"), (status = 404, description = "tenant_not_found")))]
async fn get_tenant(_: Admin, State(state): State<AppState>, ApiPath(tenant): ApiPath<String>) -> ApiResult {
    Ok(Json(tenant_view(&state, &tenant_ref(&tenant)?).await?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchTenant {
    name: Option<String>,
    #[schema(value_type = Option<String>, example = "SUSPENDED")]
    status: Option<TenantStatus>,
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), request_body = PatchTenant, responses((status = 200, description = "the tenant"), (status = 400, description = "invalid_request"), (status = 404, description = "tenant_not_found")))]
async fn patch_tenant(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<PatchTenant>,
) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    let found = state.tenancy.catalog().tenants().get(&tenant).await?;
    let name = body.name.as_deref().map(|n| plain_text("name", n, 200)).transpose()?;
    if let Some(name) = name {
        state.tenancy.catalog().tenants().set_name(found.id, &name).await?;
    }
    if let Some(status) = body.status {
        state.tenancy.catalog().tenants().set_status(found.id, status).await?;
    }
    Ok(Json(tenant_view(&state, &TenantRef::Id(found.id.into())).await?).into_response())
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 204, description = "the tenant, its database, role, members and subscription are gone"), (status = 404, description = "tenant_not_found"), (status = 409, description = "conflict")))]
async fn delete_tenant(_: Admin, State(state): State<AppState>, ApiPath(tenant): ApiPath<String>) -> ApiResult {
    state.tenancy.provisioner().delete_tenant(&tenant_ref(&tenant)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/database", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the tenant database"), (status = 404, description = "tenant_not_found")))]
async fn get_database(_: Admin, State(state): State<AppState>, ApiPath(tenant): ApiPath<String>) -> ApiResult {
    let view = tenant_view(&state, &tenant_ref(&tenant)?).await?;
    let database = view.database.ok_or_else(|| ApiError::not_found("tenant database"))?;
    Ok(Json(database).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameDatabase {
    database_name: String,
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}/database", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), request_body = RenameDatabase, responses((status = 200, description = "the tenant database, renamed"), (status = 400, description = "invalid_request"), (status = 404, description = "tenant_not_found"), (status = 409, description = "conflict")))]
async fn rename_database(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<RenameDatabase>,
) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    state
        .tenancy
        .provisioner()
        .rename_tenant_database(&tenant, &body.database_name)
        .await?;
    get_database(Admin, State(state), ApiPath(tenant.to_string())).await
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/database/retry", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the tenant database, ACTIVE"), (status = 404, description = "tenant_not_found"), (status = 409, description = "conflict: not FAILED"), (status = 502, description = "provisioning_failed")))]
async fn retry_database(_: Admin, State(state): State<AppState>, ApiPath(tenant): ApiPath<String>) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    state.tenancy.provisioner().retry(&tenant).await?;
    get_database(Admin, State(state), ApiPath(tenant.to_string())).await
}

// ---- members ----------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutMember {
    #[schema(value_type = String, example = "ADMIN")]
    role: MemberRole,
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/members/{user}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug"), ("user" = String, Path, description = "the user's id or email")), request_body = PutMember, responses((status = 200, description = "the membership"), (status = 400, description = "invalid_request"), (status = 404, description = "not found")))]
async fn put_member(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((tenant, user)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PutMember>,
) -> ApiResult {
    let tenant = state.tenancy.catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let user = find_user(&state, &user).await?;
    let membership = state
        .tenancy
        .catalog()
        .memberships()
        .upsert(tenant.id, user.id, body.role)
        .await?;
    Ok(Json(membership_json(&membership)).into_response())
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/members/{user}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug"), ("user" = String, Path, description = "the user's id or email")), responses((status = 204, description = "removed"), (status = 404, description = "not found")))]
async fn delete_member(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((tenant, user)): ApiPath<(String, String)>,
) -> ApiResult {
    let tenant = state.tenancy.catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let user = find_user(&state, &user).await?;
    if !state.tenancy.catalog().memberships().remove(tenant.id, user.id).await? {
        return Err(ApiError::not_found("membership"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/members", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug"), ("limit" = Option<u64>, Query, description = "1 to 500, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), responses((status = 200, description = "the memberships, by user id"), (status = 404, description = "tenant_not_found")))]
async fn list_members(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    query: Page,
) -> ApiResult {
    let tenant = state.tenancy.catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let members = state
        .tenancy
        .catalog()
        .memberships()
        .page_for_tenant(tenant.id, query.cursor, query.limit)
        .await?;
    let last = members.last().map(|m| m.user_id);
    let items: Vec<Value> = members.iter().map(membership_json).collect();
    Ok(Json(page(items, query.limit, last)).into_response())
}

// ---- subscriptions ----------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutSubscription {
    plan: String,
    #[schema(value_type = String, example = "ACTIVE")]
    status: SubscriptionStatus,
    seats: i32,
    current_period_end: Option<DateTime<Utc>>,
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/subscription", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), request_body = PutSubscription, responses((status = 200, description = "the subscription"), (status = 400, description = "invalid_request"), (status = 404, description = "tenant_not_found")))]
async fn put_subscription(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<PutSubscription>,
) -> ApiResult {
    let tenant = state.tenancy.catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let plan = plain_text("plan", &body.plan, 100)?;
    if !(0..=1_000_000).contains(&body.seats) {
        return Err(ApiError::invalid("seats must be 0 to 1000000"));
    }
    let sub = state
        .tenancy
        .catalog()
        .subscriptions()
        .upsert(tenant.id, &plan, body.status, body.seats, body.current_period_end)
        .await?;
    Ok(Json(subscription_json(&sub)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/subscription", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the subscription"), (status = 404, description = "not_found")))]
async fn get_subscription(_: Admin, State(state): State<AppState>, ApiPath(tenant): ApiPath<String>) -> ApiResult {
    let tenant = state.tenancy.catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let sub = state.tenancy.catalog().subscriptions().find(tenant.id).await?;
    let sub = sub.ok_or_else(|| ApiError::not_found("subscription"))?;
    Ok(Json(subscription_json(&sub)).into_response())
}

// ---- settings ---------------------------------------------------------------

#[utoipa::path(get, path = "/v1/settings", tag = "operator", responses((status = 200, description = "every setting: {key: value}"), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn get_settings(_: Admin, State(state): State<AppState>) -> ApiResult {
    let all = state.tenancy.catalog().settings().all().await?;
    let map: serde_json::Map<String, Value> = all.into_iter().map(|s| (s.key, s.value)).collect();
    Ok(Json(Value::Object(map)).into_response())
}

#[utoipa::path(put, path = "/v1/settings/{key}", tag = "operator", params(("key" = String, Path, description = "setting key")), responses((status = 200, description = "{key, value}"), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn put_setting(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(value): ApiJson<Value>,
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
    state.tenancy.catalog().settings().put(&key, value.clone()).await?;
    Ok(Json(json!({ "key": key, "value": value })).into_response())
}

// ---- fleet migrations -------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct StartMigration {
    concurrency: Option<usize>,
    tenants: Option<Vec<String>>,
    max_failures: Option<usize>,
    canary: Option<usize>,
}

fn run_json(run: &tenantdb::catalog::MigrationRun) -> Value {
    json!({
        "id": run.id, "status": run.status, "target_version": run.target_version,
        "total": run.total, "succeeded": run.succeeded, "failed": run.failed, "skipped": run.skipped,
        "started_at": rfc3339(run.started_at), "finished_at": run.finished_at.map(rfc3339),
    })
}

#[utoipa::path(post, path = "/v1/migrations", tag = "operator", request_body(content = StartMigration, description = "optional: an empty body is {}"), responses((status = 202, description = "{id}: the run started in the background"), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn start_migration(
    _: Admin,
    State(state): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let body: StartMigration = optional_json(body)?;
    let concurrency = body.concurrency.unwrap_or(4);
    if !(1..=64).contains(&concurrency) {
        return Err(ApiError::invalid("concurrency must be 1 to 64"));
    }
    let tenants = body
        .tenants
        .unwrap_or_default()
        .iter()
        .map(|t| tenant_ref(t))
        .collect::<ApiResult<Vec<_>>>()?;
    let options = tenantdb::fleet::FleetOptions {
        concurrency,
        tenants,
        max_failures: body.max_failures,
        canary: body.canary,
    };
    let (id, _run) = state.tenancy.fleet().start(&options, |_| {}).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

#[utoipa::path(get, path = "/v1/migrations/{id}", tag = "operator", params(("id" = String, Path, description = "the run's id")), responses((status = 200, description = "the run and its progress"), (status = 404, description = "not_found")))]
async fn get_migration(_: Admin, State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("migration run"))?;
    let run = state.tenancy.fleet().run(id).await?;
    let run = run.ok_or_else(|| ApiError::not_found("migration run"))?;
    Ok(Json(run_json(&run)).into_response())
}
