//! Structured logs: one JSON object per line on stdout, and one line per request carrying a
//! request id (the caller's `X-Request-Id` when it is a plausible id, otherwise a fresh UUID,
//! echoed in the response). Only the method, the path (never the query string, which may hold
//! a verification token), the status and the duration are logged — never bodies or headers, so
//! passwords and `Authorization` values cannot reach the logs.

use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Data, Request, Response};
use tracing_subscriber::EnvFilter;

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// Installs the JSON subscriber (level from `RUST_LOG`, default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// The id of the request being served, cached on the request.
#[derive(Debug, Clone)]
pub struct RequestId(String, Instant);

impl RequestId {
    /// The request's id (assigned by [`RequestLog`]; a fresh one if that fairing is absent).
    pub fn of<'a>(req: &'a Request<'_>) -> &'a str {
        &req.local_cache(|| RequestId::assign(req)).0
    }

    fn assign(req: &Request<'_>) -> RequestId {
        let id = req
            .headers()
            .get_one(REQUEST_ID_HEADER)
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        RequestId(id, Instant::now())
    }
}

/// The fairing that assigns request ids and logs each request once it is answered.
pub struct RequestLog;

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info {
            name: "request log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let _ = RequestId::of(req);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let RequestId(id, started) = req.local_cache(|| RequestId::assign(req));
        res.set_header(Header::new(REQUEST_ID_HEADER, id.clone()));
        tracing::info!(
            request_id = %id,
            method = %req.method(),
            path = %req.uri().path(),
            status = res.status().code,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
}
