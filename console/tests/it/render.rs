//! Render snapshots: the console drawn into ratatui's `TestBackend` from states built on the
//! in-memory cloud (an injected clock at the Unix epoch, deterministic ids), at 80×24 and at a
//! wide 160×48. Nothing volatile is drawn from these states, so no masking is needed.

use std::sync::Arc;

use provision::memory::MemoryCloud;
use provision::port::{
    BackendKind, CapacityCheck, Cloud, DeployRequest, Fault, LogLine, ManualClock, StackRef,
    TargetState,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use triad::app::{Action, DrillView, State, update};
use triad::drill::probe::Latency;
use triad::drill::report::{CapacitySample, DrillRecord, StepRecord, WriteCheck, summarize};

fn render(state: &State, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal
        .draw(|frame| triad::ui::draw(frame, state))
        .expect("draw");
    terminal.backend().to_string()
}

async fn stack_state(
    backend: BackendKind,
    read_only: bool,
    prepare: impl FnOnce(&MemoryCloud, &StackRef),
) -> State {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    prepare(&cloud, &stack);
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let mut state = State::new(stack, backend, "local sandbox".into(), read_only);
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    state
}

#[tokio::test]
async fn dashboard_healthy() {
    let state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    insta::assert_snapshot!("healthy_80x24", render(&state, 80, 24));
    insta::assert_snapshot!("healthy_160x48", render(&state, 160, 48));
}

#[tokio::test]
async fn dashboard_one_az_degraded() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let probe = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    probe.seed_stack(&stack);
    let first = probe.snapshot(&stack).await.expect("snapshot");
    let victim = first.azs[0].instances[0].id.clone();
    let state = stack_state(BackendKind::Sandbox, false, |cloud, stack| {
        cloud
            .set_target_state(stack, &victim, Some(TargetState::Unhealthy))
            .expect("set target state");
    })
    .await;
    insta::assert_snapshot!("degraded_80x24", render(&state, 80, 24));
}

#[tokio::test]
async fn dashboard_az_down_on_aws_shows_the_production_cue() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    cloud
        .inject(
            &stack,
            &Fault::BlackholeAz {
                az: "mem-1b".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("inject");
    cloud.tick(&stack).expect("tick");
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let mut state = State::new(
        stack,
        BackendKind::Aws,
        "profile prod · eu-west-1".into(),
        false,
    );
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    let screen = render(&state, 160, 48);
    assert!(screen.contains("PRODUCTION"), "{screen}");
    insta::assert_snapshot!("az_down_aws_160x48", screen);
}

#[tokio::test]
async fn refresh_in_progress() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    cloud
        .deploy(&stack, &DeployRequest::new("v2"))
        .await
        .expect("deploy");
    cloud.tick(&stack).expect("tick");
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let mut state = State::new(stack, BackendKind::Sandbox, "local sandbox".into(), false);
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    let screen = render(&state, 80, 24);
    assert!(screen.contains("InProgress"), "{screen}");
    assert_eq!(
        screen.matches("refresh 0/2 on v2").count(),
        3,
        "each AZ's part of the refresh:\n{screen}"
    );
    insta::assert_snapshot!("refresh_80x24", screen);

    // One instance of the first AZ replaced: that column counts it.
    let snapshot = state.snapshot.as_mut().expect("a snapshot");
    snapshot.azs[0].instances[0].version = Some("v2".into());
    let screen = render(&state, 80, 24);
    assert_eq!(screen.matches("refresh 1/2 on v2").count(), 1, "{screen}");
    assert_eq!(screen.matches("refresh 0/2 on v2").count(), 2, "{screen}");
}

