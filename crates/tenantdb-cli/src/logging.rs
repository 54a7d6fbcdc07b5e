//! Logs on stderr, as operators and log shippers expect them:
//!
//! - filtered by `RUST_LOG` (the binary's default level otherwise);
//! - `TENANTDB_LOG_FORMAT=json`: one JSON object per line, with the fields
//!   of the spans an event happened in (a request's `request_id`, method,
//!   path and tenant); `text` (the default): one line for humans;
//! - colours only when stderr is a terminal and `NO_COLOR` is not set, so
//!   a captured log holds no escape codes.

use std::io::IsTerminal;

/// The log line format, from `TENANTDB_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line for humans.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `TENANTDB_LOG_FORMAT` (`text` or `json`); an unknown value is an
    /// error that names the choices.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("TENANTDB_LOG_FORMAT") {
            Err(_) => Ok(Self::Text),
            Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
                "" | "text" => Ok(Self::Text),
                "json" => Ok(Self::Json),
                other => anyhow::bail!("TENANTDB_LOG_FORMAT must be text or json, not {other:?}"),
            },
        }
    }
}

/// Installs the process's subscriber: stderr, `RUST_LOG` or
/// `default_filter`, the format of `TENANTDB_LOG_FORMAT`. A subscriber the
/// application installed first stays (this one is then not installed).
pub fn init_logging(default_filter: &str) -> anyhow::Result<()> {
    let format = LogFormat::from_env()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colours()).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    Ok(())
}

/// Colours only on a terminal, and never under `NO_COLOR`.
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
