//! The console's state and its one pure `update` function.
//!
//! Everything the console does goes through here: a key press, a snapshot from the watch, an
//! answer from the cloud, a drill update — each is an [`Action`]; [`update`] changes the
//! [`State`] and returns the [`Effect`]s to run (cloud calls, the drill, the clipboard). The
//! effect runner (`run.rs`) carries them out on tokio tasks and sends their results back as
//! actions. Nothing here performs I/O, so the whole key → action → effect table is tested
//! without a terminal.
//!
//! Safety lives here too: every destructive action (fault, failover, cancel, rollback, deploy)
//! opens a [`Confirm`] dialog whose default is *cancel*; on AWS the operator must type the AZ
//! (or stack) name; in a read-only session the action is refused before any dialog opens.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use provision::port::{
    BackendKind, DEFAULT_CHECKPOINT_DELAY_SECONDS, DeployRequest, Event, EventSource, Fault,
    FaultPlan, LifecycleState, Outputs, Plan, ProvisionEvent, RefreshId, RefreshPreferences,
    ResourceEvent, ScaleInProtectedInstances, Snapshot, StackOperation, StackRef, StackStatus,
    StandbyInstances,
};

use crate::drill::engine::{DrillConfig, DrillUpdate, StopConditions};
use crate::drill::probe::ProbeSecond;
use crate::drill::report::{CapacitySample, DrillReport, StepRecord};

/// The screens, reachable by key or by `:name` in command mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Dashboard,
    Instances,
    Events,
    Deploy,
    GameDay,
    Provision,
    Help,
}

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Dashboard => "dashboard",
            Screen::Instances => "instances",
            Screen::Events => "events",
            Screen::Deploy => "deploy",
            Screen::GameDay => "gameday",
            Screen::Provision => "provision",
            Screen::Help => "help",
        }
    }
}

/// Commands accepted in command mode (`:`), completed with Tab.
pub const COMMANDS: &[&str] = &[
    "dashboard",
    "instances",
    "events",
    "deploy",
    "gameday",
    "plan",
    "up",
    "down",
    "failover",
    "cancel",
    "rollback",
    "stop",
    "help",
    "quit",
];

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
    Drill(DrillUpdate),
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

/// The deploy dialog's fields: every refresh preference AWS offers, with AWS's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployForm {
    pub field: usize,
    pub version: String,
    pub min_healthy: String,
    pub max_healthy: String,
    pub warmup: String,
    pub checkpoints: String,
    pub checkpoint_delay: String,
    pub bake_time: String,
    pub alarms: String,
    pub skip_matching: bool,
    pub auto_rollback: bool,
    pub scale_in_protected: ScaleInProtectedInstances,
    pub standby: StandbyInstances,
}

impl Default for DeployForm {
    fn default() -> Self {
        let d = RefreshPreferences::default();
        DeployForm {
            field: 0,
            version: String::new(),
            min_healthy: d.min_healthy_percentage.to_string(),
            max_healthy: d.max_healthy_percentage.to_string(),
            warmup: String::new(),
            checkpoints: String::new(),
            checkpoint_delay: String::new(),
            bake_time: d.bake_time_seconds.to_string(),
            alarms: String::new(),
            skip_matching: d.skip_matching,
            // Unlike AWS's default: a failed deploy should put the old version back.
            auto_rollback: true,
            scale_in_protected: d.scale_in_protected_instances,
            standby: d.standby_instances,
        }
    }
}

/// Steps through `all` from `current`, forward or back, wrapping.
fn cycle<T: Copy + PartialEq>(all: &[T], current: T, forward: bool) -> T {
    let n = all.len();
    let i = all.iter().position(|v| *v == current).unwrap_or(0);
    all[if forward {
        (i + 1) % n
    } else {
        (i + n - 1) % n
    }]
}

impl DeployForm {
    pub const LABELS: [&'static str; 12] = [
        "version",
        "min healthy %",
        "max healthy %",
        "instance warmup s",
        "checkpoints %",
        "checkpoint delay s",
        "bake time s",
        "alarms",
        "skip matching",
        "auto rollback",
        "scale-in protected",
        "standby instances",
    ];
    /// The first field that is chosen rather than typed; the ones before it are text.
    pub const FIRST_CHOICE: usize = 8;

