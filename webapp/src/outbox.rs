//! The transactional outbox. A signup writes its "user created" event into the `outbox` table
//! in the same transaction as the user row; this publisher sends pending events to SNS and
//! marks them sent. Signups never wait for SNS: with SNS slow or down they still commit, and
//! the events go out, oldest first, once it answers again — none lost.
//!
//! Several instances share the table: a batch is claimed with `FOR UPDATE SKIP LOCKED`, so no
//! two publishers send the same event at once. A failed publish is retried with exponential
//! backoff, and after a failed publish the whole publisher pauses for it, so while SNS is down a
//! burst of signups costs one failed attempt per backoff period rather than one per signup (each
//! such attempt holds the claimed rows' transaction, and so a pool connection, open). When SNS
//! could not be reached from this instance the event itself does not wait: it stays due, so
//! another instance that can reach SNS publishes it while this one pauses (an instance whose
//! path to SNS is broken must not hold everyone's events back). When SNS refused the message,
//! the event waits out its own backoff. Delivery is at least once (a crash between Publish and the commit sends an
//! event again); the event id in the body and in the `event_id` message attribute is what
//! consumers de-duplicate on, since SNS gives every Publish a new MessageId.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_sns::error::SdkError;
use aws_sdk_sns::types::MessageAttributeValue;
use contract::message::{ATTR_EVENT_ID, ATTR_EVENT_TYPE};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::config::OutboxSettings;
use crate::db::Schema;

/// Writes events in the caller's transaction; see [`Publisher`] for the sending side.
pub async fn enqueue(
    tx: &mut sqlx::PgConnection,
    event_id: Uuid,
    event_type: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (id, event_type, payload) VALUES ($1, $2, $3)")
        .bind(event_id)
        .bind(event_type)
        .bind(payload)
        .execute(tx)
        .await
        .map(|_| ())
}

/// Publishes pending outbox events to one SNS topic.
#[derive(Clone)]
pub struct Publisher {
    pool: PgPool,
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    settings: OutboxSettings,
    wake: Arc<Notify>,
}

