//! The log view: the webapp's log lines for the whole stack, one AZ or one instance, read
//! through the same [`Cloud::logs`](provision::port::Cloud::logs) as `triad logs` and followed
//! live. It opens from the dashboard (`t`: the focused AZ, `T`: the selected instance, `:logs`:
//! every AZ), from the instances list (`t`: the selected instance) and from a GameDay's drill
//! view (`t`: the AZ under fault).
//!
//! The effect runner reads on a task of its own ([`Effect::StartLogs`]): the newest lines
//! first, then every new one as it arrives, and sends them back tagged with the view's
//! generation, so lines of a view that was closed or refiltered are dropped. The level (`v`)
//! and the text filter (`/`, applied on Enter) go into the query, so the backend filters
//! everything it keeps; while the filter is typed, the lines already read are filtered as
//! they are.

use std::collections::VecDeque;

use provision::port::{LogLevel, LogLine, LogQuery};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::app::{Effect, Level, Mode, Screen, State};
use crate::keys::Act;
use crate::ui::scroll_start;

/// How many lines the view keeps (the oldest go first).
pub const KEPT_LINES: usize = 5_000;
/// How many of the newest lines the view starts with.
pub const FIRST_LINES: usize = 500;

/// Whose lines the view shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogScope {
    pub az: Option<String>,
    pub instance: Option<String>,
}

impl LogScope {
    /// "every AZ", "AZ eu-west-1a", "instance i-0abc (eu-west-1a)".
    pub fn title(&self) -> String {
        match (&self.instance, &self.az) {
            (Some(id), Some(az)) => format!("instance {id} ({az})"),
            (Some(id), None) => format!("instance {id}"),
            (None, Some(az)) => format!("AZ {az}"),
            (None, None) => "every AZ".into(),
        }
    }
}

/// What the runner reads for a log view: the query (without its time range, which the runner
/// sets from the clock) and the view's generation.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRequest {
    pub generation: u64,
    pub query: LogQuery,
}

/// The log view's state.
#[derive(Debug, Clone, PartialEq)]
pub struct LogView {
    pub scope: LogScope,
    /// Only lines at this level or more severe.
    pub level: Option<LogLevel>,
    /// The text filter in force (part of the query).
    pub text: String,
    /// Oldest first, at most [`KEPT_LINES`].
    pub lines: VecDeque<LogLine>,
    /// Follow mode: the newest line stays selected and in view as lines arrive.
    pub follow: bool,
    /// The selected line among those shown.
    pub selected: usize,
    /// The selected line's JSON fields are shown one per line.
    pub expanded: bool,
    /// Which reading the lines belong to; older readings' lines are dropped.
    pub generation: u64,
    /// Whether the first page has arrived.
    pub loaded: bool,
    /// The last read error, until lines arrive again.
    pub error: Option<String>,
}

impl LogView {
    pub fn new(scope: LogScope, generation: u64) -> LogView {
        LogView {
            scope,
            level: None,
            text: String::new(),
            lines: VecDeque::new(),
            follow: true,
            selected: 0,
            expanded: false,
            generation,
            loaded: false,
            error: None,
        }
    }

    /// The query this view reads with.
    pub fn query(&self) -> LogQuery {
        LogQuery {
            az: self.scope.az.clone(),
            instance: self.scope.instance.clone(),
            level: self.level,
            text: (!self.text.is_empty()).then(|| self.text.clone()),
            since: None,
            until: None,
            limit: Some(FIRST_LINES),
        }
    }

    fn request(&self) -> Effect {
        Effect::StartLogs(Box::new(LogRequest {
            generation: self.generation,
            query: self.query(),
        }))
    }

    /// Starts a new reading (after a filter changed): the lines read so far go.
    fn restart(&mut self) -> Effect {
        self.generation += 1;
        self.lines.clear();
        self.selected = 0;
        self.follow = true;
        self.expanded = false;
        self.loaded = false;
        self.error = None;
        self.request()
    }
}

