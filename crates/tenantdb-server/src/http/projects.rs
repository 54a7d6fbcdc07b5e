//! The tenant API's example domain: projects and their tasks, in the
//! request tenant's own database (reached through `TenantDb`). An id that
//! belongs to another tenant is simply not in this database: 404.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use tenantdb::catalog::MemberRole;
use tenantdb::internal::plain_text;
use tenantdb::rfc3339;
use tenantdb_axum::openapi::{self, PageParams};
use tenantdb_axum::{ApiError, Json, Member, Page, PageOf, Path, TenantDb};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use crate::tenant_schema::{projects, tasks};

type ApiResult<T = Response> = Result<T, ApiError>;

/// The routes, documented as the tenant layer guards them (the
/// `X-Tenant` header and its answers): wrap them in `TenantResolution`.
pub fn router() -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, rename_project, delete_project))
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(update_task, delete_task));
    openapi::tenant_api(routes.get_openapi_mut());
    routes
}

fn id(raw: &str, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// A project, as the tenant API shows it.
#[derive(Serialize, utoipa::ToSchema)]
struct Project {
    id: Uuid,
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&projects::Model> for Project {
    fn from(p: &projects::Model) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            created_at: rfc3339(p.created_at),
        }
    }
}

/// A task of a project.
#[derive(Serialize, utoipa::ToSchema)]
struct Task {
    id: Uuid,
    project_id: Uuid,
    title: String,
    done: bool,
    due: Option<NaiveDate>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&tasks::Model> for Task {
    fn from(t: &tasks::Model) -> Self {
        Self {
            id: t.id,
            project_id: t.project_id,
            title: t.title.clone(),
            done: t.done,
            due: t.due,
            created_at: rfc3339(t.created_at),
        }
    }
}

async fn find_project(db: &TenantDb, id: Uuid) -> ApiResult<projects::Model> {
    projects::Entity::find_by_id(id)
        .one(&db.read)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))
}

