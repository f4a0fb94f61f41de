//! The GameDay screen: the dialog that configures a drill, then the drill's live view and
//! report; database failover and stopping a drill.

use std::time::Duration;

use provision::port::{Fault, FaultKind};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Sparkline, Wrap};

use crate::app::{Effect, Level, Screen, State};
use crate::drill::engine::{DrillConfig, DrillUpdate, StopConditions};
use crate::drill::probe::ProbeSecond;
use crate::drill::report::{CapacitySample, DrillReport, StepRecord};
use crate::keys::Act;
use crate::ui::{add_hints, form_lines};

/// A field of the GameDay dialog, in the order the dialog shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GamedayField {
    Az,
    Fault,
    Duration,
    Rate,
    Signups,
    MaxError,
    MinHealthy,
    Force,
}

impl GamedayField {
    pub const ALL: [GamedayField; 8] = [
        GamedayField::Az,
        GamedayField::Fault,
        GamedayField::Duration,
        GamedayField::Rate,
        GamedayField::Signups,
        GamedayField::MaxError,
        GamedayField::MinHealthy,
        GamedayField::Force,
    ];

    pub fn label(self) -> &'static str {
        match self {
            GamedayField::Az => "AZ",
            GamedayField::Fault => "fault",
            GamedayField::Duration => "duration s",
            GamedayField::Rate => "probe rate /s",
            GamedayField::Signups => "signups /s",
            GamedayField::MaxError => "stop at error %",
            GamedayField::MinHealthy => "stop below healthy",
            GamedayField::Force => "force",
        }
    }

    /// The next field (`forward`) or the previous one, wrapping.
    pub fn step(self, forward: bool) -> GamedayField {
        crate::screen::deploy::cycle(&Self::ALL, self, forward)
    }
}