fn drill_view(finished: bool) -> DrillView {
    let steps = ["steady-state", "inject", "restore", "recover"]
        .iter()
        .enumerate()
        .map(|(i, s)| StepRecord {
            second: i as u64 * 10,
            step: (*s).to_string(),
            detail: format!("{s} detail"),
        })
        .collect();
    let capacity = (0..40)
        .map(|s| CapacitySample {
            second: s,
            healthy: [
                (
                    "mem-1a".to_string(),
                    if (10..25).contains(&s) { 0 } else { 2 },
                ),
                ("mem-1b".to_string(), 2),
                ("mem-1c".to_string(), 2),
            ]
            .into(),
        })
        .collect();
    let mut view = DrillView {
        title: "terminate-az mem-1a".into(),
        phase: if finished { "report" } else { "inject" }.into(),
        steps,
        capacity,
        running: !finished,
        ..DrillView::default()
    };
    if finished {
        let latency = |p99| Latency {
            p50_ms: Some(2.0),
            p99_ms: Some(p99),
            samples: 200,
        };
        let record = DrillRecord {
            stack: "demo".into(),
            backend: "sandbox".into(),
            az: "mem-1a".into(),
            fault: "terminate-az".into(),
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            inject_at: Some(10),
            restore_at: Some(20),
            end_at: 40,
            steps: view.steps.clone(),
            probe: Vec::new(),
            capacity: view.capacity.clone(),
            latency_before: latency(8.5),
            latency_during: latency(31.0),
            latency_after: latency(9.0),
            writes: Some(WriteCheck {
                acknowledged: 60,
                found: 60,
                lost: Vec::new(),
                unknown: 0,
            }),
            aborted: None,
            remedy: None,
            concurrent: Vec::new(),
            instance_actions: Vec::new(),
            clock: None,
            launches: Vec::new(),
            scaling: Vec::new(),
        };
        view.report = Some(Box::new(summarize(record)));
        view.report_files = ["report.json", "report.md", "report.svg"]
            .map(|f| format!("/srv/triad/demo/reports/1700000000/{f}"))
            .to_vec();
    }
    view
}

#[tokio::test]
async fn drill_running_and_report() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    state.screen = triad::app::Screen::GameDay;
    state.drill = Some(drill_view(false));
    let screen = render(&state, 80, 24);
    assert_shows(
        &screen,
        &["DB primary mem-1a available", "DB standby mem-1b"],
    );
    insta::assert_snapshot!("drill_running_80x24", screen);
    state.drill = Some(drill_view(true));
    let screen = render(&state, 160, 48);
    assert_shows(
        &screen,
        &[
            "verdict: Passed",
            "p99 before 8.5 ms · during 31.0 ms · after 9.0 ms",
            "healthy capacity mem-1a 2→0",
            "in /srv/triad/demo/reports/1700000000: report.json report.md",
        ],
    );
    insta::assert_snapshot!("drill_report_160x48", screen);
}

#[tokio::test]
async fn read_only_help_hides_changes() {
    let mut state = stack_state(BackendKind::Sandbox, true, |_, _| {}).await;
    state.screen = triad::app::Screen::Help;
    let screen = render(&state, 80, 24);
    assert!(!screen.contains("deploy a version"), "{screen}");
    assert!(screen.contains("p          provisioning"), "{screen}");
    insta::assert_snapshot!("help_read_only_80x24", screen);
}

fn change(
    logical_id: &str,
    resource_type: &str,
    action: provision::port::ChangeAction,
    reasons: &[&str],
) -> provision::port::ResourceChange {
    provision::port::ResourceChange {
        logical_id: logical_id.into(),
        resource_type: resource_type.into(),
        physical_id: None,
        action,
        reasons: reasons.iter().map(|r| (*r).to_string()).collect(),
    }
}

fn resource_event(
    logical_id: &str,
    status: provision::port::ResourceStatus,
    reason: Option<&str>,
    done: u32,
) -> Action {
    Action::Provision(Box::new(provision::port::ProvisionEvent::Resource(
        provision::port::ResourceEvent {
            at: time::OffsetDateTime::UNIX_EPOCH,
            logical_id: logical_id.into(),
            resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
            physical_id: None,
            status,
            reason: reason.map(str::to_string),
            done,
            total: 3,
        },
    )))
}

/// What the provisioning tests plan: an empty template for the state's stack.
fn desired_of(state: &State) -> provision::port::DesiredStack {
    provision::port::DesiredStack {
        stack: state.stack.clone(),
        template_body: "{}".into(),
        parameters: Default::default(),
        tags: Default::default(),
        spec: serde_json::Value::Null,
    }
}

