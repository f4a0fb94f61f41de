//! The AWS backend's CloudFormation side against moto over HTTP: plans (change sets) of the
//! example specs, apply, a second plan of the same spec, update plans, destroy, the bootstrap
//! stack and artefact uploads. What moto does not model — failures and rollbacks, per-resource
//! stack events, parameter-only updates, AWS's error messages — is in `aws_cfn_mocks.rs`.
//!
//! Every test uses stack names of its own; the one that creates the main stack (which holds a
//! Lambda function) runs on a moto server of its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use provision::aws::artefacts::{SHA256_METADATA, mailer_key, webapp_key};
use provision::aws::{
    AwsCloud, Polling, Release, ReleaseFile, ReleaseState, Upload, ensure_bootstrap,
    plan_artefacts, prepare_artefacts, render_plan, upload_artefact,
};
use provision::port::*;
use provision::spec::StackSpec;
use provision::template::{bootstrap_stack_name, params, render};
use rstest::rstest;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Polls every few milliseconds, and gives up long before a test would hang.
fn fast_polling() -> Polling {
    Polling {
        first_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(200),
        change_set_deadline: Duration::from_secs(60),
        operation_deadline: Duration::from_secs(120),
    }
}

async fn cloud_at(endpoint: &str) -> AwsCloud {
    AwsCloud::from_config(&testkit::aws_config_for(endpoint).await).with_polling(fast_polling())
}

/// The shared moto server.
async fn shared_cloud() -> AwsCloud {
    cloud_at(&testkit::moto_url()).await
}

/// An example spec under a name no other test uses.
fn example(file: &str) -> StackSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let mut spec = StackSpec::load(&path).expect("the example spec is valid");
    spec.name = testkit::unique_name("cfn");
    spec
}

/// What `triad up` asks for: the rendered template, the artefact bucket, the stack tag.
fn desired(spec: &StackSpec, bucket: &str) -> DesiredStack {
    let template = render(spec).to_json().expect("the template renders");
    desired_with(spec, bucket, template)
}

fn desired_with(spec: &StackSpec, bucket: &str, template_body: String) -> DesiredStack {
    DesiredStack {
        stack: StackRef::new(spec.name.clone())
            .expect("valid stack name")
            .in_region(spec.region.clone()),
        template_body,
        parameters: BTreeMap::from([(params::ARTEFACT_BUCKET.to_string(), bucket.to_string())]),
        tags: BTreeMap::from([("triad:stack".to_string(), spec.name.clone())]),
        spec: serde_json::to_value(spec).expect("the spec serialises"),
    }
}

/// Every item of a provisioning stream, failing the test on an `Err`.
async fn drain(mut events: CloudStream<ProvisionEvent>) -> Vec<ProvisionEvent> {
    let mut all = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => all.push(event),
            Err(error) => panic!("the stream failed after {all:?}: {error}"),
        }
    }
    all
}

/// The stream's `Started` item and its `Finished` status, checking the shape in between:
/// `Started` first, `Finished` last, only `Resource` items between them, their "X of Y"
/// never above Y nor going back down (a rollback or a replacement could make X go back; the
/// operations here do neither).
fn check_shape(events: &[ProvisionEvent]) -> (StackOperation, u32, StackStatus) {
    let Some(ProvisionEvent::Started {
        operation, total, ..
    }) = events.first()
    else {
        panic!("the stream starts with Started: {events:?}");
    };
    let Some(ProvisionEvent::Finished { stack_status, .. }) = events.last() else {
        panic!("the stream ends with Finished: {events:?}");
    };
    let mut last_done = 0;
    for event in &events[1..events.len() - 1] {
        let ProvisionEvent::Resource(resource) = event else {
            panic!("only Resource items between Started and Finished: {events:?}");
        };
        assert!(resource.done <= resource.total, "{resource:?}");
        assert!(resource.total >= *total, "{resource:?} against {total}");
        assert!(resource.done >= last_done, "X of Y goes back: {events:?}");
        last_done = resource.done;
    }
    (*operation, *total, *stack_status)
}

