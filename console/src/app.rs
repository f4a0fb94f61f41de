//! The console's state and its one pure `update` function.
//!
//! Everything the console does goes through here: a key press, a snapshot from the watch, an
//! answer from the cloud, a drill update — each is an [`Action`]; [`update`] changes the
//! [`State`] and returns the [`Effect`]s to run (cloud calls, the drill, the clipboard). The
//! effect runner (`run.rs`) carries them out on tokio tasks and sends their results back as
//! actions. Nothing here performs I/O, so the whole key → action → effect table is tested
//! without a terminal.
//!
//! Safety lives here too: every destructive action (fault, failover, cancel, rollback, deploy,
//! zonal shift)
//! opens a [`Confirm`] dialog whose default is *cancel*; on AWS the operator must type the AZ
//! (or stack) name; in a read-only session the action is refused before any dialog opens.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent};
use provision::port::{
    BackendKind, DeployRequest, Event, Fault, FaultPlan, InstanceAction, InstancePlan,
    LifecycleState, LogLine, Plan, ProvisionEvent, RefreshId, ShiftRequest, Snapshot, StackRef,
    ZonalShift, shift,
};

use crate::drill::engine::{DrillConfig, DrillUpdate};
use crate::keys::{self, Act, Binding, Context};
use crate::load::engine::{LoadPlan, LoadUpdate};
use crate::policy;
use crate::screen::command::run_command;
use crate::screen::dashboard::{ask_cancel, ask_rollback};
use crate::screen::deploy::{self, open_deploy};
use crate::screen::gameday::{self, ask_failover, on_drill, open_gameday, stop_drill};
use crate::screen::help;
use crate::screen::load;
use crate::screen::logs;
use crate::screen::provision::{
    ask_apply, ask_destroy, on_planned, on_provision_event, open_provision,
};

pub use crate::keys::{command_matches, commands, complete};
pub use crate::screen::deploy::DeployForm;
pub use crate::screen::events::{EVENT_LOG, source_label};
pub use crate::screen::gameday::{DrillView, GamedayForm};
pub use crate::screen::load::{LoadForm, LoadView};
pub use crate::screen::logs::{LogRequest, LogScope, LogView};
pub use crate::screen::provision::{ProvisionPhase, ProvisionView};

/// The screens, reachable by key or by `:name` in command mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Dashboard,
    Instances,
    Events,
    Deploy,
    GameDay,
    Load,
    Provision,
    Help,
    /// The webapp's log lines (see `screen::logs`).
    Logs,
}

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Dashboard => "dashboard",
            Screen::Instances => "instances",
            Screen::Events => "events",
            Screen::Deploy => "deploy",
            Screen::GameDay => "gameday",
            Screen::Load => "load",
            Screen::Provision => "provision",
            Screen::Help => "help",
            Screen::Logs => "logs",
        }
    }
}

/// What the console asks the effect runner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Deploy(Box<DeployRequest>),
    CancelRefresh,
    RollbackRefresh,
    /// The dry run of a fault, before asking for confirmation.
    DescribeFault(Fault),
    StartDrill(Box<DrillConfig>),
    /// Plan the stack spec against the stack (changes nothing).
    Plan,
    /// Carry a plan out, following its progress.
    Apply(Box<Plan>),
    /// Delete the stack, following its progress.
    Destroy,
    /// Stop the running drill early: it restores and writes its report.
    StopDrill,
    /// Start a load (its report directory and listing are the runner's).
    StartLoad(Box<LoadPlan>),
    /// Stop the running load early: it writes its report.
    StopLoad,
    /// Act on one instance (journaled before it happens).
    Instance {
        id: String,
        action: InstanceAction,
    },
    /// Start a zonal shift (journaled before it happens); the lines are its confirmed dry run.
    StartShift {
        request: ShiftRequest,
        plan: Vec<String>,
    },
    /// Cancel the zonal shift away from this AZ (journaled before it happens).
    CancelShift(String),
    /// Read the webapp's log lines for the log view, newest first, then follow them (this
    /// replaces any reading under way).
    StartLogs(Box<LogRequest>),
    /// Stop reading log lines (the log view was left).
    StopLogs,
    /// Put text on the clipboard (OSC 52, works over SSH).
    Copy(String),
    Quit,
}

/// Everything that can happen to the console.
#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    /// The terminal changed size: only a redraw.
    Resized,
    Snapshot(Box<Snapshot>),
    WatchFailed(String),
    DeployStarted(RefreshId),
    RefreshCancelled(RefreshId),
    RollbackStarted(RefreshId),
    FaultDescribed(Box<FaultPlan>),
    /// An action on one instance was carried out.
    InstanceActed(Box<InstancePlan>),
    /// A zonal shift started.
    ShiftStarted(Box<ZonalShift>),
    /// Zonal shifts were cancelled.
    ShiftCancelled(Vec<ZonalShift>),
    Drill(DrillUpdate),
    Load(LoadUpdate),
    Planned(Box<Plan>),
    /// One event of an apply or destroy.
    Provision(Box<ProvisionEvent>),
    /// Planning, applying or destroying could not go on.
    ProvisionFailed(String),
    /// A step done before the stack's own changes (on AWS: the bootstrap stack's progress, a
    /// release uploaded).
    ProvisionNote(String),
    /// A cloud call failed; `what` says which.
    Failed {
        what: String,
        error: String,
    },
    Copied(String),
    /// Log lines read for the log view's reading `generation`, oldest first.
    LogLines {
        generation: u64,
        lines: Vec<LogLine>,
    },
    /// Reading log lines failed (the runner retries what can be retried).
    LogsFailed {
        generation: u64,
        error: String,
    },
}

/// A pending confirmation. Enter with the wrong (or empty) text cancels: cancel is the default.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub title: String,
    pub lines: Vec<String>,
    /// What must be typed to go ahead.
    pub expected: String,
    pub input: String,
    pub effect: Effect,
}

/// The input mode on top of the current screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Command(String),
    Filter(String),
    Confirm(Box<Confirm>),
}

/// A line in the console's own log (the events pane mixes these with the cloud's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The whole console state.
#[derive(Debug, Clone)]
pub struct State {
    pub stack: StackRef,
    pub backend: BackendKind,
    /// "profile prod · eu-west-1", or the sandbox's working directory.
    pub origin: String,
    pub read_only: bool,
    pub snapshot: Option<Box<Snapshot>>,
    pub watch_error: Option<String>,
    pub screen: Screen,
    pub previous: Vec<Screen>,
    pub mode: Mode,
    /// The filter (`/`), applied to instance lists and to the events log.
    pub filter: String,
    /// The focused AZ column.
    pub az: usize,
    /// The selected row in the focused list.
    pub row: usize,
    pub deploy: DeployForm,
    pub gameday: GamedayForm,
    pub drill: Option<DrillView>,
    pub load_form: LoadForm,
    pub load: Option<LoadView>,
    pub provision: Option<ProvisionView>,
    /// The log view, while it is open or was last open.
    pub logs: Option<LogView>,
    /// The last log reading started (each gets a new number).
    pub log_generation: u64,
    pub notices: VecDeque<Notice>,
    /// Every event the watch has seen, newest first: a snapshot carries only the cloud's
    /// recent ones (100 in the sandbox, 20 scaling activities on AWS).
    pub events: VecDeque<Event>,
    /// The stack spec tags the stack as production (see `StackSpec::is_tagged_production`).
    pub tagged_production: bool,
    /// The spec's WAF rate rule (requests per five minutes per IP), for the load's warning.
    pub waf_rate_limit: Option<u32>,
    pub quit: bool,
}

