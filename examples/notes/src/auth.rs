//! The notes service's own tokens, checked through tenantdb-axum's
//! [`Authorizer`] hook: tenantdb's users and API tokens are not used.
//!
//! A token says "`user` may act for tenant `tenant`" and is signed with
//! HMAC-SHA256 under a key only the service knows (`NOTES_TOKEN_KEY`):
//! `base64url(user:tenant).base64url(mac)`. Anyone with the key can mint
//! one (`notes-server token <user> <tenant>`); nothing is stored.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tenantdb_axum::{ApiError, Authorizer, ResolvedTenant, async_trait, bearer};

/// Shortest accepted signing key, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Mints and checks tokens with one signing key.
#[derive(Clone)]
pub struct NoteTokens {
    key: SecretString,
}

impl std::fmt::Debug for NoteTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteTokens").field("key", &"[redacted]").finish()
    }
}

/// Who is calling, for which tenant: what a valid token says. The
/// authorizer puts it in the request's extensions; handlers take it as an
/// extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user the token was minted for.
    pub user: String,
    /// The slug of the only tenant the token opens.
    pub tenant: String,
}

impl NoteTokens {
    /// Tokens signed with `key` (at least [`MIN_KEY_LEN`] bytes).
    pub fn new(key: SecretString) -> Result<Self, String> {
        if key.expose_secret().len() < MIN_KEY_LEN {
            return Err(format!("the token key must be at least {MIN_KEY_LEN} bytes long"));
        }
        Ok(Self { key })
    }

    /// A token for `user` acting for the tenant `tenant` (its slug).
    pub fn mint(&self, user: &str, tenant: &str) -> String {
        let payload = format!("{user}:{tenant}");
        let mac = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(mac))
    }

    /// What `token` says, if this key signed it.
    pub fn verify(&self, token: &str) -> Option<Caller> {
        let (payload, mac) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        // Constant time: how long the check takes says nothing of the key.
        self.mac(&payload).verify_slice(&mac).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        // A slug holds no ':'; a user name may.
        let (user, tenant) = payload.rsplit_once(':')?;
        Some(Caller {
            user: user.to_owned(),
            tenant: tenant.to_owned(),
        })
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(payload);
        mac
    }
}

#[async_trait]
impl Authorizer for NoteTokens {
    async fn authenticate(&self, parts: &mut Parts) -> Result<(), ApiError> {
        let caller = bearer(&parts.headers)
            .and_then(|token| self.verify(token))
            .ok_or_else(ApiError::unauthorized)?;
        parts.extensions.insert(caller);
        Ok(())
    }

    /// A token opens its own tenant only; any other answers as if it did
    /// not exist, so tenant names cannot be probed.
    async fn authorize(&self, parts: &mut Parts, tenant: &ResolvedTenant) -> Result<(), ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(caller) if caller.tenant == tenant.slug => Ok(()),
            _ => Err(ApiError::tenant_not_found()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Only missing on a route outside the tenant layer: a wiring bug.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal(&"Caller used on a route without the tenant layer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(key: &str) -> NoteTokens {
        NoteTokens::new(SecretString::from(key)).unwrap()
    }

    #[test]
    fn a_minted_token_names_its_user_and_tenant() {
        let key = tokens("k".repeat(32).as_str());
        let caller = key.verify(&key.mint("ana:admin", "acme")).unwrap();
        assert_eq!((caller.user.as_str(), caller.tenant.as_str()), ("ana:admin", "acme"));
    }

    #[test]
    fn a_token_signed_with_another_key_or_altered_is_refused() {
        let key = tokens("k".repeat(32).as_str());
        let token = tokens("o".repeat(32).as_str()).mint("ana", "acme");
        assert_eq!(key.verify(&token), None);
        let (_, mac) = key
            .mint("ana", "acme")
            .split_once('.')
            .map(|(p, m)| (p.to_owned(), m.to_owned()))
            .unwrap();
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("ana:beta"));
        assert_eq!(key.verify(&forged), None);
        assert_eq!(key.verify("garbage"), None);
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(NoteTokens::new(SecretString::from("short")).is_err());
    }
}
