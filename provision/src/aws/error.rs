//! SDK errors and times, mapped into the port's terms. Throttling becomes
//! [`CloudError::Throttled`], a request that never got an answer [`CloudError::Unavailable`],
//! Auto Scaling's refusals of a refresh operation ([`RefreshRefusal`]'s codes) the port's
//! errors for them, and any other service error [`CloudError::Backend`] with the service's
//! error code.

use std::error::Error;

use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::primitives::DateTime;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use time::OffsetDateTime;

use crate::port::{CloudError, RefreshRefusal};

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];

/// The port's error for a failed call of `operation` on `service`.
pub(crate) fn from_sdk<E>(
    service: &str,
    operation: &str,
    err: SdkError<E, HttpResponse>,
) -> CloudError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("Unknown").to_string();
            if THROTTLING_CODES.contains(&code.as_str()) {
                return CloudError::Throttled {
                    service: service.to_string(),
                };
            }
            // An answer without an AWS error in it (a proxy's HTML page, an emulator's crash)
            // says only its HTTP status: the raw body would flood the screen.
            let message =
                err.message()
                    .map(str::to_string)
                    .unwrap_or_else(|| match err.raw_response() {
                        Some(raw) => format!(
                            "the service answered HTTP {} without an error it could read",
                            raw.status().as_u16()
                        ),
                        None => DisplayErrorContext(&err).to_string(),
                    });
            // Auto Scaling's refusals of a refresh operation are the port's own errors, the
            // same every backend gives.
            if let Some(refusal) = RefreshRefusal::from_aws_code(&code) {
                return match refusal {
                    RefreshRefusal::NoActiveRefresh => crate::port::no_active_refresh(),
                    _ => refusal.error(format!("{operation}: {message}")),
                };
            }
            CloudError::backend(service, code, format!("{operation}: {message}"))
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            CloudError::Unavailable {
                message: format!("{service} {operation}: {}", DisplayErrorContext(&err)),
            }
        }
        _ => CloudError::backend(
            service,
            "ClientError",
            format!("{operation}: {}", DisplayErrorContext(&err)),
        ),
    }
}

/// An SDK timestamp as a `time` one (the Unix epoch if it is out of range).
pub(crate) fn to_time(at: &DateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanos()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn service_error(meta: ErrorMetadata, status: u16, body: &str) -> CloudError {
        let raw = HttpResponse::new(
            status.try_into().expect("a valid status"),
            SdkBody::from(body.to_string()),
        );
        from_sdk(
            "cloudformation",
            "DescribeStacks",
            SdkError::service_error(DescribeStacksError::generic(meta), raw),
        )
    }

    #[test]
    fn the_services_message_is_kept() {
        let meta = ErrorMetadata::builder()
            .code("ValidationError")
            .message("Stack with id shop does not exist")
            .build();
        let err = service_error(meta, 400, "<ErrorResponse/>");
        assert!(matches!(&err, CloudError::Backend { code, .. } if code == "ValidationError"));
        assert!(
            err.to_string()
                .contains("DescribeStacks: Stack with id shop does not exist"),
            "{err}"
        );
    }

    #[test]
    fn an_answer_without_an_aws_error_says_its_status_not_its_body() {
        let page = "<!doctype html><title>500 Internal Server Error</title>".repeat(20);
        let err = service_error(ErrorMetadata::builder().build(), 500, &page);
        let text = err.to_string();
        assert!(
            text.contains(
                "DescribeStacks: the service answered HTTP 500 without an error it could read"
            ),
            "{text}"
        );
        assert!(!text.contains("doctype"), "{text}");
    }

    #[test]
    fn refresh_refusals_are_the_ports_errors() {
        for (code, expected) in [
            ("InstanceRefreshInProgress", "conflict"),
            ("ActiveInstanceRefreshNotFound", "not_found"),
            ("IrreversibleInstanceRefresh", "refused"),
        ] {
            let meta = ErrorMetadata::builder()
                .code(code)
                .message("refused by Auto Scaling")
                .build();
            let err = service_error(meta, 400, "");
            let kind = match err {
                CloudError::Conflict { .. } => "conflict",
                CloudError::NotFound { .. } => "not_found",
                CloudError::Refused { .. } => "refused",
                _ => "other",
            };
            assert_eq!(kind, expected, "{code}");
        }
    }

    #[test]
    fn throttling_is_its_own_error() {
        let meta = ErrorMetadata::builder().code("Throttling").build();
        assert!(matches!(
            service_error(meta, 400, ""),
            CloudError::Throttled { .. }
        ));
    }
}
