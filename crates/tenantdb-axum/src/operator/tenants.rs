//! Tenants and their databases.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use tenantdb::internal::plain_text;
use tenantdb::{MoveTenant, NewTenant, Tenant, TenantDatabase, TenantRef, TenantStatus};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Admin, ApiResult, OperatorApi, tenant_ref, tenant_view};
use crate::openapi::PageParams;
use crate::{ApiError, Json, PageOf, Path, Query, StatusPage};

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants))
        .routes(routes!(get_tenant, patch_tenant))
        .routes(routes!(get_database))
}

pub(super) fn provisioning_routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant))
        .routes(routes!(delete_tenant))
        .routes(routes!(rename_database))
        .routes(routes!(retry_database))
        .routes(routes!(move_tenant))
        .routes(routes!(restore_tenant))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: String,
    owner_user_id: Option<Uuid>,
    database_name: Option<String>,
    plan: Option<String>,
    /// The tenant server for its database, by name; the service's placement
    /// chooses when not given (the ACCEPTING server with the fewest tenants).
    server: Option<String>,
}

#[utoipa::path(post, path = "/v1/tenants", tag = "operator", request_body = CreateTenant, responses((status = 201, description = "the tenant, its database ACTIVE", body = Tenant), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden"), (status = 409, description = "conflict"), (status = 502, description = "provisioning_failed"), (status = 503, description = "tenant_unavailable: no server can take the tenant now")))]
async fn create_tenant(_: Admin, State(api): State<OperatorApi>, Json(body): Json<CreateTenant>) -> ApiResult {
    let catalog = api.tenancy().catalog();
    // Check everything before anything is made.
    if let Some(owner) = body.owner_user_id
        && catalog.users().find(owner).await?.is_none()
    {
        return Err(ApiError::invalid(format!("owner_user_id: no user {owner}")));
    }
    if let Some(server) = &body.server
        && catalog.servers().named(server).await?.is_none()
    {
        return Err(ApiError::invalid(format!("server: no server named '{server}'")));
    }
    let plan = body.plan.as_deref().map(|p| plain_text("plan", p, 100)).transpose()?;
    let name = Some(plain_text("name", &body.name, 200)?);
    let row = api
        .tenancy()
        .provisioner()
        .create_tenant(NewTenant {
            slug: body.slug,
            name,
            database_name: body.database_name,
            owner_user_id: body.owner_user_id,
            plan,
            server: body.server,
        })
        .await?;
    let view = tenant_view(&api, &TenantRef::Id(row.tenant_id.into())).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants", tag = "operator", params(PageParams, ("status" = Option<TenantStatus>, Query, description = "only tenants with this status")), responses((status = 200, description = "a page of tenants", body = PageOf<Tenant>), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn list_tenants(
    _: Admin,
    State(api): State<OperatorApi>,
    StatusPage { page, status }: StatusPage<TenantStatus>,
) -> ApiResult {
    let items = api.tenancy().list_tenants(status, page.cursor, page.limit).await?;
    let last = items.last().map(|t| t.id);
    Ok(Json(page.answer(items, last)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the tenant", body = Tenant), (status = 404, description = "tenant_not_found")))]
async fn get_tenant(_: Admin, State(api): State<OperatorApi>, Path(tenant): Path<String>) -> ApiResult {
    Ok(Json(tenant_view(&api, &tenant_ref(&tenant)?).await?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchTenant {
    name: Option<String>,
    status: Option<TenantStatus>,
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), request_body = PatchTenant, responses((status = 200, description = "the tenant", body = Tenant), (status = 400, description = "invalid_request"), (status = 404, description = "tenant_not_found")))]
async fn patch_tenant(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(tenant): Path<String>,
    Json(body): Json<PatchTenant>,
) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    let found = api.tenancy().catalog().tenants().get(&tenant).await?;
    let name = body.name.as_deref().map(|n| plain_text("name", n, 200)).transpose()?;
    if let Some(name) = name {
        api.tenancy().catalog().tenants().set_name(found.id, &name).await?;
    }
    if let Some(status) = body.status {
        api.tenancy().catalog().tenants().set_status(found.id, status).await?;
    }
    Ok(Json(tenant_view(&api, &TenantRef::Id(found.id.into())).await?).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    /// Delete for good at once, without the retention period (a DELETED
    /// tenant too: its kept database is dropped).
    now: Option<bool>,
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug"), DeleteParams), responses((status = 204, description = "the tenant is DELETED: refused with 403 tenant_deleted, its database kept under a trash name and its role locked out until `POST /v1/tenants/{tenant}/restore` or the end of the retention period (TENANTDB_DELETED_RETENTION); with `now=true` or no retention period, the tenant, its database, role, members and subscription are gone"), (status = 404, description = "tenant_not_found"), (status = 409, description = "conflict: its database is busy (renaming, migrating, moving)")))]
async fn delete_tenant(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(tenant): Path<String>,
    Query(params): Query<DeleteParams>,
) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    let provisioner = api.tenancy().provisioner();
    if params.now.unwrap_or(false) {
        provisioner.delete_tenant_now(&tenant).await?;
    } else {
        provisioner.delete_tenant(&tenant).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/restore", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the tenant, ACTIVE again with its data, under its database name (migrated if a tenant migration came while it was deleted)", body = Tenant), (status = 404, description = "tenant_not_found: no such tenant (a purged one is gone)"), (status = 409, description = "conflict: it is not DELETED")))]
async fn restore_tenant(_: Admin, State(api): State<OperatorApi>, Path(tenant): Path<String>) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    api.tenancy().provisioner().restore_tenant(&tenant).await?;
    Ok(Json(tenant_view(&api, &tenant).await?).into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/database", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the tenant database", body = TenantDatabase), (status = 404, description = "tenant_not_found")))]
