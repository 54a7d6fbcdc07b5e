//! A tenant's export over HTTP: `GET /v1/tenants/{tenant}/export` streams
//! the file `tenants export` writes; `POST /v1/imports` takes one as
//! the request body and creates a new tenant from it, as `tenants import`
//! does. Both go through a private temporary directory (owner-only) that is
//! gone when the request ends; an export can be large, so neither is held
//! in memory, and the import body has no size limit (operators only).

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use serde::Deserialize;
use tenantdb::{NewTenant, Tenant, TenantRef};
use tokio::io::AsyncWriteExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, ApiResult, OperatorApi, tenant_ref, tenant_view};
use crate::{ApiError, Path, Query};

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(export_tenant))
        .routes(routes!(import_tenant))
}

/// A directory only this process's user can read, removed when dropped.
fn scratch() -> ApiResult<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("tenantdb-export-")
        .tempdir()
        .map_err(|err| ApiError::internal(&err))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/export", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the export (`tenants export`'s file: the line `TENANTDB-EXPORT 1`, a JSON header, then the engine's archive), a consistent snapshot taken while the tenant is served", content_type = "application/octet-stream", body = Vec<u8>), (status = 404, description = "tenant_not_found"), (status = 409, description = "conflict: its database is not serving"), (status = 503, description = "tenant_unavailable: its server did not answer")))]
async fn export_tenant(_: Admin, State(api): State<OperatorApi>, Path(tenant): Path<String>) -> ApiResult {
    let tenant = tenant_ref(&tenant)?;
    let dir = scratch()?;
    let path = dir.path().join("export.tenantdb");
    let exported = api.tenancy().export_tenant(&tenant, &path).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    // The open file stays readable once the directory is gone.
    drop(dir);
    let filename = format!("attachment; filename=\"{}.tenantdb\"", exported.header.slug);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// Who the imported tenant is.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    /// The new tenant's slug.
    slug: String,
    /// Its display name (default: the slug).
    name: Option<String>,
    /// The server for its database, by name (default: the placement's).
    server: Option<String>,
}

#[utoipa::path(post, path = "/v1/imports", tag = "operator", params(ImportParams), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "an export (`GET /v1/tenants/{tenant}/export`, `tenants export`)"), responses((status = 201, description = "the new tenant, ACTIVE: its own role and database, the export restored into it as that role, then the tenant migrations newer than the export's", body = Tenant), (status = 400, description = "invalid_request: not an export, an export from a migration this program does not have, or of the other engine"), (status = 409, description = "conflict: the slug is taken"), (status = 502, description = "provisioning_failed: the restore failed; the tenant is FAILED with nothing made")))]
async fn import_tenant(
    _: Admin,
    State(api): State<OperatorApi>,
    Query(params): Query<ImportParams>,
    body: Body,
) -> ApiResult {
    // The slug first: a bad one is refused before the body is read.
    tenantdb::TenantSlug::parse(&params.slug)?;
    let dir = scratch()?;
    let path = dir.path().join("import.tenantdb");
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| ApiError::invalid(format!("the request body could not be read: {err}")))?;
        if let Some(data) = frame.data_ref() {
            file.write_all(data).await.map_err(|err| ApiError::internal(&err))?;
        }
    }
    file.flush().await.map_err(|err| ApiError::internal(&err))?;
    drop(file);
    let new = NewTenant {
        slug: params.slug,
        name: params.name,
        server: params.server,
        ..Default::default()
    };
    let created = api.tenancy().provisioner().import_tenant(new, &path).await?;
    let view = tenant_view(&api, &TenantRef::Id(created.tenant_id.into())).await?;
    Ok((StatusCode::CREATED, crate::Json(view)).into_response())
}
