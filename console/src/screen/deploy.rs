//! The deploy dialog: every refresh preference AWS offers, its keys, its review and drawing.

use provision::port::{
    DEFAULT_CHECKPOINT_DELAY_SECONDS, DeployRequest, RefreshPreferences, ScaleInProtectedInstances,
    StandbyInstances,
};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Paragraph};

use crate::app::{Effect, Level, Screen, State};
use crate::keys::Act;
use crate::ui::{add_hints, form_lines};

/// A field of the deploy dialog, in the order the dialog shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployField {
    Version,
    MinHealthy,
    MaxHealthy,
    Warmup,
    Checkpoints,
    CheckpointDelay,
    BakeTime,
    Alarms,
    SkipMatching,
    AutoRollback,
    ScaleInProtected,
    Standby,
}

impl DeployField {
    pub const ALL: [DeployField; 12] = [
        DeployField::Version,
        DeployField::MinHealthy,
        DeployField::MaxHealthy,
        DeployField::Warmup,
        DeployField::Checkpoints,
        DeployField::CheckpointDelay,
        DeployField::BakeTime,
        DeployField::Alarms,
        DeployField::SkipMatching,
        DeployField::AutoRollback,
        DeployField::ScaleInProtected,
        DeployField::Standby,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DeployField::Version => "version",
            DeployField::MinHealthy => "min healthy %",
            DeployField::MaxHealthy => "max healthy %",
            DeployField::Warmup => "instance warmup s",
            DeployField::Checkpoints => "checkpoints %",
            DeployField::CheckpointDelay => "checkpoint delay s",
            DeployField::BakeTime => "bake time s",
            DeployField::Alarms => "alarms",
            DeployField::SkipMatching => "skip matching",
            DeployField::AutoRollback => "auto rollback",
            DeployField::ScaleInProtected => "scale-in protected",
            DeployField::Standby => "standby instances",
        }
    }

    /// What an empty field means, when the field may be left empty.
    pub fn empty_hint(self) -> Option<&'static str> {
        match self {
            DeployField::Warmup => Some("the group's default warmup"),
            DeployField::Checkpoints => Some("none (e.g. 20,50)"),
            DeployField::Alarms => Some("none (alarm names, comma-separated)"),
            _ => None,
        }
    }

    /// Chosen (yes/no or one of a list) rather than typed.
    pub fn is_choice(self) -> bool {
        matches!(
            self,
            DeployField::SkipMatching
                | DeployField::AutoRollback
                | DeployField::ScaleInProtected
                | DeployField::Standby
        )
    }

    /// The next field (`forward`) or the previous one, wrapping.
    pub fn step(self, forward: bool) -> DeployField {
        cycle(&Self::ALL, self, forward)
    }
}

/// The deploy dialog's fields: every refresh preference AWS offers, with AWS's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployForm {
    pub field: DeployField,
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
            field: DeployField::Version,
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
pub(crate) fn cycle<T: Copy + PartialEq>(all: &[T], current: T, forward: bool) -> T {
    let n = all.len();
    let i = all.iter().position(|v| *v == current).unwrap_or(0);
    all[if forward {
        (i + 1) % n
    } else {
        (i + n - 1) % n
    }]
}

