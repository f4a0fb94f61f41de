//! The verification e-mail: what it says ([`compose`]), the small [`EmailSender`] trait the
//! processing code sends through, and its SES v2 implementation.
//!
//! Throttling and transient failures are retried inside one invocation by the SDK's standard
//! retry strategy with a short, bounded exponential backoff ([`ses_client`]); what still fails
//! afterwards comes back as a [`SendError`] that says whether a later retry can help.

use std::future::Future;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::{DisplayErrorContext, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use contract::UserCreated;

/// Attempts per SendEmail call (the first one included) before the invocation gives up.
pub const SEND_ATTEMPTS: u32 = 3;
/// The first retry waits up to this long; each further one doubles it, up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A composed verification e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why an e-mail did not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// SES refused for rate reasons, even after the in-invocation backoff.
    #[error("SES is throttling sends: {0}")]
    Throttled(String),
    /// The call failed on the way (connection, timeout, a 5xx answer).
    #[error("SES could not be reached: {0}")]
    Transient(String),
    /// SES refused this message or this account (unverified sender, bad address, paused).
    #[error("SES rejected the e-mail: {0}")]
    Rejected(String),
}

impl SendError {
    /// Whether trying the same e-mail again later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SendError::Rejected(_))
    }
}

/// Sends verification e-mails.
pub trait EmailSender: Sync {
    /// Sends `email`; returns the provider's message id.
    fn send(
        &self,
        email: &VerificationEmail,
    ) -> impl Future<Output = Result<String, SendError>> + Send;
}

/// The verification e-mail for `event`, with `link` in both the plain-text and the HTML part.
pub fn compose(event: &UserCreated, link: &str, valid_for: Duration) -> VerificationEmail {
    let validity = describe_duration(valid_for);
    let text = format!(
        "Hello {name},\n\n\
         please confirm your e-mail address by opening this link:\n\n\
         {link}\n\n\
         The link is valid for {validity}. If you did not sign up, ignore this e-mail.\n",
        name = event.first_name,
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>Hello {name},</p>\n\
         <p>please confirm your e-mail address by opening this link:</p>\n\
         <p><a href=\"{link}\">{link}</a></p>\n\
         <p>The link is valid for {validity}. If you did not sign up, ignore this e-mail.</p>\n\
         </body></html>\n",
        name = escape_html(&event.first_name),
        link = escape_html(link),
    );
    VerificationEmail {
        to: event.email.clone(),
        subject: "Confirm your e-mail address".to_string(),
        text,
        html,
    }
}

fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs.is_multiple_of(86_400) {
        (secs / 86_400, "day")
    } else if secs.is_multiple_of(3_600) {
        (secs / 3_600, "hour")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An SES v2 client with the mailer's in-invocation retry policy and timeouts.
pub fn ses_client(sdk: &SdkConfig) -> Client {
    let config = aws_sdk_sesv2::config::Builder::from(sdk)
        .retry_config(
            aws_sdk_sesv2::config::retry::RetryConfig::standard()
                .with_max_attempts(SEND_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        )
        .timeout_config(
            aws_sdk_sesv2::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// [`EmailSender`] through SES v2 `SendEmail`, from one configured sender.
#[derive(Debug, Clone)]
pub struct SesSender {
    client: Client,
    from: String,
}

impl SesSender {
    pub fn new(client: Client, from: impl Into<String>) -> Self {
        SesSender {
            client,
            from: from.into(),
        }
    }
}

fn text(data: &str) -> Result<Content, SendError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| SendError::Rejected(e.to_string()))
}

impl EmailSender for SesSender {
    async fn send(&self, email: &VerificationEmail) -> Result<String, SendError> {
        let message = Message::builder()
            .subject(text(&email.subject)?)
            .body(
                Body::builder()
                    .text(text(&email.text)?)
                    .html(text(&email.html)?)
                    .build(),
            )
            .build();
        let out = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(classify)?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// Sorts a failed SendEmail call into throttled, transient and rejected.
pub fn classify<R: std::fmt::Debug>(err: SdkError<SendEmailError, R>) -> SendError {
    let message = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(ctx) => match ctx.err() {
            SendEmailError::TooManyRequestsException(_)
            | SendEmailError::LimitExceededException(_) => SendError::Throttled(message),
            SendEmailError::AccountSuspendedException(_)
            | SendEmailError::BadRequestException(_)
            | SendEmailError::MailFromDomainNotVerifiedException(_)
            | SendEmailError::MessageRejected(_)
            | SendEmailError::NotFoundException(_)
            | SendEmailError::SendingPausedException(_) => SendError::Rejected(message),
            // An error this SDK version does not model: a 5xx answer or something new.
            _ => SendError::Transient(message),
        },
        SdkError::ConstructionFailure(_) => SendError::Rejected(message),
        _ => SendError::Transient(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use uuid::Uuid;

    fn event(first_name: &str) -> UserCreated {
        UserCreated::new(
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            "ada@example.com",
            first_name,
            datetime!(2026-11-23 08:00:00 UTC),
        )
    }

    #[test]
    fn both_parts_carry_the_link_and_the_validity() {
        let link = "https://app.example.com/v1/user/verify?token=abc_-1";
        let email = compose(&event("Ada"), link, Duration::from_secs(86_400));
        assert_eq!(email.to, "ada@example.com");
        assert!(email.text.contains(link), "{}", email.text);
        assert!(
            email.html.contains(&format!("href=\"{link}\"")),
            "{}",
            email.html
        );
        assert!(email.text.contains("Hello Ada,"));
        assert!(email.text.contains("valid for 1 day"));
        assert!(email.html.contains("valid for 1 day"));
    }

    #[test]
    fn the_name_cannot_inject_html() {
        let email = compose(
            &event("<script>alert('x')</script>"),
            "https://app.example.com/v1/user/verify?token=a&b",
            Duration::from_secs(7_200),
        );
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(email.html.contains("&lt;script&gt;alert(&#39;x&#39;)"));
        assert!(email.html.contains("token=a&amp;b"));
        assert!(email.text.contains("valid for 2 hours"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(describe_duration(Duration::from_secs(172_800)), "2 days");
        assert_eq!(describe_duration(Duration::from_secs(3_600)), "1 hour");
        assert_eq!(describe_duration(Duration::from_secs(900)), "15 minutes");
        assert_eq!(describe_duration(Duration::from_secs(61)), "61 seconds");
    }

    /// A service error as the SDK reports it; the raw response plays no part in sorting.
    fn service_error(err: SendEmailError) -> SendError {
        classify(SdkError::service_error(err, ()))
    }

    #[test]
    fn throttling_is_retryable_and_rejections_are_not() {
        use aws_sdk_sesv2::types::error::{
            LimitExceededException, MessageRejected, TooManyRequestsException,
        };
        let throttled = service_error(SendEmailError::TooManyRequestsException(
            TooManyRequestsException::builder().build(),
        ));
        assert!(matches!(throttled, SendError::Throttled(_)), "{throttled}");
        assert!(throttled.is_retryable());
        let limited = service_error(SendEmailError::LimitExceededException(
            LimitExceededException::builder().build(),
        ));
        assert!(limited.is_retryable(), "{limited}");
        let rejected = service_error(SendEmailError::MessageRejected(
            MessageRejected::builder()
                .message("Email address not verified")
                .build(),
        ));
        assert!(matches!(rejected, SendError::Rejected(_)), "{rejected}");
        assert!(!rejected.is_retryable());
        assert!(rejected.to_string().contains("not verified"), "{rejected}");
    }

    #[test]
    fn unmodelled_service_errors_are_transient() {
        let unknown = service_error(SendEmailError::generic(
            aws_sdk_sesv2::error::ErrorMetadata::builder()
                .code("InternalFailure")
                .build(),
        ));
        assert!(matches!(unknown, SendError::Transient(_)), "{unknown}");
    }
}