#[utoipa::path(get, path = "/v1/projects", tag = "tenant", params(PageParams), responses((status = 200, description = "a page of projects", body = PageOf<Project>), (status = 400, description = "invalid_request")))]
async fn list_projects(db: TenantDb, query: Page) -> ApiResult {
    let mut select = projects::Entity::find()
        .order_by_asc(projects::Column::Id)
        .limit(query.limit);
    if let Some(after) = query.cursor {
        select = select.filter(projects::Column::Id.gt(after));
    }
    let rows = select.all(&db.read).await?;
    let last = rows.last().map(|p| p.id);
    let items: Vec<Project> = rows.iter().map(Project::from).collect();
    Ok(Json(query.answer(items, last)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProjectBody {
    name: String,
}

#[utoipa::path(post, path = "/v1/projects", tag = "tenant", request_body = ProjectBody, responses((status = 201, description = "the project", body = Project), (status = 400, description = "invalid_request")))]
async fn create_project(db: TenantDb, Json(body): Json<ProjectBody>) -> ApiResult {
    let name = plain_text("name", &body.name, 200)?;
    let project = projects::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        created_at: Set(Utc::now()),
    }
    .insert(&db.write)
    .await?;
    Ok((StatusCode::CREATED, Json(Project::from(&project))).into_response())
}

#[utoipa::path(get, path = "/v1/projects/{id}", tag = "tenant", params(("id" = String, Path, description = "the project's id")), responses((status = 200, description = "the project", body = Project), (status = 404, description = "not_found (no such project) or tenant_not_found")))]
async fn get_project(db: TenantDb, Path(project): Path<String>) -> ApiResult {
    let project = find_project(&db, id(&project, "project")?).await?;
    Ok(Json(Project::from(&project)).into_response())
}

#[utoipa::path(patch, path = "/v1/projects/{id}", tag = "tenant", params(("id" = String, Path, description = "the project's id")), request_body = ProjectBody, responses((status = 200, description = "the project", body = Project), (status = 404, description = "not_found (no such project) or tenant_not_found"), (status = 400, description = "invalid_request")))]
async fn rename_project(db: TenantDb, Path(project): Path<String>, Json(body): Json<ProjectBody>) -> ApiResult {
    let name = plain_text("name", &body.name, 200)?;
    let project = find_project(&db, id(&project, "project")?).await?;
    let mut active: projects::ActiveModel = project.into();
    active.name = Set(name);
    let project = active.update(&db.write).await?;
    Ok(Json(Project::from(&project)).into_response())
}

#[utoipa::path(delete, path = "/v1/projects/{id}", tag = "tenant", params(("id" = String, Path, description = "the project's id")), responses((status = 204, description = "the project and its tasks are gone"), (status = 403, description = "forbidden (only an OWNER or ADMIN may delete projects) or tenant_suspended"), (status = 404, description = "not_found (no such project) or tenant_not_found")))]
async fn delete_project(member: Member, db: TenantDb, Path(project): Path<String>) -> ApiResult {
    if member.role == MemberRole::Member {
        return Err(ApiError::forbidden("only an OWNER or ADMIN may delete projects"));
    }
    let project = find_project(&db, id(&project, "project")?).await?;
    // Tasks go with it (ON DELETE CASCADE).
    projects::Entity::delete_by_id(project.id).exec(&db.write).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/projects/{id}/tasks", tag = "tenant", params(("id" = String, Path, description = "the project's id"), PageParams), responses((status = 200, description = "a page of tasks", body = PageOf<Task>), (status = 400, description = "invalid_request"), (status = 404, description = "not_found (no such project) or tenant_not_found")))]
async fn list_tasks(db: TenantDb, Path(project): Path<String>, query: Page) -> ApiResult {
    let project = find_project(&db, id(&project, "project")?).await?;
    let mut select = tasks::Entity::find()
        .filter(tasks::Column::ProjectId.eq(project.id))
        .order_by_asc(tasks::Column::Id)
        .limit(query.limit);
    if let Some(after) = query.cursor {
        select = select.filter(tasks::Column::Id.gt(after));
    }
    let rows = select.all(&db.read).await?;
    let last = rows.last().map(|t| t.id);
    let items: Vec<Task> = rows.iter().map(Task::from).collect();
    Ok(Json(query.answer(items, last)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTask {
    title: String,
    due: Option<NaiveDate>,
}

#[utoipa::path(post, path = "/v1/projects/{id}/tasks", tag = "tenant", params(("id" = String, Path, description = "the project's id")), request_body = NewTask, responses((status = 201, description = "the task", body = Task), (status = 404, description = "not_found (no such project) or tenant_not_found"), (status = 400, description = "invalid_request")))]
async fn create_task(db: TenantDb, Path(project): Path<String>, Json(body): Json<NewTask>) -> ApiResult {
    let title = plain_text("title", &body.title, 500)?;
    let project = find_project(&db, id(&project, "project")?).await?;
    let task = tasks::ActiveModel {
        id: Set(Uuid::now_v7()),
        project_id: Set(project.id),
        title: Set(title),
        done: Set(false),
        due: Set(body.due),
        created_at: Set(Utc::now()),
    }
    .insert(&db.write)
    .await?;
    Ok((StatusCode::CREATED, Json(Task::from(&task))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TaskPatch {
    title: Option<String>,
    done: Option<bool>,
    /// `null` clears the due date; absent leaves it.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<String>, format = Date)]
    due: Option<Option<NaiveDate>>,
}

fn some_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<NaiveDate>>, D::Error> {
    Option::<NaiveDate>::deserialize(d).map(Some)
}

async fn find_task(db: &TenantDb, id: Uuid) -> ApiResult<tasks::Model> {
    tasks::Entity::find_by_id(id)
        .one(&db.read)
        .await?
        .ok_or_else(|| ApiError::not_found("task"))
}

#[utoipa::path(patch, path = "/v1/tasks/{id}", tag = "tenant", params(("id" = String, Path, description = "the task's id")), request_body = TaskPatch, responses((status = 200, description = "the task", body = Task), (status = 404, description = "not_found (no such task) or tenant_not_found"), (status = 400, description = "invalid_request")))]
async fn update_task(db: TenantDb, Path(task): Path<String>, Json(body): Json<TaskPatch>) -> ApiResult {
    let title = body.title.as_deref().map(|t| plain_text("title", t, 500)).transpose()?;
    let task = find_task(&db, id(&task, "task")?).await?;
    let mut active: tasks::ActiveModel = task.clone().into();
    if let Some(title) = title {
        active.title = Set(title);
    }
    if let Some(done) = body.done {
        active.done = Set(done);
    }
    if let Some(due) = body.due {
        active.due = Set(due);
    }
    let task = if active.is_changed() {
        active.update(&db.write).await?
    } else {
        task
    };
    Ok(Json(Task::from(&task)).into_response())
}

#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tenant", params(("id" = String, Path, description = "the task's id")), responses((status = 204, description = "deleted"), (status = 404, description = "not_found (no such task) or tenant_not_found")))]
async fn delete_task(db: TenantDb, Path(task): Path<String>) -> ApiResult {
    let task = find_task(&db, id(&task, "task")?).await?;
    tasks::Entity::delete_by_id(task.id).exec(&db.write).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
