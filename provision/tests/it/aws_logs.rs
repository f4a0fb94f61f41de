//! `logs` on the AWS backend: FilterLogEvents against moto (the webapp's log group, one
//! stream per instance named `<az>/<instance-id>`), and the follow cursor with
//! `aws-smithy-mocks`, because moto answers every FilterLogEvents at once with all its events
//! and its own next token: it cannot show lines reaching CloudWatch late, out of order across
//! streams, or split over pages the way CloudWatch splits them — which is what the cursor must
//! get right.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatchlogs::operation::filter_log_events::{
    FilterLogEventsInput, FilterLogEventsOutput,
};
use aws_sdk_cloudwatchlogs::types::{FilteredLogEvent, InputLogEvent};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use provision::aws::{AwsCloud, OpsClients};
use provision::port::*;
use time::OffsetDateTime;

fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).expect("ms")
}

fn json_line(level: &str, message: &str, extra: &str) -> String {
    format!(r#"{{"level":"{level}","message":"{message}"{extra}}}"#)
}

/// Lines put into moto's log group come back attributed to the instance and AZ their stream
/// names, and each filter selects what it should.
#[tokio::test]
async fn filter_log_events_reads_lines_per_instance_and_az_from_moto() {
    let config = testkit::aws_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let name = testkit::unique_name("logs");
    let stack = StackRef::new(name.clone()).expect("stack name");
    let group = provision::aws::logs::log_group_name(&name);
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .expect("create the log group");
    let start = now_ms() - 5_000;
    let streams = [
        (
            "us-east-1a",
            "i-0aaa",
            "INFO",
            "request",
            r#","path":"/v1/user","status":201"#,
        ),
        ("us-east-1b", "i-0bbb", "ERROR", "database unreachable", ""),
        (
            "us-east-1b",
            "i-0bbb",
            "INFO",
            "request",
            r#","path":"/health","status":200"#,
        ),
    ];
    for (n, (az, instance, level, message, extra)) in streams.iter().enumerate() {
        let stream = provision::aws::logs::stream_name(az, instance);
        let _ = logs
            .create_log_stream()
            .log_group_name(&group)
            .log_stream_name(&stream)
            .send()
            .await;
        logs.put_log_events()
            .log_group_name(&group)
            .log_stream_name(&stream)
            .log_events(
                InputLogEvent::builder()
                    .timestamp(start + i64::try_from(n).expect("n") * 1000)
                    .message(json_line(level, message, extra))
                    .build()
                    .expect("event"),
            )
            .send()
            .await
            .expect("put the line");
    }
    let cloud = AwsCloud::from_config(&config);
    let read = |query: LogQuery| {
        let cloud = cloud.clone();
        let stack = stack.clone();
        async move { cloud.logs(&stack, &query, None).await.expect("logs").lines }
    };

    let all = read(LogQuery::default()).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(
        (all[0].instance.as_str(), all[0].az.as_str()),
        ("i-0aaa", "us-east-1a")
    );
    assert_eq!(all[0].fields.get("status"), Some(&serde_json::json!(201)));
    assert_eq!(all[1].level, Some(LogLevel::Error));
    assert_eq!(all[1].message, "database unreachable");

    let az_b = read(LogQuery {
        az: Some("us-east-1b".into()),
        ..LogQuery::default()
    })
    .await;
    assert_eq!(az_b.len(), 2);
    assert!(az_b.iter().all(|l| l.instance == "i-0bbb"));
    let one = read(LogQuery {
        az: Some("us-east-1a".into()),
        instance: Some("i-0aaa".into()),
        ..LogQuery::default()
    })
    .await;
    assert_eq!(one.len(), 1);
    let errors = read(LogQuery {
        level: Some(LogLevel::Warn),
        ..LogQuery::default()
    })
    .await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, "database unreachable");
    let health = read(LogQuery {
        text: Some("/health".into()),
        ..LogQuery::default()
    })
    .await;
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].instance, "i-0bbb");
    let tail = read(LogQuery {
        limit: Some(1),
        ..LogQuery::default()
    })
    .await;
    assert_eq!(tail.len(), 1);
    assert_eq!(
        tail[0].fields.get("path"),
        Some(&serde_json::json!("/health"))
    );
}