pub(crate) const MAX_NOTICES: usize = 200;

impl State {
    pub fn new(stack: StackRef, backend: BackendKind, origin: String, read_only: bool) -> Self {
        State {
            stack,
            backend,
            origin,
            read_only,
            snapshot: None,
            watch_error: None,
            screen: Screen::Dashboard,
            previous: Vec::new(),
            mode: Mode::Normal,
            filter: String::new(),
            az: 0,
            row: 0,
            deploy: DeployForm::default(),
            gameday: GamedayForm::default(),
            drill: None,
            load_form: LoadForm::default(),
            load: None,
            provision: None,
            logs: None,
            log_generation: 0,
            notices: VecDeque::new(),
            events: VecDeque::new(),
            tagged_production: false,
            waf_rate_limit: None,
            quit: false,
        }
    }

    /// Whether this session can hurt production: the AWS backend, or a stack tagged so.
    pub fn is_production(&self) -> bool {
        policy::is_production(self.backend, self.tagged_production)
    }

    /// The versions in-service instances run, with how many run each ("1.0.0 ×3"), or
    /// "unknown" before the first snapshot.
    pub fn running_versions(&self) -> String {
        let Some(snapshot) = &self.snapshot else {
            return "unknown".into();
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for instance in snapshot.azs.iter().flat_map(|az| &az.instances) {
            if instance.lifecycle == LifecycleState::InService {
                *counts
                    .entry(instance.version.as_deref().unwrap_or("?"))
                    .or_default() += 1;
            }
        }
        if counts.is_empty() {
            return "no instance in service".into();
        }
        counts
            .iter()
            .map(|(version, n)| format!("{version} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn az_names(&self) -> Vec<String> {
        self.snapshot
            .as_ref()
            .map(|s| s.azs.iter().map(|a| a.az.clone()).collect())
            .unwrap_or_default()
    }

    pub fn focused_az(&self) -> Option<String> {
        let names = self.az_names();
        names
            .get(self.az.min(names.len().saturating_sub(1)))
            .cloned()
    }

    /// The instance ids shown in the focused list, filtered.
    pub fn listed_instances(&self) -> Vec<String> {
        let Some(snapshot) = &self.snapshot else {
            return Vec::new();
        };
        let focus = self.focused_az();
        snapshot
            .azs
            .iter()
            .filter(|a| self.screen != Screen::Dashboard || Some(&a.az) == focus.as_ref())
            .flat_map(|a| a.instances.iter())
            .filter(|i| self.matches_filter(&i.id, i.version.as_deref()))
            .map(|i| i.id.clone())
            .collect()
    }

    pub fn matches_filter(&self, id: &str, version: Option<&str>) -> bool {
        let filter = self.current_filter();
        filter.is_empty() || id.contains(filter) || version.is_some_and(|v| v.contains(filter))
    }

    /// The filter as typed so far while `/` is open, else the one in force.
    pub fn current_filter(&self) -> &str {
        match &self.mode {
            Mode::Filter(f) => f.as_str(),
            _ => self.filter.as_str(),
        }
    }

    pub(crate) fn notice(&mut self, level: Level, text: impl Into<String>) {
        self.notices.push_front(Notice {
            level,
            text: text.into(),
        });
        self.notices.truncate(MAX_NOTICES);
    }

    pub(crate) fn go(&mut self, screen: Screen) {
        if self.screen != screen {
            self.previous.push(self.screen);
            self.screen = screen;
            self.row = 0;
        }
    }

    pub(crate) fn back(&mut self) {
        self.screen = self.previous.pop().unwrap_or(Screen::Dashboard);
        self.row = 0;
    }

    /// What must be typed to confirm a destructive action touching `az` (or the stack).
    pub(crate) fn confirmation_word(&self, az: Option<&str>) -> String {
        policy::confirmation_word(self.is_production(), &self.stack, az)
    }

    pub(crate) fn ask(
        &mut self,
        title: String,
        lines: Vec<String>,
        az: Option<&str>,
        effect: Effect,
    ) {
        let expected = self.confirmation_word(az);
        self.ask_for(title, lines, expected, effect);
    }

    /// Opens a confirmation that goes ahead only when `expected` is typed.
    pub(crate) fn ask_for(
        &mut self,
        title: String,
        lines: Vec<String>,
        expected: String,
        effect: Effect,
    ) {
        self.mode = Mode::Confirm(Box::new(Confirm {
            title,
            lines,
            expected,
            input: String::new(),
            effect,
        }));
    }
}

/// Applies one action; returns what to do about it.
pub fn update(state: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Key(key) => on_key(state, key),
        Action::Resized => Vec::new(),
        Action::Snapshot(snapshot) => {
            state.watch_error = None;
            let names: Vec<&str> = snapshot.azs.iter().map(|a| a.az.as_str()).collect();
            state.az = state.az.min(names.len().saturating_sub(1));
            state.log_events(&snapshot.events);
            state.snapshot = Some(snapshot);
            Vec::new()
        }
        Action::WatchFailed(error) => {
            state.watch_error = Some(error);
            Vec::new()
        }
        Action::DeployStarted(id) => {
            state.notice(Level::Info, format!("instance refresh {id} started"));
            state.screen = Screen::Dashboard;
            Vec::new()
        }
        Action::InstanceActed(plan) => {
            state.notice(
                Level::Info,
                format!("instance {}: {} done", plan.instance_id, plan.action),
            );
            Vec::new()
        }
        Action::ShiftStarted(shift) => {
            state.notice(Level::Info, format!("zonal shift {shift}"));
            Vec::new()
        }
        Action::ShiftCancelled(shifts) => {
            for shift in shifts {
                state.notice(
                    Level::Info,
                    format!("zonal shift away from {} cancelled", shift.az),
                );
            }
            Vec::new()
        }
        Action::RefreshCancelled(id) => {
            state.notice(Level::Info, format!("cancel requested for refresh {id}"));
            Vec::new()
        }
        Action::RollbackStarted(id) => {
            state.notice(Level::Info, format!("rollback started for refresh {id}"));
            Vec::new()
        }
        Action::FaultDescribed(plan) => {
            let mut lines: Vec<String> = plan.actions.iter().map(ToString::to_string).collect();
            lines.extend(plan.notes.iter().cloned());
            match state.gameday.config(&state.az_names()) {
                Ok(config) => {
                    lines.push(config.summary());
                    let title = format!(
                        "GameDay: {} in {} for {} s",
                        plan.fault.kind(),
                        plan.az.as_deref().unwrap_or("the primary's AZ"),
                        config.duration.as_secs()
                    );
                    let az = plan.az.clone();
                    state.ask(
                        title,
                        lines,
                        az.as_deref(),
                        Effect::StartDrill(Box::new(config)),
                    );
                }
                Err(e) => state.notice(Level::Error, e),
            }
            Vec::new()
        }
        Action::Drill(update) => {
            on_drill(state, update);
            Vec::new()
        }
        Action::Load(update) => {
            load::on_load(state, update);
            Vec::new()
        }
        Action::Planned(plan) => {
            on_planned(state, plan);
            Vec::new()
        }
        Action::Provision(event) => {
            on_provision_event(state, *event);
            Vec::new()
        }
        Action::ProvisionNote(line) => {
            if let Some(view) = &mut state.provision {
                if view.phase == ProvisionPhase::Planned {
                    view.phase = ProvisionPhase::Preparing;
                }
                view.notes.push(line);
            }
            Vec::new()
        }
        Action::ProvisionFailed(error) => {
            let view = state
                .provision
                .get_or_insert_with(|| ProvisionView::new(ProvisionPhase::Failed));
            view.phase = ProvisionPhase::Failed;
            view.error = Some(error.clone());
            state.notice(Level::Error, format!("provisioning failed: {error}"));
            Vec::new()
        }
        Action::Failed { what, error } => {
            state.notice(Level::Error, format!("{what} failed: {error}"));
            Vec::new()
        }
        Action::Copied(text) => {
            state.notice(Level::Info, format!("copied {text}"));
            Vec::new()
        }
        Action::LogLines { generation, lines } => {
            logs::on_lines(state, generation, lines);
            Vec::new()
        }
        Action::LogsFailed { generation, error } => {
            logs::on_failed(state, generation, error);
            Vec::new()
        }
    }
}

/// A key: the binding the key table gives it where the operator is, if any.
fn on_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    match keys::lookup(Context::of(state), &key) {
        Some(binding) => perform(state, binding, Some(&key)),
        None => Vec::new(),
    }
}

/// Carries out a binding of the key table, from its key or from command mode. A binding that
/// changes the stack is refused here, in a read-only session, whichever way it came.
pub(crate) fn perform(state: &mut State, binding: &Binding, key: Option<&KeyEvent>) -> Vec<Effect> {
    if !keys::offered(binding, state.read_only) {
        let what = binding.command.unwrap_or(binding.help);
        state.notice(Level::Warn, format!("read-only session: {what} refused"));
        return Vec::new();
    }
    let typed = key.and_then(|k| match k.code {
        KeyCode::Char(c) => Some(c),
        _ => None,
    });
    let context = Context::of(state);
    if context == Context::Logs {
        match binding.act {
            Act::RowDown | Act::RowUp | Act::Follow | Act::Expand | Act::LogLevel => {
                return logs::on_key(state, binding.act);
            }
            Act::Back | Act::Leave => return logs::back(state),
            Act::Copy => return logs::copy(state),
            Act::FilterMode => {
                let text = state.logs.as_ref().map(|v| v.text.clone());
                state.mode = Mode::Filter(text.unwrap_or_default());
                return Vec::new();
            }
            _ => {}
        }
    }
    if context == Context::Filter && state.screen == Screen::Logs {
        match binding.act {
            Act::SetFilter => {
                if let Mode::Filter(input) = std::mem::replace(&mut state.mode, Mode::Normal) {
                    return logs::set_filter(state, input);
                }
            }
            Act::ClearFilter => {
                state.mode = Mode::Normal;
                return logs::set_filter(state, String::new());
            }
            _ => {}
        }
    }
    match binding.act {
        Act::Quit => {
            state.quit = true;
            return vec![Effect::Quit];
        }
        Act::Help => state.go(Screen::Help),
        Act::CommandMode => state.mode = Mode::Command(String::new()),
        Act::FilterMode => state.mode = Mode::Filter(state.filter.clone()),
        Act::Back if !state.filter.is_empty() => state.filter.clear(),
        Act::Back | Act::Leave => state.back(),
        Act::RowDown => move_row(state, true),
        Act::RowUp => move_row(state, false),
        Act::NextAz | Act::PreviousAz => {
            let n = state.az_names().len().max(1);
            let step = if binding.act == Act::NextAz { 1 } else { n - 1 };
            state.az = (state.az + step) % n;
            state.row = 0;
        }
        Act::Dashboard => state.go(Screen::Dashboard),
        Act::Instances => state.go(Screen::Instances),
        Act::Events => state.go(Screen::Events),
        Act::Deploy => return open_deploy(state),
        Act::GameDay => return open_gameday(state),
        Act::Plan => return open_provision(state),
        Act::Apply => return ask_apply(state),
        Act::Destroy => return ask_destroy(state),
        Act::Failover => return ask_failover(state),
        Act::CancelRefresh => return ask_cancel(state),
        Act::Rollback => return ask_rollback(state),
        Act::StopDrill => return stop_drill(state),
        Act::Load => return load::open_load(state),
        Act::StopLoad => return load::stop_load(state),
        Act::TerminateInstance => {
            return ask_instance(state, InstanceAction::Terminate { decrement: false });
        }
        Act::UnhealthyInstance => return ask_instance(state, InstanceAction::Unhealthy),
        Act::StandbyInstance => {
            return ask_instance(state, InstanceAction::Standby { decrement: false });
        }
        Act::ResumeInstance => return ask_instance(state, InstanceAction::Resume),
        Act::ZonalShift => return ask_shift(state),
        Act::Copy => return copy_selected(state),
        Act::AzLogs | Act::InstanceLogs | Act::LogsAll => {
            return match logs::scope_here(state, binding.act) {
                Some(scope) => logs::open_logs(state, scope),
                None => {
                    state.notice(Level::Info, "no instance selected");
                    Vec::new()
                }
            };
        }
        // The log view's own keys (handled above, where the log view is).
        Act::Follow | Act::Expand | Act::LogLevel => {}
        // A form's keys: the dialog on screen takes them; elsewhere typing edits the line.
        Act::NextField
        | Act::PreviousField
        | Act::ChooseNext
        | Act::ChoosePrevious
        | Act::Submit
        | Act::Type
        | Act::Erase => match context {
            Context::Deploy => return deploy::on_form(state, binding.act, typed),
            Context::GameDay => return gameday::on_form(state, binding.act, typed),
            Context::LoadForm => return load::on_form(state, binding.act, typed),
            _ if matches!(binding.act, Act::Type | Act::Erase) => {
                edit_line(state, binding.act == Act::Erase, typed)
            }
            _ => {}
        },
        Act::Complete => {
            if let Mode::Command(input) = &mut state.mode {
                *input = keys::complete(input, state.read_only);
            }
        }
        Act::Run => {
            if let Mode::Command(input) = std::mem::replace(&mut state.mode, Mode::Normal) {
                let command = keys::complete(input.trim(), state.read_only);
                return run_command(state, &command);
            }
        }
        Act::SetFilter => {
            if let Mode::Filter(input) = std::mem::replace(&mut state.mode, Mode::Normal) {
                state.filter = input;
            }
            state.row = 0;
        }
        Act::ClearFilter => {
            state.mode = Mode::Normal;
            state.filter.clear();
            state.row = 0;
        }
        Act::Confirm | Act::Cancel => {
            if let Mode::Confirm(confirm) = std::mem::replace(&mut state.mode, Mode::Normal) {
                // Cancel is the default: anything but the word asked for cancels.
                if binding.act == Act::Confirm && confirm.input == confirm.expected {
                    return vec![confirm.effect];
                }
                state.notice(Level::Info, format!("{}: cancelled", confirm.title));
            }
        }
    }
    Vec::new()
}

/// Types into (or erases from) the line being edited: the command, the filter or the word a
/// confirmation asks for.
fn edit_line(state: &mut State, erase: bool, typed: Option<char>) {
    let line = match &mut state.mode {
        Mode::Command(input) | Mode::Filter(input) => input,
        Mode::Confirm(confirm) => &mut confirm.input,
        Mode::Normal => return,
    };
    match (erase, typed) {
        (true, _) => {
            line.pop();
        }
        (false, Some(c)) => line.push(c),
        (false, None) => {}
    }
    if matches!(state.mode, Mode::Filter(_)) {
        state.row = 0;
    }
}

fn move_row(state: &mut State, down: bool) {
    let len = match state.screen {
        Screen::Events => state.listed_events().count(),
        Screen::Help => help::line_count(state),
        _ => state.listed_instances().len(),
    };
    if down {
        if state.row + 1 < len {
            state.row += 1;
        }
    } else {
        state.row = state.row.saturating_sub(1);
    }
}

/// Asks to carry `action` out on the selected instance: what the group does afterwards, that
/// `gameday restore` does not undo it, and (on AWS and production stacks) the instance id to
/// type. Keeping desired capacity is the console's choice; `triad instance --decrement`
/// lowers it.
fn ask_instance(state: &mut State, action: InstanceAction) -> Vec<Effect> {
    let Some(id) = state.listed_instances().get(state.row).cloned() else {
        state.notice(Level::Info, "no instance selected");
        return Vec::new();
    };
    let expected = policy::instance_word(state.is_production(), &id);
    state.ask_for(
        format!("{} instance {id}?", capitalized(action.verb())),
        vec![
            format!("{}.", action.effect()),
            format!("This is not a fault: `gameday restore` does not undo it."),
        ],
        expected,
        Effect::Instance { id, action },
    );
    Vec::new()
}

/// How long a shift started from the console lasts (`triad shift --for` chooses others).
pub const CONSOLE_SHIFT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Asks to shift traffic away from the focused AZ for [`CONSOLE_SHIFT`], showing the dry run
/// (the other AZs' healthy capacity against the request rate); on an AZ already shifted away
/// from, asks to cancel that shift. The AZ is typed on AWS and production stacks.
fn ask_shift(state: &mut State) -> Vec<Effect> {
    let (Some(snapshot), Some(az)) = (state.snapshot.clone(), state.focused_az()) else {
        state.notice(Level::Info, "no AZ to shift away from yet");
        return Vec::new();
    };
    if let Some(active) = snapshot.shift_away_from(&az) {
        let lines = vec![
            format!("The zonal shift {active} ends now."),
            format!(
                "The load balancer sends new requests to {az} again, and the group may launch there."
            ),
        ];
        state.ask(
            format!("Cancel the zonal shift away from {az}?"),
            lines,
            Some(&az),
            Effect::CancelShift(az.clone()),
        );
        return Vec::new();
    }
    let request = match ShiftRequest::new(az.clone(), CONSOLE_SHIFT, "triad console") {
        Ok(request) => request,
        Err(e) => {
            state.notice(Level::Error, e.to_string());
            return Vec::new();
        }
    };
    let plan = shift::plan_shift(&snapshot, &request).lines();
    state.ask(
        format!("Zonal shift away from {az} for 30 min?"),
        plan.clone(),
        Some(&az),
        Effect::StartShift { request, plan },
    );
    Vec::new()
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The selected event as a line of text (for an incident's notes), or instance id.
fn copy_selected(state: &mut State) -> Vec<Effect> {
    let text = if state.screen == Screen::Events {
        state.listed_events().nth(state.row).map(|e| {
            format!(
                "{} {} {}",
                e.at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                source_label(e.source),
                e.message
            )
        })
    } else {
        state.listed_instances().get(state.row).cloned()
    };
    text.map(Effect::Copy).into_iter().collect()
}

/// What the console's unit tests share: states, keys, snapshots and plans.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crossterm::event::{KeyEventKind, KeyEventState, KeyModifiers};

    pub(crate) fn key(code: KeyCode) -> Action {
        Action::Key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    pub(crate) fn chars(state: &mut State, text: &str) -> Vec<Effect> {
        text.chars()
            .flat_map(|c| update(state, key(KeyCode::Char(c))))
            .collect()
    }

    pub(crate) fn state(backend: BackendKind, read_only: bool) -> State {
        let stack = StackRef::new("demo").expect("stack name");
        State::new(stack, backend, "here".into(), read_only)
    }

    /// A snapshot of `stack` with one in-service instance per version given (and one pending
    /// that must not count).
    pub(crate) fn with_versions(s: &mut State, versions: &[&str]) {
        let mut snapshot = Snapshot::empty(s.stack.clone(), time::OffsetDateTime::UNIX_EPOCH);
        let mut az = provision::port::AzView::new("eu-west-1a");
        let instance = |i: usize, version: &str, lifecycle| provision::port::Instance {
            id: format!("i-{i}"),
            lifecycle,
            health: provision::port::HealthStatus::Healthy,
            version: Some(version.into()),
            launch_template_version: None,
            launch_time: None,
            address: None,
            protected_from_scale_in: false,
        };
        for (i, version) in versions.iter().enumerate() {
            az.instances
                .push(instance(i, version, LifecycleState::InService));
        }
        az.instances
            .push(instance(99, "9.9.9", LifecycleState::Pending));
        snapshot.azs.push(az);
        s.snapshot = Some(Box::new(snapshot));
    }

    pub(crate) fn plan(stack: &StackRef, changes: usize) -> Plan {
        let desired = provision::port::DesiredStack {
            stack: stack.clone(),
            template_body: "{}".into(),
            parameters: Default::default(),
            tags: Default::default(),
            spec: serde_json::Value::Null,
        };
        Plan {
            desired,
            creates_stack: changes > 0,
            change_set: None,
            changes: (0..changes)
                .map(|i| provision::port::ResourceChange {
                    logical_id: format!("Resource{i}"),
                    resource_type: "AWS::EC2::Subnet".into(),
                    physical_id: None,
                    action: provision::port::ChangeAction::Add,
                    reasons: vec![],
                })
                .collect(),
            prepare: Vec::new(),
            blockers: Vec::new(),
            planned_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::drill::engine::StopConditions;
    use crate::screen::gameday::GamedayField;
    use crossterm::event::KeyModifiers;
    use provision::port::{
        EventSource, Outputs, ResourceEvent, ScaleInProtectedInstances, StandbyInstances,
    };
    use rstest::rstest;
    use std::time::Duration;

    #[rstest]
    #[case(KeyCode::Char('?'), Screen::Help)]
    #[case(KeyCode::Char('e'), Screen::Events)]
    #[case(KeyCode::Char('i'), Screen::Instances)]
    #[case(KeyCode::Enter, Screen::Instances)]
    #[case(KeyCode::Char('d'), Screen::Deploy)]
    #[case(KeyCode::Char('g'), Screen::GameDay)]
    fn keys_open_screens(#[case] code: KeyCode, #[case] screen: Screen) {
        let mut s = state(BackendKind::Sandbox, false);
        assert!(update(&mut s, key(code)).is_empty());
        assert_eq!(s.screen, screen);
        update(&mut s, key(KeyCode::Esc));
        assert_eq!(s.screen, Screen::Dashboard, "esc goes back");
    }

    #[rstest]
    #[case('d', "deploy")]
    #[case('g', "gameday")]
    #[case('F', "failover")]
    #[case('C', "cancel")]
    #[case('R', "rollback")]
    fn read_only_refuses_every_mutation(#[case] c: char, #[case] what: &str) {
        let mut s = state(BackendKind::Sandbox, true);
        assert!(update(&mut s, key(KeyCode::Char(c))).is_empty());
        assert_eq!(s.screen, Screen::Dashboard);
        assert_eq!(s.mode, Mode::Normal);
        assert!(
            s.notices[0].text.contains(what) && s.notices[0].text.contains("read-only"),
            "{:?}",
            s.notices
        );
    }

    #[test]
    fn q_and_ctrl_c_quit() {
        let mut s = state(BackendKind::Sandbox, false);
        assert_eq!(update(&mut s, key(KeyCode::Char('q'))), vec![Effect::Quit]);
        let mut s = state(BackendKind::Sandbox, false);
        let ctrl_c = Action::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(update(&mut s, ctrl_c), vec![Effect::Quit]);
        assert!(s.quit);
    }

    #[rstest]
    #[case("dep", "deploy")]
    #[case("g", "gameday")]
    #[case("e", "events")]
    #[case("xyz", "xyz")]
    #[case("", "")]
    #[case("d", "d")]
    fn command_completion(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(complete(input, false), expected);
    }

    #[test]
    fn a_read_only_session_is_not_offered_commands_that_change_things() {
        assert_eq!(complete("d", true), "dashboard");
        assert_eq!(
            command_matches("", true),
            [
                "dashboard",
                "instances",
                "events",
                "logs",
                "plan",
                "help",
                "quit"
            ]
        );
        assert!(command_matches("", true).contains(&"plan"));
        assert_eq!(command_matches("d", false), ["dashboard", "deploy", "down"]);
        // Typed out in full it is still refused, with a reason.
        let mut s = state(BackendKind::Sandbox, true);
        update(&mut s, key(KeyCode::Char(':')));
        chars(&mut s, "deploy");
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
        assert_eq!(s.screen, Screen::Dashboard);
        assert!(s.notices[0].text.contains("read-only"), "{:?}", s.notices);
    }

    #[test]
    fn command_mode_runs_completed_commands() {
        let mut s = state(BackendKind::Sandbox, false);
        update(&mut s, key(KeyCode::Char(':')));
        chars(&mut s, "ev");
        update(&mut s, key(KeyCode::Tab));
        assert_eq!(s.mode, Mode::Command("events".into()));
        update(&mut s, key(KeyCode::Enter));
        assert_eq!(s.screen, Screen::Events);
        assert_eq!(s.mode, Mode::Normal);
    }

    #[test]
    fn deploy_dialog_confirms_before_deploying_and_cancel_is_the_default() {
        let mut s = state(BackendKind::Sandbox, false);
        update(&mut s, key(KeyCode::Char('d')));
        chars(&mut s, "v2");
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
        assert!(matches!(s.mode, Mode::Confirm(_)));
        // Enter with nothing typed cancels.
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
        assert_eq!(s.mode, Mode::Normal);
        // Again, typing the confirmation word.
        update(&mut s, key(KeyCode::Enter));
        chars(&mut s, "y");
        let effects = update(&mut s, key(KeyCode::Enter));
        let [Effect::Deploy(request)] = effects.as_slice() else {
            panic!("one deploy effect: {effects:?}");
        };
        assert_eq!(request.version, "v2");
        assert!(request.preferences.auto_rollback);
        assert_eq!(request.preferences.min_healthy_percentage, 90);
    }

    #[test]
    fn deploy_dialog_offers_every_preference_and_the_review_says_each() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0", "1.1.0", "1.0.0"]);
        assert_eq!(s.running_versions(), "1.0.0 ×2, 1.1.0 ×1");
        update(&mut s, key(KeyCode::Char('d')));
        chars(&mut s, "1.2.0");
        // To checkpoints (field 4), then alarms (field 7).
        for _ in 0..4 {
            update(&mut s, key(KeyCode::Tab));
        }
        chars(&mut s, "25, 50");
        for _ in 0..3 {
            update(&mut s, key(KeyCode::Tab));
        }
        chars(&mut s, "shop-5xx, shop-p99");
        // skip matching: space flips it.
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Char(' ')));
        // scale-in protected: → from Wait (AWS's default) wraps to Refresh, ← ← goes back
        // past Wait to Ignore.
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Right));
        assert_eq!(
            s.deploy.scale_in_protected,
            ScaleInProtectedInstances::Refresh
        );
        update(&mut s, key(KeyCode::Left));
        update(&mut s, key(KeyCode::Left));
        assert_eq!(
            s.deploy.scale_in_protected,
            ScaleInProtectedInstances::Ignore
        );
        // standby: ← ← from Wait is Terminate; typing on a choice field changes nothing.
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Left));
        update(&mut s, key(KeyCode::Left));
        chars(&mut s, "x");
        assert_eq!(s.deploy.standby, StandbyInstances::Terminate);
        assert_eq!(s.deploy.version, "1.2.0");

        update(&mut s, key(KeyCode::Enter));
        let Mode::Confirm(confirm) = &s.mode else {
            panic!("the review opens: {:?} {:?}", s.mode, s.notices);
        };
        let review = confirm.lines.join("\n");
        assert!(
            review.contains("running now: 1.0.0 ×2, 1.1.0 ×1"),
            "{review}"
        );
        assert!(
            review.contains("checkpoints at 25, 50 % (wait 3600 s at each)"),
            "{review}"
        );
        assert!(review.contains("alarms shop-5xx, shop-p99"), "{review}");
        assert!(
            review.contains("scale-in protected Ignore, standby Terminate"),
            "{review}"
        );
        assert!(
            review.contains("already on the new configuration are kept"),
            "{review}"
        );
        let Effect::Deploy(request) = &confirm.effect else {
            panic!("the confirmation deploys: {:?}", confirm.effect);
        };
        let p = &request.preferences;
        assert_eq!(p.checkpoint_percentages, [25, 50]);
        assert_eq!(p.alarms, ["shop-5xx", "shop-p99"]);
        assert!(p.skip_matching);
        assert_eq!(
            p.scale_in_protected_instances,
            ScaleInProtectedInstances::Ignore
        );
        assert_eq!(p.standby_instances, StandbyInstances::Terminate);
    }

    #[test]
    fn gameday_dialog_sets_every_stop_condition_as_the_command_line_does() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0"]);
        update(&mut s, key(KeyCode::Char('g')));
        // duration 10, rate 20, signups 0, error 25 %, below 2 healthy.
        let fields = [
            (GamedayField::Duration, "10"),
            (GamedayField::Signups, "0"),
            (GamedayField::MaxError, "25"),
            (GamedayField::MinHealthy, "2"),
        ];
        for (field, text) in fields {
            s.gameday.field = field;
            for _ in 0..4 {
                update(&mut s, key(KeyCode::Backspace));
            }
            chars(&mut s, text);
        }
        let config = s.gameday.config(&s.az_names()).expect("a valid form");
        assert_eq!(config.duration, Duration::from_secs(10));
        assert_eq!(config.signup_rate, 0);
        assert_eq!(
            config.stop,
            StopConditions::for_drill(Duration::from_secs(10), 25, 2)
        );
        assert_eq!(config.stop.max_duration, Duration::from_secs(340));
        assert_eq!(
            s.gameday.hint(GamedayField::Signups).as_deref(),
            Some("none")
        );
        // Only digits are typed into a number; an error rate above 100 is named.
        s.gameday.field = GamedayField::MaxError;
        chars(&mut s, "0x");
        assert_eq!(s.gameday.max_error_pct, "250");
        let error = s.gameday.config(&s.az_names()).expect_err("250 %");
        assert!(error.contains("stop at error %"), "{error}");
    }

    #[test]
    fn the_gameday_form_carries_the_port_s_fault_kind_to_the_drill() {
        use provision::port::FaultKind;
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0"]);
        update(&mut s, key(KeyCode::Char('g')));
        update(&mut s, key(KeyCode::Tab));
        assert_eq!(s.gameday.field, GamedayField::Fault);
        for expected in FaultKind::ALL
            .iter()
            .cycle()
            .skip(1)
            .take(FaultKind::ALL.len())
        {
            update(&mut s, key(KeyCode::Right));
            assert_eq!(s.gameday.fault, *expected);
            let config = s.gameday.config(&s.az_names()).expect("a valid form");
            assert_eq!(config.fault.fault_kind(), *expected);
            assert_eq!(config.fault.az().is_some(), expected.needs_az());
        }
    }

    fn event(second: i64, message: &str) -> Event {
        Event {
            at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(second),
            source: EventSource::Scaling,
            az: Some("eu-west-1a".into()),
            message: message.into(),
        }
    }

    #[test]
    fn the_event_log_keeps_what_snapshots_no_longer_carry() {
        let mut s = state(BackendKind::Aws, false);
        // Snapshots carry the recent events, newest first, overlapping from tick to tick.
        s.log_events(&[event(2, "b"), event(1, "a")]);
        s.log_events(&[event(3, "c"), event(2, "b")]);
        s.log_events(&[event(3, "c"), event(3, "c2")]);
        let messages = |s: &State| {
            s.events
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(messages(&s), ["c2", "c", "b", "a"]);
        // A late arrival with an older time goes to its place.
        s.log_events(&[event(3, "c"), event(0, "early")]);
        assert_eq!(messages(&s), ["c2", "c", "b", "a", "early"]);
        // The log is bounded; the newest stay.
        let many: Vec<Event> = (0..EVENT_LOG as i64 + 10)
            .rev()
            .map(|i| event(100 + i, "flood"))
            .collect();
        s.log_events(&many);
        assert_eq!(s.events.len(), EVENT_LOG);
        assert_eq!(
            s.events[0].at,
            time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100 + EVENT_LOG as i64 + 9)
        );
    }

    #[test]
    fn the_events_screen_filters_and_scrolls_within_what_it_lists() {
        let mut s = state(BackendKind::Sandbox, false);
        s.log_events(&[
            event(4, "Terminating EC2 instance: i-2"),
            event(3, "Launching a new EC2 instance: i-2"),
            event(2, "Launching a new EC2 instance: i-1"),
        ]);
        update(&mut s, key(KeyCode::Char('e')));
        update(&mut s, key(KeyCode::Char('/')));
        chars(&mut s, "i-2");
        update(&mut s, key(KeyCode::Enter));
        assert_eq!(s.listed_events().count(), 2);
        for _ in 0..5 {
            update(&mut s, key(KeyCode::Char('j')));
        }
        assert_eq!(s.row, 1, "j stops at the last listed event");
        // y copies the selected event as a line.
        assert_eq!(
            update(&mut s, key(KeyCode::Char('y'))),
            [Effect::Copy(
                "1970-01-01T00:00:03Z asg Launching a new EC2 instance: i-2".into()
            )]
        );
        // The source's short name matches too.
        s.filter = "asg".into();
        assert_eq!(s.listed_events().count(), 3);
    }

    #[test]
    fn a_stack_tagged_production_wants_typed_names_on_the_sandbox_too() {
        let mut s = state(BackendKind::Sandbox, false);
        assert!(!s.is_production());
        assert_eq!(s.confirmation_word(Some("eu-west-1a")), "y");
        s.tagged_production = true;
        assert!(s.is_production());
        assert_eq!(s.confirmation_word(Some("eu-west-1a")), "eu-west-1a");
        assert_eq!(s.confirmation_word(None), "demo");
    }

    #[test]
    fn deploy_dialog_names_the_bad_field() {
        let mut s = state(BackendKind::Sandbox, false);
        update(&mut s, key(KeyCode::Char('d')));
        chars(&mut s, "v2");
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Backspace));
        update(&mut s, key(KeyCode::Backspace));
        chars(&mut s, "x");
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
        assert_eq!(s.mode, Mode::Normal);
        assert!(
            s.notices[0].text.contains("min healthy %"),
            "{:?}",
            s.notices
        );
    }

    #[test]
    fn on_aws_a_fault_needs_the_az_name_typed() {
        let mut s = state(BackendKind::Aws, false);
        let plan = FaultPlan {
            stack: s.stack.clone(),
            fault: Fault::TerminateAz {
                az: "eu-west-1a".into(),
            },
            az: Some("eu-west-1a".into()),
            actions: vec![],
            notes: vec![],
        };
        let mut snapshot = Snapshot::empty(s.stack.clone(), time::OffsetDateTime::UNIX_EPOCH);
        snapshot
            .azs
            .push(provision::port::AzView::new("eu-west-1a"));
        s.snapshot = Some(Box::new(snapshot));
        update(&mut s, Action::FaultDescribed(Box::new(plan.clone())));
        let Mode::Confirm(confirm) = &s.mode else {
            panic!("a confirmation opens: {:?}", s.mode);
        };
        assert_eq!(confirm.expected, "eu-west-1a");
        chars(&mut s, "y");
        assert!(
            update(&mut s, key(KeyCode::Enter)).is_empty(),
            "y is not enough"
        );
        update(&mut s, Action::FaultDescribed(Box::new(plan)));
        chars(&mut s, "eu-west-1a");
        let effects = update(&mut s, key(KeyCode::Enter));
        let [Effect::StartDrill(config)] = effects.as_slice() else {
            panic!("the drill starts: {effects:?}");
        };
        assert_eq!(
            config.fault,
            Fault::TerminateAz {
                az: "eu-west-1a".into()
            }
        );
    }

    #[test]
    fn p_plans_and_apply_asks_before_applying() {
        let mut s = state(BackendKind::Sandbox, false);
        assert_eq!(update(&mut s, key(KeyCode::Char('p'))), vec![Effect::Plan]);
        assert_eq!(s.screen, Screen::Provision);
        assert!(
            update(&mut s, key(KeyCode::Char('p'))).is_empty(),
            "no second plan while one is under way"
        );
        let p = plan(&s.stack, 3);
        update(&mut s, Action::Planned(Box::new(p)));
        assert!(update(&mut s, key(KeyCode::Char('a'))).is_empty());
        assert!(matches!(s.mode, Mode::Confirm(_)));
        chars(&mut s, "y");
        let effects = update(&mut s, key(KeyCode::Enter));
        let [Effect::Apply(applied)] = effects.as_slice() else {
            panic!("one apply effect: {effects:?}");
        };
        assert_eq!(applied.changes.len(), 3);
    }

    #[test]
    fn a_plan_with_blockers_is_not_applied_and_says_why() {
        let mut s = state(BackendKind::Aws, false);
        update(&mut s, key(KeyCode::Char('p')));
        let mut p = plan(&s.stack, 3);
        p.blockers = vec!["mailer 1.0.0 is not in the bucket: pass --mailer-zip PATH".into()];
        update(&mut s, Action::Planned(Box::new(p)));
        assert!(update(&mut s, key(KeyCode::Char('a'))).is_empty());
        assert_eq!(s.mode, Mode::Normal, "no confirmation is offered");
        assert!(
            s.notices[0].text.contains("--mailer-zip"),
            "{:?}",
            s.notices
        );
    }

    #[test]
    fn what_comes_first_is_in_the_confirmation_and_its_progress_on_screen() {
        let mut s = state(BackendKind::Aws, false);
        update(&mut s, key(KeyCode::Char('p')));
        let mut p = plan(&s.stack, 3);
        p.prepare = vec!["upload webapp 1.0.0 from ./webapp".into()];
        update(&mut s, Action::Planned(Box::new(p)));
        update(&mut s, key(KeyCode::Char('a')));
        let Mode::Confirm(confirm) = &s.mode else {
            panic!("a confirmation: {:?}", s.mode);
        };
        assert_eq!(
            confirm.lines[0],
            "First: upload webapp 1.0.0 from ./webapp."
        );
        assert_eq!(confirm.expected, s.stack.name, "AWS wants the stack's name");
        let name = s.stack.name.clone();
        chars(&mut s, &name);
        let effects = update(&mut s, key(KeyCode::Enter));
        assert!(
            matches!(effects.as_slice(), [Effect::Apply(_)]),
            "{effects:?}"
        );
        update(
            &mut s,
            Action::ProvisionNote("uploaded webapp 1.0.0".into()),
        );
        let view = s.provision.as_ref().expect("the provisioning view");
        assert_eq!(view.phase, ProvisionPhase::Preparing);
        assert!(view.is_busy());
        assert_eq!(view.notes, vec!["uploaded webapp 1.0.0".to_string()]);
    }

    #[test]
    fn an_empty_plan_applies_nothing() {
        let mut s = state(BackendKind::Sandbox, false);
        update(&mut s, key(KeyCode::Char('p')));
        let p = plan(&s.stack, 0);
        update(&mut s, Action::Planned(Box::new(p)));
        assert!(update(&mut s, key(KeyCode::Char('a'))).is_empty());
        assert_eq!(s.mode, Mode::Normal);
        assert!(s.notices[0].text.contains("no changes"), "{:?}", s.notices);
    }

    #[rstest]
    #[case(BackendKind::Sandbox)]
    #[case(BackendKind::Aws)]
    fn destroy_needs_the_stack_name_typed_on_every_backend(#[case] backend: BackendKind) {
        let mut s = state(backend, false);
        update(&mut s, key(KeyCode::Char('p')));
        let p = plan(&s.stack, 0);
        update(&mut s, Action::Planned(Box::new(p)));
        update(&mut s, key(KeyCode::Char('D')));
        chars(&mut s, "y");
        assert!(
            update(&mut s, key(KeyCode::Enter)).is_empty(),
            "y is not enough"
        );
        update(&mut s, key(KeyCode::Char('D')));
        chars(&mut s, "demo");
        assert_eq!(update(&mut s, key(KeyCode::Enter)), vec![Effect::Destroy]);
    }

    #[rstest]
    #[case("up")]
    #[case("down")]
    fn read_only_refuses_apply_and_destroy_but_plans(#[case] command: &str) {
        let mut s = state(BackendKind::Sandbox, true);
        update(&mut s, key(KeyCode::Char(':')));
        chars(&mut s, command);
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
        assert_eq!(s.mode, Mode::Normal);
        assert!(s.notices[0].text.contains("read-only"), "{:?}", s.notices);
        assert_eq!(update(&mut s, key(KeyCode::Char('p'))), vec![Effect::Plan]);
    }

    #[test]
    fn provisioning_events_count_x_of_y_and_keep_each_resource_s_latest_status() {
        use provision::port::{ResourceStatus, StackOperation, StackStatus};
        let mut s = state(BackendKind::Sandbox, false);
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let resource = |id: &str, status, done| {
            Action::Provision(Box::new(ProvisionEvent::Resource(ResourceEvent {
                at,
                logical_id: id.into(),
                resource_type: "AWS::EC2::Subnet".into(),
                physical_id: None,
                status,
                reason: None,
                done,
                total: 2,
            })))
        };
        let stack = s.stack.clone();
        update(
            &mut s,
            Action::Provision(Box::new(ProvisionEvent::Started {
                at,
                stack,
                operation: StackOperation::Create,
                total: 2,
            })),
        );
        update(&mut s, resource("A", ResourceStatus::CreateInProgress, 0));
        update(&mut s, resource("B", ResourceStatus::CreateInProgress, 0));
        update(&mut s, resource("A", ResourceStatus::CreateComplete, 1));
        let view = s.provision.as_ref().expect("view");
        assert_eq!(view.phase, ProvisionPhase::Running(StackOperation::Create));
        assert_eq!((view.done, view.total), (1, 2));
        assert_eq!(view.resources.len(), 2);
        assert_eq!(view.resources[0].status, ResourceStatus::CreateComplete);
        update(
            &mut s,
            Action::Provision(Box::new(ProvisionEvent::Finished {
                at,
                stack_status: StackStatus::RollbackComplete,
                outputs: Outputs::default(),
                summary: Some("B failed: no capacity".into()),
            })),
        );
        let view = s.provision.as_ref().expect("view");
        assert_eq!(view.phase, ProvisionPhase::Finished);
        assert_eq!(s.notices[0].level, Level::Error);
        assert!(s.notices[0].text.contains("no capacity"), "{:?}", s.notices);
    }

    /// `Z` on the dashboard: the dry run in a confirmation (the AZ typed on AWS), then the
    /// shift; on a shifted AZ the same key asks to cancel it; refused in read-only mode.
    #[rstest]
    #[case::sandbox(BackendKind::Sandbox, "y")]
    #[case::aws(BackendKind::Aws, "eu-west-1a")]
    fn z_shifts_away_from_the_focused_az_and_cancels_it(
        #[case] backend: BackendKind,
        #[case] word: &str,
    ) {
        let mut s = state(backend, false);
        with_versions(&mut s, &["1.0.0"]);
        assert!(update(&mut s, key(KeyCode::Char('Z'))).is_empty());
        let Mode::Confirm(confirm) = &s.mode else {
            panic!("no confirmation: {:?}", s.mode);
        };
        assert_eq!(confirm.expected, word);
        assert!(
            confirm
                .lines
                .iter()
                .any(|l| l.contains("healthy capacity left")),
            "{:?}",
            confirm.lines
        );
        let mut effects = chars(&mut s, word);
        effects.extend(update(&mut s, key(KeyCode::Enter)));
        let [Effect::StartShift { request, .. }] = effects.as_slice() else {
            panic!("{effects:?}");
        };
        assert_eq!(request.az, "eu-west-1a");
        assert_eq!(request.expires_in, CONSOLE_SHIFT);

        // The watch shows the shift: the same key asks to cancel it.
        if let Some(snapshot) = &mut s.snapshot {
            snapshot.zonal_shifts.push(ZonalShift {
                az: "eu-west-1a".into(),
                started_at: time::OffsetDateTime::UNIX_EPOCH,
                expires_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(30),
                resources: vec![],
                ids: vec![],
                comment: String::new(),
            });
        }
        update(&mut s, key(KeyCode::Char('Z')));
        let mut effects = chars(&mut s, word);
        effects.extend(update(&mut s, key(KeyCode::Enter)));
        assert_eq!(effects, [Effect::CancelShift("eu-west-1a".into())]);

        let mut read_only = state(backend, true);
        with_versions(&mut read_only, &["1.0.0"]);
        assert!(update(&mut read_only, key(KeyCode::Char('Z'))).is_empty());
        assert_eq!(read_only.mode, Mode::Normal, "refused before any dialog");
    }

    /// `L`: the form, then a confirmation naming the endpoint and the peak rate (the stack's
    /// name typed on AWS, with the WAF warning), then the load; `s` stops it; read-only
    /// refuses it.
    #[test]
    fn the_load_form_confirms_endpoint_and_peak_then_starts_and_s_stops_it() {
        let mut s = state(BackendKind::Aws, false);
        with_versions(&mut s, &["1.0.0"]);
        if let Some(snapshot) = s.snapshot.as_mut() {
            snapshot.endpoint = Some("https://shop.example.com".into());
        }
        s.waf_rate_limit = Some(2000);
        update(&mut s, key(KeyCode::Char('L')));
        assert_eq!(s.screen, Screen::Load);
        assert_eq!(keys::Context::of(&s), keys::Context::LoadForm);
        // rate 20 → ramp to 80 over 30 s, for 120 s.
        update(&mut s, key(KeyCode::Tab));
        chars(&mut s, "80");
        update(&mut s, key(KeyCode::Tab));
        chars(&mut s, "30");
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Backspace));
        update(&mut s, key(KeyCode::Backspace));
        chars(&mut s, "120");
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
        let Mode::Confirm(confirm) = &s.mode else {
            panic!("a confirmation: {:?}", s.notices);
        };
        assert_eq!(confirm.title, "Load: up to 80 req/s");
        assert_eq!(
            confirm.lines[0],
            "This sends up to 80 req/s to https://shop.example.com (stack demo) for 120 s."
        );
        assert!(
            confirm.lines.iter().any(|l| l.contains("WAF rate rule")),
            "{:?}",
            confirm.lines
        );
        assert_eq!(confirm.expected, "demo", "the stack's name on AWS");
        chars(&mut s, "demo");
        let effects = update(&mut s, key(KeyCode::Enter));
        let [Effect::StartLoad(plan)] = effects.as_slice() else {
            panic!("the load starts: {effects:?}");
        };
        assert_eq!(plan.schedule.from, 20.0);
        assert_eq!(plan.schedule.to, 80.0);
        assert_eq!(plan.schedule.ramp.as_secs(), 30);
        assert_eq!(plan.schedule.duration.as_secs(), 120);
        update(
            &mut s,
            Action::Load(LoadUpdate::Started {
                title: "load".into(),
                shape: "20 → 80 req/s".into(),
                endpoint: "https://shop.example.com".into(),
            }),
        );
        assert_eq!(keys::Context::of(&s), keys::Context::Load);
        assert_eq!(update(&mut s, key(KeyCode::Char('s'))), [Effect::StopLoad]);
        // A form that describes no load says why and starts nothing.
        s.load = None;
        s.load_form.duration = "0".into();
        assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
        assert!(s.notices[0].text.contains("--duration"), "{:?}", s.notices);

        let mut ro = state(BackendKind::Sandbox, true);
        assert!(update(&mut ro, key(KeyCode::Char('L'))).is_empty());
        assert_eq!(ro.screen, Screen::Dashboard);
        assert!(ro.notices[0].text.contains("read-only"));
    }
}
