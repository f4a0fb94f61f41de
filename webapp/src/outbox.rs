//! The transactional outbox. A signup writes its "user created" event into the `outbox` table
//! in the same transaction as the user row; this publisher sends pending events to SNS and
//! marks them sent. Signups never wait for SNS: with SNS slow or down they still commit, and
//! the events go out, oldest first, once it answers again — none lost.
//!
//! Several instances share the table: a batch is claimed with `FOR UPDATE SKIP LOCKED`, so no
//! two publishers send the same event at once. A failed publish is retried with exponential
//! backoff, and after a failed call the whole publisher pauses for it, so while SNS is down a
//! burst of signups costs one failed attempt per backoff period rather than one per signup (each
//! such attempt holds the claimed rows' transaction, and so a pool connection, open). When SNS
//! could not be reached from this instance the event itself does not wait: it stays due, so
//! another instance that can reach SNS publishes it while this one pauses (an instance whose
//! path to SNS is broken must not hold everyone's events back). When SNS refused the message,
//! the event waits out its own backoff. Delivery is at least once (a crash between the publish
//! and the commit sends an event again); the event id in the body and in the `event_id` message
//! attribute is what consumers de-duplicate on, since SNS gives every message a new MessageId.
//!
//! Events go out in SNS `PublishBatch` calls of up to ten (one HTTP request and one signature
//! for ten events rather than one each: the publisher's and SNS's CPU per event drops). A
//! signup's wake-up waits a short linger before publishing, so that the events of concurrent
//! signups share a call. SNS
//! answers per entry: the `Successful` ones are marked sent; each `Failed` one is accounted for
//! as a failed publish of that event (its attempt counted, its error kept, its backoff by who was
//! at fault); a call that fails as a whole counts as a failed attempt for each of its events.
//! An event SNS refuses within a call it answered (say a message over SNS's size limit) does
//! not pause the publisher: it waits out its own backoff while the events after it go out.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_sns::error::SdkError;
use aws_sdk_sns::operation::publish_batch::PublishBatchOutput;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
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