/// A stack whose group does not exist yet is "not found", with the group's name.
#[tokio::test]
async fn a_missing_log_group_is_not_found() {
    let config = testkit::aws_config().await;
    let name = testkit::unique_name("nologs");
    let cloud = AwsCloud::from_config(&config);
    let error = cloud
        .logs(
            &StackRef::new(name.clone()).expect("stack name"),
            &LogQuery::default(),
            None,
        )
        .await
        .expect_err("no group");
    assert!(
        matches!(&error, CloudError::NotFound { what } if what.contains(&format!("/triad/{name}/webapp"))),
        "{error:?}"
    );
}

/// `(timestamp ms, event id, stream, message)`.
type Stored = (i64, String, String, String);

/// What the mocked CloudWatch holds: `(timestamp ms, event id, stream, message)`, served in
/// pages of `page` events in timestamp order, from the request's `startTime`.
#[derive(Clone)]
struct FakeLogs {
    events: Arc<Mutex<Vec<Stored>>>,
    page: usize,
    requests: Arc<Mutex<Vec<FilterLogEventsInput>>>,
}

impl FakeLogs {
    fn new(page: usize) -> FakeLogs {
        FakeLogs {
            events: Arc::default(),
            page,
            requests: Arc::default(),
        }
    }

    fn add(&self, ms: i64, stream: &str, message: &str) {
        let mut events = self.events.lock().expect("events");
        let id = format!("ev-{:04}", events.len());
        events.push((ms, id, stream.to_owned(), message.to_owned()));
    }

    fn answer(&self, input: &FilterLogEventsInput) -> FilterLogEventsOutput {
        self.requests.lock().expect("requests").push(input.clone());
        let mut events = self.events.lock().expect("events").clone();
        events.sort();
        let start = input.start_time().unwrap_or(0);
        let selected: Vec<_> = events
            .into_iter()
            .filter(|(ms, _, stream, _)| {
                *ms >= start
                    && input
                        .log_stream_name_prefix()
                        .is_none_or(|p| stream.starts_with(p))
            })
            .collect();
        let from: usize = input.next_token().map_or(0, |t| t.parse().expect("token"));
        let to = (from + self.page).min(selected.len());
        let mut output = FilterLogEventsOutput::builder().set_events(Some(
            selected[from..to]
                .iter()
                .map(|(ms, id, stream, message)| {
                    FilteredLogEvent::builder()
                        .timestamp(*ms)
                        .event_id(id)
                        .log_stream_name(stream)
                        .message(message)
                        .build()
                })
                .collect(),
        ));
        if to < selected.len() {
            output = output.next_token(to.to_string());
        }
        output.build()
    }

    /// An AWS backend whose CloudWatch Logs client answers from this fake.
    fn cloud(&self) -> AwsCloud {
        let fake = self.clone();
        let rule = mock!(aws_sdk_cloudwatchlogs::Client::filter_log_events)
            .then_compute_output(move |input| fake.answer(input));
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let mut ops = OpsClients::from_config(&config);
        ops.logs = mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, &[&rule]);
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let s3 = aws_sdk_s3::Client::new(&config);
        AwsCloud::from_clients(cfn, s3).with_ops_clients(ops)
    }
}

fn messages(page: &LogPage) -> Vec<String> {
    page.lines.iter().map(|l| l.message.clone()).collect()
}

/// Reads on with the cursor until a page says there is no more right now.
async fn drain(cloud: &AwsCloud, query: &LogQuery, cursor: &mut LogCursor) -> Vec<String> {
    let stack = StackRef::new("shop").expect("stack name");
    let mut seen = Vec::new();
    loop {
        let page = cloud.logs(&stack, query, Some(cursor)).await.expect("logs");
        seen.extend(messages(&page));
        *cursor = page.cursor;
        if !page.more {
            return seen;
        }
    }
}