/// The filter applied to the lines already read: the level, and the text as typed so far.
fn local_filter(view: &LogView, typed: &str) -> LogQuery {
    LogQuery {
        level: view.level,
        text: (!typed.is_empty()).then(|| typed.to_owned()),
        ..LogQuery::default()
    }
}

impl State {
    /// The lines the log view shows, oldest first.
    pub fn shown_log_lines(&self) -> Vec<&LogLine> {
        let Some(view) = &self.logs else {
            return Vec::new();
        };
        let typed = match &self.mode {
            Mode::Filter(input) => input.as_str(),
            _ => view.text.as_str(),
        };
        let filter = local_filter(view, typed);
        view.lines.iter().filter(|l| filter.matches(l)).collect()
    }

    fn selected_log_line(&self) -> Option<&LogLine> {
        let view = self.logs.as_ref()?;
        let lines = self.shown_log_lines();
        let index = if view.follow {
            lines.len().checked_sub(1)?
        } else {
            view.selected
        };
        lines.get(index).copied()
    }
}

/// Opens the log view on `scope` and starts reading.
pub(crate) fn open_logs(state: &mut State, scope: LogScope) -> Vec<Effect> {
    state.log_generation += 1;
    let view = LogView::new(scope, state.log_generation);
    let effect = view.request();
    state.logs = Some(view);
    state.go(Screen::Logs);
    vec![effect]
}

/// The scope a "logs" key opens where the operator is.
pub(crate) fn scope_here(state: &State, act: Act) -> Option<LogScope> {
    let az_of = |id: &str| {
        state.snapshot.as_ref().and_then(|s| {
            s.azs
                .iter()
                .find(|a| a.instances.iter().any(|i| i.id == id))
                .map(|a| a.az.clone())
        })
    };
    match act {
        Act::LogsAll => Some(LogScope::default()),
        Act::AzLogs if state.screen == Screen::GameDay => Some(LogScope {
            // The AZ the drill's fault is in (a database failover has none: every AZ).
            az: state
                .gameday
                .config(&state.az_names())
                .ok()
                .and_then(|c| c.fault.az().map(str::to_owned)),
            instance: None,
        }),
        Act::AzLogs => Some(LogScope {
            az: state.focused_az(),
            instance: None,
        }),
        Act::InstanceLogs => {
            let id = state.listed_instances().get(state.row).cloned()?;
            Some(LogScope {
                az: az_of(&id),
                instance: Some(id),
            })
        }
        _ => None,
    }
}

/// The log view's own keys.
pub(crate) fn on_key(state: &mut State, act: Act) -> Vec<Effect> {
    let shown = state.shown_log_lines().len();
    let Some(view) = state.logs.as_mut() else {
        return Vec::new();
    };
    match act {
        Act::RowDown | Act::RowUp => {
            let current = if view.follow {
                shown.saturating_sub(1)
            } else {
                view.selected.min(shown.saturating_sub(1))
            };
            view.follow = false;
            view.selected = if act == Act::RowDown {
                (current + 1).min(shown.saturating_sub(1))
            } else {
                current.saturating_sub(1)
            };
        }
        Act::Follow => {
            view.follow = !view.follow;
            if !view.follow {
                view.selected = shown.saturating_sub(1);
            }
        }
        Act::Expand => view.expanded = !view.expanded,
        Act::LogLevel => {
            view.level = match view.level {
                None => Some(LogLevel::Debug),
                Some(LogLevel::Trace | LogLevel::Debug) => Some(LogLevel::Info),
                Some(LogLevel::Info) => Some(LogLevel::Warn),
                Some(LogLevel::Warn) => Some(LogLevel::Error),
                Some(LogLevel::Error) => None,
            };
            return vec![view.restart()];
        }
        _ => {}
    }
    Vec::new()
}

/// The filter line was kept (`text`) or cleared (empty): read again with it.
pub(crate) fn set_filter(state: &mut State, text: String) -> Vec<Effect> {
    match state.logs.as_mut() {
        Some(view) if view.text != text => {
            view.text = text;
            vec![view.restart()]
        }
        _ => Vec::new(),
    }
}

