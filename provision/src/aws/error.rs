//! SDK errors and times, mapped into the port's terms. Throttling becomes
//! [`CloudError::Throttled`], a request that never got an answer [`CloudError::Unavailable`],
//! and any other service error [`CloudError::Backend`] with the service's error code.

use std::error::Error;
use std::fmt::Debug;

use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::primitives::DateTime;
use time::OffsetDateTime;

use crate::port::CloudError;

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];

/// The port's error for a failed call of `operation` on `service`.
pub(crate) fn from_sdk<E, R>(service: &str, operation: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("Unknown").to_string();
            if THROTTLING_CODES.contains(&code.as_str()) {
                return CloudError::Throttled {
                    service: service.to_string(),
                };
            }
            let message = err
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
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
