//! Tenant role passwords: derived, never stored.
//!
//! Every instance shares one deployment secret (`TENANTDB_SECRET`). A tenant
//! role's password is `HMAC-SHA256(secret, version || tenant id)` in hex, so
//! any instance can compute it and nothing in the catalog reveals it. The
//! server is sent a SCRAM-SHA-256 verifier, never the password, so it cannot
//! reach the server's statement log. The version lets the secret be rotated:
//! each row records the version its password derives from.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::error::{Error, Result};
use crate::names::TenantId;

/// Shortest secret we accept: 32 characters.
pub(crate) const MIN_SECRET_LEN: usize = 32;
/// SCRAM iterations of tenant role verifiers. PostgreSQL's default (4096)
/// stretches passwords people choose; a tenant role's is an HMAC-SHA256 of
/// the deployment secret (256 random-looking bits), which stretching cannot
/// make any harder to guess, and whoever holds the secret derives every
/// password anyway. So few iterations: the verifier is made in microseconds
/// instead of milliseconds when a role is created, and so is the client's
/// proof at every new tenant connection (PBKDF2 with the count the server
/// sends).
const SCRAM_ITERATIONS: u32 = 64;

/// The deployment secret and its version.
#[derive(Clone)]
pub struct TenantSecret {
    version: i32,
    key: SecretString,
}

impl TenantSecret {
    /// The secret `key` (at least 32 characters) under `version` (1 or more).
    pub fn new(version: i32, key: SecretString) -> Result<Self> {
        if key.expose_secret().len() < MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "TENANTDB_SECRET must be at least {MIN_SECRET_LEN} characters"
            )));
        }
        if version < 1 {
            return Err(Error::Config("TENANTDB_SECRET_VERSION must be 1 or more".into()));
        }
        Ok(Self { version, key })
    }

    /// The secret's version, recorded in each tenant database row.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The password of a tenant's role under this secret.
    pub fn password_for(&self, tenant: TenantId) -> SecretString {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(format!("tenantdb role password v{} {}", self.version, tenant).as_bytes());
        SecretString::from(hex(&mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for TenantSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSecret")
            .field("version", &self.version)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl TenantSecret {
    /// The SCRAM-SHA-256 verifier of the tenant role's password, in
    /// PostgreSQL's `pg_authid` format. The salt is derived too (unique per
    /// tenant and secret version), so the verifier is reproducible: what the
    /// server stores can be compared with it, which shows it was sent a
    /// verifier (a password would have been hashed with a random salt).
    pub fn verifier_for(&self, tenant: TenantId) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(format!("tenantdb role salt v{} {}", self.version, tenant).as_bytes());
        let salt = mac.finalize().into_bytes();
        scram_verifier_with_salt(self.password_for(tenant).expose_secret(), &salt[..16], SCRAM_ITERATIONS)
    }
}

/// A password sealed with a key derived from the deployment secret:
/// XChaCha20-Poly1305 under `HMAC-SHA256(secret, "tenantdb sealed password
/// v<version>")`, a random 24-byte nonce, and what it is for as associated
/// data (`sites::seal_context`: the catalog, the server's name and its URL
/// without password; a sealed password copied to another server's row, or
/// left under a URL someone changed, does not open). Stored in the catalog as `{"version": N, "sealed": base64}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SealedPassword {
    /// The secret version it was sealed under.
    pub(crate) version: i32,
    /// Nonce then ciphertext and tag, base64.
    pub(crate) sealed: String,
}

impl TenantSecret {
    fn sealing_key(&self) -> chacha20poly1305::Key {
        let key = hmac_sha256(
            self.key.expose_secret().as_bytes(),
            format!("tenantdb sealed password v{}", self.version).as_bytes(),
        );
        key.into()
    }

    /// Seals `password` for the server named `server`.
    pub(crate) fn seal(&self, context: &str, password: &str) -> SealedPassword {
        use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.sealing_key());
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: password.as_bytes(),
            aad: context.as_bytes(),
        };
        let sealed = cipher
            .encrypt(&nonce, payload)
            .expect("sealing a short password cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        SealedPassword {
            version: self.version,
            sealed: B64.encode(bytes),
        }
    }

    /// Opens a password sealed by `seal` for `context` under this secret's
    /// version. A wrong secret, version or context is an error that says
    /// which, never the password.
    pub(crate) fn open(&self, context: &str, sealed: &SealedPassword) -> Result<SecretString> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        if sealed.version != self.version {
            return Err(Error::Config(format!(
                "the admin password is sealed under secret version {}; this instance has version {} and cannot \
                 open it (set TENANTDB_PREVIOUS_SECRET to the secret of version {} until `tenantdb doctor --fix` \
                 has sealed it again)",
                sealed.version, self.version, sealed.version
            )));
        }
        let refused = || {
            Error::Config(format!(
                "the admin password does not open with this instance's secret of version {}: another secret \
                 of that version sealed it, or it was sealed for another catalog, server name or URL",
                sealed.version
            ))
        };
        let bytes = B64.decode(&sealed.sealed).map_err(|_| refused())?;
        if bytes.len() < 24 {
            return Err(refused());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.sealing_key());
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        let plain = cipher
            .decrypt(chacha20poly1305::XNonce::from_slice(nonce), payload)
            .map_err(|_| refused())?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| refused())
    }
}

