//! Tenant servers: where tenant databases live, their budgets and the
//! instances sharing them; draining one (no new tenants) and accepting
//! again.

use axum::extract::State;
use axum::response::IntoResponse;
use tenantdb::Server;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, ApiResult, OperatorApi};
use crate::openapi::PageParams;
use crate::{ApiError, Json, Page, PageOf, Path};

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(list_servers))
        .routes(routes!(get_server))
        .routes(routes!(drain_server))
        .routes(routes!(accept_server))
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
