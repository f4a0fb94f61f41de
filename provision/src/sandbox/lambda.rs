//! A minimal Lambda Runtime API on loopback, so a real Lambda binary (built on
//! `lambda_runtime`) runs in the sandbox the way the Lambda service runs it: the function
//! long-polls `GET /2018-06-01/runtime/invocation/next`, gets an event with its request id and
//! deadline in headers, and answers on `POST …/invocation/{id}/response` or
//! `POST …/invocation/{id}/error` (`POST …/init/error` when it cannot start).
//! [`RuntimeApi::invoke`] queues one event and waits for that answer.
//!
//! An invocation that timed out is abandoned: the function never receives it if it has not
//! taken it yet, and a late answer to it is refused as unknown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const PREFIX: &str = "/2018-06-01/runtime";

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
    deadline: SystemTime,
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Pending = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>;

/// A running Runtime API for one function; stops serving when dropped.
pub struct RuntimeApi {
    address: SocketAddr,
    function_arn: String,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    /// Listens on a free loopback port for the function `function_arn`.
    pub async fn start(function_arn: impl Into<String>) -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let address = listener.local_addr()?;
        let function_arn = function_arn.into();
        let (queue, pending) = mpsc::unbounded_channel();
        let pending: Pending = Arc::new(tokio::sync::Mutex::new(pending));
        let shared = Arc::new(Shared::default());
        let state = (pending, shared.clone(), function_arn.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (pending, shared, arn) = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        route(req, pending.clone(), shared.clone(), arn.clone())
                    });
                    // A function that goes away mid-request ends its connection; nothing to do.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeApi {
            address,
            function_arn,
            queue,
            shared,
            server,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (host:port, no scheme).
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The function's ARN, as the function is told it.
    pub fn function_arn(&self) -> &str {
        &self.function_arn
    }

    /// What the function reported on `…/init/error`, if it did.
    pub fn init_error(&self) -> Option<String> {
        lock(&self.shared.init_error).clone()
    }

    /// Queues `payload` for the function and waits up to `timeout` (the function's timeout)
    /// for its answer. `Err` says why there was none.
    pub async fn invoke(
        &self,
        request_id: &str,
        payload: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.waiting).insert(request_id.to_owned(), tx);
        let payload = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        self.queue
            .send(Invocation {
                request_id: request_id.to_owned(),
                payload,
                deadline: SystemTime::now() + timeout,
            })
            .map_err(|_| "the Runtime API has stopped".to_owned())?;
        let outcome = tokio::time::timeout(timeout, rx).await;
        // Abandon the invocation: not handed out any more, a late answer is refused.
        lock(&self.shared.waiting).remove(request_id);
        match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(format!("invocation {request_id} was dropped")),
            Err(_) => Err(format!(
                "Task timed out after {:.2} seconds{}",
                timeout.as_secs_f64(),
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

fn epoch_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

async fn next_invocation(pending: &Pending, shared: &Shared) -> Option<Invocation> {
    let mut pending = pending.lock().await;
    loop {
        let invocation = pending.recv().await?;
        if lock(&shared.waiting).contains_key(&invocation.request_id) {
            return Some(invocation);
        }
    }
}

async fn route(
    req: Request<Incoming>,
    pending: Pending,
    shared: Arc<Shared>,
    function_arn: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Ok(reply(StatusCode::NOT_FOUND, "unknown path"));
    };
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => {
            // Long poll: the function takes one invocation at a time.
            let Some(invocation) = next_invocation(&pending, &shared).await else {
                return Ok(reply(StatusCode::GONE, "shutting down"));
            };
            let mut response = reply(StatusCode::OK, invocation.payload);
            let headers = response.headers_mut();
            let mut set = |name: &'static str, value: String| {
                if let Ok(value) = value.parse() {
                    headers.insert(name, value);
                }
            };
            set("lambda-runtime-aws-request-id", invocation.request_id);
            set(
                "lambda-runtime-deadline-ms",
                epoch_millis(invocation.deadline).to_string(),
            );
            set("lambda-runtime-invoked-function-arn", function_arn);
            set(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
            );
            set("content-type", "application/json".to_owned());
            Ok(response)
        }
        (Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
            let id = (*id).to_owned();
            let is_response = *kind == "response";
            let body = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, e.to_string())),
            };
            let Some(waiter) = lock(&shared.waiting).remove(&id) else {
                return Ok(reply(StatusCode::NOT_FOUND, "unknown request id"));
            };
            let value: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let answer = if is_response {
                Answer::Response(value)
            } else {
                Answer::Error {
                    error_type: value["errorType"].as_str().unwrap_or_default().to_owned(),
                    error_message: value["errorMessage"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
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
            *lock(&shared.init_error) = Some(body);
            Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, "unknown path")),
    }
}