/// The rendered template with the few expressions moto's CloudFormation cannot resolve
/// replaced by fixed values: `Fn::GetAtt Database.MasterUserSecret.SecretArn` and the
/// `${Database.Endpoint.*}` / `${Database.MasterUserSecret.SecretArn}` references inside
/// `Fn::Sub` (moto rejects the ExecuteChangeSet with "does not support attribute type …").
/// Every resource stays; only those values differ.
fn moto_compatible(template: &str) -> String {
    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db";
    fn fix(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let secret_arn = Value::from(vec!["Database", "MasterUserSecret.SecretArn"]);
                if map.get("Fn::GetAtt") == Some(&secret_arn) {
                    return Value::from(SECRET);
                }
                Value::Object(map.into_iter().map(|(k, v)| (k, fix(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(fix).collect()),
            Value::String(text) => Value::String(
                text.replace("${Database.MasterUserSecret.SecretArn}", SECRET)
                    .replace("${Database.Endpoint.Address}", "db.internal")
                    .replace("${Database.Endpoint.Port}", "5432"),
            ),
            other => other,
        }
    }
    let value: Value = serde_json::from_str(template).expect("the template is JSON");
    serde_json::to_string_pretty(&fix(value)).expect("JSON again")
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.changes.iter().map(|c| c.logical_id.as_str()).collect()
}

/// A new stack's plan is a CREATE change set adding every resource of the template, and its
/// text lists them with `+`.
#[rstest]
#[case::lean("lean.toml")]
#[case::full("stack.toml")]
#[tokio::test]
async fn plan_of_a_new_stack_adds_every_resource(#[case] file: &str) {
    let cloud = shared_cloud().await;
    let spec = example(file);
    let template = render(&spec);

    let plan = cloud
        .plan(&desired(&spec, "artefacts-not-needed-to-plan"))
        .await
        .expect("plan");

    assert!(plan.creates_stack);
    assert!(!plan.is_empty());
    assert!(plan.change_set.is_some(), "a plan keeps its change set");
    assert_eq!(
        plan.changes.len(),
        template.resources.len(),
        "{:?}",
        ids(&plan)
    );
    for change in &plan.changes {
        assert_eq!(change.action, ChangeAction::Add, "{change:?}");
        assert_eq!(
            change.resource_type, template.resources[&change.logical_id].kind,
            "{change:?}"
        );
    }
    for id in [
        "AutoScalingGroup",
        "LoadBalancer",
        "Database",
        "LaunchTemplate",
    ] {
        assert!(ids(&plan).contains(&id), "{id} in {:?}", ids(&plan));
    }

    let text = render_plan(&plan);
    assert!(
        text.starts_with(&format!(
            "Plan to create stack {} ({}):\n",
            spec.name, spec.region
        )),
        "{text}"
    );
    for line in [
        "+   AutoScalingGroup ",
        "+   LoadBalancer ",
        "+   Database ",
        "AWS::RDS::DBInstance",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(
        text.ends_with(&format!(
            "Plan: {} to add, 0 to change, 0 to replace, 0 to delete.\n",
            template.resources.len()
        )),
        "{text}"
    );
}

/// The main stack end to end: bootstrap, upload, plan, apply (the real resources exist after
/// it), a second plan of the same spec (no changes, nothing to execute), a new app version
/// (applied as a stack update) and a new instance type (a Modify of the launch template).
/// Runs on a moto server of its own: the stack holds a Lambda function, which breaks moto's
/// data endpoint for every other test on a shared server.
#[tokio::test]
async fn apply_creates_the_stack_then_plans_follow_the_spec() {
    let moto = testkit::MotoServer::start().expect("moto starts");
    let cloud = cloud_at(moto.url()).await;
    let mut spec = example("lean.toml");
    let bucket = ensure_bootstrap(&cloud, &spec, |_| {})
        .await
        .expect("bootstrap");
    for (key, body) in [
        (
            mailer_key(&spec.mailer.version),
            b"PK\x05\x06mailer".to_vec(),
        ),
        (webapp_key(&spec.app.version), b"\x7fELFwebapp".to_vec()),
    ] {
        upload_artefact(&cloud, Some(&spec.region), &bucket, &key, body)
            .await
            .expect("upload");
    }
    let moto_desired = |spec: &StackSpec| {
        let template = render(spec).to_json().expect("the template renders");
        desired_with(spec, &bucket, moto_compatible(&template))
    };

    let plan = cloud.plan(&moto_desired(&spec)).await.expect("plan");
    assert!(plan.creates_stack);
    let planned = u32::try_from(plan.changes.len()).expect("small");

    let events = drain(cloud.apply(&plan)).await;
    let (operation, total, status) = check_shape(&events);
    assert_eq!(operation, StackOperation::Create);
    assert_eq!(total, planned, "Started announces the planned resources");
    assert_eq!(status, StackStatus::CreateComplete, "{events:?}");
    let stack_events: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProvisionEvent::Resource(r) => Some((r.logical_id.as_str(), r.status)),
            _ => None,
        })
        .collect();
    assert!(
        stack_events.contains(&(spec.name.as_str(), ResourceStatus::CreateComplete)),
        "the stack's own events are reported: {stack_events:?}"
    );
    let cfn = aws_sdk_cloudformation::Client::new(&testkit::aws_config_for(moto.url()).await);
    let resources = cfn
        .list_stack_resources()
        .stack_name(&spec.name)
        .send()
        .await
        .expect("list resources");
    assert_eq!(
        resources.stack_resource_summaries().len(),
        plan.changes.len(),
        "apply created every planned resource"
    );

    let again = cloud.plan(&moto_desired(&spec)).await.expect("second plan");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(again.change_set, None, "nothing to execute");
    assert!(!again.creates_stack);
    assert_eq!(
        render_plan(&again),
        format!(
            "No changes. Stack {} ({}) already matches the spec.\n",
            spec.name, spec.region
        )
    );
    let events = drain(cloud.apply(&again)).await;
    assert_eq!(events.len(), 2, "Started and Finished only: {events:?}");
    assert_eq!(
        check_shape(&events),
        (StackOperation::Update, 0, StackStatus::CreateComplete)
    );

    // A new app version changes only the AppVersion parameter's default. moto's change sets
    // compare resource text and ignore parameters, so it lists no resource (AWS lists the
    // launch template: see aws_cfn_mocks.rs); the plan must still update the stack.
    spec.app.version = "0.2.0".into();
    let new_version = cloud
        .plan(&moto_desired(&spec))
        .await
        .expect("version plan");
    assert!(!new_version.is_empty(), "a new version is a change");
    assert!(new_version.change_set.is_some());
    assert!(
        !render_plan(&new_version).starts_with("No changes"),
        "{}",
        render_plan(&new_version)
    );
    let events = drain(cloud.apply(&new_version)).await;
    let (operation, _, status) = check_shape(&events);
    assert_eq!(
        (operation, status),
        (StackOperation::Update, StackStatus::UpdateComplete)
    );
    let settled = cloud.plan(&moto_desired(&spec)).await.expect("plan again");
    assert!(
        settled.is_empty(),
        "the new version is in place: {settled:?}"
    );

    spec.app.instance_type = "t3.small".into();
    let bigger = cloud
        .plan(&moto_desired(&spec))
        .await
        .expect("instance plan");
    assert!(!bigger.creates_stack);
    let launch_template = bigger
        .changes
        .iter()
        .find(|c| c.logical_id == "LaunchTemplate")
        .unwrap_or_else(|| panic!("the launch template changes: {:?}", bigger.changes));
    assert_eq!(launch_template.action, ChangeAction::Modify);
    assert_eq!(launch_template.resource_type, "AWS::EC2::LaunchTemplate");
    assert!(
        bigger.changes.iter().all(|c| c.action != ChangeAction::Add),
        "{:?}",
        bigger.changes
    );
    let text = render_plan(&bigger);
    assert!(text.starts_with("Plan to update stack "), "{text}");
    assert!(text.contains("~   LaunchTemplate "), "{text}");
}

/// `ensure_bootstrap` creates the `<name>-bootstrap` stack and returns its bucket; a second
/// call finds it as it should be and changes nothing.
#[tokio::test]
async fn ensure_bootstrap_creates_the_bucket_stack_once() {
    let cloud = shared_cloud().await;
    let spec = example("lean.toml");

    let mut first = Vec::new();
    let bucket = ensure_bootstrap(&cloud, &spec, |e| first.push(e.clone()))
        .await
        .expect("bootstrap");
    assert_eq!(
        bucket,
        format!("{}-artefacts-123456789012-{}", spec.name, spec.region)
    );
    let (operation, total, status) = check_shape(&first);
    assert_eq!(
        (operation, total, status),
        (StackOperation::Create, 2, StackStatus::CreateComplete)
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&testkit::aws_config().await)
            .force_path_style(true)
            .build(),
    );
    s3.head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("the bucket exists");

    let mut second = Vec::new();
    let again = ensure_bootstrap(&cloud, &spec, |e| second.push(e.clone()))
        .await
        .expect("bootstrap again");
    assert_eq!(again, bucket);
    assert!(
        second.is_empty(),
        "nothing to do the second time: {second:?}"
    );
}

