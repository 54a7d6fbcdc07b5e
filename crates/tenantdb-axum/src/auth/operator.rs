//! The operator API's authentication hook and its default, the admin token.

use axum::http::request::Parts;
use secrecy::SecretString;

use super::{CatalogAuthorizer, bearer, same_secret};
use crate::error::ApiError;

/// Decides whether a request to the operator API comes from an operator.
/// Replace it to use your own (an SSO proxy's header, mTLS, signed
/// tokens); the default is [`AdminToken`].
///
/// ```
/// use tenantdb_axum::{ApiError, OperatorAuth, Parts, async_trait};
///
/// /// Operators come through a proxy that sets `X-Operator`.
/// struct FromProxy;
///
/// #[async_trait]
/// impl OperatorAuth for FromProxy {
///     async fn authenticate(&self, parts: &mut Parts) -> Result<(), ApiError> {
///         if parts.headers.contains_key("x-operator") {
///             Ok(())
///         } else {
///             Err(ApiError::unauthorized())
///         }
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait OperatorAuth: Send + Sync + 'static {
    /// `Ok` for an operator; otherwise the answer: 401 `unauthorized` for
    /// missing or unknown credentials, 403 `forbidden` for valid ones that
    /// are not an operator's. May put the operator in the extensions.
    async fn authenticate(&self, parts: &mut Parts) -> Result<(), ApiError>;
}

/// One secret bearer token for every operator, compared in constant time.
/// With [`AdminToken::telling_users_apart`], a user's valid API token gets
/// 403 `forbidden` (wrong API) rather than 401.
#[derive(Clone)]
pub struct AdminToken {
    token: SecretString,
    users: Option<CatalogAuthorizer>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl AdminToken {
    /// The operator's token.
    pub fn new(token: SecretString) -> Self {
        Self { token, users: None }
    }

    /// Looks other tokens up in `users`: a user's token gets 403.
    pub fn telling_users_apart(mut self, users: CatalogAuthorizer) -> Self {
        self.users = Some(users);
        self
    }
}

#[async_trait::async_trait]
impl OperatorAuth for AdminToken {
    async fn authenticate(&self, parts: &mut Parts) -> Result<(), ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        if same_secret(token, &self.token) {
            return Ok(());
        }
        match &self.users {
            Some(users) if users.user_of_token(token).await?.is_some() => {
                Err(ApiError::forbidden("this needs the operator's token"))
            }
            _ => Err(ApiError::unauthorized()),
        }
    }
}