/// Following across FilterLogEvents pages (3 events each) and across polls, with lines from
/// two streams arriving late and out of order (within the lookback): every line comes back
/// exactly once, in time order per poll; a page cut by the query's limit goes on where it
/// stopped.
#[tokio::test]
async fn the_follow_cursor_never_repeats_or_skips_a_line_across_pages() {
    let fake = FakeLogs::new(3);
    let cloud = fake.cloud();
    let stack = StackRef::new("shop").expect("stack name");
    let t0 = now_ms() - 60_000;
    let a = "eu-west-1a/i-0a1";
    let b = "eu-west-1b/i-0b1";
    for n in 0..7 {
        fake.add(
            t0 + n * 100,
            if n % 2 == 0 { a } else { b },
            &json_line("INFO", &format!("old {n}"), ""),
        );
    }
    let query = LogQuery {
        since: Some(OffsetDateTime::now_utc() - time::Duration::minutes(10)),
        ..LogQuery::default()
    };
    let tail = cloud.logs(&stack, &query, None).await.expect("tail");
    let expected_tail: Vec<String> = (0..7).map(|n| format!("old {n}")).collect();
    assert_eq!(messages(&tail), expected_tail, "the tail reads every page");
    let mut cursor = tail.cursor;

    // Nothing new: nothing returned.
    assert!(drain(&cloud, &query, &mut cursor).await.is_empty());

    // New lines, one of them on `b` timed before the newest line already read on `a` (it
    // reached CloudWatch late), and several with the same timestamp.
    fake.add(t0 + 650, b, &json_line("INFO", "late b", ""));
    for n in 0..5 {
        fake.add(
            t0 + 1000,
            if n % 2 == 0 { a } else { b },
            &json_line("INFO", &format!("new {n}"), ""),
        );
    }
    let mut seen = drain(&cloud, &query, &mut cursor).await;
    let expected: Vec<String> = std::iter::once("late b".to_owned())
        .chain((0..5).map(|n| format!("new {n}")))
        .collect();
    assert_eq!(seen, expected);

    // A small page limit cuts the reading; following goes on exactly where it stopped.
    for n in 0..8 {
        fake.add(
            t0 + 2000 + n * 10,
            a,
            &json_line(
                if n % 3 == 0 { "ERROR" } else { "INFO" },
                &format!("more {n}"),
                "",
            ),
        );
    }
    let small = LogQuery {
        limit: Some(2),
        ..query.clone()
    };
    seen = drain(&cloud, &small, &mut cursor).await;
    let expected: Vec<String> = (0..8).map(|n| format!("more {n}")).collect();
    assert_eq!(seen, expected);
    assert!(drain(&cloud, &query, &mut cursor).await.is_empty());

    // The level filter is the port's rule, applied to what CloudWatch returns.
    fake.add(t0 + 3000, b, &json_line("ERROR", "boom", ""));
    fake.add(t0 + 3001, b, &json_line("INFO", "fine", ""));
    let errors = LogQuery {
        level: Some(LogLevel::Error),
        ..query.clone()
    };
    assert_eq!(drain(&cloud, &errors, &mut cursor).await, ["boom"]);

    // Every request named the stack's group; polls started no earlier than the lookback.
    let requests = fake.requests.lock().expect("requests");
    assert!(
        requests
            .iter()
            .all(|r| r.log_group_name() == Some("/triad/shop/webapp"))
    );
    assert!(
        requests.len() > 5,
        "pages were followed: {}",
        requests.len()
    );
}

/// The AZ and instance filters become the stream prefix `<az>/` and the stream name.
#[tokio::test]
async fn az_and_instance_filters_name_the_streams() {
    let fake = FakeLogs::new(100);
    let cloud = fake.cloud();
    let stack = StackRef::new("shop").expect("stack name");
    let t0 = now_ms() - 1000;
    fake.add(t0, "eu-west-1a/i-0a1", &json_line("INFO", "a", ""));
    fake.add(t0 + 1, "eu-west-1b/i-0b1", &json_line("INFO", "b", ""));
    let page = cloud
        .logs(
            &stack,
            &LogQuery {
                az: Some("eu-west-1b".into()),
                ..LogQuery::default()
            },
            None,
        )
        .await
        .expect("logs");
    assert_eq!(messages(&page), ["b"]);
    assert_eq!(page.lines[0].instance, "i-0b1");
    assert_eq!(page.lines[0].az, "eu-west-1b");
    let _ = cloud
        .logs(
            &stack,
            &LogQuery {
                az: Some("eu-west-1a".into()),
                instance: Some("i-0a1".into()),
                ..LogQuery::default()
            },
            None,
        )
        .await
        .expect("logs");
    let requests = fake.requests.lock().expect("requests");
    assert_eq!(requests[0].log_stream_name_prefix(), Some("eu-west-1b/"));
    assert_eq!(
        requests[1].log_stream_names(),
        ["eu-west-1a/i-0a1".to_owned()]
    );
}
