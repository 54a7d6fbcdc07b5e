//! The service's own settings from the environment (and matching flags):
//! listen address, operator token, base domain and client connection
//! limits. What makes the library's `Config` is `tenantdb_cli::ConfigArgs`.
//! Every variable, its default and its meaning is listed in the README.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use secrecy::SecretString;

use crate::http;

/// Settings of `serve` beyond the library's `Config`.
#[derive(Args)]
#[command(next_help_heading = "Service options")]
pub struct ServiceArgs {
    /// Address the service listens on.
    #[arg(long, env = "TENANTDB_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: String,

    /// Also take the tenant from the first label of a Host under this
    /// domain (acme.example.test for example.test).
    #[arg(long, env = "TENANTDB_BASE_DOMAIN", global = true)]
    pub base_domain: Option<String>,

    /// Client connections the service keeps open at once; further clients
    /// wait until one closes.
    #[arg(long, env = "TENANTDB_MAX_CONNECTIONS", default_value_t = http::DEFAULT_MAX_CONNECTIONS, global = true)]
    pub max_connections: usize,
}

impl ServiceArgs {
    /// The operator token: from `TENANTDB_ADMIN_TOKEN` or the file named
    /// by `TENANTDB_ADMIN_TOKEN_FILE` (never a flag), else the one kept
    /// under the data directory (made on first start, readable by the
    /// owner only).
    pub fn admin_token(&self, data_dir: &Path) -> anyhow::Result<(SecretString, Option<PathBuf>)> {
        if let Some(token) = tenantdb_cli::secret_setting("TENANTDB_ADMIN_TOKEN", &|name| std::env::var(name).ok())? {
            anyhow::ensure!(token.len() >= 16, "TENANTDB_ADMIN_TOKEN must be at least 16 characters");
            return Ok((SecretString::from(token), None));
        }
        let path = data_dir.join("admin-token");
        if let Ok(token) = std::fs::read_to_string(&path) {
            return Ok((SecretString::from(token.trim().to_owned()), Some(path)));
        }
        tenantdb::internal::create_dir_all(data_dir)
            .with_context(|| format!("failed to create {}", data_dir.display()))?;
        let mut bytes = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let token = format!("tdb_admin_{}", tenantdb::internal::hex(&bytes));
        write_private(&path, &token).with_context(|| format!("failed to write {}", path.display()))?;
        Ok((SecretString::from(token), Some(path)))
    }

    /// Limits on the service's client connections.
    pub fn connection_limits(&self) -> anyhow::Result<http::ConnectionLimits> {
        anyhow::ensure!(self.max_connections >= 1, "TENANTDB_MAX_CONNECTIONS must be at least 1");
        Ok(http::ConnectionLimits {
            max_connections: self.max_connections,
            ..http::ConnectionLimits::default()
        })
    }
}

impl std::fmt::Debug for ServiceArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceArgs")
            .field("listen", &self.listen)
            .field("max_connections", &self.max_connections)
            .field("base_domain", &self.base_domain)
            .finish_non_exhaustive()
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        service: ServiceArgs,
    }

    fn settings(args: &[&str]) -> ServiceArgs {
        Flags::try_parse_from(std::iter::once("tenantdb").chain(args.iter().copied()))
            .unwrap()
            .service
    }

    #[test]
    fn the_made_admin_token_and_its_directory_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let (_, path) = settings(&[]).admin_token(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&data), mode(&path.unwrap())), (0o700, 0o600));
    }

    #[test]
    fn the_connection_limit_must_allow_a_connection() {
        assert_eq!(
            settings(&[]).connection_limits().unwrap().max_connections,
            http::DEFAULT_MAX_CONNECTIONS
        );
        let limits = settings(&["--max-connections", "2"]).connection_limits().unwrap();
        assert_eq!(limits.max_connections, 2);
        assert!(settings(&["--max-connections", "0"]).connection_limits().is_err());
    }
}
