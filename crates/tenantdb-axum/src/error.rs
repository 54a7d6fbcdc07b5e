//! One JSON error shape for every failure: `{"error": {"code", "message"}}`
//! (docs/API.md). Each status has its codes; 5xx bodies are generic and the cause
//! is logged once here, never sent: no SQL, stack trace, URL or secret.
//!
//! Where the cause goes: to `tracing` at level ERROR. When the process has
//! installed no `tracing` subscriber at all (nothing would see the event),
//! the cause is also printed to stderr, once per error, so an application
//! that has not set up logging yet does not lose it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tenantdb::Error;

/// How long clients are told to wait after `tenant_unavailable` / `busy`.
const RETRY_UNAVAILABLE_SECS: u32 = 2;
const RETRY_BUSY_SECS: u32 = 1;

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, one of [`ERROR_CODES`](crate::openapi::ERROR_CODES) (`tenant_not_found`).
    pub code: String,
    /// Human-readable; never SQL, a stack trace, a URL or a secret.
    pub message: String,
}

/// An HTTP error answer: a status, one of docs/API.md's codes and a message
/// safe to show the caller. Handlers return `Result<_, ApiError>` and use
/// `?` on `tenantdb::Error` and `sea_orm::DbErr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The machine-readable code (`error.code`).
    pub code: &'static str,
    /// The human-readable message (`error.message`); never internals.
    pub message: String,
    /// Seconds for a `Retry-After` header, when the caller should retry.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request`: nothing was changed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401: missing or unknown bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    /// 403: the token is valid but may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`: "`what` not found".
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 404 for a tenant that does not exist *or* that the caller may not
    /// see: the same answer, so names cannot be probed.
    pub fn tenant_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "tenant_not_found", "tenant not found")
    }

    /// 409 `conflict`: the request clashes with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500 with a generic body; the cause is logged here, once (to
    /// `tracing`, and to stderr when no subscriber is installed).
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        if !tracing::dispatcher::has_been_set() {
            eprintln!("internal error: {cause}");
        }
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        if err.is_busy() {
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "no database connection could be had in time; try again",
            )
            .retry_after(RETRY_BUSY_SECS);
        }
        if err.is_unreachable() {
            tracing::warn!(error = %err.chain(), "database unreachable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_unavailable",
                "the database cannot be reached right now; try again",
            )
            .retry_after(RETRY_UNAVAILABLE_SECS);
        }
        if err.is_invalid_text() {
            return Self::invalid("a text value holds a character the database cannot store (NUL)");
        }
        match err {
            Error::Invalid { .. } => Self::invalid(err.to_string()),
            Error::TenantNotFound(_) => Self::tenant_not_found(),
            Error::TenantDatabaseNotFound(_) => Self::not_found("tenant database"),
            Error::AlreadyExists(message) => Self::conflict(message),
            Error::ServerNotFound(_) => Self::not_found("server"),
            // A tenant server this instance cannot open (its admin
            // password sealed under a secret it lacks): the operator's to fix.
            Error::ServerUnusable { .. } => {
                tracing::warn!(error = %err.chain(), "tenant server cannot be used");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant_unavailable",
                    "the database cannot be reached right now; try again",
                )
                .retry_after(RETRY_UNAVAILABLE_SECS)
            }
            Error::NoServerAvailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_unavailable",
                format!("{err}; try again later"),
            )
            .retry_after(RETRY_UNAVAILABLE_SECS),
            Error::IllegalState { .. }
            | Error::ServerInUse { .. }
            | Error::ServerDraining(_)
            | Error::Locked { .. }
            | Error::NotOurs { .. }
            | Error::MigrationSetMismatch { .. } => Self::conflict(err.to_string()),
            Error::TenantSuspended(_) => {
                Self::new(StatusCode::FORBIDDEN, "tenant_suspended", "the tenant is suspended")
            }
            Error::TenantDeleted(_) => Self::new(
                StatusCode::FORBIDDEN,
                "tenant_deleted",
                "the tenant is deleted (an operator can restore it during its retention period)",
            ),
            Error::TenantUnavailable { status, .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_unavailable",
                format!("the tenant's database is {status}; try again later"),
            )
            .retry_after(RETRY_UNAVAILABLE_SECS),
            Error::ProvisioningFailed { ref tenant, .. } => {
                tracing::warn!(error = %err.chain(), "provisioning failed");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "provisioning_failed",
                    format!(
                        "creating the database of tenant {tenant} failed; the tenant is FAILED with its \
                         error_message, and POST /v1/tenants/{tenant}/database/retry can finish it"
                    ),
                )
            }
            other => Self::internal(&other.chain()),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    /// Through `tenantdb::Error`: a pool timeout is `busy`, an unreachable
    /// server `tenant_unavailable`, a NUL in text `invalid_request`, the
    /// rest `internal`.
    fn from(err: sea_orm::DbErr) -> Self {
        Self::from(Error::from(err))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        });
        let mut response = (self.status, body).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_the_api_codes() {
        let cases = [
            (
                Error::TenantNotFound("x".into()),
                StatusCode::NOT_FOUND,
                "tenant_not_found",
            ),
            (
                Error::TenantSuspended("x".into()),
                StatusCode::FORBIDDEN,
                "tenant_suspended",
            ),
            (
                Error::TenantDeleted("x".into()),
                StatusCode::FORBIDDEN,
                "tenant_deleted",
            ),
            (Error::AlreadyExists("taken".into()), StatusCode::CONFLICT, "conflict"),
            (
                Error::Busy {
                    tenant: "x".into(),
                    waited_ms: 1,
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
            ),
            (
                Error::Config("secret stuff".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                Error::ProvisioningFailed {
                    tenant: "t1".into(),
                    database: "tenant_x".into(),
                    message: "relation \"x\" already exists".into(),
                },
                StatusCode::BAD_GATEWAY,
                "provisioning_failed",
            ),
            (
                Error::TenantUnavailable {
                    tenant: "x".into(),
                    status: tenantdb::DbStatus::Renaming,
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_unavailable",
            ),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!((api.status, api.code), (status, code));
        }
        let internal = ApiError::from(Error::Config("postgres://u:pw@h".into()));
        assert!(!internal.message.contains("pw"), "5xx bodies are generic");
        let failed = ApiError::from(Error::ProvisioningFailed {
            tenant: "t1".into(),
            database: "tenant_x".into(),
            message: "relation \"x\" already exists".into(),
        });
        assert!(
            failed.message.contains("t1") && !failed.message.contains("relation"),
            "{}",
            failed.message
        );
        let unavailable = ApiError::from(Error::TenantUnavailable {
            tenant: "x".into(),
            status: tenantdb::DbStatus::Renaming,
        });
        assert!(matches!(unavailable.retry_after, Some(1..=30)));
    }
}