/// What a [`Publisher::flush`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Events published (and marked sent).
    pub events: usize,
    /// SNS `PublishBatch` calls made.
    pub calls: usize,
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
                    _ = this.wake.notified() => {
                        // Let the events of the signups around this one gather, so that they
                        // share a PublishBatch call rather than taking one each.
                        tokio::select! {
                            _ = tokio::time::sleep(this.settings.linger) => {}
                            _ = stopped.changed() => {}
                        }
                    }
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

    /// One last attempt at everything pending, ignoring backoff (used when draining); stops
    /// where a publishing pass stops (SNS failing), or when nothing more was published.
    pub async fn flush(&self) -> Result<Flushed> {
        let mut total = Flushed::default();
        loop {
            let outcome = self.publish_batch(true).await?;
            total.events += outcome.published;
            total.calls += outcome.calls;
            if outcome.retry_in.is_some() || (outcome.published as i64) < self.settings.batch_size {
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

    /// Claims up to one batch of due events, publishes them, oldest first, in SNS `PublishBatch`
    /// calls of up to [`MAX_BATCH_ENTRIES`] and records each event's outcome. Stops after a call
    /// that failed as a whole or in which SNS could not take an event (it is likely down, and the
    /// rest would fail the same way): the outcome's `retry_in` then tells the loop to pause. An
    /// event SNS refused in a call it answered waits out its own backoff, and the pass goes on.
    async fn publish_batch(&self, ignore_backoff: bool) -> Result<BatchOutcome> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("outbox: opening a transaction")?;
        let due: Vec<Due> = sqlx::query_as(
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
        for range in batches(&due) {
            let events = &due[range];
            outcome.calls += 1;
            let (results, whole_call) = self.publish(events).await;
            let mut stop = whole_call;
            let mut pause: Option<Duration> = None;
            let sent: Vec<Uuid> = events
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(e, _)| e.id)
                .collect();
            if !sent.is_empty() {
                sqlx::query(
                    "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, \
                     last_error = NULL WHERE id = ANY($1)",
                )
                .bind(&sent)
                .execute(&mut *tx)
                .await
                .context("outbox: marking events sent")?;
                outcome.published += sent.len();
            }
            for (event, result) in events.iter().zip(results) {
                let Err(failure) = result else { continue };
                let (e, event_waits) = match &failure {
                    Failure::Unreachable(e) => (e, false),
                    Failure::Rejected(e) => (e, true),
                };
                let error = format!("{e:#}");
                let delay = self.backoff(event.attempts);
                tracing::warn!(event_id = %event.id, attempts = event.attempts + 1, retry_in_ms = delay.as_millis() as u64, error = %error, "outbox: publish failed");
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = CASE WHEN $4 THEN now() + make_interval(secs => $3) \
                     ELSE next_attempt_at END WHERE id = $1",
                )
                .bind(event.id)
                .bind(&error)
                .bind(delay.as_secs_f64())
                .bind(event_waits)
                .execute(&mut *tx)
                .await
                .context("outbox: recording a failed attempt")?;
                outcome.failed += 1;
                stop |= !event_waits;
                pause = Some(pause.map_or(delay, |d| d.min(delay)));
            }
            if stop {
                outcome.retry_in = pause;
                break;
            }
        }
        tx.commit().await.context("outbox: committing")?;
        if outcome.published > 0 {
            tracing::info!(
                published = outcome.published,
                calls = outcome.calls,
                "outbox: events published"
            );
        }
        Ok(outcome)
    }

    /// One `PublishBatch` call for `events` (at most [`MAX_BATCH_ENTRIES`]): each event's
    /// outcome, in order, and whether the call failed as a whole.
    async fn publish(&self, events: &[Due]) -> (Vec<Result<(), Failure>>, bool) {
        let entries: Result<Vec<PublishBatchRequestEntry>> =
            events.iter().map(Due::entry).collect();
        let entries = match entries {
            Ok(entries) => entries,
            Err(e) => {
                let failed = events
                    .iter()
                    .map(|_| Err(Failure::Rejected(anyhow::anyhow!("{e:#}"))))
                    .collect();
                return (failed, true);
            }
        };
        let sent = self
            .sns
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(output) => (entry_outcomes(events, &output, &self.topic_arn), false),
            Err(err) => {
                // The whole call failed: every event in it had its attempt.
                let unreachable = matches!(
                    err,
                    SdkError::DispatchFailure(_)
                        | SdkError::TimeoutError(_)
                        | SdkError::ResponseError(_)
                ) || err
                    .as_service_error()
                    .is_some_and(|e| e.meta().code().is_some_and(server_side));
                let error = format!(
                    "{:#}",
                    anyhow::Error::from(aws_sdk_sns::Error::from(err))
                        .context(format!("publishing to {}", self.topic_arn))
                );
                let failed = events
                    .iter()
                    .map(|event| {
                        let e = anyhow::anyhow!("event {}: {error}", event.id);
                        Err(if unreachable {
                            Failure::Unreachable(e)
                        } else {
                            Failure::Rejected(e)
                        })
                    })
                    .collect();
                (failed, true)
            }
        }
    }
}

/// SNS `PublishBatch` takes at most 10 entries per call, and the messages of one call together
/// at most 256 KiB (262,144 bytes, message attributes included); a call over either limit fails
/// as a whole (`TooManyEntriesInBatchRequest`, `BatchRequestTooLong`).
/// <https://docs.aws.amazon.com/sns/latest/api/API_PublishBatch.html>
pub const MAX_BATCH_ENTRIES: usize = 10;
/// See [`MAX_BATCH_ENTRIES`].
pub const MAX_BATCH_BYTES: usize = 262_144;

