//! The load screen: the dialog that sets a load up (rate, ramp, duration, signups), then the
//! load's live view — req/s against the target, p50/p99, errors, capacity per AZ and desired —
//! and its report. `s` stops the load (the report is still written).

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Sparkline, Wrap};

use crate::app::{Effect, Level, Screen, State};
use crate::keys::Act;
use crate::load::engine::{LoadPlan, LoadUpdate};
use crate::load::generator::{LiveStats, LoadSecond, Schedule};
use crate::load::phases::Observation;
use crate::load::report::LoadReport;
use crate::policy;
use crate::screen::gameday::capacity_bars;
use crate::ui::{add_hints, form_lines};

/// A field of the load dialog, in the order the dialog shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadField {
    Rate,
    To,
    Ramp,
    Duration,
    Signups,
}

impl LoadField {
    pub const ALL: [LoadField; 5] = [
        LoadField::Rate,
        LoadField::To,
        LoadField::Ramp,
        LoadField::Duration,
        LoadField::Signups,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LoadField::Rate => "rate /s",
            LoadField::To => "ramp to /s",
            LoadField::Ramp => "ramp s",
            LoadField::Duration => "duration s",
            LoadField::Signups => "signups /s",
        }
    }

    pub fn step(self, forward: bool) -> LoadField {
        crate::screen::deploy::cycle(&Self::ALL, self, forward)
    }
}

/// The load dialog's fields, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadForm {
    pub field: LoadField,
    pub rate: String,
    pub to: String,
    pub ramp: String,
    pub duration: String,
    pub signups: String,
}

impl Default for LoadForm {
    fn default() -> Self {
        LoadForm {
            field: LoadField::Rate,
            rate: "20".into(),
            to: String::new(),
            ramp: String::new(),
            duration: "60".into(),
            signups: "0".into(),
        }
    }
}

impl LoadForm {
    fn text_mut(&mut self) -> &mut String {
        match self.field {
            LoadField::Rate => &mut self.rate,
            LoadField::To => &mut self.to,
            LoadField::Ramp => &mut self.ramp,
            LoadField::Duration => &mut self.duration,
            LoadField::Signups => &mut self.signups,
        }
    }

    fn values(&self) -> Vec<String> {
        vec![
            self.rate.clone(),
            self.to.clone(),
            self.ramp.clone(),
            self.duration.clone(),
            self.signups.clone(),
        ]
    }

    /// What an empty or zero field means.
    pub fn hint(&self, field: LoadField) -> Option<String> {
        let empty = |t: &str| t.trim().is_empty();
        match field {
            LoadField::To if empty(&self.to) => Some("no ramp: a constant rate".into()),
            LoadField::Ramp if empty(&self.ramp) && !empty(&self.to) => {
                Some("seconds to reach the ramp's rate".into())
            }
            LoadField::Signups if self.signups.trim() == "0" => Some("none".into()),
            LoadField::Signups => Some("SES mailbox-simulator addresses".into()),
            _ => None,
        }
    }

    /// The load this form describes (the command line's rules: [`Schedule::from_flags`]).
    pub fn plan(&self) -> Result<LoadPlan, String> {
        fn num<T: std::str::FromStr>(label: &str, text: &str) -> Result<T, String> {
            text.trim()
                .parse()
                .map_err(|_| format!("{label}: {text:?} is not a number in range"))
        }
        fn optional<T: std::str::FromStr>(label: &str, text: &str) -> Result<Option<T>, String> {
            if text.trim().is_empty() {
                Ok(None)
            } else {
                num(label, text).map(Some)
            }
        }
        let to = optional::<u32>("ramp to /s", &self.to)?;
        let ramp = optional::<u64>("ramp s", &self.ramp)?;
        if to.is_some() != ramp.is_some() {
            return Err("a ramp needs both its rate and its seconds".into());
        }
        let schedule = Schedule::from_flags(
            num("rate /s", &self.rate)?,
            to,
            ramp,
            num("duration s", &self.duration)?,
        )?;
        let mut plan = LoadPlan::new(schedule);
        plan.signup_rate = num("signups /s", &self.signups)?;
        Ok(plan)
    }
}

/// What the console shows of a running (or finished) load.
#[derive(Debug, Clone, Default)]
pub struct LoadView {
    pub title: String,
    /// The load's shape ("60 req/s on /version, for 60 s").
    pub shape: Option<String>,
    pub endpoint: String,
    pub running: bool,
    /// The second the load stopped sending (the scale-in watch goes on).
    pub ended_at: Option<u64>,
    pub live: Option<LiveStats>,
    pub seconds: Vec<LoadSecond>,
    pub observations: Vec<Observation>,
    pub report: Option<Box<LoadReport>>,
    pub report_files: Vec<String>,
}