fn scram_verifier_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(version: i32) -> TenantSecret {
        TenantSecret::new(version, SecretString::from("x".repeat(40))).unwrap()
    }

    #[test]
    fn passwords_depend_on_tenant_and_version() {
        let (a, b) = (TenantId::new(), TenantId::new());
        let pw = |s: &TenantSecret, t| s.password_for(t).expose_secret().to_owned();
        assert_eq!(pw(&secret(1), a), pw(&secret(1), a));
        assert_ne!(pw(&secret(1), a), pw(&secret(1), b));
        assert_ne!(pw(&secret(1), a), pw(&secret(2), a));
        assert_eq!(pw(&secret(1), a).len(), 64);
    }

    #[test]
    fn sealed_passwords_open_only_with_their_secret_version_and_server() {
        let sealed = secret(1).seal("eu-1", "pw with 'quotes' and ünïcode");
        assert!(!sealed.sealed.contains("quotes"));
        assert_eq!(
            secret(1).open("eu-1", &sealed).unwrap().expose_secret(),
            "pw with 'quotes' and ünïcode"
        );
        // Random nonces: sealing twice gives two different texts.
        assert_ne!(secret(1).seal("eu-1", "pw").sealed, secret(1).seal("eu-1", "pw").sealed);
        let other_key = TenantSecret::new(1, SecretString::from("y".repeat(40))).unwrap();
        for (who, server) in [(&other_key, "eu-1"), (&secret(2), "eu-1"), (&secret(1), "eu-2")] {
            let err = who.open(server, &sealed).unwrap_err().to_string();
            assert!(err.contains("version 1"), "{err}");
            assert!(!err.contains("quotes"), "{err}");
        }
        let mut tampered = sealed.clone();
        tampered
            .sealed
            .replace_range(40..41, if &tampered.sealed[40..41] == "A" { "B" } else { "A" });
        assert!(secret(1).open("eu-1", &tampered).is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TenantSecret::new(1, SecretString::from("short")).is_err());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let shown = format!("{:?}", secret(1));
        assert!(!shown.contains("xxxx"), "{shown}");
    }

    #[test]
    fn scram_verifier_has_the_pg_authid_format() {
        // Salt from RFC 7677's example; PostgreSQL accepting the verifier
        // as-is is checked by the engine tests (pg_authid holds it unchanged).
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = scram_verifier_with_salt("pencil", &salt, 4096);
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pencil", &salt, 4096, &mut salted);
        let stored = B64.encode(Sha256::digest(hmac_sha256(&salted, b"Client Key")));
        assert!(verifier.contains(&format!("${stored}:")));
    }
}