/// On AWS the plan starts with what `up` does first (the artefact bucket, uploads) and lists
/// what blocks it in red, above the stack's own changes.
#[tokio::test]
async fn provisioning_plan_with_work_first_and_a_blocker() {
    use provision::port::{ChangeAction, Plan};
    let mut state = stack_state(BackendKind::Aws, false, |_, _| {}).await;
    update(&mut state, Action::Key(crossterm_key('p')));
    let plan = Plan {
        desired: desired_of(&state),
        creates_stack: true,
        change_set: Some("arn:aws:cloudformation:eu-west-1:1:changeSet/x".into()),
        changes: vec![change("Vpc", "AWS::EC2::VPC", ChangeAction::Add, &[])],
        prepare: vec![
            "create stack shop-bootstrap (the artefact bucket shop-artefacts-1-eu-west-1)".into(),
            "upload webapp 1.0.0 from ./webapp (sha256 0123456789ab)".into(),
        ],
        blockers: vec![
            "mailer 1.0.0 is not in s3://shop-artefacts-1-eu-west-1/mailer/1.0.0/bootstrap.zip \
             and no file provides it: pass --mailer-zip PATH"
                .into(),
        ],
        planned_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    update(&mut state, Action::Planned(Box::new(plan)));
    let screen = render(&state, 100, 24);
    assert!(screen.contains("! mailer 1.0.0"), "{screen}");
    assert!(screen.contains("first upload webapp"), "{screen}");
    insta::assert_snapshot!("provision_plan_first_and_blocker_100x24", screen);
}

#[tokio::test]
async fn provisioning_plan_then_progress_then_rollback() {
    use provision::port::{
        ChangeAction, Outputs, Plan, ProvisionEvent, ResourceStatus, StackOperation, StackStatus,
    };
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    update(&mut state, Action::Key(crossterm_key('p')));
    let plan = Plan {
        desired: desired_of(&state),
        creates_stack: false,
        change_set: Some("arn:aws:cloudformation:eu-west-1:1:changeSet/x".into()),
        changes: vec![
            change(
                "WebLaunchTemplate",
                "AWS::EC2::LaunchTemplate",
                ChangeAction::Modify,
                &["Properties.LaunchTemplateData"],
            ),
            change("Alarm5xx", "AWS::CloudWatch::Alarm", ChangeAction::Add, &[]),
            change(
                "DbSubnetGroup",
                "AWS::RDS::DBSubnetGroup",
                ChangeAction::Replace,
                &["Properties.SubnetIds (replacement)"],
            ),
        ],
        prepare: Vec::new(),
        blockers: Vec::new(),
        planned_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    update(&mut state, Action::Planned(Box::new(plan)));
    let screen = render(&state, 80, 24);
    assert!(screen.contains("1 to add"), "{screen}");
    insta::assert_snapshot!("provision_plan_80x24", screen);

    let stack = state.stack.clone();
    update(
        &mut state,
        Action::Provision(Box::new(ProvisionEvent::Started {
            at: time::OffsetDateTime::UNIX_EPOCH,
            stack,
            operation: StackOperation::Update,
            total: 3,
        })),
    );
    update(
        &mut state,
        resource_event("WebLaunchTemplate", ResourceStatus::UpdateComplete, None, 1),
    );
    update(
        &mut state,
        resource_event(
            "DbSubnetGroup",
            ResourceStatus::UpdateFailed,
            Some("Subnets must cover at least 2 AZs"),
            2,
        ),
    );
    let screen = render(&state, 80, 24);
    assert!(screen.contains("2 of 3"), "{screen}");
    insta::assert_snapshot!("provision_progress_80x24", screen);

    update(
        &mut state,
        Action::Provision(Box::new(ProvisionEvent::Finished {
            at: time::OffsetDateTime::UNIX_EPOCH,
            stack_status: StackStatus::UpdateRollbackComplete,
            outputs: Outputs::default(),
            summary: Some("DbSubnetGroup failed; every change was rolled back.".into()),
        })),
    );
    let screen = render(&state, 160, 48);
    assert!(screen.contains("UPDATE_ROLLBACK_COMPLETE"), "{screen}");
    insta::assert_snapshot!("provision_rolled_back_160x48", screen);
}

/// Asserts that the rendered screen shows every one of `texts`.
fn assert_shows(screen: &str, texts: &[&str]) {
    for text in texts {
        assert!(screen.contains(text), "{text:?} is not shown:\n{screen}");
    }
}

fn crossterm_key(c: char) -> crossterm::event::KeyEvent {
    crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Char(c),
        crossterm::event::KeyModifiers::NONE,
    )
}

/// A fleet longer than the screen scrolls: the selected instance stays in view, and only the
/// rows that fit are drawn.
#[tokio::test]
async fn the_instances_list_scrolls_to_the_selection() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    let snapshot = state.snapshot.as_mut().expect("a snapshot");
    for az in &mut snapshot.azs {
        let template = az.instances[0].clone();
        az.instances = (0..40)
            .map(|n| {
                let mut instance = template.clone();
                instance.id = format!("i-{}-{n:03}", az.az);
                instance
            })
            .collect();
    }
    let last = {
        let az = snapshot.azs.last().expect("an AZ");
        az.instances.last().expect("an instance").id.clone()
    };
    let total: usize = snapshot.azs.iter().map(|az| az.instances.len()).sum();
    update(&mut state, Action::Key(crossterm_key('i')));
    let top = render(&state, 80, 24);
    assert!(top.contains(&format!("instances ({total})")), "{top}");
    assert!(!top.contains(&last), "{top}");
    state.row = total - 1;
    let bottom = render(&state, 80, 24);
    assert!(bottom.contains(&last), "the last row is in view:\n{bottom}");
}