async fn get_database(_: Admin, State(api): State<OperatorApi>, Path(tenant): Path<String>) -> ApiResult {
    let view = tenant_view(&api, &tenant_ref(&tenant)?).await?;
    let database = view.database.ok_or_else(|| ApiError::not_found("tenant database"))?;
    Ok(Json(database).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameDatabase {
    database_name: String,
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}/database", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), request_body = RenameDatabase, responses((status = 200, description = "the tenant database, renamed", body = TenantDatabase), (status = 400, description = "invalid_request"), (status = 404, description = "tenant_not_found"), (status = 409, description = "conflict")))]
async fn rename_database(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(tenant): Path<String>,
    Json(body): Json<RenameDatabase>,
) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    api.tenancy()
        .provisioner()
        .rename_tenant_database(&tenant, &body.database_name)
        .await?;
    get_database(Admin, State(api), Path(tenant.to_string())).await
}

/// Where and how to move a tenant's database.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    /// The server to move to, by name; the service's placement chooses
    /// among the others when not given.
    to: Option<String>,
    /// Copy with pg_dump | pg_restore while the tenant is refused, rather
    /// than online with logical replication (the default where the source
    /// has `wal_level = logical`).
    #[serde(default)]
    offline: bool,
    /// Leave the source database in place (its role locked out) for
    /// `doctor` to report and drop.
    #[serde(default)]
    keep_source: bool,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/move", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), request_body = MoveBody, responses((status = 202, description = "the tenant, its database MOVING (or SWITCHING, offline) with `moving` saying where: the move goes on in the background; the tenant object shows its phase, then ACTIVE on the new server (or ACTIVE where it was, with `error_message`, if it failed)", body = Tenant), (status = 400, description = "invalid_request: the server it is on, a replica, a table without a primary key for an online move, a SQLite server"), (status = 404, description = "not_found: no such tenant or server"), (status = 409, description = "conflict: its database is not ACTIVE, or the target is DRAINING"), (status = 503, description = "tenant_unavailable: a server did not answer")))]
async fn move_tenant(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(tenant): Path<String>,
    Json(body): Json<MoveBody>,
) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    let options = MoveTenant {
        to: body.to,
        offline: body.offline,
        keep_source: body.keep_source,
    };
    // The move goes on in a task the provisioner owns (shutdown waits for
    // it; a crash is finished or rolled back by reconcile).
    let (_, _work) = api.tenancy().provisioner().begin_move(&tenant, options).await?;
    let view = tenant_view(&api, &tenant).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/database/retry", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the tenant database, ACTIVE", body = TenantDatabase), (status = 404, description = "tenant_not_found"), (status = 409, description = "conflict: not FAILED"), (status = 502, description = "provisioning_failed")))]
async fn retry_database(_: Admin, State(api): State<OperatorApi>, Path(tenant): Path<String>) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    api.tenancy().provisioner().retry(&tenant).await?;
    get_database(Admin, State(api), Path(tenant.to_string())).await
}
