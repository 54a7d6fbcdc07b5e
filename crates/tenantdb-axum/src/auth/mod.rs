//! Who is calling: users with API tokens from the catalog
//! ([`CatalogAuthorizer`], for the tenant API) and the operator
//! ([`OperatorAuth`], for the operator API; [`AdminToken`] by default).

mod catalog;
mod operator;
mod stamped;

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

pub use catalog::{CatalogAuthorizer, Member, UserId};
pub use operator::{AdminToken, OperatorAuth};

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

/// Compared in constant time: how long it takes says nothing about the
/// secret.
fn same_secret(token: &str, secret: &SecretString) -> bool {
    bool::from(token.as_bytes().ct_eq(secret.expose_secret().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
