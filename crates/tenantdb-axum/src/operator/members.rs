//! Members of tenants, and tenants' subscriptions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantdb::catalog::{MemberRole, SubscriptionStatus, memberships, subscriptions};
use tenantdb::internal::plain_text;
use tenantdb::rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::users::find_user;
use super::{Admin, ApiResult, OperatorApi, tenant_ref};
use crate::openapi::PageParams;
use crate::{ApiError, Json, Page, PageOf, Path};

pub(super) fn routes() -> OpenApiRouter<OperatorApi> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(put_member, delete_member))
        .routes(routes!(get_subscription, put_subscription))
}

/// A user's membership of a tenant.
#[derive(Serialize, utoipa::ToSchema)]
struct Membership {
    tenant_id: Uuid,
    user_id: Uuid,
    role: MemberRole,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&memberships::Model> for Membership {
    fn from(m: &memberships::Model) -> Self {
        Self {
            tenant_id: m.tenant_id,
            user_id: m.user_id,
            role: m.role,
            created_at: rfc3339(m.created_at),
        }
    }
}

/// A tenant's subscription.
#[derive(Serialize, utoipa::ToSchema)]
struct Subscription {
    tenant_id: Uuid,
    plan: String,
    status: SubscriptionStatus,
    seats: i32,
    #[schema(format = DateTime)]
    current_period_end: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&subscriptions::Model> for Subscription {
    fn from(s: &subscriptions::Model) -> Self {
        Self {
            tenant_id: s.tenant_id,
            plan: s.plan.clone(),
            status: s.status,
            seats: s.seats,
            current_period_end: s.current_period_end.map(rfc3339),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutMember {
    role: MemberRole,
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/members/{user}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug"), ("user" = String, Path, description = "the user's id or email")), request_body = PutMember, responses((status = 200, description = "the membership", body = Membership), (status = 400, description = "invalid_request"), (status = 404, description = "not found")))]
async fn put_member(
    _: Admin,
    State(api): State<OperatorApi>,
    Path((tenant, user)): Path<(String, String)>,
    Json(body): Json<PutMember>,
) -> ApiResult {
    let tenant = api.tenancy().catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let user = find_user(&api, &user).await?;
    let membership = api
        .tenancy()
        .catalog()
        .memberships()
        .upsert(tenant.id, user.id, body.role)
        .await?;
    Ok(Json(Membership::from(&membership)).into_response())
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/members/{user}", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug"), ("user" = String, Path, description = "the user's id or email")), responses((status = 204, description = "removed"), (status = 404, description = "not found")))]
async fn delete_member(
    _: Admin,
    State(api): State<OperatorApi>,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult {
    let tenant = api.tenancy().catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let user = find_user(&api, &user).await?;
    if !api.tenancy().catalog().memberships().remove(tenant.id, user.id).await? {
        return Err(ApiError::not_found("membership"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/members", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug"), PageParams), responses((status = 200, description = "the memberships, by user id", body = PageOf<Membership>), (status = 400, description = "invalid_request"), (status = 404, description = "tenant_not_found")))]
async fn list_members(_: Admin, State(api): State<OperatorApi>, Path(tenant): Path<String>, query: Page) -> ApiResult {
    let tenant = api.tenancy().catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let members = api
        .tenancy()
        .catalog()
        .memberships()
        .page_for_tenant(tenant.id, query.cursor, query.limit)
        .await?;
    let last = members.last().map(|m| m.user_id);
    let items: Vec<Membership> = members.iter().map(Membership::from).collect();
    Ok(Json(query.answer(items, last)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutSubscription {
    plan: String,
    status: SubscriptionStatus,
    seats: i32,
    current_period_end: Option<DateTime<Utc>>,
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/subscription", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), request_body = PutSubscription, responses((status = 200, description = "the subscription", body = Subscription), (status = 400, description = "invalid_request"), (status = 404, description = "tenant_not_found")))]
async fn put_subscription(
    _: Admin,
    State(api): State<OperatorApi>,
    Path(tenant): Path<String>,
    Json(body): Json<PutSubscription>,
) -> ApiResult {
    let tenant = api.tenancy().catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let plan = plain_text("plan", &body.plan, 100)?;
    if !(0..=1_000_000).contains(&body.seats) {
        return Err(ApiError::invalid("seats must be 0 to 1000000"));
    }
    let sub = api
        .tenancy()
        .catalog()
        .subscriptions()
        .upsert(tenant.id, &plan, body.status, body.seats, body.current_period_end)
        .await?;
    Ok(Json(Subscription::from(&sub)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/subscription", tag = "operator", params(("tenant" = String, Path, description = "the tenant's id or slug")), responses((status = 200, description = "the subscription", body = Subscription), (status = 404, description = "not_found")))]
async fn get_subscription(_: Admin, State(api): State<OperatorApi>, Path(tenant): Path<String>) -> ApiResult {
    let tenant = api.tenancy().catalog().tenants().get(&tenant_ref(&tenant)?).await?;
    let sub = api.tenancy().catalog().subscriptions().find(tenant.id).await?;
    let sub = sub.ok_or_else(|| ApiError::not_found("subscription"))?;
    Ok(Json(Subscription::from(&sub)).into_response())
}
