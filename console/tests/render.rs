//! Render snapshots: the console drawn into ratatui's `TestBackend` from states built on the
//! in-memory cloud (an injected clock at the Unix epoch, deterministic ids), at 80×24 and at a
//! wide 160×48. Nothing volatile is drawn from these states, so no masking is needed.

use std::sync::Arc;

use provision::memory::MemoryCloud;
use provision::port::{
    BackendKind, CapacityCheck, Cloud, DeployRequest, Fault, ManualClock, StackRef, TargetState,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use triad::app::{Action, DrillView, State, update};
use triad::drill::report::{CapacitySample, StepRecord};

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
    insta::assert_snapshot!("refresh_80x24", screen);
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
    DrillView {
        title: "terminate-az mem-1a".into(),
        phase: if finished { "report" } else { "inject" }.into(),
        steps,
        capacity,
        running: !finished,
        ..DrillView::default()
    }
}

#[tokio::test]
async fn drill_running_and_report() {
    let mut state = stack_state(BackendKind::Sandbox, false, |_, _| {}).await;
    state.screen = triad::app::Screen::GameDay;
    state.drill = Some(drill_view(false));
    insta::assert_snapshot!("drill_running_80x24", render(&state, 80, 24));
    state.drill = Some(drill_view(true));
    insta::assert_snapshot!("drill_report_160x48", render(&state, 160, 48));
}

#[tokio::test]
async fn read_only_help_hides_changes() {
    let mut state = stack_state(BackendKind::Sandbox, true, |_, _| {}).await;
    state.screen = triad::app::Screen::Help;
    let screen = render(&state, 80, 24);
    assert!(!screen.contains("deploy a version"), "{screen}");
    insta::assert_snapshot!("help_read_only_80x24", screen);
}
