//! Tenant servers: where tenant databases live, their budgets and the
//! instances sharing them; adding one, draining one (no new tenants),
//! accepting again, removing an empty one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use tenantdb::{AddReplica, AddServer, Server};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, ApiResult, OperatorApi};
use crate::openapi::PageParams;
use crate::{ApiError, Json, Page, PageOf, Path, Query};

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(list_servers, add_server))
        .routes(routes!(get_server, remove_server))
        .routes(routes!(drain_server))
        .routes(routes!(accept_server))
        .routes(routes!(add_replica))
}

#[utoipa::path(get, path = "/v1/servers", tag = "operator", params(PageParams), responses((status = 200, description = "a page of servers, by id", body = PageOf<Server>), (status = 400, description = "invalid_request")))]
async fn list_servers(_: Admin, State(api): State<OperatorApi>, page: Page) -> ApiResult {
    let servers = api.tenancy().servers().await?;
    let items: Vec<Server> = servers
        .into_iter()
        .filter(|s| page.cursor.is_none_or(|after| s.id > after))
        .take(usize::try_from(page.limit).unwrap_or(usize::MAX))
        .collect();
    let last = items.last().map(|s| s.id);
    Ok(Json(page.answer(items, last)).into_response())
}

/// A PostgreSQL server to add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewServerBody {
    /// Its name: lowercase letters, digits and `-`, 1 to 63 characters.
    name: String,
    /// `postgres://user:password@host:port/postgres`, a superuser or a role
    /// with CREATEDB and CREATEROLE. Kept without its password; the
    /// password is sealed with the deployment secret and never shown.
    admin_url: String,
    /// Connections all instances together may hold on it.
    #[schema(minimum = 1)]
    budget: u32,
    /// Connections one tenant's pool may hold there (the service's
    /// setting when not given).
    #[schema(minimum = 1)]
    max_per_tenant: Option<u32>,
}

#[utoipa::path(post, path = "/v1/servers", tag = "operator", request_body = NewServerBody, responses((status = 201, description = "the server, ACCEPTING: it answered and has room for the budget", body = Server), (status = 400, description = "invalid_request"), (status = 409, description = "conflict"), (status = 503, description = "tenant_unavailable: the server did not answer")))]
async fn add_server(_: Admin, State(api): State<OperatorApi>, Json(body): Json<NewServerBody>) -> ApiResult {
    let server = api
        .tenancy()
        .add_server(AddServer {
            name: body.name,
            admin_url: body.admin_url.into(),
            budget: body.budget,
            max_per_tenant: body.max_per_tenant,
        })
        .await
        .map_err(|err| match err {
            // This service cannot seal passwords (no TENANTDB_SECRET).
            tenantdb::Error::Config(message) => ApiError::conflict(message),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(server)).into_response())
}

/// A read replica to add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewReplicaBody {
    /// Its name (`<server>-replica` when not given).
    name: Option<String>,
    /// `postgres://user:password@host:port/postgres` of the standby; kept
    /// like a server's admin URL (password sealed, never shown).
    admin_url: String,
    /// Connections all instances together may hold on it.
    #[schema(minimum = 1)]
    budget: u32,
    /// Connections one tenant's pool may hold there.
    #[schema(minimum = 1)]
    max_per_tenant: Option<u32>,
    /// How far behind the server it may be and still take reads
    /// (milliseconds; 1000 when not given).
    #[schema(minimum = 100)]
    max_lag_ms: Option<u32>,
}

#[utoipa::path(post, path = "/v1/servers/{server}/replicas", tag = "operator", params(("server" = String, Path, description = "the server it follows")), request_body = NewReplicaBody, responses((status = 201, description = "the replica (status REPLICA): it answered, is a standby of the server and has room for the budget; reads go to it while it keeps within max_lag_ms", body = Server), (status = 400, description = "invalid_request: not a standby of that server, a bound under 100 ms, a replica or SQLite server to follow"), (status = 404, description = "not_found"), (status = 409, description = "conflict"), (status = 503, description = "tenant_unavailable: the replica did not answer")))]
async fn add_replica(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(server): Path<String>,
    Json(body): Json<NewReplicaBody>,
) -> ApiResult {
    let replica = api
        .tenancy()
        .add_replica(AddReplica {
            primary: server,
            name: body.name,
            admin_url: body.admin_url.into(),
            budget: body.budget,
            max_per_tenant: body.max_per_tenant,
            max_lag_ms: body.max_lag_ms,
        })
        .await
        .map_err(|err| match err {
            tenantdb::Error::Config(message) => ApiError::conflict(message),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(replica)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RemoveParams {
    /// Drop this deployment's templates on the server first (else a
    /// server holding templates is refused with 409).
    drop_templates: Option<bool>,
}

#[utoipa::path(delete, path = "/v1/servers/{server}", tag = "operator", params(("server" = String, Path, description = "the server's name"), RemoveParams), responses((status = 204, description = "the server is out of the catalog; nothing on it was touched but this deployment's templates, when asked"), (status = 404, description = "not_found"), (status = 409, description = "conflict: it holds tenant databases or templates, or it is a server of the service's settings"), (status = 503, description = "tenant_unavailable: the server did not answer")))]
async fn remove_server(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(name): Path<String>,
    Query(params): Query<RemoveParams>,
) -> ApiResult {
    let removed = api
        .tenancy()
        .remove_server(&name, params.drop_templates.unwrap_or(false))
        .await?;
    removed.ok_or_else(|| ApiError::not_found("server"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/servers/{server}", tag = "operator", params(("server" = String, Path, description = "the server's name")), responses((status = 200, description = "the server", body = Server), (status = 404, description = "not_found")))]
async fn get_server(_: Admin, State(api): State<OperatorApi>, Path(name): Path<String>) -> ApiResult {
    let server = api.tenancy().server(&name).await?;
    let server = server.ok_or_else(|| ApiError::not_found("server"))?;
    Ok(Json(server).into_response())
}

#[utoipa::path(post, path = "/v1/servers/{server}/drain", tag = "operator", params(("server" = String, Path, description = "the server's name")), responses((status = 200, description = "the server, DRAINING: new tenants are refused with 409 conflict; its tenants keep being served", body = Server), (status = 404, description = "not_found")))]
async fn drain_server(_: Admin, State(api): State<OperatorApi>, Path(name): Path<String>) -> ApiResult {
    set_accepting(&api, &name, false).await
}

#[utoipa::path(post, path = "/v1/servers/{server}/accept", tag = "operator", params(("server" = String, Path, description = "the server's name")), responses((status = 200, description = "the server, ACCEPTING new tenants again", body = Server), (status = 404, description = "not_found")))]
async fn accept_server(_: Admin, State(api): State<OperatorApi>, Path(name): Path<String>) -> ApiResult {
    set_accepting(&api, &name, true).await
}

async fn set_accepting(api: &OperatorApi, name: &str, accepting: bool) -> ApiResult {
    let server = api.tenancy().set_server_accepting(name, accepting).await?;
    let server = server.ok_or_else(|| ApiError::not_found("server"))?;
    Ok(Json(server).into_response())
}