/// Keeps at most an hour of seconds in the view.
const KEEP: usize = 3600;

pub(crate) fn on_load(state: &mut State, update: LoadUpdate) {
    let view = state.load.get_or_insert_with(LoadView::default);
    match update {
        LoadUpdate::Started {
            title,
            shape,
            endpoint,
        } => {
            *view = LoadView {
                title,
                shape: Some(shape),
                endpoint,
                running: true,
                ..LoadView::default()
            };
        }
        LoadUpdate::Live(live) => view.live = Some(live),
        LoadUpdate::Second(second) => {
            view.seconds.push(second);
            if view.seconds.len() > KEEP {
                view.seconds.remove(0);
            }
        }
        LoadUpdate::Observed(o) => {
            view.observations.push(o);
            if view.observations.len() > KEEP {
                view.observations.remove(0);
            }
        }
        LoadUpdate::LoadEnded { second } => view.ended_at = Some(second),
        LoadUpdate::Finished { report, files } => {
            view.running = false;
            view.report = Some(report);
            view.report_files = files;
            let files = view.report_files.join(", ");
            state.notice(Level::Info, format!("load report written: {files}"));
        }
        LoadUpdate::Failed(error) => {
            view.running = false;
            state.notice(Level::Error, format!("load failed: {error}"));
        }
    }
}

/// `L`: the load's view while one runs, else the dialog.
pub(crate) fn open_load(state: &mut State) -> Vec<Effect> {
    if !state.load.as_ref().is_some_and(|l| l.running) {
        state.load = None;
    }
    state.go(Screen::Load);
    Vec::new()
}

pub(crate) fn stop_load(state: &mut State) -> Vec<Effect> {
    if state.load.as_ref().is_some_and(|l| l.running) {
        state.notice(Level::Warn, "stopping the load: the report follows");
        vec![Effect::StopLoad]
    } else {
        state.notice(Level::Info, "no load is running");
        Vec::new()
    }
}

/// A key-table action on the load dialog (`typed` is the digit of a typing key).
pub(crate) fn on_form(state: &mut State, act: Act, typed: Option<char>) -> Vec<Effect> {
    let form = &mut state.load_form;
    match act {
        Act::NextField => form.field = form.field.step(true),
        Act::PreviousField => form.field = form.field.step(false),
        Act::Type => {
            if let Some(c) = typed {
                form.text_mut().push(c);
            }
        }
        Act::Erase => {
            form.text_mut().pop();
        }
        Act::Submit => return ask_load(state),
        _ => {}
    }
    Vec::new()
}