    pub fn value(&self, field: usize) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        match field {
            0 => self.version.clone(),
            1 => self.min_healthy.clone(),
            2 => self.max_healthy.clone(),
            3 => self.warmup.clone(),
            4 => self.checkpoints.clone(),
            5 => self.checkpoint_delay.clone(),
            6 => self.bake_time.clone(),
            7 => self.alarms.clone(),
            8 => yes_no(self.skip_matching),
            9 => yes_no(self.auto_rollback),
            10 => format!("‹ {} ›", self.scale_in_protected),
            _ => format!("‹ {} ›", self.standby),
        }
    }

    /// What an empty text field means, shown in its place.
    pub fn placeholder(&self, field: usize) -> Option<String> {
        if !self.value(field).is_empty() {
            return None;
        }
        match field {
            3 => Some("the group's default warmup".into()),
            4 => Some("none (e.g. 20,50)".into()),
            5 if self.checkpoints.trim().is_empty() => Some("needs checkpoints".into()),
            5 => Some(format!(
                "{DEFAULT_CHECKPOINT_DELAY_SECONDS} (AWS's default)"
            )),
            7 => Some("none (alarm names, comma-separated)".into()),
            _ => None,
        }
    }

    fn text_mut(&mut self) -> Option<&mut String> {
        match self.field {
            0 => Some(&mut self.version),
            1 => Some(&mut self.min_healthy),
            2 => Some(&mut self.max_healthy),
            3 => Some(&mut self.warmup),
            4 => Some(&mut self.checkpoints),
            5 => Some(&mut self.checkpoint_delay),
            6 => Some(&mut self.bake_time),
            7 => Some(&mut self.alarms),
            _ => None,
        }
    }

    /// Flips a yes/no field or steps a choice; `forward` is false for ←.
    fn choose(&mut self, forward: bool) {
        match self.field {
            8 => self.skip_matching = !self.skip_matching,
            9 => self.auto_rollback = !self.auto_rollback,
            10 => {
                self.scale_in_protected = cycle(
                    ScaleInProtectedInstances::ALL,
                    self.scale_in_protected,
                    forward,
                )
            }
            11 => self.standby = cycle(StandbyInstances::ALL, self.standby, forward),
            _ => {}
        }
    }

    /// The request this form describes, or the field that is wrong and why.
    pub fn request(&self) -> Result<DeployRequest, String> {
        fn num<T: std::str::FromStr>(label: &str, text: &str) -> Result<T, String> {
            text.trim()
                .parse()
                .map_err(|_| format!("{label}: {text:?} is not a number"))
        }
        fn opt<T: std::str::FromStr>(label: &str, text: &str) -> Result<Option<T>, String> {
            if text.trim().is_empty() {
                Ok(None)
            } else {
                num(label, text).map(Some)
            }
        }
        fn list(text: &str) -> impl Iterator<Item = &str> {
            text.split(',').map(str::trim).filter(|s| !s.is_empty())
        }
        if self.version.trim().is_empty() {
            return Err("version: type the version to deploy".into());
        }
        let checkpoints = list(&self.checkpoints)
            .map(|s| num::<u8>("checkpoints %", s))
            .collect::<Result<Vec<u8>, String>>()?;
        let preferences = RefreshPreferences {
            min_healthy_percentage: num("min healthy %", &self.min_healthy)?,
            max_healthy_percentage: num("max healthy %", &self.max_healthy)?,
            instance_warmup_seconds: opt("instance warmup s", &self.warmup)?,
            checkpoint_percentages: checkpoints,
            checkpoint_delay_seconds: opt("checkpoint delay s", &self.checkpoint_delay)?,
            skip_matching: self.skip_matching,
            auto_rollback: self.auto_rollback,
            alarms: list(&self.alarms).map(str::to_owned).collect(),
            bake_time_seconds: num("bake time s", &self.bake_time)?,
            scale_in_protected_instances: self.scale_in_protected,
            standby_instances: self.standby,
        };
        let mut request = DeployRequest::new(self.version.trim());
        request.preferences = preferences;
        request.validate().map_err(|e| e.to_string())?;
        Ok(request)
    }
}

/// The GameDay dialog's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GamedayForm {
    pub field: usize,
    pub az_index: usize,
    pub fault_index: usize,
    pub duration: String,
    pub rate: String,
    pub signups: String,
    pub max_error_pct: String,
    pub min_healthy: String,
    pub force: bool,
}

impl Default for GamedayForm {
    fn default() -> Self {
        // The command line's defaults (`triad gameday --help`).
        GamedayForm {
            field: 0,
            az_index: 0,
            fault_index: 0,
            duration: "60".into(),
            rate: "20".into(),
            signups: "2".into(),
            max_error_pct: "50".into(),
            min_healthy: "0".into(),
            force: false,
        }
    }
}

impl GamedayForm {
    pub const LABELS: [&'static str; 8] = [
        "AZ",
        "fault",
        "duration s",
        "probe rate /s",
        "signups /s",
        "stop at error %",
        "stop below healthy",
        "force",
    ];