/// Esc: clear the filter, else leave the view (and stop reading).
pub(crate) fn back(state: &mut State) -> Vec<Effect> {
    if state.logs.as_ref().is_some_and(|v| !v.text.is_empty()) {
        return set_filter(state, String::new());
    }
    state.back();
    vec![Effect::StopLogs]
}

/// The selected line as `triad logs` prints it.
pub(crate) fn copy(state: &State) -> Vec<Effect> {
    state
        .selected_log_line()
        .map(|line| Effect::Copy(line.to_text()))
        .into_iter()
        .collect()
}

/// Lines read for generation `generation`.
pub(crate) fn on_lines(state: &mut State, generation: u64, lines: Vec<LogLine>) {
    let Some(view) = state.logs.as_mut().filter(|v| v.generation == generation) else {
        return;
    };
    view.loaded = true;
    view.error = None;
    view.lines.extend(lines);
    let over = view.lines.len().saturating_sub(KEPT_LINES);
    if over > 0 {
        view.lines.drain(..over);
        view.selected = view.selected.saturating_sub(over);
    }
}

/// Reading failed for generation `generation` (the runner retries what can be retried).
pub(crate) fn on_failed(state: &mut State, generation: u64, error: String) {
    if let Some(view) = state.logs.as_mut().filter(|v| v.generation == generation) {
        view.loaded = true;
        view.error = Some(error.clone());
    }
    state.notice(Level::Warn, format!("logs: {error}"));
}

/// A level's colour.
pub fn level_style(level: Option<LogLevel>) -> Style {
    match level {
        Some(LogLevel::Error) => Style::new().fg(Color::Red).bold(),
        Some(LogLevel::Warn) => Style::new().fg(Color::Yellow),
        Some(LogLevel::Info) => Style::new().fg(Color::Green),
        Some(LogLevel::Debug) => Style::new().fg(Color::Blue),
        Some(LogLevel::Trace) => Style::new().fg(Color::DarkGray),
        None => Style::new().fg(Color::Magenta),
    }
}

/// A field's value as shown: strings without their quotes.
fn field_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One line as the view shows it: time, (AZ and instance when the scope has several), level,
/// message, then the fields as `key=value` (dim).
fn line_spans(line: &LogLine, scope: &LogScope, width: u16) -> Line<'static> {
    let time = format!(
        "{:02}:{:02}:{:02}",
        line.time.hour(),
        line.time.minute(),
        line.time.second()
    );
    let mut spans = vec![Span::raw(time).dark_gray(), Span::raw(" ")];
    if scope.instance.is_none() {
        if scope.az.is_none() && width >= 100 {
            spans.push(Span::raw(format!("{} ", line.az)).dark_gray());
        }
        spans.push(Span::raw(format!("{} ", line.instance)).cyan());
    }
    spans.push(Span::styled(
        format!("{:<5} ", line.level.map_or("-", LogLevel::as_str)),
        level_style(line.level),
    ));
    spans.push(Span::raw(line.message.clone()));
    let fields: Vec<String> = line
        .fields
        .iter()
        .map(|(k, v)| format!("{k}={}", field_text(v)))
        .collect();
    if !fields.is_empty() {
        spans.push(Span::raw(format!(" {}", fields.join(" "))).dark_gray());
    }
    Line::from(spans)
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
    let Some(view) = &state.logs else {
        return;
    };
    let lines = state.shown_log_lines();
    let level = view
        .level
        .map_or("every level".to_owned(), |l| format!("{l} and above"));
    let mut title = vec![
        Span::raw(" logs · ").bold(),
        Span::raw(view.scope.title()).bold(),
        Span::raw(format!(" · {level}")),
    ];
    if !view.text.is_empty() {
        title.push(Span::raw(format!(" · /{}", view.text)));
    }
    title.push(if view.follow {
        Span::raw(" · following ").green()
    } else {
        Span::raw(" · paused (f follows) ").yellow()
    });
    let block = Block::bordered().title(Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let selected = if view.follow {
        lines.len().saturating_sub(1)
    } else {
        view.selected.min(lines.len().saturating_sub(1))
    };
    let expansion: Vec<Line<'static>> = match lines.get(selected) {
        Some(line) if view.expanded => expanded_fields(line),
        _ => Vec::new(),
    };
    let [list_area, fields_area] = Layout::vertical([
        Constraint::Min(1),
        // The fields and the rule above them.
        Constraint::Length(if expansion.is_empty() {
            0
        } else {
            (expansion.len() as u16 + 1).min(inner.height / 2)
        }),
    ])
    .areas(inner);

    if lines.is_empty() {
        let text = if let Some(error) = &view.error {
            Line::from(format!("cannot read the logs: {error}")).red()
        } else if !view.loaded {
            Line::from("reading…").dark_gray()
        } else if view.lines.is_empty() {
            Line::from(format!(
                "no lines from {} in the last hour{} (new ones appear here as they are logged)",
                view.scope.title(),
                if view.level.is_some() || !view.text.is_empty() {
                    " that pass the filters"
                } else {
                    ""
                }
            ))
            .dark_gray()
        } else {
            Line::from("no line read so far passes the filter").dark_gray()
        };
        frame.render_widget(Paragraph::new(text), list_area);
        return;
    }
    let room = usize::from(list_area.height).max(1);
    let first = scroll_start(selected, room);
    let rows: Vec<Line> = lines
        .iter()
        .enumerate()
        .skip(first)
        .take(room)
        .map(|(i, line)| {
            let mut row = line_spans(line, &view.scope, area.width);
            if i == selected {
                row = row.patch_style(Style::new().add_modifier(Modifier::REVERSED));
            }
            row
        })
        .collect();
    frame.render_widget(Paragraph::new(rows), list_area);
    if !expansion.is_empty() {
        frame.render_widget(
            Paragraph::new(expansion).block(Block::new().borders(ratatui::widgets::Borders::TOP)),
            fields_area,
        );
    }
}

