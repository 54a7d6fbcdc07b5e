//! `CatalogAuthorizer`: the catalog's users, API tokens and memberships as
//! an [`Authorizer`]. Token and membership lookups are cached and follow
//! the catalog's change stamp, so a revoked token or a removed member stops
//! working within the poll interval in every process (at once in the one
//! that made the change).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use dashmap::DashMap;
use secrecy::SecretString;
use tenantdb::Catalog;
use tenantdb::ResolvedTenant;
use tenantdb::catalog::MemberRole;
use tenantdb::internal::sha256;
use uuid::Uuid;

use super::stamped::StampedCache;
use super::{bearer, same_secret};
use crate::authorizer::Authorizer;
use crate::error::ApiError;

/// `last_used_at` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// The user calling the tenant API, put in the request's extensions by
/// [`CatalogAuthorizer`]; also an extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserId(pub Uuid);

/// The calling user's membership of the request's tenant, put in the
/// request's extensions by [`CatalogAuthorizer`]; also an extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The user.
    pub user_id: Uuid,
    /// Their role in the request's tenant.
    pub role: MemberRole,
}

/// Users with API tokens (bearer), acting for the tenants they are members
/// of; for anyone else a tenant does not exist (404, so names cannot be
/// probed). Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct CatalogAuthorizer {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    /// Refused with 403 on the tenant API: operators act through the
    /// operator API.
    operator_token: Option<SecretString>,
    /// sha256(token) -> (token id, user). Only tokens that exist are
    /// cached: made-up ones must not fill memory.
    tokens: StampedCache<[u8; 32], (Uuid, Uuid)>,
    /// (tenant, user) -> role.
    members: StampedCache<(Uuid, Uuid), Option<MemberRole>>,
    last_used: DashMap<Uuid, Instant, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for CatalogAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogAuthorizer")
            .field("refuses_operator_token", &self.inner.operator_token.is_some())
            .finish_non_exhaustive()
    }
}

impl CatalogAuthorizer {
    /// Users, tokens and memberships of `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self::build(catalog, None)
    }

    /// The same, and `token` (the operator's) is answered 403 `forbidden`
    /// on the tenant API rather than 401.
    pub fn refusing_operator_token(catalog: Catalog, token: SecretString) -> Self {
        Self::build(catalog, Some(token))
    }

    fn build(catalog: Catalog, operator_token: Option<SecretString>) -> Self {
        Self {
            inner: Arc::new(Inner {
                catalog,
                operator_token,
                tokens: StampedCache::new(),
                members: StampedCache::new(),
                last_used: DashMap::default(),
            }),
        }
    }

    /// The user an unrevoked API token belongs to, if any; records the
    /// token's use (at most once a minute, off the request path).
    pub async fn user_of_token(&self, token: &str) -> Result<Option<Uuid>, ApiError> {
        let inner = &*self.inner;
        let hash = sha256(token.as_bytes());
        let stamp = inner.catalog.changes().current();
        let found = match inner.tokens.get(&hash, stamp) {
            Some(found) => found,
            None => {
                let Some(row) = inner.catalog.tokens().find_active(token).await? else {
                    return Ok(None);
                };
                inner.tokens.insert(hash, stamp, (row.id, row.user_id));
                (row.id, row.user_id)
            }
        };
        self.touch(found.0);
        Ok(Some(found.1))
    }

    fn touch(&self, token_id: Uuid) {
        let now = Instant::now();
        let last_used = &self.inner.last_used;
        let due = last_used
            .get(&token_id)
            .is_none_or(|at| now.duration_since(*at) >= LAST_USED_EVERY);
        if due {
            last_used.insert(token_id, now);
            let catalog = self.inner.catalog.clone();
            tokio::spawn(async move {
                if let Err(err) = catalog.tokens().touch(token_id).await {
                    tracing::warn!(error = %err, "recording token use failed");
                }
            });
        }
    }

    /// The user's role in the tenant, if a member.
    pub async fn role(&self, tenant: Uuid, user: Uuid) -> Result<Option<MemberRole>, ApiError> {
        let inner = &*self.inner;
        let stamp = inner.catalog.changes().current();
        if let Some(role) = inner.members.get(&(tenant, user), stamp) {
            return Ok(role);
        }
        let role = inner.catalog.memberships().find(tenant, user).await?.map(|m| m.role);
        inner.members.insert((tenant, user), stamp, role);
        Ok(role)
    }
}

#[async_trait::async_trait]
impl Authorizer for CatalogAuthorizer {
    /// A bearer API token: its user goes in the extensions as [`UserId`].
    async fn authenticate(&self, parts: &mut Parts) -> Result<(), ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        if let Some(operator) = &self.inner.operator_token
            && same_secret(token, operator)
        {
            return Err(ApiError::forbidden("the operator's token cannot use the tenant API"));
        }
        let user = self.user_of_token(token).await?.ok_or_else(ApiError::unauthorized)?;
        parts.extensions.insert(UserId(user));
        Ok(())
    }

    /// A member of the tenant: the membership goes in the extensions as
    /// [`Member`].
    async fn authorize(&self, parts: &mut Parts, tenant: &ResolvedTenant) -> Result<(), ApiError> {
        let UserId(user) = *parts.extensions.get::<UserId>().ok_or_else(ApiError::unauthorized)?;
        let role = self.role(tenant.id.as_uuid(), user).await?;
        let role = role.ok_or_else(ApiError::tenant_not_found)?;
        parts.extensions.insert(Member { user_id: user, role });
        Ok(())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<UserId>()
            .copied()
            .ok_or_else(ApiError::unauthorized)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Member>()
            .copied()
            .ok_or_else(|| ApiError::internal(&"Member used on a route without CatalogAuthorizer"))
    }
}
