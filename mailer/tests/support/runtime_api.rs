//! A minimal Lambda Runtime API on loopback, enough to run a real Lambda binary the way the
//! Lambda service does: the function long-polls `GET /2018-06-01/runtime/invocation/next`,
//! gets an event with its request id and deadline in headers, and answers on
//! `POST …/invocation/{id}/response` or `POST …/invocation/{id}/error`
//! (`POST …/init/error` when it cannot start). [`RuntimeApi::invoke`] queues one event and
//! waits for that answer.
//!
//! Self-contained (hyper, tokio, serde_json) so it can be lifted into anything else that needs
//! to feed a Lambda function.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const PREFIX: &str = "/2018-06-01/runtime";
/// The deadline each invocation is given, as the function sees it.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How the function answered one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Response(serde_json::Value),
    Error {
        error_type: String,
        error_message: String,
    },
}

struct Invocation {
    request_id: String,
    payload: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<String>>,
}

/// A running Runtime API; stops when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (queue, pending) = mpsc::unbounded_channel();
        let pending = Arc::new(tokio::sync::Mutex::new(pending));
        let shared = Arc::new(Shared::default());
        let state = (pending, shared.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (pending, shared) = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        route(req, pending.clone(), shared.clone())
                    });
                    // A function that goes away mid-request ends its connection; nothing to do.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeApi {
            addr,
            queue,
            shared,
            server,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (host:port, no scheme).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// What the function reported on `…/init/error`, if it did.
    pub fn init_error(&self) -> Option<String> {
        self.shared
            .init_error
            .lock()
            .expect("init error lock")
            .clone()
    }

    /// Queues `payload` for the function and waits up to `limit` for its answer.
    pub async fn invoke(
        &self,
        payload: &serde_json::Value,
        limit: Duration,
    ) -> Result<Answer, String> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .expect("waiting lock")
            .insert(request_id.clone(), tx);
        self.queue
            .send(Invocation {
                request_id: request_id.clone(),
                payload: serde_json::to_vec(payload).map_err(|e| e.to_string())?,
            })
            .map_err(|_| "the Runtime API server has stopped".to_string())?;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(format!("invocation {request_id} was dropped")),
            Err(_) => Err(format!(
                "no answer to invocation {request_id} within {limit:?}{}",
                self.init_error()
                    .map(|e| format!(" (init error: {e})"))
                    .unwrap_or_default()
            )),
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn route(
    req: Request<Incoming>,
    pending: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Ok(reply(StatusCode::NOT_FOUND, "unknown path"));
    };
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => {
            // Long poll: one function instance takes one invocation at a time.
            let next = pending.lock().await.recv().await;
            let Some(invocation) = next else {
                return Ok(reply(StatusCode::GONE, "shutting down"));
            };
            let deadline = (SystemTime::now() + FUNCTION_TIMEOUT)
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let mut response = reply(StatusCode::OK, invocation.payload);
            let headers = response.headers_mut();
            let mut set = |name: &'static str, value: String| {
                if let Ok(value) = value.parse() {
                    headers.insert(name, value);
                }
            };
            set("lambda-runtime-aws-request-id", invocation.request_id);
            set("lambda-runtime-deadline-ms", deadline.to_string());
            set(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:mailer".to_string(),
            );
            set(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".to_string(),
            );
            set("content-type", "application/json".to_string());
            Ok(response)
        }
        (Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
            let id = id.to_string();
            let kind = *kind;
            let body = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, e.to_string())),
            };
            let Some(waiter) = shared.waiting.lock().expect("waiting lock").remove(&id) else {
                return Ok(reply(StatusCode::NOT_FOUND, "unknown request id"));
            };
            let answer = if kind == "response" {
                Answer::Response(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
            } else {
                let value: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                Answer::Error {
                    error_type: value["errorType"].as_str().unwrap_or_default().to_string(),
                    error_message: value["errorMessage"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                }
            };
            let _ = waiter.send(answer);
            Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
        }
        (Method::POST, ["init", "error"]) => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
                .unwrap_or_default();
            *shared.init_error.lock().expect("init error lock") = Some(body);
            Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, "unknown path")),
    }
}