/// The selected line's fields, one per line ("Enter" shows and hides them).
fn expanded_fields(line: &LogLine) -> Vec<Line<'static>> {
    if line.fields.is_empty() {
        return vec![Line::from("  (this line has no JSON fields)").dark_gray()];
    }
    let width = line.fields.keys().map(String::len).max().unwrap_or(0);
    line.fields
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::raw(format!("  {k:>width$}  ")).cyan(),
                Span::raw(field_text(v)),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{chars, key, state, with_versions};
    use crate::app::{Action, update};
    use crossterm::event::KeyCode;
    use provision::port::BackendKind;

    fn raw(n: usize, level: &str) -> LogLine {
        LogLine::parse(
            &format!(
                r#"{{"timestamp":"2026-01-01T00:00:{n:02}Z","level":"{level}","message":"line {n}","status":200}}"#
            ),
            "i-0",
            "eu-west-1a",
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    fn started(effects: &[Effect]) -> &LogRequest {
        match effects {
            [Effect::StartLogs(request)] => request,
            other => panic!("one StartLogs: {other:?}"),
        }
    }

    #[test]
    fn t_opens_the_focused_az_and_t_shift_the_selected_instance() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0", "1.0.0"]);
        let effects = update(&mut s, key(KeyCode::Char('t')));
        assert_eq!(s.screen, Screen::Logs);
        let request = started(&effects);
        assert_eq!(request.query.az.as_deref(), Some("eu-west-1a"));
        assert_eq!(request.query.instance, None);
        assert_eq!(update(&mut s, key(KeyCode::Esc)), vec![Effect::StopLogs]);
        assert_eq!(s.screen, Screen::Dashboard);

        update(&mut s, key(KeyCode::Char('j')));
        let effects = update(&mut s, key(KeyCode::Char('T')));
        let request = started(&effects);
        assert_eq!(request.query.instance.as_deref(), Some("i-1"));
        assert_eq!(request.query.az.as_deref(), Some("eu-west-1a"));
        assert!(request.generation > 1, "a new reading each time");
    }

    #[test]
    fn lines_of_an_older_reading_are_dropped_and_the_level_filter_reads_again() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0"]);
        let first = started(&update(&mut s, key(KeyCode::Char('t')))).generation;
        update(
            &mut s,
            Action::LogLines {
                generation: first,
                lines: vec![raw(1, "INFO"), raw(2, "ERROR")],
            },
        );
        assert_eq!(s.shown_log_lines().len(), 2);
        let again = update(&mut s, key(KeyCode::Char('v')));
        let request = started(&again);
        assert_eq!(request.query.level, Some(LogLevel::Debug));
        assert!(s.shown_log_lines().is_empty(), "a new reading starts empty");
        // A late page of the first reading is not mixed in.
        update(
            &mut s,
            Action::LogLines {
                generation: first,
                lines: vec![raw(3, "INFO")],
            },
        );
        assert!(s.shown_log_lines().is_empty());
        for _ in 0..3 {
            update(&mut s, key(KeyCode::Char('v')));
        }
        let view = s.logs.as_ref().expect("the view");
        assert_eq!(view.level, Some(LogLevel::Error));
        let generation = view.generation;
        update(
            &mut s,
            Action::LogLines {
                generation,
                lines: vec![raw(4, "ERROR")],
            },
        );
        assert_eq!(s.shown_log_lines().len(), 1);
    }

    #[test]
    fn the_filter_narrows_while_typed_and_reads_again_when_kept() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0"]);
        let generation = started(&update(&mut s, key(KeyCode::Char('t')))).generation;
        let lines = (0..12).map(|n| raw(n, "INFO")).collect();
        update(&mut s, Action::LogLines { generation, lines });
        update(&mut s, key(KeyCode::Char('/')));
        chars(&mut s, "line 1");
        assert_eq!(s.shown_log_lines().len(), 3, "line 1, 10, 11");
        let kept = update(&mut s, key(KeyCode::Enter));
        assert_eq!(started(&kept).query.text.as_deref(), Some("line 1"));
        // Esc clears the filter (reading again) before it leaves.
        let cleared = update(&mut s, key(KeyCode::Esc));
        assert_eq!(started(&cleared).query.text, None);
        assert_eq!(s.screen, Screen::Logs);
        assert_eq!(update(&mut s, key(KeyCode::Esc)), vec![Effect::StopLogs]);
    }

    #[test]
    fn moving_pauses_follow_y_copies_and_enter_expands() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0"]);
        let generation = started(&update(&mut s, key(KeyCode::Char('t')))).generation;
        let lines = (0..5).map(|n| raw(n, "WARN")).collect();
        update(&mut s, Action::LogLines { generation, lines });
        // Following: the newest line is the selected one.
        assert_eq!(
            update(&mut s, key(KeyCode::Char('y'))),
            vec![Effect::Copy(raw(4, "WARN").to_text())]
        );
        update(&mut s, key(KeyCode::Char('k')));
        let view = s.logs.as_ref().expect("view");
        assert!(!view.follow);
        assert_eq!(view.selected, 3);
        // New lines do not move a paused selection.
        update(
            &mut s,
            Action::LogLines {
                generation,
                lines: vec![raw(5, "WARN")],
            },
        );
        assert_eq!(
            update(&mut s, key(KeyCode::Char('y'))),
            vec![Effect::Copy(raw(3, "WARN").to_text())]
        );
        update(&mut s, key(KeyCode::Enter));
        assert!(s.logs.as_ref().is_some_and(|v| v.expanded));
        update(&mut s, key(KeyCode::Char('f')));
        assert!(s.logs.as_ref().is_some_and(|v| v.follow));
    }

    #[test]
    fn the_view_keeps_a_bounded_number_of_lines() {
        let mut s = state(BackendKind::Sandbox, false);
        with_versions(&mut s, &["1.0.0"]);
        let generation = started(&update(&mut s, key(KeyCode::Char('t')))).generation;
        for _ in 0..3 {
            let lines = (0..KEPT_LINES / 2).map(|n| raw(n % 60, "INFO")).collect();
            update(&mut s, Action::LogLines { generation, lines });
        }
        assert_eq!(s.logs.as_ref().map(|v| v.lines.len()), Some(KEPT_LINES));
    }
}