/// Stops a running publisher.
pub struct PublisherHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PublisherHandle {
    /// Asks the loop to stop and waits for it (its current batch finishes first).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Publisher {
    pub fn new(
        pool: PgPool,
        sns: aws_sdk_sns::Client,
        topic_arn: String,
        settings: OutboxSettings,
    ) -> Publisher {
        Publisher {
            pool,
            sns,
            topic_arn,
            settings,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Tells the loop a new event was committed, so it publishes now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the publishing loop on a task until [`PublisherHandle::stop`]; it starts publishing
    /// once `schema` says the outbox table exists.
    pub fn spawn(&self, schema: Schema) -> PublisherHandle {
        let (stop, mut stopped) = watch::channel(false);
        let this = self.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = schema.ready() => {}
                _ = stopped.changed() => return,
            }
            // Failed passes in a row: the pause after one grows like an event's backoff.
            let mut failing = 0;
            loop {
                let busy = match this.publish_batch(false).await {
                    Ok(BatchOutcome {
                        retry_in: Some(retry_in),
                        ..
                    }) => {
                        // SNS is failing: new events wait too, whatever wakes us.
                        let pause = retry_in.max(this.backoff(failing));
                        failing = failing.saturating_add(1);
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stopped.changed() => {}
                        }
                        if *stopped.borrow() {
                            break;
                        }
                        continue;
                    }
                    Ok(outcome) => {
                        failing = 0;
                        outcome.published as i64 == this.settings.batch_size
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "outbox: publishing pass failed");
                        false
                    }
                };
                if busy {
                    continue;
                }
                tokio::select! {
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(this.settings.poll_interval) => {}
                    _ = stopped.changed() => {}
                }
                if *stopped.borrow() {
                    break;
                }
            }
        });
        PublisherHandle { stop, task }
    }

    /// One last attempt at everything pending, ignoring backoff (used when draining).
    pub async fn flush(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let outcome = self.publish_batch(true).await?;
            total += outcome.published;
            if outcome.failed > 0 || (outcome.published as i64) < self.settings.batch_size {
                return Ok(total);
            }
        }
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
        self.settings
            .min_backoff
            .saturating_mul(factor)
            .min(self.settings.max_backoff)
    }

    /// Claims up to one batch of due events, publishes them in order and records each outcome.
    /// Stops at the first failure: SNS is likely down and the rest would fail the same way.
    async fn publish_batch(&self, ignore_backoff: bool) -> Result<BatchOutcome> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("outbox: opening a transaction")?;
        let due: Vec<(Uuid, String, String, i32)> = sqlx::query_as(
            "SELECT id, event_type, payload, attempts FROM outbox \
             WHERE sent_at IS NULL AND ($1 OR next_attempt_at <= now()) \
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(ignore_backoff)
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await
        .context("outbox: claiming pending events")?;
        let mut outcome = BatchOutcome::default();
        for (id, event_type, payload, attempts) in due {
            match self.publish(id, &event_type, &payload).await {
                Ok(()) => {
                    sqlx::query(
                        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, \
                         last_error = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .context("outbox: marking an event sent")?;
                    outcome.published += 1;
                }
                Err(failure) => {
                    let (e, event_waits) = match &failure {
                        Failure::Unreachable(e) => (e, false),
                        Failure::Rejected(e) => (e, true),
                    };
                    let error = format!("{e:#}");
                    let delay = self.backoff(attempts);
                    tracing::warn!(event_id = %id, attempts = attempts + 1, retry_in_ms = delay.as_millis() as u64, error = %error, "outbox: publish failed");
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                         next_attempt_at = CASE WHEN $4 THEN now() + make_interval(secs => $3) \
                         ELSE next_attempt_at END WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&error)
                    .bind(delay.as_secs_f64())
                    .bind(event_waits)
                    .execute(&mut *tx)
                    .await
                    .context("outbox: recording a failed attempt")?;
                    outcome.failed += 1;
                    outcome.retry_in = Some(delay);
                    break;
                }
            }
        }
        tx.commit().await.context("outbox: committing")?;
        if outcome.published > 0 {
            tracing::info!(published = outcome.published, "outbox: events published");
        }
        Ok(outcome)
    }

    async fn publish(&self, id: Uuid, event_type: &str, payload: &str) -> Result<(), Failure> {
        let string = |value: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .context("building a message attribute")
                .map_err(Failure::Rejected)
        };
        let sent = self
            .sns
            .publish()
            .topic_arn(&self.topic_arn)
            .message(payload)
            .message_attributes(ATTR_EVENT_ID, string(id.to_string())?)
            .message_attributes(ATTR_EVENT_TYPE, string(event_type.to_string())?)
            .send()
            .await;
        let Err(err) = sent else {
            return Ok(());
        };
        let unreachable = matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
        ) || err.as_service_error().is_some_and(|e| {
            e.meta()
                .code()
                .is_some_and(|c| c.contains("Throttl") || c == "InternalError")
        });
        let error = anyhow::Error::from(aws_sdk_sns::Error::from(err))
            .context(format!("publishing event {id} to {}", self.topic_arn));
        Err(if unreachable {
            Failure::Unreachable(error)
        } else {
            Failure::Rejected(error)
        })
    }
}

/// Why a publish failed, which decides who waits.
enum Failure {
    /// SNS could not be reached from here (or was throttling or failing): this publisher
    /// pauses, and the event stays due, so an instance that can reach SNS publishes it.
    Unreachable(anyhow::Error),
    /// SNS answered that it will not take this message: the event waits out its own backoff.
    Rejected(anyhow::Error),
}

#[derive(Debug, Default, Clone, Copy)]
struct BatchOutcome {
    published: usize,
    failed: usize,
    /// After a failed publish: how long until that event is tried again.
    retry_in: Option<Duration>,
}
