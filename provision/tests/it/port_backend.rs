//! Backend selection: `--aws` selects AWS with flags over the standard AWS environment;
//! without it, the sandbox — whatever the AWS environment says.

use std::collections::HashMap;

use provision::port::{
    Attachment, AwsSettings, BackendChoice, BackendFlags, BackendKind, CloudError,
};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn without_aws_flag_the_sandbox_is_chosen_even_with_aws_environment() {
    let aws_env = env(&[
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ("AWS_PROFILE", "prod"),
        ("AWS_REGION", "eu-west-1"),
    ]);
    let choice = BackendChoice::choose(&BackendFlags::default(), aws_env).expect("valid");
    assert_eq!(choice, BackendChoice::Sandbox);
    assert_eq!(choice.kind(), BackendKind::Sandbox);
}

#[test]
fn aws_flag_fills_unset_fields_from_the_environment() {
    let flags = BackendFlags {
        aws: true,
        ..BackendFlags::default()
    };
    let choice = BackendChoice::choose(
        &flags,
        env(&[
            ("AWS_PROFILE", "dev"),
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]),
    )
    .expect("valid");
    assert_eq!(
        choice,
        BackendChoice::Aws(AwsSettings {
            profile: Some("dev".into()),
            region: Some("us-east-2".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            attach: None,
        })
    );
}

#[test]
fn flags_win_over_the_environment_and_aws_region_over_default_region() {
    let flags = BackendFlags {
        aws: true,
        profile: Some("prod".into()),
        region: None,
        endpoint_url: Some("https://example.test".into()),
        ..BackendFlags::default()
    };
    let choice = BackendChoice::choose(
        &flags,
        env(&[
            ("AWS_PROFILE", "dev"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]),
    )
    .expect("valid");
    assert_eq!(
        choice,
        BackendChoice::Aws(AwsSettings {
            profile: Some("prod".into()),
            region: Some("eu-west-1".into()),
            endpoint_url: Some("https://example.test".into()),
            attach: None,
        })
    );
}

#[test]
fn aws_with_nothing_set_leaves_everything_to_the_sdk_chain() {
    let flags = BackendFlags {
        aws: true,
        ..BackendFlags::default()
    };
    let choice = BackendChoice::choose(&flags, env(&[("AWS_PROFILE", "  ")])).expect("valid");
    assert_eq!(choice, BackendChoice::Aws(AwsSettings::default()));
}

#[test]
fn aws_only_flags_without_aws_are_refused_naming_the_flag() {
    let flags = BackendFlags {
        region: Some("eu-west-1".into()),
        ..BackendFlags::default()
    };
    match BackendChoice::choose(&flags, env(&[])) {
        Err(CloudError::Invalid { field, reason }) => {
            assert_eq!(field, "region");
            assert!(reason.contains("--region needs --aws"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_malformed_endpoint_is_refused() {
    let flags = BackendFlags {
        aws: true,
        ..BackendFlags::default()
    };
    let result = BackendChoice::choose(&flags, env(&[("AWS_ENDPOINT_URL", "localhost:5000")]));
    assert!(
        matches!(result, Err(CloudError::Invalid { ref field, .. }) if field == "endpoint_url"),
        "{result:?}"
    );
}

#[test]
fn asg_and_db_attach_to_a_group_triad_did_not_create() {
    let flags = BackendFlags {
        aws: true,
        asg: Some("legacy-web".into()),
        db: Some("legacy-db".into()),
        ..BackendFlags::default()
    };
    let BackendChoice::Aws(settings) = BackendChoice::choose(&flags, env(&[])).expect("valid")
    else {
        panic!("--aws selects AWS");
    };
    assert_eq!(
        settings.attach,
        Some(Attachment {
            asg: "legacy-web".into(),
            db: Some("legacy-db".into())
        })
    );
}

#[test]
fn asg_needs_aws_and_db_needs_asg() {
    let sandbox_asg = BackendFlags {
        asg: Some("legacy-web".into()),
        ..BackendFlags::default()
    };
    let err = BackendChoice::choose(&sandbox_asg, env(&[])).expect_err("--asg needs --aws");
    assert!(
        matches!(err, CloudError::Invalid { ref field, .. } if field == "asg"),
        "{err}"
    );
    let db_alone = BackendFlags {
        aws: true,
        db: Some("legacy-db".into()),
        ..BackendFlags::default()
    };
    let err = BackendChoice::choose(&db_alone, env(&[])).expect_err("--db needs --asg");
    assert!(
        matches!(err, CloudError::Invalid { ref field, .. } if field == "db"),
        "{err}"
    );
}