/// A long origin (profile, region, endpoint, attached group) gives way in the header: the
/// production cue and the capacity stay in view at 80 columns.
#[tokio::test]
async fn a_long_origin_gives_way_in_the_header() {
    let mut state = stack_state(BackendKind::Aws, false, |_, _| {}).await;
    state.origin = "profile default · us-east-1 · http://127.0.0.1:59511 · group shop-asg".into();
    let screen = render(&state, 80, 24);
    let header = screen.lines().next().expect("a header line");
    assert!(header.contains("PRODUCTION"), "{header}");
    assert!(header.contains("desired 6 min 3 max 12"), "{header}");
    assert!(header.contains("profile default"), "{header}");
    assert!(header.contains('…'), "{header}");
}

/// The deploy dialog fits 80×24 with every preference, says what an empty field means (the
/// running version beside an empty version), and the footer names the dialog's own keys from
/// the key table (there `q` types a letter: it does not quit).
#[tokio::test]
async fn the_deploy_dialog_shows_every_preference_at_80x24() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    update(&mut state, Action::Key(crossterm_key('d')));
    let screen = render(&state, 80, 24);
    assert_shows(
        &screen,
        &[
            "alarms",
            "scale-in protected",
            "standby instances",
            "Enter review",
            "Esc back",
        ],
    );
    insta::assert_snapshot!("deploy_dialog_80x24", screen);
}

/// Command mode lists what the typed word can still become.
#[tokio::test]
async fn command_mode_shows_the_candidates() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    for c in [':', 'd'] {
        update(&mut state, Action::Key(crossterm_key(c)));
    }
    let screen = render(&state, 80, 24);
    let footer = screen.lines().last().expect("a footer line");
    assert!(footer.contains(":d  dashboard deploy down"), "{footer}");
    update(&mut state, Action::Key(crossterm_key('e')));
    let screen = render(&state, 80, 24);
    let footer = screen.lines().last().expect("a footer line");
    assert!(footer.contains(":deploy  Enter runs it"), "{footer}");
}

/// An AZ column shorter than its list (at 80×24) scrolls so that the selected instance stays
/// in view.
#[tokio::test]
async fn an_az_column_scrolls_to_the_selection() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    let snapshot = state.snapshot.as_mut().expect("a snapshot");
    let az = &mut snapshot.azs[0];
    let template = az.instances[0].clone();
    az.instances = (0..12)
        .map(|n| {
            let mut instance = template.clone();
            instance.id = format!("i-col-{n:02}");
            instance
        })
        .collect();
    let top = render(&state, 80, 24);
    assert!(top.contains("i-col-00"), "{top}");
    assert!(
        !top.contains("i-col-11"),
        "the column is shorter than 12 rows:\n{top}"
    );
    state.row = 11;
    let bottom = render(&state, 80, 24);
    assert!(
        bottom.contains("i-col-11"),
        "the selected row is in view:\n{bottom}"
    );
}