/// The confirmation of a load: the endpoint and the peak rate, the WAF warning on AWS, and a
/// GameDay running meanwhile; the stack's name typed on production stacks.
fn ask_load(state: &mut State) -> Vec<Effect> {
    let plan = match state.load_form.plan() {
        Ok(plan) => plan,
        Err(reason) => {
            state.notice(Level::Error, reason);
            return Vec::new();
        }
    };
    let Some(endpoint) = state.snapshot.as_ref().and_then(|s| s.endpoint.clone()) else {
        state.notice(Level::Error, "the stack has no endpoint to load yet");
        return Vec::new();
    };
    let mut lines = vec![
        policy::load_prompt(&state.stack, &endpoint, &plan.schedule),
        plan.shape().describe(),
    ];
    if state.backend == provision::port::BackendKind::Aws
        && let Some(warning) = policy::waf_warning(state.waf_rate_limit, &plan.schedule)
    {
        lines.push(format!("Warning: {warning}"));
    }
    if state.drill.as_ref().is_some_and(|d| d.running) {
        lines.push("A GameDay is running: each report will note the other.".into());
    }
    let title = format!("Load: up to {} req/s", plan.schedule.peak());
    let expected = policy::confirmation_word(state.is_production(), &state.stack, None);
    state.ask_for(title, lines, expected, Effect::StartLoad(Box::new(plan)));
    Vec::new()
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
    let Some(load) = &state.load else {
        let form = &state.load_form;
        let labels = LoadField::ALL.map(LoadField::label);
        let focused = LoadField::ALL.iter().position(|f| *f == form.field);
        let mut lines = form_lines(&labels, &form.values(), focused);
        add_hints(&mut lines, |i| form.hint(LoadField::ALL[i]));
        let endpoint = state
            .snapshot
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .unwrap_or_else(|| "no endpoint yet".into());
        lines.push(Line::from(""));
        lines.push(Line::from(format!("at {endpoint}, GET /version")).dim());
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" Load ")),
            area,
        );
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let mut lines = vec![Line::from(format!("at {}", load.endpoint)).dim()];
    if let Some(shape) = &load.shape {
        lines.insert(0, Line::from(shape.clone()));
    }
    if let Some(live) = &load.live {
        lines.push(Line::from(crate::commands::load_line(
            live,
            load.observations.last(),
        )));
        let kinds: Vec<String> = live
            .failed
            .iter()
            .map(|(kind, n)| format!("{n} {}", kind.name()))
            .collect();
        lines.push(Line::from(format!(
            "sent {} · ok {} · in flight {}{}",
            live.sent,
            live.ok,
            live.in_flight,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" · failed {}", kinds.join(", "))
            }
        )));
    }
    if let Some(at) = load.ended_at
        && load.running
    {
        lines.push(Line::from(format!(
            "load ended at {at} s; watching the scale-in back to min"
        )));
    }
    if let Some(report) = &load.report {
        lines.push(Line::from(""));
        for text in crate::load::report::summary_lines(report) {
            lines.push(Line::from(text));
        }
        if let Some(dir) = load
            .report_files
            .first()
            .and_then(|f| std::path::Path::new(f).parent())
        {
            lines.push(Line::from(format!("report in {}", dir.display())).dim());
        }
    }
    let phase = match (load.running, load.ended_at) {
        (true, None) => "running",
        (true, Some(_)) => "scale-in",
        (false, _) if load.report.is_some() => "report",
        (false, _) => "failed",
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(format!(" {} · {phase} ", load.title))),
        left,
    );
    let [cap, rate, p99] = Layout::vertical([
        Constraint::Percentage(40),
        Constraint::Percentage(30),
        Constraint::Percentage(30),
    ])
    .areas(right);
    let mut cap_lines = Vec::new();
    if let Some(last) = load.observations.last() {
        let width = cap.width.saturating_sub(20) as usize;
        let skip = load.observations.len().saturating_sub(width);
        for (az, n) in &last.healthy {
            let series: Vec<u64> = load.observations[skip..]
                .iter()
                .map(|o| u64::from(o.healthy.get(az).copied().unwrap_or(0)))
                .collect();
            cap_lines.push(Line::from(format!(
                "{az:<14} {n:>2} {}",
                capacity_bars(&series)
            )));
        }
        let series: Vec<u64> = load.observations[skip..]
            .iter()
            .map(|o| u64::from(o.desired.unwrap_or(0)))
            .collect();
        cap_lines.push(Line::from(format!(
            "{:<14} {:>2} {}",
            "desired",
            last.desired.map_or_else(|| "?".into(), |d| d.to_string()),
            capacity_bars(&series)
        )));
    }
    frame.render_widget(
        Paragraph::new(cap_lines).block(Block::bordered().title(" healthy capacity per AZ ")),
        cap,
    );
    let width = rate.width.saturating_sub(2) as usize;
    let skip = load.seconds.len().saturating_sub(width);
    let ok: Vec<u64> = load.seconds[skip..]
        .iter()
        .map(|s| u64::from(s.ok))
        .collect();
    let target = load.live.as_ref().map_or(0.0, |l| l.target_rate).round();
    frame.render_widget(
        Sparkline::default()
            .data(&ok)
            .style(Style::new().fg(Color::Green))
            .block(Block::bordered().title(format!(
                " answered req/s (last {}, target {target}) ",
                ok.last().copied().unwrap_or(0)
            ))),
        rate,
    );
    let lat: Vec<u64> = load.seconds[skip..]
        .iter()
        .map(|s| s.p99_ms.unwrap_or(0.0).round() as u64)
        .collect();
    frame.render_widget(
        Sparkline::default()
            .data(&lat)
            .style(Style::new().fg(Color::Cyan))
            .block(Block::bordered().title(format!(
                " p99 ms (last {}) ",
                lat.last().copied().unwrap_or(0)
            ))),
        p99,
    );
}

/// The plan the console starts: where its report goes and where it lists itself running.
pub fn console_plan(mut plan: LoadPlan, stack: &provision::port::StackRef) -> LoadPlan {
    plan.report_dir = Some(policy::load_report_dir(
        stack,
        None,
        time::OffsetDateTime::now_utc(),
    ));
    plan.activity_dir = Some(crate::backend::stack_dir(stack));
    plan.timeout = Duration::from_secs(5);
    plan
}
