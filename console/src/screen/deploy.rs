//! The deploy dialog: every refresh preference AWS offers, its keys, its review and drawing.

use crossterm::event::{KeyCode, KeyEvent};
use provision::port::{
    DEFAULT_CHECKPOINT_DELAY_SECONDS, DeployRequest, RefreshPreferences, ScaleInProtectedInstances,
    StandbyInstances,
};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use crate::app::{Effect, Level, Screen, State};
use crate::ui::{add_hints, form_lines};

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

pub(crate) fn open_deploy(state: &mut State) -> Vec<Effect> {
    if !state.refuse_if_read_only("deploy") {
        state.go(Screen::Deploy);
    }
    Vec::new()
}

pub(crate) fn on_deploy_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
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
    let values: Vec<String> = (0..DeployForm::LABELS.len())
        .map(|i| form.value(i))
        .collect();
    let mut lines = form_lines(&DeployForm::LABELS, &values, form.field);
    // What an empty field means, dim in its place: the running versions beside an empty
    // version, AWS's behaviour beside an empty preference.
    add_hints(&mut lines, |i| match i {
        0 if form.version.is_empty() => Some(format!("running now: {}", state.running_versions())),
        _ => form.placeholder(i),
    });
    lines.push(Line::from(""));
    lines.push(Line::from(
        "Tab/↑↓ field · type to edit · ←→ space choose · Enter review · Esc back".dim(),
    ));
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" deploy: instance refresh ")),
        area,
    );
}
