//! Fleet migrations: start a run, follow its progress.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use tenantdb::{RunStatus, rfc3339};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Admin, ApiResult, OperatorApi, tenant_ref};
use crate::{ApiError, Json, OptionalJson, Path};

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(start_migration))
        .routes(routes!(get_migration))
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct StartMigration {
    concurrency: Option<usize>,
    tenants: Option<Vec<String>>,
    /// Only tenants on these servers, by name (every server when not given).
    servers: Option<Vec<String>>,
    max_failures: Option<usize>,
    canary: Option<usize>,
}

/// A fleet migration run and its progress.
#[derive(Serialize, utoipa::ToSchema)]
struct Run {
    id: Uuid,
    status: RunStatus,
    /// The migration every tenant is brought to.
    target_version: Option<String>,
    /// Tenants that were behind when it started.
    total: i32,
    succeeded: i32,
    failed: i32,
    skipped: i32,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
}

impl From<tenantdb::MigrationRun> for Run {
    fn from(run: tenantdb::MigrationRun) -> Self {
        Self {
            id: run.id,
            status: run.status,
            target_version: run.target_version,
            total: run.total,
            succeeded: run.succeeded,
            failed: run.failed,
            skipped: run.skipped,
            started_at: rfc3339(run.started_at),
            finished_at: run.finished_at.map(rfc3339),
        }
    }
}

/// A run just started: follow it at `GET /v1/migrations/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
struct Started {
    id: Uuid,
}

#[utoipa::path(post, path = "/v1/migrations", tag = "operator", request_body(content = StartMigration, description = "optional: an empty body is {}"), responses((status = 202, description = "the run, started in the background", body = Started), (status = 400, description = "invalid_request"), (status = 401, description = "unauthorized"), (status = 403, description = "forbidden")))]
async fn start_migration(
    _: Admin,
    State(api): State<OperatorApi>,
    OptionalJson(body): OptionalJson<StartMigration>,
) -> ApiResult {
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
    let options = tenantdb::FleetOptions {
        concurrency,
        tenants,
        servers: body.servers.unwrap_or_default(),
        max_failures: body.max_failures,
        canary: body.canary,
    };
    let (id, _run) = api
        .tenancy()
        .fleet()
        .start(&options, |_| {})
        .await
        .map_err(|err| match err {
            tenantdb::Error::ServerNotFound(name) => ApiError::invalid(format!("servers: no server named '{name}'")),
            other => other.into(),
        })?;
    Ok((StatusCode::ACCEPTED, Json(Started { id })).into_response())
}

#[utoipa::path(get, path = "/v1/migrations/{id}", tag = "operator", params(("id" = String, Path, description = "the run's id")), responses((status = 200, description = "the run and its progress", body = Run), (status = 404, description = "not_found")))]
async fn get_migration(_: Admin, State(api): State<OperatorApi>, Path(id): Path<String>) -> ApiResult {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("migration run"))?;
    let run = api.tenancy().fleet().run(id).await?;
    let run = run.ok_or_else(|| ApiError::not_found("migration run"))?;
    Ok(Json(Run::from(run)).into_response())
}