    pub fn fault_kind(&self) -> &'static str {
        Fault::KINDS[self.fault_index % Fault::KINDS.len()]
    }

    fn text_mut(&mut self) -> Option<&mut String> {
        match self.field {
            2 => Some(&mut self.duration),
            3 => Some(&mut self.rate),
            4 => Some(&mut self.signups),
            5 => Some(&mut self.max_error_pct),
            6 => Some(&mut self.min_healthy),
            _ => None,
        }
    }

    /// What a field's value means when that is not plain: the drill's ceiling beside the
    /// duration, "off"/"none" beside a zero.
    pub fn hint(&self, field: usize) -> Option<String> {
        let zero = |text: &str| text.trim() == "0";
        match field {
            2 => self.duration.trim().parse::<u64>().ok().map(|secs| {
                let ceiling = StopConditions::ceiling(Duration::from_secs(secs.max(1)));
                format!("the drill stops after {} s at most", ceiling.as_secs())
            }),
            4 if zero(&self.signups) => Some("none".into()),
            4 => Some("each acknowledged one is checked afterwards".into()),
            6 if zero(&self.min_healthy) => Some("off".into()),
            6 => Some("instances in service across the AZs".into()),
            7 if self.force => Some("even when the other AZs have no healthy capacity".into()),
            _ => None,
        }
    }

    /// The drill this form describes.
    pub fn config(&self, azs: &[String]) -> Result<DrillConfig, String> {
        let kind = self.fault_kind();
        let az = azs.get(self.az_index % azs.len().max(1)).cloned();
        let fault = if kind == "failover-db" {
            Fault::FailoverDb
        } else {
            let az = az.ok_or("AZ: no AZ is known yet")?;
            Fault::parse(kind, Some(&az)).map_err(|e| e.to_string())?
        };
        fn num<T: std::str::FromStr>(label: &str, text: &str) -> Result<T, String> {
            text.trim()
                .parse()
                .map_err(|_| format!("{label}: {text:?} is not a number in range"))
        }
        let duration = Duration::from_secs(num::<u64>("duration s", &self.duration)?.max(1));
        let max_error = num::<u8>("stop at error %", &self.max_error_pct)?;
        if max_error > 100 {
            return Err(format!("stop at error %: {max_error} is above 100"));
        }
        let mut config = DrillConfig::new(fault, duration);
        config.probe_rate = num("probe rate /s", &self.rate)?;
        config.signup_rate = num("signups /s", &self.signups)?;
        config.force = self.force;
        config.stop = StopConditions::for_drill(
            duration,
            max_error,
            num("stop below healthy", &self.min_healthy)?,
        );
        Ok(config)
    }
}

/// What the console shows of a running (or finished) drill.
#[derive(Debug, Clone, Default)]
pub struct DrillView {
    pub title: String,
    pub phase: String,
    pub steps: Vec<StepRecord>,
    pub probe: Vec<ProbeSecond>,
    pub capacity: Vec<CapacitySample>,
    pub report: Option<Box<DrillReport>>,
    pub report_files: Vec<String>,
    pub running: bool,
}

/// Where the provisioning screen is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionPhase {
    Planning,
    Planned,
    /// Doing what the plan says comes first (the artefact bucket and uploads on AWS).
    Preparing,
    Running(StackOperation),
    Finished,
    Failed,
}

/// What the provisioning screen shows: the plan's diff, then the live "X of Y" progress of
/// an apply or destroy with each resource's latest status and reason, then how it ended.
#[derive(Debug, Clone)]
pub struct ProvisionView {
    pub phase: ProvisionPhase,
    pub plan: Option<Box<Plan>>,
    /// Resources finished so far and in all (the "X of Y").
    pub done: u32,
    pub total: u32,
    /// Each resource's latest event, in the order they first appeared.
    pub resources: Vec<ResourceEvent>,
    /// The stack's status when the operation ended.
    pub status: Option<StackStatus>,
    /// What was and was not changed, when it did not go as asked.
    pub summary: Option<String>,
    pub outputs: Outputs,
    pub error: Option<String>,
    /// What was done before the stack's own changes, one line each.
    pub notes: Vec<String>,
}

impl ProvisionView {
    fn new(phase: ProvisionPhase) -> Self {
        ProvisionView {
            phase,
            plan: None,
            done: 0,
            total: 0,
            resources: Vec::new(),
            status: None,
            summary: None,
            outputs: Outputs::default(),
            error: None,
            notes: Vec::new(),
        }
    }

    /// Whether an apply or destroy is under way (its stream still open).
    pub fn is_busy(&self) -> bool {
        matches!(
            self.phase,
            ProvisionPhase::Planning | ProvisionPhase::Preparing | ProvisionPhase::Running(_)
        )
    }

    fn record(&mut self, event: ProvisionEvent) {
        match event {
            ProvisionEvent::Started {
                operation, total, ..
            } => {
                self.phase = ProvisionPhase::Running(operation);
                self.total = total;
                self.done = 0;
                self.resources.clear();
            }
            ProvisionEvent::Resource(resource) => {
                self.done = resource.done;
                self.total = resource.total;
                match self
                    .resources
                    .iter_mut()
                    .find(|r| r.logical_id == resource.logical_id)
                {
                    Some(slot) => *slot = resource,
                    None => self.resources.push(resource),
                }
            }
            ProvisionEvent::Finished {
                stack_status,
                outputs,
                summary,
                ..
            } => {
                self.phase = ProvisionPhase::Finished;
                self.status = Some(stack_status);
                self.summary = summary;
                self.outputs = outputs;
            }
        }
    }
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
    pub provision: Option<ProvisionView>,
    pub notices: VecDeque<Notice>,
    /// Every event the watch has seen, newest first: a snapshot carries only the cloud's
    /// recent ones (100 in the sandbox, 20 scaling activities on AWS).
    pub events: VecDeque<Event>,
    /// The stack spec tags the stack as production (see `StackSpec::is_tagged_production`).
    pub tagged_production: bool,
    pub quit: bool,
}

const MAX_NOTICES: usize = 200;

/// How many events the console keeps.
pub const EVENT_LOG: usize = 2_000;

