//! Who is calling: the operator (admin token) or a user (API token), and
//! whether a user may act for a tenant (membership). Token and membership
//! lookups are cached and follow the catalog's change stamp, so a revoked
//! token or a removed member stops working within the poll interval in
//! every process (at once in the one that made the change).

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};
use dashmap::DashMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tenantdb::Catalog;
use tenantdb::catalog::MemberRole;
use tenantdb::connections::ResolvedTenant;
use tenantdb::secret::sha256;
use tenantdb_axum::{ApiError, Authorizer};
use uuid::Uuid;

use super::AppState;

/// Past this many entries a cache starts over rather than grow.
const MAX_CACHED: usize = 100_000;

/// `last_used_at` is written at most this often per token.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    User { user_id: Uuid },
}

/// The user calling the tenant API (set by `MembershipAuthorizer`).
#[derive(Debug, Clone, Copy)]
pub struct UserId(pub Uuid);

/// Holds the admin token: no `Debug` that could print it.
#[allow(missing_debug_implementations)]
pub struct Auth {
    catalog: Catalog,
    admin_token: SecretString,
    /// sha256(token) -> (stamp, token id and user). Only tokens that exist
    /// are cached: made-up ones must not fill memory.
    tokens: FastMap<[u8; 32], (u64, (Uuid, Uuid))>,
    /// (tenant, user) -> (stamp, role).
    members: FastMap<(Uuid, Uuid), (u64, Option<MemberRole>)>,
    last_used: FastMap<Uuid, Instant>,
}

/// Looked up on every request: foldhash rather than SipHash (the keys are
/// hashes and ids, not attacker-chosen strings that could be made to
/// collide: a token is hashed before it is a key).
type FastMap<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

impl Auth {
    pub fn new(catalog: Catalog, admin_token: SecretString) -> Self {
        Self {
            catalog,
            admin_token,
            tokens: FastMap::default(),
            members: FastMap::default(),
            last_used: FastMap::default(),
        }
    }

    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
        if bool::from(token.as_bytes().ct_eq(self.admin_token.expose_secret().as_bytes())) {
            return Ok(Caller::Admin);
        }
        let hash = sha256(token.as_bytes());
        let stamp = self.catalog.changes().current();
        let cached = self.tokens.get(&hash).filter(|c| c.0 == stamp).map(|c| c.1);
        let (token_id, user_id) = match cached {
            Some(found) => found,
            None => {
                let row = self.catalog.tokens().find_active(token).await?;
                let found = row.map(|r| (r.id, r.user_id)).ok_or_else(ApiError::unauthorized)?;
                if self.tokens.len() >= MAX_CACHED {
                    self.tokens.clear();
                }
                self.tokens.insert(hash, (stamp, found));
                found
            }
        };
        self.touch(token_id);
        Ok(Caller::User { user_id })
    }

    /// Records the token's use, at most once a minute, off the request path.
    fn touch(&self, token_id: Uuid) {
        let now = Instant::now();
        let due = self
            .last_used
            .get(&token_id)
            .is_none_or(|at| now.duration_since(*at) >= LAST_USED_EVERY);
        if due {
            self.last_used.insert(token_id, now);
            let catalog = self.catalog.clone();
            tokio::spawn(async move {
                if let Err(err) = catalog.tokens().touch(token_id).await {
                    tracing::warn!(error = %err, "recording token use failed");
                }
            });
        }
    }

    /// The user's role in the tenant, if a member.
    pub async fn role(&self, tenant: Uuid, user: Uuid) -> Result<Option<MemberRole>, ApiError> {
        let stamp = self.catalog.changes().current();
        if let Some(cached) = self.members.get(&(tenant, user)).filter(|c| c.0 == stamp) {
            return Ok(cached.1);
        }
        let role = self.catalog.memberships().find(tenant, user).await?.map(|m| m.role);
        if self.members.len() >= MAX_CACHED {
            self.members.clear();
        }
        self.members.insert((tenant, user), (stamp, role));
        Ok(role)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

/// Operator routes: the admin token; a user token gets 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth.caller(&parts.headers).await? {
            Caller::Admin => Ok(Admin),
            Caller::User { .. } => Err(ApiError::forbidden("this needs the operator's token")),
        }
    }
}

/// Tenant routes: a user token (the admin token gets 403: operators act
/// through the operator API), checked before the tenant is resolved so a
/// caller without a token learns nothing about tenants. A user may act for
/// the tenants they are a member of; for anyone else a tenant does not
/// exist.
#[derive(Clone, Debug)]
pub struct MembershipAuthorizer(pub AppState);

impl Authorizer for MembershipAuthorizer {
    fn authenticate<'a>(
        &'a self,
        parts: &'a mut Parts,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
        Box::pin(async move {
            match self.0.auth.caller(&parts.headers).await? {
                Caller::User { user_id } => {
                    parts.extensions.insert(UserId(user_id));
                    Ok(())
                }
                Caller::Admin => Err(ApiError::forbidden("the operator's token cannot use the tenant API")),
            }
        })
    }

    fn authorize<'a>(
        &'a self,
        parts: &'a Parts,
        tenant: &'a ResolvedTenant,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
        Box::pin(async move {
            let UserId(user) = *parts.extensions.get::<UserId>().ok_or_else(ApiError::unauthorized)?;
            match self.0.auth.role(tenant.id.as_uuid(), user).await? {
                Some(_) => Ok(()),
                None => Err(ApiError::tenant_not_found()),
            }
        })
    }
}

/// The calling user's role in the request's tenant.
pub async fn role_of(state: &AppState, parts_user: UserId, tenant: Uuid) -> Result<MemberRole, ApiError> {
    state
        .auth
        .role(tenant, parts_user.0)
        .await?
        .ok_or_else(ApiError::tenant_not_found)
}

impl FromRequestParts<AppState> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<UserId>()
            .copied()
            .ok_or_else(ApiError::unauthorized)
    }
}
