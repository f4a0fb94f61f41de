//! The interactive console: the terminal, the input thread, the watch, and the effect runner
//! around the pure `app::update`.
//!
//! The loop drains every pending action, applies them, starts their effects, then draws once,
//! at most ~30 frames a second. Snapshots arrive on their own tick (the watch, every 2 s), so
//! drawing never waits for the cloud. `ratatui::init` installs a panic hook that restores the
//! terminal; logs go to a file in the working area, never to the screen.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use crossterm::event::{Event, KeyEventKind};
use futures::StreamExt;
use provision::port::{CapacityCheck, Cloud, CloudStream, ProvisionEvent, StackRef};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::app::{self, Action, Effect, State};
use crate::backend;
use crate::drill::engine::{self, DrillUpdate};
use crate::drill::journal::{self, Journal};
use crate::policy;
use crate::ui;

const FRAME: Duration = Duration::from_millis(33);
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the console until the operator quits. `provisioning` is what the provisioning screen
/// plans and applies.
pub async fn run(
    mut state: State,
    cloud: Option<Arc<dyn Cloud>>,
    provisioning: backend::Provisioning,
    connect_error: Option<String>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    if let Some(error) = connect_error {
        let _ = tx.send(Action::WatchFailed(error));
    }
    spawn_input(tx.clone());
    if let Some(cloud) = &cloud {
        spawn_watch(cloud.clone(), state.stack.clone(), tx.clone());
    }
    let mut runner = Runner {
        cloud,
        provisioning: Arc::new(provisioning),
        stack: state.stack.clone(),
        tx,
        drill_stop: None,
        logs: None,
        load_stop: None,
    };
    let mut terminal = ratatui::init();
    let result = async {
        let mut last_draw = Instant::now() - FRAME;
        loop {
            terminal.draw(|frame| ui::draw(frame, &state))?;
            last_draw = last_draw.max(Instant::now());
            let Some(first) = rx.recv().await else {
                break;
            };
            let mut effects = app::update(&mut state, first);
            while let Ok(action) = rx.try_recv() {
                effects.extend(app::update(&mut state, action));
            }
            for effect in effects {
                runner.start(effect);
            }
            if state.quit {
                break;
            }
            tokio::time::sleep_until(last_draw + FRAME).await;
        }
        anyhow::Ok(())
    }
    .await;
    ratatui::restore();
    result
}

fn spawn_input(tx: mpsc::UnboundedSender<Action>) {
    std::thread::spawn(move || {
        loop {
            match crossterm::event::read() {
                Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    if tx.send(Action::Key(key)).is_err() {
                        return;
                    }
                }
                Ok(Event::Resize(..)) => {
                    if tx.send(Action::Resized).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("reading the terminal: {e}");
                    return;
                }
            }
        }
    });
}

fn spawn_watch(cloud: Arc<dyn Cloud>, stack: StackRef, tx: mpsc::UnboundedSender<Action>) {
    tokio::spawn(forward(
        cloud.watch(&stack, WATCH_INTERVAL),
        |snapshot| Action::Snapshot(Box::new(snapshot)),
        Action::WatchFailed,
        tx,
    ));
}

/// Carries out effects on tokio tasks; each sends its result back as an action.
struct Runner {
    cloud: Option<Arc<dyn Cloud>>,
    provisioning: Arc<backend::Provisioning>,
    stack: StackRef,
    tx: mpsc::UnboundedSender<Action>,
    drill_stop: Option<watch::Sender<bool>>,
    /// The task reading the log view's lines, while the view is open.
    logs: Option<tokio::task::JoinHandle<()>>,
    load_stop: Option<watch::Sender<bool>>,
}

/// How far back the log view reads when it opens.
const LOG_HISTORY: time::Duration = time::Duration::hours(1);