/// An event source's short name in the events pane.
pub fn source_label(source: EventSource) -> &'static str {
    match source {
        EventSource::Scaling => "asg",
        EventSource::LoadBalancer => "lb",
        EventSource::Database => "db",
        EventSource::Fault => "fault",
        EventSource::Stack => "stack",
    }
}

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
            provision: None,
            notices: VecDeque::new(),
            events: VecDeque::new(),
            tagged_production: false,
            quit: false,
        }
    }

    /// Adds the events of a snapshot (newest first) that the log does not hold yet, keeping
    /// the log newest first and at most [`EVENT_LOG`] long.
    pub fn log_events(&mut self, incoming: &[Event]) {
        let mut fresh: Vec<Event> = incoming
            .iter()
            .filter(|e| {
                // Only logged events at least as new can be the same one.
                !self
                    .events
                    .iter()
                    .take_while(|logged| logged.at >= e.at)
                    .any(|logged| logged == *e)
            })
            .cloned()
            .collect();
        if fresh.is_empty() {
            return;
        }
        fresh.sort_by_key(|e| std::cmp::Reverse(e.at));
        let newest = self.events.front().map(|e| e.at);
        let in_order = fresh.iter().all(|e| newest.is_none_or(|at| e.at >= at));
        for e in fresh.into_iter().rev() {
            self.events.push_front(e);
        }
        if !in_order {
            // Late arrivals (a service reporting an older event now) go to their place.
            self.events
                .make_contiguous()
                .sort_by_key(|e| std::cmp::Reverse(e.at));
        }
        self.events.truncate(EVENT_LOG);
    }

    /// The logged events the filter lets through (its text in the message, source or AZ).
    pub fn listed_events(&self) -> impl Iterator<Item = &Event> {
        let filter = self.current_filter();
        self.events.iter().filter(move |e| {
            filter.is_empty()
                || e.message.contains(filter)
                || source_label(e.source).contains(filter)
                || e.az.as_deref().is_some_and(|az| az.contains(filter))
        })
    }

    /// Whether this session can hurt production: the AWS backend, or a stack tagged so.
    pub fn is_production(&self) -> bool {
        self.backend == BackendKind::Aws || self.tagged_production
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

    fn notice(&mut self, level: Level, text: impl Into<String>) {
        self.notices.push_front(Notice {
            level,
            text: text.into(),
        });
        self.notices.truncate(MAX_NOTICES);
    }

    fn go(&mut self, screen: Screen) {
        if self.screen != screen {
            self.previous.push(self.screen);
            self.screen = screen;
            self.row = 0;
        }
    }

    fn back(&mut self) {
        self.screen = self.previous.pop().unwrap_or(Screen::Dashboard);
        self.row = 0;
    }

    /// What must be typed to confirm a destructive action touching `az` (or the stack).
    fn confirmation_word(&self, az: Option<&str>) -> String {
        if self.is_production() {
            az.map_or_else(|| self.stack.name.clone(), str::to_string)
        } else {
            "y".into()
        }
    }

    fn refuse_if_read_only(&mut self, what: &str) -> bool {
        if self.read_only {
            self.notice(Level::Warn, format!("read-only session: {what} refused"));
        }
        self.read_only
    }

    fn ask(&mut self, title: String, lines: Vec<String>, az: Option<&str>, effect: Effect) {
        let expected = self.confirmation_word(az);
        self.ask_for(title, lines, expected, effect);
    }

    /// Opens a confirmation that goes ahead only when `expected` is typed.
    fn ask_for(&mut self, title: String, lines: Vec<String>, expected: String, effect: Effect) {
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
    }
}

fn on_drill(state: &mut State, update: DrillUpdate) {
    let view = state.drill.get_or_insert_with(DrillView::default);
    match update {
        DrillUpdate::Started { title } => {
            *view = DrillView {
                title,
                running: true,
                phase: "steady state".into(),
                ..DrillView::default()
            };
        }
        DrillUpdate::Step(step) => {
            view.phase = step.step.clone();
            view.steps.push(step);
        }
        DrillUpdate::Probe(second) => {
            view.probe.push(second);
            if view.probe.len() > 3600 {
                view.probe.remove(0);
            }
        }
        DrillUpdate::Capacity(sample) => {
            view.capacity.push(sample);
            if view.capacity.len() > 3600 {
                view.capacity.remove(0);
            }
        }
        DrillUpdate::Finished { report, files } => {
            view.running = false;
            view.phase = "report".into();
            view.report = Some(report);
            view.report_files = files;
            let files = view.report_files.join(", ");
            state.notice(Level::Info, format!("GameDay report written: {files}"));
        }
        DrillUpdate::Failed(error) => {
            view.running = false;
            view.phase = "failed".into();
            state.notice(Level::Error, format!("GameDay failed: {error}"));
        }
    }
}

fn on_planned(state: &mut State, plan: Box<Plan>) {
    let summary = if plan.is_empty() {
        "no changes".to_string()
    } else if plan.creates_stack {
        format!("creates the stack: {}", plan.summary())
    } else {
        plan.summary().to_string()
    };
    state.notice(Level::Info, format!("plan for {}: {summary}", state.stack));
    let mut view = ProvisionView::new(ProvisionPhase::Planned);
    view.plan = Some(plan);
    state.provision = Some(view);
}