/// Error codes that say SNS itself is failing or throttling rather than refusing the message.
fn server_side(code: &str) -> bool {
    code.contains("Throttl") || code == "InternalError" || code == "InternalFailure"
}

/// A claimed outbox event.
#[derive(Debug, Clone)]
struct Due {
    id: Uuid,
    event_type: String,
    payload: String,
    attempts: i32,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Due {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Due {
            id: row.try_get("id")?,
            event_type: row.try_get("event_type")?,
            payload: row.try_get("payload")?,
            attempts: row.try_get("attempts")?,
        })
    }
}

impl Due {
    /// The entry's id within its call: the event id's 32 hex digits (entry ids are at most 80
    /// characters of letters, digits, `-` and `_`, distinct within a call).
    fn entry_id(&self) -> String {
        self.id.simple().to_string()
    }

    /// What the message weighs towards [`MAX_BATCH_BYTES`]: its body and its attributes'
    /// names, types and values.
    fn size(&self) -> usize {
        let attribute = |name: &str, value: usize| name.len() + "String".len() + value;
        self.payload.len()
            + attribute(ATTR_EVENT_ID, self.id.to_string().len())
            + attribute(ATTR_EVENT_TYPE, self.event_type.len())
    }

    /// The event as one `PublishBatch` entry: the payload as the message, the event id (what
    /// consumers de-duplicate on) and type as message attributes.
    fn entry(&self) -> Result<PublishBatchRequestEntry> {
        let string = |value: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .context("building a message attribute")
        };
        PublishBatchRequestEntry::builder()
            .id(self.entry_id())
            .message(&self.payload)
            .message_attributes(ATTR_EVENT_ID, string(self.id.to_string())?)
            .message_attributes(ATTR_EVENT_TYPE, string(self.event_type.clone())?)
            .build()
            .with_context(|| format!("building the entry of event {}", self.id))
    }
}