impl DeployForm {
    pub fn value(&self, field: DeployField) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        match field {
            DeployField::SkipMatching => yes_no(self.skip_matching),
            DeployField::AutoRollback => yes_no(self.auto_rollback),
            DeployField::ScaleInProtected => format!("‹ {} ›", self.scale_in_protected),
            DeployField::Standby => format!("‹ {} ›", self.standby),
            text => self.text(text).cloned().unwrap_or_default(),
        }
    }

    fn text(&self, field: DeployField) -> Option<&String> {
        match field {
            DeployField::Version => Some(&self.version),
            DeployField::MinHealthy => Some(&self.min_healthy),
            DeployField::MaxHealthy => Some(&self.max_healthy),
            DeployField::Warmup => Some(&self.warmup),
            DeployField::Checkpoints => Some(&self.checkpoints),
            DeployField::CheckpointDelay => Some(&self.checkpoint_delay),
            DeployField::BakeTime => Some(&self.bake_time),
            DeployField::Alarms => Some(&self.alarms),
            _ => None,
        }
    }

    /// What an empty text field means, shown in its place.
    pub fn placeholder(&self, field: DeployField) -> Option<String> {
        if !self.value(field).is_empty() {
            return None;
        }
        match field {
            DeployField::CheckpointDelay if self.checkpoints.trim().is_empty() => {
                Some("needs checkpoints".into())
            }
            DeployField::CheckpointDelay => Some(format!(
                "{DEFAULT_CHECKPOINT_DELAY_SECONDS} (AWS's default)"
            )),
            other => other.empty_hint().map(str::to_owned),
        }
    }

    fn text_mut(&mut self) -> Option<&mut String> {
        match self.field {
            DeployField::Version => Some(&mut self.version),
            DeployField::MinHealthy => Some(&mut self.min_healthy),
            DeployField::MaxHealthy => Some(&mut self.max_healthy),
            DeployField::Warmup => Some(&mut self.warmup),
            DeployField::Checkpoints => Some(&mut self.checkpoints),
            DeployField::CheckpointDelay => Some(&mut self.checkpoint_delay),
            DeployField::BakeTime => Some(&mut self.bake_time),
            DeployField::Alarms => Some(&mut self.alarms),
            _ => None,
        }
    }

    /// Flips a yes/no field or steps a choice; `forward` is false for ←.
    fn choose(&mut self, forward: bool) {
        match self.field {
            DeployField::SkipMatching => self.skip_matching = !self.skip_matching,
            DeployField::AutoRollback => self.auto_rollback = !self.auto_rollback,
            DeployField::ScaleInProtected => {
                self.scale_in_protected = cycle(
                    ScaleInProtectedInstances::ALL,
                    self.scale_in_protected,
                    forward,
                )
            }
            DeployField::Standby => {
                self.standby = cycle(StandbyInstances::ALL, self.standby, forward)
            }
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

pub(crate) fn open_deploy(state: &mut State) -> Vec<Effect> {
    state.go(Screen::Deploy);
    Vec::new()
}

/// A key-table action on the deploy dialog (`typed` is the character of a typing key).
pub(crate) fn on_form(state: &mut State, act: Act, typed: Option<char>) -> Vec<Effect> {
    let form = &mut state.deploy;
    match act {
        Act::NextField => form.field = form.field.step(true),
        Act::PreviousField => form.field = form.field.step(false),
        Act::ChooseNext => form.choose(true),
        Act::ChoosePrevious => form.choose(false),
        Act::Type => match (form.text_mut(), typed) {
            (Some(text), Some(c)) => text.push(c),
            // Space flips or steps a choice; other characters do nothing there.
            (None, Some(' ')) => form.choose(true),
            _ => {}
        },
        Act::Erase => {
            if let Some(text) = form.text_mut() {
                text.pop();
            }
        }
        Act::Submit => match form.request() {
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
pub(crate) fn deploy_review(request: &DeployRequest, running: &str) -> Vec<String> {
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

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
    let form = &state.deploy;
    let labels = DeployField::ALL.map(DeployField::label);
    let values = DeployField::ALL.map(|f| form.value(f));
    let focused = DeployField::ALL.iter().position(|f| *f == form.field);
    let mut lines = form_lines(&labels, &values, focused);
    // What an empty field means, dim in its place: the running versions beside an empty
    // version, AWS's behaviour beside an empty preference. The keys are in the footer.
    add_hints(&mut lines, |i| match DeployField::ALL[i] {
        DeployField::Version if form.version.is_empty() => {
            Some(format!("running now: {}", state.running_versions()))
        }
        field => form.placeholder(field),
    });
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" deploy: instance refresh ")),
        area,
    );
}
