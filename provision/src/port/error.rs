//! The one error type of the Cloud port. Every backend maps its failures into [`CloudError`],
//! so the console can tell "refused by a safety rule" from "AWS said no" from "try again later"
//! without knowing which backend it talks to. It is serialisable because the sandbox daemon
//! sends it over its control protocol.

use serde::{Deserialize, Serialize};

/// What went wrong in a call through the port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CloudError {
    /// The stack, refresh, instance or other resource does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// A safety rule or the backend refused the call; `reason` says why in operator terms.
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// The session is read-only and the call would change the stack.
    #[error("{operation} refused: this session is read-only")]
    ReadOnly { operation: String },
    /// The input is invalid; `field` names the offending field.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Another operation is in the way (e.g. an instance refresh is already running).
    #[error("conflict: {reason}")]
    Conflict { reason: String },
    /// The backend asked us to slow down; retrying later can help.
    #[error("{service} throttled the request; retry later")]
    Throttled { service: String },
    /// The backend cannot be reached (sandbox daemon not running, network down).
    #[error("backend unavailable: {message}")]
    Unavailable { message: String },
    /// This backend does not offer the operation.
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported { operation: String, backend: String },
    /// Any other error the backend reported, with its service and error code.
    #[error("{service} error {code}: {message}")]
    Backend {
        service: String,
        code: String,
        message: String,
    },
}

impl CloudError {
    /// Shorthand for [`CloudError::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// Shorthand for [`CloudError::Refused`].
    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused {
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CloudError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CloudError::Conflict`].
    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::Conflict {
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CloudError::Backend`].
    pub fn backend(
        service: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Backend {
            service: service.into(),
            code: code.into(),
            message: message.into(),
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable { .. })
    }

    /// Whether a safety rule or the session's mode refused the call (nothing was changed).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. } | Self::ReadOnly { .. })
    }
}