/// Splits `events`, in order, into the ranges each `PublishBatch` call sends: at most
/// [`MAX_BATCH_ENTRIES`] entries and [`MAX_BATCH_BYTES`] together. A message over the byte
/// limit on its own goes alone (SNS refuses it, and only it).
fn batches(events: &[Due]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, event) in events.iter().enumerate() {
        let size = event.size();
        if i > start && (i - start == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < events.len() {
        ranges.push(start..events.len());
    }
    ranges
}

/// Each event's outcome from SNS's answer to its `PublishBatch` call: listed under `Successful`
/// → published; under `Failed` → refused when SNS says the fault is the sender's (the event
/// waits out its own backoff, like a refused `Publish`), else SNS is failing (the event stays
/// due, like an unreachable SNS); listed under neither → treated as not reached (it stays due;
/// delivery is at least once).
fn entry_outcomes(
    events: &[Due],
    output: &PublishBatchOutput,
    topic_arn: &str,
) -> Vec<Result<(), Failure>> {
    events
        .iter()
        .map(|event| {
            let id = event.entry_id();
            if output
                .successful()
                .iter()
                .any(|s| s.id() == Some(id.as_str()))
            {
                return Ok(());
            }
            let Some(failed) = output.failed().iter().find(|f| f.id() == id) else {
                return Err(Failure::Unreachable(anyhow::anyhow!(
                    "publishing event {} to {topic_arn}: SNS's answer did not mention it",
                    event.id
                )));
            };
            let e = anyhow::anyhow!(
                "publishing event {} to {topic_arn}: {}: {}",
                event.id,
                failed.code(),
                failed.message().unwrap_or("no message")
            );
            Err(if failed.sender_fault() && !server_side(failed.code()) {
                Failure::Rejected(e)
            } else {
                Failure::Unreachable(e)
            })
        })
        .collect()
}

/// Why a publish failed, which decides who waits.
#[derive(Debug)]
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
    /// `PublishBatch` calls made.
    calls: usize,
    /// When the pass stopped because SNS failed: how long until the first of the events that
    /// failed is due again (the loop pauses at least that long).
    retry_in: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use aws_sdk_sns::types::{BatchResultErrorEntry, PublishBatchResultEntry};

    use super::*;

    fn event(payload_len: usize) -> Due {
        Due {
            id: Uuid::new_v4(),
            event_type: "user.created".into(),
            payload: "x".repeat(payload_len),
            attempts: 0,
        }
    }

    #[test]
    fn batches_hold_at_most_ten_events() {
        let events: Vec<Due> = (0..23).map(|_| event(300)).collect();
        assert_eq!(batches(&events), vec![0..10, 10..20, 20..23]);
        assert_eq!(batches(&events[..10]), vec![0..10]);
        assert_eq!(batches(&[]), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn batches_stay_under_the_byte_limit_and_an_oversized_message_goes_alone() {
        let big = MAX_BATCH_BYTES / 3;
        let events = vec![
            event(big),
            event(big),
            event(big),
            event(MAX_BATCH_BYTES + 1),
            event(10),
        ];
        // Three thirds weigh more than the limit once their attributes count.
        assert_eq!(batches(&events), vec![0..2, 2..3, 3..4, 4..5]);
        assert!(events[..2].iter().map(Due::size).sum::<usize>() <= MAX_BATCH_BYTES);
    }

    fn failed(event: &Due, code: &str, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(event.entry_id())
            .code(code)
            .message("refused")
            .sender_fault(sender_fault)
            .build()
            .expect("entry")
    }

    /// The bookkeeping of one `PublishBatch` answer: successful entries published, failed ones
    /// refused or not reached by whose fault it was, unmentioned ones not reached.
    #[test]
    fn each_entry_gets_the_outcome_sns_gave_it() {
        let events: Vec<Due> = (0..5).map(|_| event(10)).collect();
        let output = PublishBatchOutput::builder()
            .successful(
                PublishBatchResultEntry::builder()
                    .id(events[0].entry_id())
                    .message_id("m-0")
                    .build(),
            )
            .successful(
                PublishBatchResultEntry::builder()
                    .id(events[3].entry_id())
                    .message_id("m-3")
                    .build(),
            )
            .failed(failed(&events[1], "InvalidParameter", true))
            .failed(failed(&events[2], "InternalError", false))
            .build();
        let outcomes = entry_outcomes(&events, &output, "arn:topic");
        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|o| match o {
                Ok(()) => "published",
                Err(Failure::Rejected(_)) => "rejected",
                Err(Failure::Unreachable(_)) => "unreachable",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "published",
                "rejected",
                "unreachable",
                "published",
                "unreachable"
            ]
        );
        let Err(Failure::Rejected(e)) = &outcomes[1] else {
            panic!("event 1 is refused");
        };
        let text = format!("{e:#}");
        assert!(text.contains(&events[1].id.to_string()), "{text}");
        assert!(text.contains("InvalidParameter: refused"), "{text}");
    }

    #[test]
    fn a_throttled_entry_is_not_the_senders_fault() {
        let events = vec![event(10)];
        let output = PublishBatchOutput::builder()
            .failed(failed(&events[0], "Throttled", true))
            .build();
        assert!(matches!(
            entry_outcomes(&events, &output, "arn:topic")[0],
            Err(Failure::Unreachable(_))
        ));
    }

    #[test]
    fn an_entry_is_a_well_formed_publish_batch_entry() {
        let e = event(10);
        let entry = e.entry().expect("entry");
        assert_eq!(entry.id().len(), 32);
        assert!(entry.id().chars().all(|c| c.is_ascii_hexdigit()));
        let attributes = entry.message_attributes().expect("attributes");
        assert_eq!(
            attributes[ATTR_EVENT_ID].string_value(),
            Some(e.id.to_string().as_str())
        );
        assert_eq!(
            attributes[ATTR_EVENT_TYPE].string_value(),
            Some("user.created")
        );
    }
}