fn on_provision_event(state: &mut State, event: ProvisionEvent) {
    let ended = match &event {
        ProvisionEvent::Finished {
            stack_status,
            summary,
            ..
        } => Some((*stack_status, summary.clone())),
        _ => None,
    };
    state
        .provision
        .get_or_insert_with(|| ProvisionView::new(ProvisionPhase::Planned))
        .record(event);
    if let Some((status, summary)) = ended {
        let level = if status.is_success() {
            Level::Info
        } else {
            Level::Error
        };
        let mut text = format!("stack {}: {status}", state.stack);
        if let Some(summary) = summary {
            text.push_str(&format!(" — {summary}"));
        }
        state.notice(level, text);
    }
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

fn on_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    if ctrl(&key, 'c') {
        state.quit = true;
        return vec![Effect::Quit];
    }
    match std::mem::replace(&mut state.mode, Mode::Normal) {
        Mode::Confirm(confirm) => on_confirm_key(state, *confirm, key),
        Mode::Command(input) => on_command_key(state, input, key),
        Mode::Filter(input) => {
            on_filter_key(state, input, key);
            Vec::new()
        }
        Mode::Normal => match state.screen {
            Screen::Deploy => on_deploy_key(state, key),
            Screen::GameDay => on_gameday_key(state, key),
            Screen::Provision => on_provision_key(state, key),
            _ => on_normal_key(state, key),
        },
    }
}

fn on_confirm_key(state: &mut State, mut confirm: Confirm, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Esc => {
            state.notice(Level::Info, format!("{}: cancelled", confirm.title));
            Vec::new()
        }
        KeyCode::Enter => {
            if confirm.input == confirm.expected {
                vec![confirm.effect]
            } else {
                state.notice(Level::Info, format!("{}: cancelled", confirm.title));
                Vec::new()
            }
        }
        KeyCode::Backspace => {
            confirm.input.pop();
            state.mode = Mode::Confirm(Box::new(confirm));
            Vec::new()
        }
        KeyCode::Char(c) => {
            confirm.input.push(c);
            state.mode = Mode::Confirm(Box::new(confirm));
            Vec::new()
        }
        _ => {
            state.mode = Mode::Confirm(Box::new(confirm));
            Vec::new()
        }
    }
}

/// Commands that change something: not offered (and refused) in a read-only session.
const MUTATING_COMMANDS: &[&str] = &[
    "deploy", "gameday", "up", "down", "failover", "cancel", "rollback", "stop",
];

/// The commands this session offers, in [`COMMANDS`] order.
pub fn commands(read_only: bool) -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .copied()
        .filter(move |c| !(read_only && MUTATING_COMMANDS.contains(c)))
}

/// The offered commands that start with `input`.
pub fn command_matches(input: &str, read_only: bool) -> Vec<&'static str> {
    commands(read_only)
        .filter(|c| c.starts_with(input.trim()))
        .collect()
}

/// Completes a command-mode word: the one command it starts, or the longest common prefix.
pub fn complete(input: &str, read_only: bool) -> String {
    match command_matches(input, read_only).as_slice() {
        [] => input.to_string(),
        [one] => (*one).to_string(),
        many => {
            let first = many[0];
            let mut len = first.len();
            for other in &many[1..] {
                len = len.min(
                    first
                        .chars()
                        .zip(other.chars())
                        .take_while(|(a, b)| a == b)
                        .count(),
                );
            }
            first[..len].to_string()
        }
    }
}

fn on_command_key(state: &mut State, mut input: String, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Esc => Vec::new(),
        KeyCode::Tab => {
            state.mode = Mode::Command(complete(&input, state.read_only));
            Vec::new()
        }
        KeyCode::Backspace => {
            input.pop();
            state.mode = Mode::Command(input);
            Vec::new()
        }
        KeyCode::Char(c) => {
            input.push(c);
            state.mode = Mode::Command(input);
            Vec::new()
        }
        KeyCode::Enter => {
            let command = complete(input.trim(), state.read_only);
            run_command(state, &command)
        }
        _ => {
            state.mode = Mode::Command(input);
            Vec::new()
        }
    }
}

fn run_command(state: &mut State, command: &str) -> Vec<Effect> {
    match command {
        "dashboard" => state.go(Screen::Dashboard),
        "instances" => state.go(Screen::Instances),
        "events" => state.go(Screen::Events),
        "help" => state.go(Screen::Help),
        "deploy" => return open_deploy(state),
        "gameday" => return open_gameday(state),
        "plan" => return open_provision(state),
        "up" => return ask_apply(state),
        "down" => return ask_destroy(state),
        "failover" => return ask_failover(state),
        "cancel" => return ask_cancel(state),
        "rollback" => return ask_rollback(state),
        "stop" => return stop_drill(state),
        "quit" | "q" => {
            state.quit = true;
            return vec![Effect::Quit];
        }
        "" => {}
        other => state.notice(Level::Warn, format!("unknown command :{other}")),
    }
    Vec::new()
}

