//! The one error type handlers return, and how it becomes an HTTP answer: a status and a JSON
//! body `{"error": reason, "field": name?}`. Client mistakes say what is wrong and with which
//! field; unexpected failures are logged with the request id and answered without detail.

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::logging::RequestId;

/// The JSON body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub error: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `field` names the culprit when there is one.
    #[error("{reason}")]
    BadRequest {
        reason: String,
        field: Option<String>,
    },
    /// 401 with `WWW-Authenticate`.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// 405 with `Allow`.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// 503: a dependency (database, token store) is unreachable right now.
    #[error("{what} unavailable")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: anyhow::Error,
    },
    /// 503: the instance is up but cannot serve this yet (its database schema is not in place).
    #[error("{0}")]
    NotReady(&'static str),
    /// 500: a bug or an unexpected failure; logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, reason: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            reason: reason.into(),
            field: Some(field.to_string()),
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            reason: reason.into(),
            field: None,
        }
    }

    pub fn status(&self) -> Status {
        match self {
            ApiError::BadRequest { .. } => Status::BadRequest,
            ApiError::Unauthorized(_) => Status::Unauthorized,
            ApiError::Forbidden(_) => Status::Forbidden,
            ApiError::NotFound(_) => Status::NotFound,
            ApiError::MethodNotAllowed { .. } => Status::MethodNotAllowed,
            ApiError::Conflict(_) => Status::Conflict,
            ApiError::Gone(_) => Status::Gone,
            ApiError::PayloadTooLarge { .. } => Status::PayloadTooLarge,
            ApiError::Unavailable { .. } | ApiError::NotReady(_) => Status::ServiceUnavailable,
            ApiError::Internal(_) => Status::InternalServerError,
        }
    }

    /// A database error: "unreachable" → 503, anything else → 500.
    pub fn database(error: sqlx::Error) -> ApiError {
        if crate::db::is_unavailable(&error) {
            ApiError::Unavailable {
                what: "database",
                cause: error.into(),
            }
        } else {
            ApiError::Internal(anyhow::Error::new(error).context("a database query"))
        }
    }
}

/// The JSON error answer for `status` with `reason` (also used by the catchers).
pub fn json_error(status: Status, reason: &str, field: Option<&str>) -> Response<'static> {
    let body = ErrorBody {
        error: reason.to_string(),
        field: field.map(str::to_string),
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_string());
    Response::build()
        .status(status)
        .header(ContentType::JSON)
        .sized_body(text.len(), std::io::Cursor::new(text))
        .finalize()
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        let request_id = RequestId::of(req);
        match &self {
            ApiError::Internal(e) => {
                tracing::error!(request_id, error = %format!("{e:#}"), "request failed");
            }
            ApiError::Unavailable { what, cause } => {
                tracing::warn!(request_id, error = %format!("{cause:#}"), "{what} unavailable");
            }
            _ => {}
        }
        let field = match &self {
            ApiError::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        };
        let mut response = json_error(status, &self.to_string(), field);
        match &self {
            ApiError::Unauthorized(_) => response.set_header(Header::new(
                "WWW-Authenticate",
                r#"Basic realm="triad", charset="UTF-8""#,
            )),
            ApiError::MethodNotAllowed { allow } => {
                response.set_header(Header::new("Allow", *allow))
            }
            _ => false,
        };
        Ok(response)
    }
}