impl Runner {
    fn start(&mut self, effect: Effect) {
        let tx = self.tx.clone();
        let stack = self.stack.clone();
        if let Effect::Copy(text) = &effect {
            copy_osc52(text);
            let _ = tx.send(Action::Copied(text.clone()));
            return;
        }
        if let Effect::StopDrill = &effect {
            if let Some(stop) = &self.drill_stop {
                let _ = stop.send(true);
            }
            return;
        }
        if let Effect::StopLoad = &effect {
            if let Some(stop) = &self.load_stop {
                let _ = stop.send(true);
            }
            return;
        }
        if let Effect::Quit = &effect {
            return;
        }
        if let Effect::StopLogs = &effect {
            if let Some(task) = self.logs.take() {
                task.abort();
            }
            return;
        }
        let Some(cloud) = self.cloud.clone() else {
            let _ = tx.send(Action::Failed {
                what: "that".into(),
                error: "no backend is connected".into(),
            });
            return;
        };
        match effect {
            Effect::Deploy(request) => {
                tokio::spawn(async move {
                    let action = match cloud.deploy(&stack, &request).await {
                        Ok(id) => Action::DeployStarted(id),
                        Err(e) => failed("deploy", e),
                    };
                    let _ = tx.send(action);
                });
            }
            Effect::CancelRefresh => {
                tokio::spawn(async move {
                    let action = match cloud.cancel_refresh(&stack).await {
                        Ok(id) => Action::RefreshCancelled(id),
                        Err(e) => failed("cancel", e),
                    };
                    let _ = tx.send(action);
                });
            }
            Effect::RollbackRefresh => {
                tokio::spawn(async move {
                    let action = match cloud.rollback_refresh(&stack).await {
                        Ok(id) => Action::RollbackStarted(id),
                        Err(e) => failed("rollback", e),
                    };
                    let _ = tx.send(action);
                });
            }
            Effect::DescribeFault(fault) => {
                tokio::spawn(async move {
                    let action = match cloud.describe_fault(&stack, &fault).await {
                        Ok(plan) => Action::FaultDescribed(Box::new(plan)),
                        Err(e) => failed("dry run", e),
                    };
                    let _ = tx.send(action);
                });
            }
            Effect::Plan => {
                let provisioning = self.provisioning.clone();
                tokio::spawn(async move {
                    let action = match provisioning.plan(cloud.as_ref()).await {
                        Ok(plan) => Action::Planned(Box::new(plan)),
                        Err(e) => Action::ProvisionFailed(e.to_string()),
                    };
                    let _ = tx.send(action);
                });
            }
            Effect::Apply(plan) => {
                let provisioning = self.provisioning.clone();
                tokio::spawn(async move {
                    let notes = tx.clone();
                    let prepared = provisioning
                        .prepare(cloud.as_ref(), *plan, |line| {
                            let _ = notes.send(Action::ProvisionNote(line));
                        })
                        .await;
                    match prepared {
                        Ok(plan) => forward_provisioning(cloud.apply(&plan), tx).await,
                        Err(e) => {
                            let _ = tx.send(Action::ProvisionFailed(e.to_string()));
                        }
                    }
                });
            }
            Effect::Destroy => {
                tokio::spawn(forward_provisioning(cloud.destroy(&stack), tx));
            }
            Effect::StartDrill(config) => {
                let (stop_tx, stop_rx) = watch::channel(false);
                self.drill_stop = Some(stop_tx);
                tokio::spawn(async move {
                    let mut config = *config;
                    config.report_dir = Some(policy::report_dir(
                        &stack,
                        None,
                        time::OffsetDateTime::now_utc(),
                    ));
                    let mut journal = match Journal::open(&backend::journal_path(&stack)) {
                        Ok(j) => j,
                        Err(e) => {
                            let _ = tx.send(Action::Drill(DrillUpdate::Failed(format!(
                                "cannot open the journal: {e}"
                            ))));
                            return;
                        }
                    };
                    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel();
                    let forward_tx = tx.clone();
                    let forward = tokio::spawn(async move {
                        while let Some(update) = updates_rx.recv().await {
                            let _ = forward_tx.send(Action::Drill(update));
                        }
                    });
                    let result =
                        engine::run(cloud, stack, config, &mut journal, updates_tx, stop_rx).await;
                    let _ = forward.await;
                    if let Err(e) = result {
                        let _ = tx.send(Action::Drill(DrillUpdate::Failed(e.to_string())));
                    }
                });
            }
            Effect::Instance { id, action } => {
                tokio::spawn(async move {
                    let cloud = cloud.as_ref();
                    let journal = backend::journal_path(&stack);
                    let result = match cloud.describe_instance_action(&stack, &id, action).await {
                        Ok(plan) => journal::act_on_instance(
                            cloud,
                            &stack,
                            &journal,
                            &plan,
                            CapacityCheck::Enforce,
                        )
                        .await
                        .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(match result {
                        Ok(plan) => Action::InstanceActed(Box::new(plan)),
                        Err(error) => Action::Failed {
                            what: format!("instance {action}"),
                            error,
                        },
                    });
                });
            }
            Effect::StartShift { request, plan } => {
                tokio::spawn(async move {
                    let journal = backend::journal_path(&stack);
                    let result = journal::start_shift(
                        cloud.as_ref(),
                        &stack,
                        &journal,
                        &request,
                        plan,
                        CapacityCheck::Enforce,
                    )
                    .await;
                    let _ = tx.send(match result {
                        Ok(shift) => Action::ShiftStarted(Box::new(shift)),
                        Err(error) => Action::Failed {
                            what: format!("zonal shift away from {}", request.az),
                            error: error.to_string(),
                        },
                    });
                });
            }
            Effect::CancelShift(az) => {
                tokio::spawn(async move {
                    let journal = backend::journal_path(&stack);
                    let result =
                        journal::cancel_shift(cloud.as_ref(), &stack, &journal, Some(&az)).await;
                    let _ = tx.send(match result {
                        Ok(cancelled) => Action::ShiftCancelled(cancelled),
                        Err(error) => Action::Failed {
                            what: format!("cancelling the zonal shift away from {az}"),
                            error: error.to_string(),
                        },
                    });
                });
            }
            Effect::StartLogs(request) => {
                if let Some(task) = self.logs.take() {
                    task.abort();
                }
                self.logs = Some(tokio::spawn(async move {
                    let generation = request.generation;
                    let mut query = request.query;
                    query.since = Some(time::OffsetDateTime::now_utc() - LOG_HISTORY);
                    let pages = tx.clone();
                    let retries = tx.clone();
                    let reading = crate::logs::follow(
                        cloud.as_ref(),
                        &stack,
                        query,
                        |lines| {
                            let sent = pages.send(Action::LogLines { generation, lines });
                            if sent.is_ok() {
                                crate::logs::Next::More
                            } else {
                                crate::logs::Next::Stop
                            }
                        },
                        |e| {
                            let _ = retries.send(Action::LogsFailed {
                                generation,
                                error: format!("{e} (retrying)"),
                            });
                            crate::logs::Next::More
                        },
                    )
                    .await;
                    if let Err(e) = reading {
                        let _ = tx.send(Action::LogsFailed {
                            generation,
                            error: e.to_string(),
                        });
                    }
                }));
            }
            Effect::StartLoad(plan) => {
                let (stop_tx, stop_rx) = watch::channel(false);
                self.load_stop = Some(stop_tx);
                let plan = crate::screen::load::console_plan(*plan, &stack);
                tokio::spawn(async move {
                    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel();
                    let forward_tx = tx.clone();
                    let forward = tokio::spawn(async move {
                        while let Some(update) = updates_rx.recv().await {
                            let _ = forward_tx.send(Action::Load(update));
                        }
                    });
                    // The engine reports its own failure as an update.
                    let _ = crate::load::engine::run(cloud, stack, plan, updates_tx, stop_rx).await;
                    let _ = forward.await;
                });
            }
            Effect::Copy(_)
            | Effect::StopDrill
            | Effect::StopLogs
            | Effect::StopLoad
            | Effect::Quit => {}
        }
    }
}

/// Forwards a cloud stream's items to the console as actions (`ok` for an item, `failed` with
/// the error's text) until the stream ends or the console is gone.
async fn forward<T>(
    mut items: CloudStream<T>,
    ok: impl Fn(T) -> Action,
    failed: impl Fn(String) -> Action,
    tx: mpsc::UnboundedSender<Action>,
) {
    while let Some(item) = items.next().await {
        let action = match item {
            Ok(item) => ok(item),
            Err(e) => failed(e.to_string()),
        };
        if tx.send(action).is_err() {
            return;
        }
    }
}

/// Forwards a provisioning stream's events to the console until it ends.
async fn forward_provisioning(
    events: CloudStream<ProvisionEvent>,
    tx: mpsc::UnboundedSender<Action>,
) {
    forward(
        events,
        |event| Action::Provision(Box::new(event)),
        Action::ProvisionFailed,
        tx,
    )
    .await;
}

fn failed(what: &str, error: provision::port::CloudError) -> Action {
    Action::Failed {
        what: what.into(),
        error: error.to_string(),
    }
}

/// Puts `text` on the clipboard of the terminal the operator sits at, also over SSH.
fn copy_osc52(text: &str) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{encoded}\x07");
    let _ = out.flush();
}