fn on_filter_key(state: &mut State, mut input: String, key: KeyEvent) {
    match key.code {
        KeyCode::Esc => state.filter.clear(),
        KeyCode::Enter => state.filter = input,
        KeyCode::Backspace => {
            input.pop();
            state.mode = Mode::Filter(input);
        }
        KeyCode::Char(c) => {
            input.push(c);
            state.mode = Mode::Filter(input);
        }
        _ => state.mode = Mode::Filter(input),
    }
    state.row = 0;
}

fn open_deploy(state: &mut State) -> Vec<Effect> {
    if !state.refuse_if_read_only("deploy") {
        state.go(Screen::Deploy);
    }
    Vec::new()
}

fn open_gameday(state: &mut State) -> Vec<Effect> {
    if state.drill.as_ref().is_some_and(|d| d.running) {
        state.go(Screen::GameDay);
        return Vec::new();
    }
    if !state.refuse_if_read_only("GameDay") {
        state.drill = None;
        state.go(Screen::GameDay);
    }
    Vec::new()
}

/// Opens the provisioning screen and plans, unless an operation is already under way (then
/// it only shows its progress).
fn open_provision(state: &mut State) -> Vec<Effect> {
    state.go(Screen::Provision);
    if state.provision.as_ref().is_some_and(ProvisionView::is_busy) {
        return Vec::new();
    }
    state.provision = Some(ProvisionView::new(ProvisionPhase::Planning));
    vec![Effect::Plan]
}

/// Asks to carry out the current plan (planning first when there is none).
fn ask_apply(state: &mut State) -> Vec<Effect> {
    if state.refuse_if_read_only("apply") {
        return Vec::new();
    }
    let plan = match &state.provision {
        Some(view) if view.phase == ProvisionPhase::Planned => view.plan.clone(),
        Some(view) if view.is_busy() => {
            state.go(Screen::Provision);
            state.notice(Level::Info, "an operation is already under way");
            return Vec::new();
        }
        _ => None,
    };
    let Some(plan) = plan else {
        state.notice(
            Level::Info,
            "planning first: press a again to apply the plan",
        );
        return open_provision(state);
    };
    state.go(Screen::Provision);
    if plan.is_empty() {
        state.notice(Level::Info, "the plan has no changes: nothing to apply");
        return Vec::new();
    }
    if let Some(blocker) = plan.blockers.first() {
        state.notice(Level::Error, format!("cannot apply: {blocker}"));
        return Vec::new();
    }
    let summary = plan.summary();
    let mut lines: Vec<String> = plan
        .prepare
        .iter()
        .map(|l| format!("First: {l}."))
        .collect();
    lines.extend([
        if plan.creates_stack {
            format!("Creates the stack: {summary}.")
        } else {
            format!("Changes the stack: {summary}.")
        },
        "Resources marked -/+ are replaced: the old one is deleted.".into(),
    ]);
    let title = format!("Apply the plan to {}?", state.stack.name);
    state.ask(title, lines, None, Effect::Apply(plan));
    Vec::new()
}

/// Asks to delete the stack: the stack's name must be typed, on every backend.
fn ask_destroy(state: &mut State) -> Vec<Effect> {
    if state.refuse_if_read_only("destroy") {
        return Vec::new();
    }
    if state.provision.as_ref().is_some_and(ProvisionView::is_busy) {
        state.go(Screen::Provision);
        state.notice(Level::Info, "an operation is already under way");
        return Vec::new();
    }
    state.go(Screen::Provision);
    let title = format!("Delete stack {} and everything in it?", state.stack.name);
    let lines = vec![
        "Every instance, the load balancer and the database are deleted.".into(),
        "The database's data is lost unless a final snapshot is kept.".into(),
    ];
    let expected = state.stack.name.clone();
    state.ask_for(title, lines, expected, Effect::Destroy);
    Vec::new()
}

fn on_provision_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Char('p') => open_provision(state),
        KeyCode::Char('a') => ask_apply(state),
        KeyCode::Char('D') => ask_destroy(state),
        _ => on_normal_key(state, key),
    }
}

fn ask_failover(state: &mut State) -> Vec<Effect> {
    if state.refuse_if_read_only("database failover") {
        return Vec::new();
    }
    state.go(Screen::GameDay);
    state.gameday.fault_index = Fault::KINDS
        .iter()
        .position(|k| *k == "failover-db")
        .unwrap_or(0);
    vec![Effect::DescribeFault(Fault::FailoverDb)]
}

fn ask_cancel(state: &mut State) -> Vec<Effect> {
    if state.refuse_if_read_only("cancel refresh") {
        return Vec::new();
    }
    match active_refresh_id(state) {
        Some(id) => state.ask(
            format!("Cancel instance refresh {id}?"),
            vec!["Instances already replaced stay replaced.".into()],
            None,
            Effect::CancelRefresh,
        ),
        None => state.notice(Level::Info, "no instance refresh is active"),
    }
    Vec::new()
}

fn ask_rollback(state: &mut State) -> Vec<Effect> {
    if state.refuse_if_read_only("rollback") {
        return Vec::new();
    }
    match active_refresh_id(state) {
        Some(id) => state.ask(
            format!("Roll back instance refresh {id}?"),
            vec!["Replaced instances go back to the previous launch template version.".into()],
            None,
            Effect::RollbackRefresh,
        ),
        None => state.notice(Level::Info, "no instance refresh is active"),
    }
    Vec::new()
}