/// An upload puts the object with its SHA-256; the same bytes again are skipped; different
/// bytes under the same key are refused (a release is immutable) and the object stays as it
/// was.
#[tokio::test]
async fn upload_skips_an_artefact_already_there_and_never_replaces_one() {
    let cloud = shared_cloud().await;
    let spec = example("lean.toml");
    let bucket = ensure_bootstrap(&cloud, &spec, |_| {})
        .await
        .expect("bootstrap");
    let key = webapp_key("1.2.3");

    let first = upload_artefact(&cloud, None, &bucket, &key, b"release one".to_vec())
        .await
        .expect("upload");
    let Upload::Uploaded { sha256 } = &first else {
        panic!("a new key is uploaded: {first:?}");
    };
    assert_eq!(*sha256, format!("{:x}", Sha256::digest(b"release one")));

    let second = upload_artefact(&cloud, None, &bucket, &key, b"release one".to_vec())
        .await
        .expect("upload again");
    assert_eq!(
        second,
        Upload::AlreadyThere {
            sha256: sha256.clone()
        }
    );

    let third = upload_artefact(
        &cloud,
        Some(&spec.region),
        &bucket,
        &key,
        b"release two".to_vec(),
    )
    .await
    .expect_err("other bytes under the same version are refused");
    assert!(matches!(third, CloudError::Conflict { .. }), "{third:?}");
    assert!(third.to_string().contains("immutable"), "{third}");

    let (recorded, body) = object(&bucket, &key).await;
    assert_eq!(recorded.as_ref(), Some(sha256));
    assert_eq!(&body[..], b"release one");
}