/// The GameDay dialog has every stop condition the command line has, and says what a value
/// means where it is not plain.
#[tokio::test]
async fn the_gameday_dialog_shows_its_stop_conditions() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    update(&mut state, Action::Key(crossterm_key('g')));
    let screen = render(&state, 80, 24);
    assert_shows(
        &screen,
        &[
            "signups /s",
            "stop below healthy",
            "the drill stops after 540 s at most",
            "off",
        ],
    );
    insta::assert_snapshot!("gameday_dialog_80x24", screen);
}

/// The events screen lists the whole log the console kept, filtered with `/`, and takes the
/// events pane's room.
#[tokio::test]
async fn the_events_screen_lists_the_log_filtered() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    let total = state.events.len();
    assert!(
        total >= 6,
        "the seeded stack's launches are logged: {total}"
    );
    update(&mut state, Action::Key(crossterm_key('e')));
    update(&mut state, Action::Key(crossterm_key('/')));
    for c in "i-mem00002".chars() {
        update(&mut state, Action::Key(crossterm_key(c)));
    }
    update(
        &mut state,
        Action::Key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Enter,
            crossterm::event::KeyModifiers::NONE,
        )),
    );
    let screen = render(&state, 80, 24);
    let listed = state.listed_events().count();
    assert!(listed >= 1 && listed < total, "{listed} of {total}");
    assert!(
        screen.contains(&format!("events ({listed} of {total}) /i-mem00002")),
        "{screen}"
    );
    assert!(!screen.contains("i-mem00001"), "{screen}");
    insta::assert_snapshot!("events_filtered_80x24", screen);
}

/// A sandbox stack its spec tags as production shows the production cue too.
#[tokio::test]
async fn a_production_tagged_sandbox_stack_shows_the_cue() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    let header = |state: &State| {
        render(state, 80, 24)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    assert!(!header(&state).contains("PRODUCTION"), "{}", header(&state));
    state.tagged_production = true;
    assert!(header(&state).contains("PRODUCTION"), "{}", header(&state));
}

/// An instance in standby is shown as such on the dashboard and in the instances list, and
/// `S` on a selected instance asks for its id on a production (AWS) stack.
#[tokio::test]
async fn a_standby_instance() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    let first = cloud.snapshot(&stack).await.expect("snapshot");
    let id = first.azs[0].instances[0].id.clone();
    cloud
        .act_on_instance(
            &stack,
            &id,
            provision::port::InstanceAction::Standby { decrement: true },
            CapacityCheck::Enforce,
        )
        .await
        .expect("standby");
    cloud.tick(&stack).expect("tick");
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let mut state = State::new(
        stack,
        BackendKind::Aws,
        "profile prod · eu-west-1".into(),
        false,
    );
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    let dashboard = render(&state, 160, 48);
    assert!(
        dashboard
            .lines()
            .any(|l| l.contains(&format!("{id} v1 standby"))),
        "{dashboard}"
    );
    insta::assert_snapshot!("standby_dashboard_160x48", dashboard);

    update(&mut state, Action::Key(crossterm_key('i')));
    let list = render(&state, 160, 48);
    assert!(
        list.lines()
            .any(|l| l.contains(&id) && l.contains("Standby")),
        "{list}"
    );
    insta::assert_snapshot!("standby_instances_160x48", list);

    update(&mut state, Action::Key(crossterm_key('B')));
    let dialog = render(&state, 160, 48);
    assert!(
        dialog.contains(&format!("Resume instance {id}?")),
        "{dialog}"
    );
    assert!(dialog.contains("gameday restore"), "{dialog}");
    assert!(dialog.contains(&format!("Type {id}")), "{dialog}");
}

/// An active zonal shift is on its AZ's header, with when it ends.
#[tokio::test]
async fn a_shifted_az_header() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    let request = provision::port::ShiftRequest::new(
        "mem-1b",
        std::time::Duration::from_secs(30 * 60),
        "test",
    )
    .expect("request");
    cloud
        .start_zonal_shift(&stack, &request, CapacityCheck::Enforce)
        .await
        .expect("shift");
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let mut state = State::new(stack, BackendKind::Sandbox, "local sandbox".into(), false);
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    let dashboard = render(&state, 160, 48);
    assert!(
        dashboard.contains("mem-1b ⇄ shifted away until 00:30"),
        "{dashboard}"
    );
    assert!(!dashboard.contains("mem-1a ⇄"), "{dashboard}");
    insta::assert_snapshot!("shifted_az_160x48", dashboard);
}