fn stop_drill(state: &mut State) -> Vec<Effect> {
    if state.drill.as_ref().is_some_and(|d| d.running) {
        state.notice(Level::Warn, "stopping the GameDay: restoring now");
        vec![Effect::StopDrill]
    } else {
        state.notice(Level::Info, "no GameDay is running");
        Vec::new()
    }
}

fn active_refresh_id(state: &State) -> Option<RefreshId> {
    state
        .snapshot
        .as_ref()
        .and_then(|s| s.active_refresh())
        .map(|r| r.id.clone())
}

fn move_row(state: &mut State, down: bool) {
    let len = if state.screen == Screen::Events {
        state.listed_events().count()
    } else {
        state.listed_instances().len()
    };
    if down {
        if state.row + 1 < len {
            state.row += 1;
        }
    } else {
        state.row = state.row.saturating_sub(1);
    }
}

fn on_normal_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Char('q') => {
            state.quit = true;
            vec![Effect::Quit]
        }
        KeyCode::Char('?') => {
            state.go(Screen::Help);
            Vec::new()
        }
        KeyCode::Char(':') => {
            state.mode = Mode::Command(String::new());
            Vec::new()
        }
        KeyCode::Char('/') => {
            state.mode = Mode::Filter(state.filter.clone());
            Vec::new()
        }
        KeyCode::Esc => {
            if !state.filter.is_empty() {
                state.filter.clear();
            } else {
                state.back();
            }
            Vec::new()
        }
        KeyCode::Char('j') | KeyCode::Down => {
            move_row(state, true);
            Vec::new()
        }
        KeyCode::Char('k') | KeyCode::Up => {
            move_row(state, false);
            Vec::new()
        }
        KeyCode::Char('l') | KeyCode::Right | KeyCode::Tab => {
            let n = state.az_names().len().max(1);
            state.az = (state.az + 1) % n;
            state.row = 0;
            Vec::new()
        }
        KeyCode::Char('h') | KeyCode::Left | KeyCode::BackTab => {
            let n = state.az_names().len().max(1);
            state.az = (state.az + n - 1) % n;
            state.row = 0;
            Vec::new()
        }
        KeyCode::Enter | KeyCode::Char('i') => {
            state.go(Screen::Instances);
            Vec::new()
        }
        KeyCode::Char('e') => {
            state.go(Screen::Events);
            Vec::new()
        }
        KeyCode::Char('d') => open_deploy(state),
        KeyCode::Char('g') => open_gameday(state),
        KeyCode::Char('p') => open_provision(state),
        KeyCode::Char('F') => ask_failover(state),
        KeyCode::Char('C') => ask_cancel(state),
        KeyCode::Char('R') => ask_rollback(state),
        KeyCode::Char('s') => stop_drill(state),
        KeyCode::Char('y') if state.screen == Screen::Events => {
            // The selected event as a line of text, for an incident's notes.
            let line = state.listed_events().nth(state.row).map(|e| {
                format!(
                    "{} {} {}",
                    e.at.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    source_label(e.source),
                    e.message
                )
            });
            line.map(Effect::Copy).into_iter().collect()
        }
        KeyCode::Char('y') => {
            let ids = state.listed_instances();
            match ids.get(state.row) {
                Some(id) => vec![Effect::Copy(id.clone())],
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn on_deploy_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    let form = &mut state.deploy;
    let n = DeployForm::LABELS.len();
    let choosing = form.field >= DeployForm::FIRST_CHOICE;
    match key.code {
        KeyCode::Esc => state.back(),
        KeyCode::Tab | KeyCode::Down => form.field = (form.field + 1) % n,
        KeyCode::BackTab | KeyCode::Up => form.field = (form.field + n - 1) % n,
        KeyCode::Left if choosing => form.choose(false),
        KeyCode::Right | KeyCode::Char(' ') if choosing => form.choose(true),
        KeyCode::Backspace => {
            if let Some(text) = form.text_mut() {
                text.pop();
            }
        }
        KeyCode::Char(c) => {
            if let Some(text) = form.text_mut() {
                text.push(c);
            }
        }
        KeyCode::Enter => match form.request() {
            Ok(request) => {
                let lines = deploy_review(&request, &state.running_versions());
                let title = format!("Deploy {} to {}?", request.version, state.stack.name);
                state.ask(title, lines, None, Effect::Deploy(Box::new(request)));
            }
            Err(reason) => state.notice(Level::Error, reason),
        },
        _ => {}
    }
    Vec::new()
}

/// What the deploy confirmation says: what runs now, every preference, what is replaced.
fn deploy_review(request: &DeployRequest, running: &str) -> Vec<String> {
    let p = &request.preferences;
    let or_none = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    let checkpoints = if p.checkpoint_percentages.is_empty() {
        "no checkpoints".to_owned()
    } else {
        format!(
            "checkpoints at {} % (wait {} s at each)",
            or_none(p.checkpoint_percentages.iter().map(u8::to_string).collect()),
            p.checkpoint_delay_seconds
                .unwrap_or(DEFAULT_CHECKPOINT_DELAY_SECONDS)
        )
    };
    vec![
        format!("running now: {running}"),
        format!(
            "healthy {}–{} %, warmup {}, {checkpoints}, bake {} s",
            p.min_healthy_percentage,
            p.max_healthy_percentage,
            p.instance_warmup_seconds
                .map_or("the group's default".into(), |s| format!("{s} s")),
            p.bake_time_seconds,
        ),
        format!(
            "auto rollback {}, alarms {}, scale-in protected {}, standby {}",
            if p.auto_rollback { "yes" } else { "no" },
            or_none(p.alarms.clone()),
            p.scale_in_protected_instances,
            p.standby_instances,
        ),
        if p.skip_matching {
            "Instances already on the new configuration are kept; the others are replaced."
        } else {
            "Every instance is replaced by an instance refresh."
        }
        .into(),
    ]
}

fn on_gameday_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    if state.drill.is_some() {
        return match key.code {
            KeyCode::Char('s') => stop_drill(state),
            KeyCode::Esc | KeyCode::Char('q') => {
                state.back();
                Vec::new()
            }
            _ => Vec::new(),
        };
    }
    let azs = state.az_names();
    let form = &mut state.gameday;
    let n = GamedayForm::LABELS.len();
    match key.code {
        KeyCode::Esc => state.back(),
        KeyCode::Tab | KeyCode::Down => form.field = (form.field + 1) % n,
        KeyCode::BackTab | KeyCode::Up => form.field = (form.field + n - 1) % n,
        KeyCode::Left | KeyCode::Right | KeyCode::Char(' ') => {
            let forward = key.code != KeyCode::Left;
            let step = |i: usize, len: usize| {
                let len = len.max(1);
                if forward {
                    (i + 1) % len
                } else {
                    (i + len - 1) % len
                }
            };
            match form.field {
                0 => form.az_index = step(form.az_index, azs.len()),
                1 => form.fault_index = step(form.fault_index, Fault::KINDS.len()),
                7 => form.force = !form.force,
                _ => {}
            }
        }
        KeyCode::Backspace => {
            if let Some(text) = form.text_mut() {
                text.pop();
            }
        }
        KeyCode::Char(c) if c.is_ascii_digit() => {
            if let Some(text) = form.text_mut() {
                text.push(c);
            }
        }
        KeyCode::Enter => match form.config(&azs) {
            Ok(config) => return vec![Effect::DescribeFault(config.fault)],
            Err(reason) => state.notice(Level::Error, reason),
        },
        _ => {}
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyEventKind, KeyEventState};
    use rstest::rstest;

    fn key(code: KeyCode) -> Action {
        Action::Key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    fn chars(state: &mut State, text: &str) -> Vec<Effect> {
        text.chars()
            .flat_map(|c| update(state, key(KeyCode::Char(c))))
            .collect()
    }

    fn state(backend: BackendKind, read_only: bool) -> State {
        let stack = StackRef::new("demo").expect("stack name");
        State::new(stack, backend, "here".into(), read_only)
    }

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
    #[case('g', "GameDay")]
    #[case('F', "database failover")]
    #[case('C', "cancel refresh")]
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
        assert_eq!(command_matches("", true).len(), COMMANDS.len() - 8);
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

    /// A snapshot of `stack` with one in-service instance per version given (and one pending
    /// that must not count).
    fn with_versions(s: &mut State, versions: &[&str]) {
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
        // scale-in protected: → steps forward from Ignore, ← back again wraps to Refresh.
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Tab));
        update(&mut s, key(KeyCode::Right));
        assert_eq!(s.deploy.scale_in_protected, ScaleInProtectedInstances::Wait);
        update(&mut s, key(KeyCode::Left));
        update(&mut s, key(KeyCode::Left));
        assert_eq!(
            s.deploy.scale_in_protected,
            ScaleInProtectedInstances::Refresh
        );
        // standby: ← from Ignore is Terminate; typing on a choice field changes nothing.
        update(&mut s, key(KeyCode::Tab));
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
            review.contains("scale-in protected Refresh, standby Terminate"),
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
            ScaleInProtectedInstances::Refresh
        );
        assert_eq!(p.standby_instances, StandbyInstances::Terminate);
    }

    #[test]
    fn gameday_dialog_sets_every_stop_condition_as_the_command_line_does() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0"]);
        update(&mut s, key(KeyCode::Char('g')));
        // duration 10, rate 20, signups 0, error 25 %, below 2 healthy.
        let fields = [(2, "10"), (4, "0"), (5, "25"), (6, "2")];
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
        assert_eq!(s.gameday.hint(4).as_deref(), Some("none"));
        // Only digits are typed into a number; an error rate above 100 is named.
        s.gameday.field = 5;
        chars(&mut s, "0x");
        assert_eq!(s.gameday.max_error_pct, "250");
        let error = s.gameday.config(&s.az_names()).expect_err("250 %");
        assert!(error.contains("stop at error %"), "{error}");
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

    fn plan(stack: &StackRef, changes: usize) -> Plan {
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
}