/// The object at `key` in `bucket`: its recorded SHA-256 and its bytes.
async fn object(bucket: &str, key: &str) -> (Option<String>, Vec<u8>) {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&testkit::aws_config().await)
            .force_path_style(true)
            .build(),
    );
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get the object");
    let recorded = object
        .metadata()
        .and_then(|m| m.get(SHA256_METADATA))
        .cloned();
    let body = object.body.collect().await.expect("read").into_bytes();
    (recorded, body.to_vec())
}

/// A file holding `bytes` in `dir`.
fn release_file(dir: &Path, name: &str, bytes: &[u8], given: bool) -> ReleaseFile {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the release file");
    ReleaseFile { path, given }
}

/// What `triad up --aws` does before the main stack. Planning changes nothing and already
/// knows the bucket's name (from the account and region); preparing creates the bootstrap
/// stack and uploads both releases under the spec's versions; planning again finds them
/// there, so nothing is left to do. A given file that differs from the release in the bucket
/// blocks (releases are immutable), a file merely found beside `triad` does not, and a release
/// no file provides blocks with what to pass.
#[tokio::test]
async fn artefacts_are_planned_read_only_then_prepared_once() {
    let cloud = shared_cloud().await;
    let spec = example("lean.toml");
    let dir = tempfile::tempdir().expect("temp dir");
    let webapp = release_file(dir.path(), "webapp", b"webapp build", true);
    let mailer = release_file(dir.path(), "bootstrap.zip", b"mailer zip", true);
    let releases = Release::of_spec(&spec, Some(webapp.clone()), Some(mailer.clone()));

    let plan = plan_artefacts(&cloud, &spec, &releases)
        .await
        .expect("plan");
    let expected_bucket = format!("{}-artefacts-123456789012-{}", spec.name, spec.region);
    assert!(!plan.bootstrap_exists);
    assert_eq!(plan.bucket, expected_bucket);
    assert_eq!(
        plan.parameters().get(params::ARTEFACT_BUCKET),
        Some(&expected_bucket)
    );
    let webapp_sha = format!("{:x}", Sha256::digest(b"webapp build"));
    let mailer_sha = format!("{:x}", Sha256::digest(b"mailer zip"));
    assert_eq!(
        plan.releases
            .iter()
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>(),
        vec![
            ReleaseState::Upload {
                path: webapp.path.clone(),
                sha256: webapp_sha.clone()
            },
            ReleaseState::Upload {
                path: mailer.path.clone(),
                sha256: mailer_sha.clone()
            },
        ]
    );
    let lines = plan.prepare_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with(&format!("create stack {}-bootstrap", spec.name)));
    assert!(plan.blockers().is_empty());
    let replanned = plan_artefacts(&cloud, &spec, &releases)
        .await
        .expect("plan twice");
    assert_eq!(replanned, plan, "planning created nothing");

    let mut uploads = Vec::new();
    let bucket = prepare_artefacts(
        &cloud,
        &spec,
        &plan,
        |_| {},
        |l| uploads.push(l.to_string()),
    )
    .await
    .expect("prepare");
    assert_eq!(bucket, expected_bucket);
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    let (recorded, body) = object(&bucket, &webapp_key(&spec.app.version)).await;
    assert_eq!(
        (recorded, body),
        (Some(webapp_sha.clone()), b"webapp build".to_vec())
    );
    let (recorded, body) = object(&bucket, &mailer_key(&spec.mailer.version)).await;
    assert_eq!((recorded, body), (Some(mailer_sha), b"mailer zip".to_vec()));

    let again = plan_artefacts(&cloud, &spec, &releases)
        .await
        .expect("plan again");
    assert!(again.bootstrap_exists);
    assert!(
        again.prepare_lines().is_empty(),
        "{:?}",
        again.prepare_lines()
    );
    assert_eq!(
        again.releases[0].1,
        ReleaseState::InBucket {
            sha256: Some(webapp_sha.clone())
        }
    );

    // A rebuilt binary under the same version: refused when given, ignored when found.
    let rebuilt = release_file(dir.path(), "webapp2", b"webapp rebuilt", true);
    let conflict = plan_artefacts(
        &cloud,
        &spec,
        &Release::of_spec(&spec, Some(rebuilt.clone()), Some(mailer.clone())),
    )
    .await
    .expect("plan with a rebuilt binary");
    let blockers = conflict.blockers();
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert!(blockers[0].contains("immutable"), "{blockers:?}");
    let refused = prepare_artefacts(&cloud, &spec, &conflict, |_| {}, |_| {})
        .await
        .expect_err("a plan with blockers is refused");
    assert!(matches!(refused, CloudError::Invalid { .. }), "{refused:?}");
    let (recorded, _) = object(&bucket, &webapp_key(&spec.app.version)).await;
    assert_eq!(
        recorded,
        Some(webapp_sha),
        "the release in the bucket is untouched"
    );
    let found = ReleaseFile {
        given: false,
        ..rebuilt
    };
    let quiet = plan_artefacts(
        &cloud,
        &spec,
        &Release::of_spec(&spec, Some(found), Some(mailer)),
    )
    .await
    .expect("plan with a found binary");
    assert!(quiet.blockers().is_empty() && quiet.prepare_lines().is_empty());

    // A new mailer version no file provides.
    let mut newer = spec.clone();
    newer.mailer.version = "9.9.9".into();
    let missing = plan_artefacts(&cloud, &newer, &Release::of_spec(&newer, None, None))
        .await
        .expect("plan a missing release");
    assert_eq!(missing.releases[1].1, ReleaseState::Missing);
    let blockers = missing.blockers();
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert!(blockers[0].contains("--mailer-zip"), "{blockers:?}");
}