fn log_line(second: u32, instance: &str, az: &str, level: &str, message: &str) -> LogLine {
    LogLine::parse(
        &format!(
            r#"{{"timestamp":"2026-03-04T05:06:{second:02}Z","level":"{level}","message":"{message}","request_id":"r-{second}","status":{},"path":"/signup","target":"webapp::http"}}"#,
            if level == "ERROR" { 500 } else { 200 }
        ),
        instance,
        az,
        time::OffsetDateTime::UNIX_EPOCH,
    )
}

/// The log view of one AZ, opened with `t` from the dashboard: levels coloured, the newest
/// line selected while following, its JSON fields shown with Enter; at 80×24 and wide.
#[tokio::test]
async fn the_log_view_of_an_az() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    update(&mut state, Action::Key(crossterm_key('t')));
    let generation = state.logs.as_ref().map_or(0, |v| v.generation);
    let lines = (0..30)
        .map(|s| {
            let instance = if s % 2 == 0 {
                "i-mem00001"
            } else {
                "i-mem00004"
            };
            let (level, message) = match s % 10 {
                7 => ("WARN", "slow query"),
                9 => ("ERROR", "database unreachable"),
                _ => ("INFO", "request"),
            };
            log_line(s, instance, "mem-1a", level, message)
        })
        .collect();
    update(&mut state, Action::LogLines { generation, lines });
    let screen = render(&state, 80, 24);
    assert_shows(
        &screen,
        &[
            "logs · AZ mem-1a",
            "following",
            "ERROR",
            "database unreachable",
        ],
    );
    insta::assert_snapshot!("logs_az_80x24", screen);

    // Up pauses following; Enter shows the selected line's fields.
    update(&mut state, Action::Key(crossterm_key('k')));
    update(
        &mut state,
        Action::Key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Enter,
            crossterm::event::KeyModifiers::NONE,
        )),
    );
    let screen = render(&state, 160, 48);
    assert_shows(&screen, &["paused", "request_id  r-28", "f follow"]);
    insta::assert_snapshot!("logs_az_expanded_160x48", screen);
}

/// Before the first page, while nothing matches, and when reading fails, the view says so.
#[tokio::test]
async fn the_log_view_says_why_it_is_empty() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    update(
        &mut state,
        Action::Key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char('T'),
            crossterm::event::KeyModifiers::SHIFT,
        )),
    );
    assert_shows(
        &render(&state, 80, 24),
        &["instance i-mem00001 (mem-1a)", "reading…"],
    );
    let generation = state.logs.as_ref().map_or(0, |v| v.generation);
    update(
        &mut state,
        Action::LogLines {
            generation,
            lines: Vec::new(),
        },
    );
    assert_shows(
        &render(&state, 80, 24),
        &["no lines from instance i-mem00001"],
    );
    update(
        &mut state,
        Action::LogsFailed {
            generation,
            error: "the sandbox daemon is not running".into(),
        },
    );
    assert_shows(
        &render(&state, 80, 24),
        &["cannot read the logs: the sandbox daemon is not running"],
    );
}

/// The sizes the dashboard is drawn at: the smallest it must read well at, a common one, and a
/// big one it must fill usefully.
const DASHBOARD_SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

