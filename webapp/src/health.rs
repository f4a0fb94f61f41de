//! The database check behind `/healthz`, shared among concurrent requests.
//!
//! Each answer keeps its meaning: **the database answered a query that began after this request
//! arrived**, within [`HEALTH_TIMEOUT`] of its arrival. Concurrent requests share the round
//! trip: a request joins the next `SELECT 1` that has not been sent yet, or, when none is waiting
//! to go, makes one. At most one check query is in flight at a time; when it completes, the one
//! the requests that arrived meanwhile have joined is sent. So a burst of N concurrent checks
//! costs one or two round trips and one pool connection, not N, and a check never answers from
//! a query that began before it arrived: a database that stops answering is seen by every
//! request that arrives after it stopped. The query has the same timeout, so a silent database
//! delays the next round by at most that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::db::Db;

/// How long a `/healthz` request waits, from its arrival, for the database to answer.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the database check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailed {
    /// The query failed (the error, as text: it is shared by every request of the round).
    #[error("{0}")]
    Query(String),
    /// No answer within [`HEALTH_TIMEOUT`] of the request's arrival.
    #[error("no answer to SELECT 1 within {HEALTH_TIMEOUT:?}")]
    Timeout,
}

type Round = watch::Sender<Option<Result<(), CheckFailed>>>;

/// The shared database check; cheap to clone.
#[derive(Clone)]
pub struct HealthCheck {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    state: Mutex<State>,
    queries: AtomicU64,
}

#[derive(Default)]
struct State {
    /// A round's query is in flight (its task runs the following rounds too).
    running: bool,
    /// The round not sent yet, which arriving requests join.
    next: Option<Round>,
}

impl HealthCheck {
    pub fn new(db: Db) -> HealthCheck {
        HealthCheck {
            inner: Arc::new(Inner {
                db,
                state: Mutex::new(State::default()),
                queries: AtomicU64::new(0),
            }),
        }
    }

    /// How many check queries were sent so far.
    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Ok when the database answered a query sent after this call began, within
    /// [`HEALTH_TIMEOUT`].
    pub async fn check(&self) -> Result<(), CheckFailed> {
        let (mut answer, lead) = {
            let mut state = self.inner.lock();
            let answer = match &state.next {
                Some(round) => round.subscribe(),
                None => {
                    let (round, answer) = watch::channel(None);
                    state.next = Some(round);
                    answer
                }
            };
            let lead = !state.running;
            state.running = true;
            (answer, lead)
        };
        if lead {
            // On its own task: the rounds go on if this request is dropped.
            tokio::spawn(self.clone().run_rounds());
        }
        let waited =
            tokio::time::timeout(HEALTH_TIMEOUT, answer.wait_for(|result| result.is_some())).await;
        match waited {
            Ok(Ok(result)) => result.clone().unwrap_or(Err(CheckFailed::Timeout)),
            // The round's task ended without an answer (the runtime is shutting down).
            Ok(Err(_)) => Err(CheckFailed::Query("the check did not complete".into())),
            Err(_) => Err(CheckFailed::Timeout),
        }
    }

    /// Sends the waiting round's query, answers its requests, and goes on while requests have
    /// joined a new round meanwhile.
    async fn run_rounds(self) {
        let mut lead = Lead {
            check: &self,
            done: false,
        };
        loop {
            let round = {
                let mut state = self.inner.lock();
                match state.next.take() {
                    Some(round) => round,
                    None => {
                        state.running = false;
                        lead.done = true;
                        return;
                    }
                }
            };
            self.inner.queries.fetch_add(1, Ordering::Relaxed);
            let pool = self.inner.db.pool();
            let result = match tokio::time::timeout(
                HEALTH_TIMEOUT,
                sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    self.inner.db.note_error(&e).await;
                    Err(CheckFailed::Query(format!("{e:#}")))
                }
                Err(_) => Err(CheckFailed::Timeout),
            };
            round.send_replace(Some(result));
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The task running the rounds; should it end early (it panicked, or the runtime dropped it),
/// the next request leads again. Its rounds' requests see their round's sender gone.
struct Lead<'a> {
    check: &'a HealthCheck,
    done: bool,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.check.inner.lock().running = false;
        }
    }
}