/// Destroy deletes the stack and follows it to DELETE_COMPLETE; then the stack is gone, and
/// destroying it again is NotFound. (The bootstrap stack: moto cannot delete a stack holding
/// a VPC — DependencyViolation — so the main stack's delete is in aws_cfn_mocks.rs.)
#[tokio::test]
async fn destroy_follows_the_stack_to_delete_complete() {
    let cloud = shared_cloud().await;
    let spec = example("lean.toml");
    ensure_bootstrap(&cloud, &spec, |_| {})
        .await
        .expect("bootstrap");
    let stack = StackRef::new(bootstrap_stack_name(&spec))
        .expect("valid name")
        .in_region(spec.region.clone());

    let events = drain(cloud.destroy(&stack)).await;
    let (operation, total, status) = check_shape(&events);
    assert_eq!(
        (operation, total, status),
        (StackOperation::Delete, 2, StackStatus::DeleteComplete)
    );
    let Some(ProvisionEvent::Finished { outputs, .. }) = events.last() else {
        unreachable!("checked above");
    };
    assert!(outputs.is_empty());

    let mut again = cloud.destroy(&stack);
    match again.next().await {
        Some(Err(CloudError::NotFound { what })) => assert!(what.contains(&stack.name), "{what}"),
        other => panic!("destroying a deleted stack is NotFound: {other:?}"),
    }
    assert!(
        again.next().await.is_none(),
        "the stream ends after its error"
    );
}

/// Destroying a stack that never existed is NotFound, and changes nothing.
#[tokio::test]
async fn destroy_of_a_missing_stack_is_not_found() {
    let cloud = shared_cloud().await;
    let stack = StackRef::new(testkit::unique_name("never")).expect("valid name");
    let events: Vec<_> = cloud.destroy(&stack).collect().await;
    assert!(
        matches!(events.as_slice(), [Err(CloudError::NotFound { what })] if what.contains(&stack.name)),
        "{events:?}"
    );
}