/// Five minutes of per-second traffic in every AZ of the state's snapshot, as the sandbox
/// reports it (deterministic shapes, no clock): requests, some 5xx, p99, CPU, and each
/// instance's CPU and request rate. `quiet` AZs have had no request for the last minute.
fn with_traffic(state: &mut State, quiet: &[&str]) {
    use provision::port::{InstanceMetrics, MetricKind, MetricPoint, MetricSeries, Metrics};
    let snapshot = state.snapshot.as_mut().expect("a snapshot");
    let now = snapshot.taken_at;
    let mut series = Vec::new();
    let mut instances = Vec::new();
    for (n, az) in snapshot.azs.iter().enumerate() {
        let mut push = |metric, value: &dyn Fn(i64) -> Option<f64>| {
            let points = (1..300)
                .rev()
                .filter(|ago| !(quiet.contains(&az.az.as_str()) && *ago < 60))
                .filter_map(|ago| {
                    value(ago).map(|value| MetricPoint {
                        at: now - time::Duration::seconds(ago),
                        value,
                    })
                })
                .collect();
            series.push(MetricSeries {
                metric,
                az: Some(az.az.clone()),
                points,
            });
        };
        let base = 4 + n as i64;
        push(MetricKind::Requests, &|ago| {
            Some(((ago * 7 + base) % 9 + base) as f64)
        });
        push(MetricKind::Target5xx, &|ago| {
            Some(if ago % 97 == 0 { 2.0 } else { 0.0 })
        });
        push(MetricKind::LatencyP99, &|ago| {
            Some(20.0 + ((ago * 13) % 17) as f64 + 3.0 * n as f64)
        });
        push(MetricKind::Cpu, &|ago| Some(6.0 + ((ago * 5) % 11) as f64));
        for (i, instance) in az.instances.iter().enumerate() {
            instances.push(InstanceMetrics {
                id: instance.id.clone(),
                cpu_percent: Some(5.0 + (n * 2 + i) as f64),
                requests_per_second: Some(if quiet.contains(&az.az.as_str()) {
                    0.0
                } else {
                    2.5 + i as f64
                }),
            });
        }
    }
    snapshot.metrics = Metrics {
        period_seconds: 1,
        series,
        instances,
    };
}

/// The dashboard with traffic: charts (sparklines at 80×24), last values, per-instance
/// figures.
#[tokio::test]
async fn dashboard_with_traffic() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    with_traffic(&mut state, &[]);
    for (width, height) in DASHBOARD_SIZES {
        let screen = render(&state, width, height);
        assert_shows(&screen, &["req/s", "p99", "CPU"]);
        assert!(!screen.contains("no traffic yet"), "{screen}");
        insta::assert_snapshot!(format!("traffic_{width}x{height}"), screen);
    }
    assert_shows(
        &render(&state, 200, 60),
        &["cpu 5 %", "2.5 req/s", "-5m", "now"],
    );
}

/// A stack nobody has sent a request to yet says so in every chart.
#[tokio::test]
async fn dashboard_no_traffic_yet() {
    let state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    for (width, height) in DASHBOARD_SIZES {
        let screen = render(&state, width, height);
        assert_eq!(
            screen.matches("req/s no traffic yet").count(),
            3,
            "{screen}"
        );
        insta::assert_snapshot!(format!("no_traffic_{width}x{height}"), screen);
    }
}

/// One AZ blackholed under traffic: its header counts no healthy target, its request chart
/// drops to zero for the last minute while the others go on.
#[tokio::test]
async fn dashboard_one_az_down_under_traffic() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    cloud
        .inject(
            &stack,
            &Fault::BlackholeAz {
                az: "mem-1b".into(),
            },
            CapacityCheck::Enforce,
        )
        .await
        .expect("inject");
    cloud.tick(&stack).expect("tick");
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let mut state = State::new(stack, BackendKind::Sandbox, "local sandbox".into(), false);
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    with_traffic(&mut state, &["mem-1b"]);
    for (width, height) in DASHBOARD_SIZES {
        let screen = render(&state, width, height);
        assert_shows(&screen, &["0/2 healthy", "req/s 0/s"]);
        insta::assert_snapshot!(format!("az_down_traffic_{width}x{height}"), screen);
    }
}

/// A refresh in progress under traffic: each column's header carries its part of it.
#[tokio::test]
async fn dashboard_refresh_in_progress_under_traffic() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    cloud
        .deploy(&stack, &DeployRequest::new("v2"))
        .await
        .expect("deploy");
    cloud.tick(&stack).expect("tick");
    let snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let mut state = State::new(stack, BackendKind::Sandbox, "local sandbox".into(), false);
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    with_traffic(&mut state, &[]);
    for (width, height) in DASHBOARD_SIZES {
        let screen = render(&state, width, height);
        assert_eq!(screen.matches("refresh 0/2 on v2").count(), 3, "{screen}");
        insta::assert_snapshot!(format!("refresh_traffic_{width}x{height}"), screen);
    }
}