/// The GameDay dialog's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GamedayForm {
    pub field: GamedayField,
    pub az_index: usize,
    /// The port's fault kind, carried as such to the drill's `Fault`.
    pub fault: FaultKind,
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
            field: GamedayField::Az,
            az_index: 0,
            fault: FaultKind::TerminateAz,
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
    fn text_mut(&mut self) -> Option<&mut String> {
        match self.field {
            GamedayField::Duration => Some(&mut self.duration),
            GamedayField::Rate => Some(&mut self.rate),
            GamedayField::Signups => Some(&mut self.signups),
            GamedayField::MaxError => Some(&mut self.max_error_pct),
            GamedayField::MinHealthy => Some(&mut self.min_healthy),
            _ => None,
        }
    }

    /// What a field's value means when that is not plain: the drill's ceiling beside the
    /// duration, "off"/"none" beside a zero.
    pub fn hint(&self, field: GamedayField) -> Option<String> {
        let zero = |text: &str| text.trim() == "0";
        match field {
            GamedayField::Duration => self.duration.trim().parse::<u64>().ok().map(|secs| {
                let ceiling = StopConditions::ceiling(Duration::from_secs(secs.max(1)));
                format!("the drill stops after {} s at most", ceiling.as_secs())
            }),
            GamedayField::Signups if zero(&self.signups) => Some("none".into()),
            GamedayField::Signups => Some("each acknowledged one is checked afterwards".into()),
            GamedayField::MinHealthy if zero(&self.min_healthy) => Some("off".into()),
            GamedayField::MinHealthy => Some("instances in service across the AZs".into()),
            GamedayField::Force if self.force => {
                Some("even when the other AZs have no healthy capacity".into())
            }
            _ => None,
        }
    }

    /// The drill this form describes.
    pub fn config(&self, azs: &[String]) -> Result<DrillConfig, String> {
        let az = azs.get(self.az_index % azs.len().max(1));
        if self.fault.needs_az() && az.is_none() {
            return Err("AZ: no AZ is known yet".into());
        }
        let fault = self
            .fault
            .in_az(az.map(String::as_str))
            .map_err(|e| e.to_string())?;
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

pub(crate) fn on_drill(state: &mut State, update: DrillUpdate) {
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

pub(crate) fn open_gameday(state: &mut State) -> Vec<Effect> {
    if state.drill.as_ref().is_some_and(|d| d.running) {
        state.go(Screen::GameDay);
        return Vec::new();
    }
    state.drill = None;
    state.go(Screen::GameDay);
    Vec::new()
}

pub(crate) fn ask_failover(state: &mut State) -> Vec<Effect> {
    state.go(Screen::GameDay);
    state.gameday.fault = FaultKind::FailoverDb;
    vec![Effect::DescribeFault(Fault::FailoverDb)]
}

pub(crate) fn stop_drill(state: &mut State) -> Vec<Effect> {
    if state.drill.as_ref().is_some_and(|d| d.running) {
        state.notice(Level::Warn, "stopping the GameDay: restoring now");
        vec![Effect::StopDrill]
    } else {
        state.notice(Level::Info, "no GameDay is running");
        Vec::new()
    }
}

/// A key-table action on the GameDay dialog (`typed` is the digit of a typing key).
pub(crate) fn on_form(state: &mut State, act: Act, typed: Option<char>) -> Vec<Effect> {
    let azs = state.az_names();
    let form = &mut state.gameday;
    let step = |i: usize, len: usize, forward: bool| {
        let len = len.max(1);
        if forward {
            (i + 1) % len
        } else {
            (i + len - 1) % len
        }
    };
    match act {
        Act::NextField => form.field = form.field.step(true),
        Act::PreviousField => form.field = form.field.step(false),
        Act::ChooseNext | Act::ChoosePrevious => {
            let forward = act == Act::ChooseNext;
            match form.field {
                GamedayField::Az => form.az_index = step(form.az_index, azs.len(), forward),
                GamedayField::Fault => {
                    form.fault = crate::screen::deploy::cycle(&FaultKind::ALL, form.fault, forward)
                }
                GamedayField::Force => form.force = !form.force,
                _ => {}
            }
        }
        Act::Type => {
            if let (Some(text), Some(c)) = (form.text_mut(), typed) {
                text.push(c);
            }
        }
        Act::Erase => {
            if let Some(text) = form.text_mut() {
                text.pop();
            }
        }
        Act::Submit => match form.config(&azs) {
            Ok(config) => return vec![Effect::DescribeFault(config.fault)],
            Err(reason) => state.notice(Level::Error, reason),
        },
        _ => {}
    }
    Vec::new()
}

pub(crate) fn gameday_values(form: &GamedayForm, azs: &[String]) -> Vec<String> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    vec![
        if !form.fault.needs_az() {
            "(the primary's AZ)".to_string()
        } else {
            azs.get(form.az_index % azs.len().max(1))
                .cloned()
                .map_or("—".into(), |a| format!("‹ {a} ›"))
        },
        format!("‹ {} ›", form.fault),
        form.duration.clone(),
        form.rate.clone(),
        form.signups.clone(),
        form.max_error_pct.clone(),
        form.min_healthy.clone(),
        yes_no(form.force),
    ]
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
    let Some(drill) = &state.drill else {
        let form = &state.gameday;
        let values = gameday_values(form, &state.az_names());
        let labels = GamedayField::ALL.map(GamedayField::label);
        let focused = GamedayField::ALL.iter().position(|f| *f == form.field);
        let mut lines = form_lines(&labels, &values, focused);
        // The keys are in the footer.
        add_hints(&mut lines, |i| form.hint(GamedayField::ALL[i]));
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" GameDay ")),
            area,
        );
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let mut lines: Vec<Line> = drill
        .steps
        .iter()
        .map(|s| Line::from(format!("t+{:>3}s {:<13} {}", s.second, s.step, s.detail)))
        .collect();
    if let Some(report) = &drill.report {
        lines.push(Line::from(""));
        let color = match report.verdict {
            crate::drill::report::Verdict::Passed => Color::Green,
            crate::drill::report::Verdict::Failed => Color::Red,
        };
        for (i, text) in crate::drill::report::summary_lines(report)
            .into_iter()
            .enumerate()
        {
            lines.push(if i == 0 {
                Line::from(text).bold().fg(color)
            } else {
                Line::from(text)
            });
        }
        // The directory once, then the files' names.
        let paths: Vec<&std::path::Path> = drill
            .report_files
            .iter()
            .map(std::path::Path::new)
            .collect();
        if let Some(dir) = paths.first().and_then(|p| p.parent()) {
            let names: Vec<String> = paths
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            lines.push(Line::from(format!("in {}: {}", dir.display(), names.join(" "))).dim());
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(format!(" {} · {} ", drill.title, drill.phase))),
        left,
    );
    let [cap, probe, p99] = Layout::vertical([
        Constraint::Percentage(40),
        Constraint::Percentage(30),
        Constraint::Percentage(30),
    ])
    .areas(right);
    let mut cap_lines = Vec::new();
    if let Some(last) = drill.capacity.last() {
        for (az, n) in &last.healthy {
            let series: Vec<u64> = drill
                .capacity
                .iter()
                .map(|c| u64::from(c.healthy.get(az).copied().unwrap_or(0)))
                .collect();
            let width = cap.width.saturating_sub(20) as usize;
            let skip = series.len().saturating_sub(width);
            let bars = capacity_bars(&series[skip..]);
            cap_lines.push(Line::from(format!("{az:<14} {n:>2} {bars}")));
        }
    }
    // The database's roles as the watch sees them now: a failover shows here as it happens.
    if let Some(snapshot) = &state.snapshot {
        let role = |az: Option<&str>| az.unwrap_or("—").to_owned();
        let status = snapshot
            .azs
            .iter()
            .find_map(|az| az.database.as_ref())
            .map_or(String::new(), |db| format!(" {}", db.status));
        cap_lines.push(Line::from(format!(
            "DB primary {}{status}",
            role(snapshot.db_primary_az())
        )));
        cap_lines.push(Line::from(format!(
            "DB standby {}",
            role(snapshot.db_standby_az())
        )));
    }
    frame.render_widget(
        Paragraph::new(cap_lines).block(Block::bordered().title(" healthy capacity per AZ ")),
        cap,
    );
    let width = probe.width.saturating_sub(2) as usize;
    let skip = drill.probe.len().saturating_sub(width);
    let ok: Vec<u64> = drill.probe[skip..]
        .iter()
        .map(|p| {
            if p.total() == 0 {
                0
            } else {
                u64::from(p.ok) * 100 / u64::from(p.total())
            }
        })
        .collect();
    let lat: Vec<u64> = drill.probe[skip..]
        .iter()
        .map(|p| p.p99_ms.unwrap_or(0.0).round() as u64)
        .collect();
    frame.render_widget(
        Sparkline::default()
            .data(&ok)
            .max(100)
            .style(Style::new().fg(Color::Green))
            .block(Block::bordered().title(" probe success % ")),
        probe,
    );
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

/// One character per sample, scaled to the highest value in the series: a full bar is the
/// AZ at its most, "▁" is none.
pub(crate) fn capacity_bars(series: &[u64]) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let top = series.iter().copied().max().unwrap_or(0).max(1);
    series
        .iter()
        .map(|&v| {
            if v == 0 {
                LEVELS[0]
            } else {
                // 1..=top onto levels 1..=7.
                let level = 1 + (v.min(top) * 7 - 1) / top;
                LEVELS[usize::try_from(level).unwrap_or(7).min(7)]
            }
        })
        .collect()
}