/// The load dialog, then a running load's view: the live line (rate against target, p50/p99,
/// errors, desired and healthy), capacity per AZ with desired, and the req/s and p99 panels.
#[tokio::test]
async fn load_dialog_and_live_view() {
    use std::collections::BTreeMap;
    use std::time::Duration;
    use triad::drill::probe::FailureKind;
    use triad::load::engine::LoadUpdate;
    use triad::load::generator::{LiveStats, LoadSecond};
    use triad::load::phases::Observation;
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    state.screen = triad::app::Screen::Load;
    let screen = render(&state, 80, 24);
    assert_shows(
        &screen,
        &["rate /s", "ramp to /s", "no ramp: a constant rate"],
    );
    insta::assert_snapshot!("load_dialog_80x24", screen);

    let snapshot = state.snapshot.clone().expect("a snapshot");
    let mut send = |load: LoadUpdate| {
        update(&mut state, Action::Load(load));
    };
    send(LoadUpdate::Started {
        title: "load on demo".into(),
        shape: "60 req/s on /version, for 60 s".into(),
        endpoint: "http://127.0.0.1:8080".into(),
    });
    for second in 0..12u64 {
        send(LoadUpdate::Observed(Observation::of(&snapshot, second)));
        send(LoadUpdate::Second(LoadSecond {
            second,
            target_rate: 60.0,
            sent: 60,
            ok: 58,
            failed: BTreeMap::from([(FailureKind::Status5xx, 2)]),
            p50_ms: Some(3.0),
            p99_ms: Some(10.0 + second as f64),
            ..LoadSecond::default()
        }));
    }
    send(LoadUpdate::Live(LiveStats {
        elapsed: Duration::from_secs(12),
        target_rate: 60.0,
        rate: 60,
        latency: Latency {
            p50_ms: Some(3.0),
            p99_ms: Some(21.0),
            samples: 290,
        },
        sent: 720,
        ok: 696,
        failed: BTreeMap::from([(FailureKind::Status5xx, 24)]),
        in_flight: 2,
        ..LiveStats::default()
    }));
    let screen = render(&state, 120, 40);
    assert_shows(
        &screen,
        &[
            "60 req/s on /version, for 60 s",
            "60 req/s (target 60) · p50 3.0 ms · p99",
            "in flight 2 · failed 24",
            "status5xx",
            "desired",
            "answered req/s (last 58, target 60)",
        ],
    );
    insta::assert_snapshot!("load_running_120x40", screen);
}

/// The header shows the last scaling decision after the capacity, and the dashboard marks the
/// instances a scale-out launched until they are in service.
#[tokio::test]
async fn the_last_scaling_decision_and_the_instances_it_launched() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let cloud = MemoryCloud::new(clock);
    let stack = StackRef::new("demo").expect("name");
    cloud.seed_stack(&stack);
    let mut snapshot = cloud.snapshot(&stack).await.expect("snapshot");
    let launched = snapshot.azs[1].instances[0].id.clone();
    let other = snapshot.azs[0].instances[0].id.clone();
    snapshot.scaling = Some(provision::port::ScalingView {
        policies: Vec::new(),
        decisions: vec![provision::port::ScalingDecision {
            at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(75),
            policy: "requests-per-target".into(),
            direction: provision::port::ScalingDirection::Out,
            from: 3,
            to: 5,
            reason: "requests/target 84 > 60 for 3 periods → desired 3 → 5".into(),
        }],
        launching: vec![launched.clone()],
    });
    let mut state = State::new(stack, BackendKind::Sandbox, "local sandbox".into(), false);
    update(&mut state, Action::Snapshot(Box::new(snapshot)));
    let screen = render(&state, 160, 48);
    let header = screen.lines().next().unwrap_or_default().to_owned();
    assert!(
        header.contains("▲ 00:01:15 requests/target 84 > 60 for 3 periods → desired 3 → 5"),
        "{header}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.contains(&launched) && l.contains(&format!("{launched} v1 scale-out"))),
        "{screen}"
    );
    assert!(
        !screen
            .lines()
            .any(|l| l.contains(&format!("{other} v1 scale-out"))),
        "{screen}"
    );
}
