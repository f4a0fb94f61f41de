//! Drawing: a pure function of the [`State`]. Nothing here changes state or does I/O, so every
//! screen is tested by rendering into ratatui's `TestBackend` and snapshotting the buffer.
//!
//! Layout (readable at 80×24, using more room when there is more):
//! - header: stack, region or origin, backend (a red PRODUCTION cue on AWS), capacity;
//! - strip: the active instance refresh or drill, with its progress;
//! - body: one column per AZ (DB role, target counts, instances, sparklines), or the current
//!   screen (instances list, events, log view, dialogs, help, drill view);
//! - events pane; footer: key hints, or the command / filter line.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Wrap};

use provision::port::{HealthStatus, Instance, LifecycleState, RefreshStatus, Target, TargetState};

use crate::app::{Mode, Screen, State};
use crate::keys::{self, Context};
use crate::screen;

/// Above this many instances in one AZ column, the column shows counts per state instead of
/// one line per instance (Enter opens the full, filterable list).
pub(crate) const LIST_LIMIT: usize = 12;

pub fn draw(frame: &mut Frame, state: &State) {
    let area = frame.area();
    let events_height = if area.height >= 30 { 8 } else { 4 };
    // The events screen takes the events pane's room too.
    let events_height = if matches!(state.screen, Screen::Events | Screen::Logs) {
        0
    } else {
        events_height
    };
    let [header, strip, body, events, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(8),
        Constraint::Length(events_height),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, state);
    draw_strip(frame, strip, state);
    match state.screen {
        Screen::Dashboard => screen::dashboard::draw(frame, body, state),
        Screen::Instances => screen::instances::draw(frame, body, state),
        Screen::Events => screen::events::draw(frame, body, state),
        Screen::Deploy => screen::deploy::draw(frame, body, state),
        Screen::GameDay => screen::gameday::draw(frame, body, state),
        Screen::Load => screen::load::draw(frame, body, state),
        Screen::Provision => screen::provision::draw(frame, body, state),
        Screen::Help => screen::help::draw(frame, body, state),
        Screen::Logs => screen::logs::draw(frame, body, state),
    }
    if !matches!(state.screen, Screen::Events | Screen::Logs) {
        screen::events::draw_pane(
            frame,
            events,
            state,
            events.height.saturating_sub(2) as usize,
        );
    }
    draw_footer(frame, footer, state);
    if let Mode::Confirm(confirm) = &state.mode {
        draw_confirm(frame, area, state, confirm);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, state: &State) {
    let capacity = state
        .snapshot
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .map(|c| format!(" · desired {} min {} max {}", c.desired, c.min, c.max));
    let production = state.is_production();
    // The origin (profile, region, endpoint, attached group) gives way first: the stack, the
    // production cue, read-only and the capacity always fit.
    let fixed = " triad  ".len()
        + state.stack.name.chars().count()
        + format!(" · {} · ", state.backend).chars().count()
        + if production {
            " PRODUCTION ".len() + 1
        } else {
            0
        }
        + if state.read_only {
            " read-only".len()
        } else {
            0
        }
        + capacity.as_ref().map_or(0, |c| c.chars().count());
    let origin = elide(&state.origin, usize::from(area.width).saturating_sub(fixed));
    let mut spans = vec![
        Span::styled(" triad ", Style::new().bold().reversed()),
        Span::raw(" "),
        Span::styled(state.stack.name.clone(), Style::new().bold()),
        Span::raw(format!(" · {} · {origin}", state.backend)),
    ];
    if production {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            " PRODUCTION ",
            Style::new().fg(Color::White).bg(Color::Red).bold(),
        ));
    }
    if state.read_only {
        spans.push(Span::styled(" read-only", Style::new().fg(Color::Yellow)));
    }
    if let Some(capacity) = capacity {
        spans.push(Span::raw(capacity));
    }
    frame.render_widget(Line::from(spans), area);
}

/// `text` cut to `room` characters, ending with "…" when it was cut.
fn elide(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
    if room > 0 {
        cut.push('…');
    }
    cut
}

fn refresh_color(status: RefreshStatus) -> Color {
    match status {
        RefreshStatus::Successful => Color::Green,
        RefreshStatus::Failed | RefreshStatus::RollbackFailed | RefreshStatus::Cancelled => {
            Color::Red
        }
        RefreshStatus::RollbackInProgress | RefreshStatus::RollbackSuccessful => Color::Yellow,
        _ => Color::Cyan,
    }
}

fn draw_strip(frame: &mut Frame, area: Rect, state: &State) {
    if let Some(drill) = state.drill.as_ref().filter(|d| d.running) {
        let last = drill.probe.last();
        let ok = last.map_or(String::from("—"), |p| {
            if p.total() == 0 {
                "—".into()
            } else {
                format!("{:.1} %", 100.0 * f64::from(p.ok) / f64::from(p.total()))
            }
        });
        let line = Line::from(vec![
            Span::styled(
                " GAMEDAY ",
                Style::new().fg(Color::Black).bg(Color::Magenta),
            ),
            Span::raw(format!(
                " {} · {} · probe ok {ok} · s: stop",
                drill.title, drill.phase
            )),
        ]);
        frame.render_widget(line, area);
        return;
    }
    let Some(snapshot) = &state.snapshot else {
        let text = match &state.watch_error {
            Some(e) => Line::from(Span::styled(format!(" {e}"), Style::new().fg(Color::Red))),
            None => Line::from(" connecting…".dim()),
        };
        frame.render_widget(text, area);
        return;
    };
    match snapshot.active_refresh().or(snapshot.refreshes.first()) {
        Some(refresh) => {
            let pct = refresh.percentage_complete.unwrap_or(0);
            let label = format!(
                "refresh {} → {} · {} {}%{}{}",
                refresh.id,
                refresh.desired_version.as_deref().unwrap_or("?"),
                refresh.status,
                pct,
                refresh
                    .checkpoint
                    .as_ref()
                    .map_or(String::new(), |c| format!(
                        " · checkpoint {}%",
                        c.percentage
                    )),
                if refresh.status.can_cancel() {
                    " · C cancel · R rollback"
                } else {
                    ""
                }
            );
            let gauge = Gauge::default()
                .gauge_style(Style::new().fg(refresh_color(refresh.status)))
                .percent(u16::from(pct.min(100)))
                .label(label);
            frame.render_widget(gauge, area);
        }
        None => frame.render_widget(Line::from(" no instance refresh".dim()), area),
    }
}

/// An instance's glyph: its lifecycle, and for an instance in service the worse of its
/// Auto Scaling health and its target's health (an instance the load balancer has taken out
/// of rotation is not shown as healthy).
pub(crate) fn instance_glyph(
    instance: &Instance,
    target: Option<&Target>,
) -> (&'static str, Color) {
    match (instance.lifecycle, instance.health) {
        (LifecycleState::InService, HealthStatus::Unhealthy) => ("✗", Color::Red),
        (LifecycleState::InService, HealthStatus::Healthy) => match target.map(|t| t.state) {
            None | Some(TargetState::Healthy) => ("●", Color::Green),
            Some(TargetState::Unhealthy) => ("✗", Color::Red),
            Some(TargetState::Initial) => ("◌", Color::Cyan),
            Some(TargetState::Draining) => ("◍", Color::Yellow),
            Some(_) => ("○", Color::DarkGray),
        },
        (LifecycleState::Pending, _) | (LifecycleState::PendingWait, _) => ("◌", Color::Cyan),
        // Out of service by the operator's hand: kept, not serving.
        (LifecycleState::Standby, _) | (LifecycleState::EnteringStandby, _) => ("◐", Color::Blue),
        (LifecycleState::Terminating, _) | (LifecycleState::TerminatingWait, _) => {
            ("◍", Color::Yellow)
        }
        _ => ("○", Color::DarkGray),
    }
}

/// The first row to draw of a list scrolled so that row `selected` is in view in `room` rows.
pub(crate) fn scroll_start(selected: usize, room: usize) -> usize {
    (selected + 1).saturating_sub(room)
}

pub(crate) fn form_lines(
    labels: &[&str],
    values: &[String],
    focused: Option<usize>,
) -> Vec<Line<'static>> {
    labels
        .iter()
        .zip(values)
        .enumerate()
        .map(|(i, (label, value))| {
            let focused = focused == Some(i);
            let style = if focused {
                Style::new().fg(Color::Cyan).bold()
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(format!("{label:>20}  "), style),
                Span::styled(format!("{value}{}", if focused { "▏" } else { "" }), style),
            ])
        })
        .collect()
}

/// Puts each field's hint, dim, after its value.
pub(crate) fn add_hints(lines: &mut [Line<'static>], hint: impl Fn(usize) -> Option<String>) {
    for (i, line) in lines.iter_mut().enumerate() {
        if let Some(text) = hint(i) {
            // Right after an empty value (or the cursor), two spaces after a value.
            let value = line
                .spans
                .last()
                .map_or("", |s| s.content.trim_end_matches('▏'));
            let gap = if value.is_empty() { "" } else { "  " };
            line.spans
                .push(Span::raw(format!("{gap}{text}")).dark_gray());
        }
    }
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &State) {
    let line = match &state.mode {
        Mode::Command(input) => {
            // What the typed word can still become, so completion is never a guess.
            let matches = keys::command_matches(input, state.read_only);
            let after = match matches.as_slice() {
                [] => "  no such command".to_owned(),
                [one] => format!(
                    "{}  Enter runs it",
                    &one[input.trim().len().min(one.len())..]
                ),
                many => format!("  {}", many.join(" ")),
            };
            Line::from(vec![
                Span::raw(":").bold(),
                Span::raw(input.clone()),
                Span::raw(after).dark_gray(),
            ])
        }
        Mode::Filter(input) => Line::from(vec![Span::raw("/").bold(), Span::raw(input.clone())]),
        _ => {
            // From the key table: most wanted first; what does not fit is dropped from the
            // end (help lists all).
            let context = Context::of(state);
            let (hints, pinned) = keys::footer_hints(context, state.read_only);
            let hints: Vec<&str> = hints.iter().map(String::as_str).collect();
            Line::from(footer_hints(context.title(), &hints, pinned.as_deref(), area.width).dim())
        }
    };
    frame.render_widget(line, area);
}

/// " screen · hint  hint … q quit", with as many hints as fit in `width`; the pinned hint
/// ("q quit") always stays, and "? help" lists the rest.
fn footer_hints(screen: &str, hints: &[&str], pinned: Option<&str>, width: u16) -> String {
    let mut text = format!(" {screen} · ");
    let room = usize::from(width).saturating_sub(pinned.map_or(0, str::len));
    for hint in hints {
        if text.chars().count() + hint.chars().count() + 2 > room {
            break;
        }
        text.push_str(hint);
        text.push_str("  ");
    }
    match pinned {
        Some(pinned) => text.push_str(pinned),
        None => text.truncate(text.trim_end().len()),
    }
    text
}

fn draw_confirm(frame: &mut Frame, area: Rect, state: &State, confirm: &crate::app::Confirm) {
    let height = (confirm.lines.len() as u16 + 6).min(area.height);
    let width = area.width.saturating_sub(8).min(90);
    let popup = Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    };
    let mut lines: Vec<Line> = confirm
        .lines
        .iter()
        .map(|l| Line::from(l.clone()))
        .collect();
    lines.push(Line::from(""));
    let prompt = if state.is_production() {
        format!(
            "Type {} and Enter to go ahead; Esc cancels: ",
            confirm.expected
        )
    } else {
        format!(
            "Type {} and Enter to go ahead; anything else cancels: ",
            confirm.expected
        )
    };
    lines.push(Line::from(vec![
        Span::raw(prompt),
        Span::styled(confirm.input.clone(), Style::new().bold()),
    ]));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .title(format!(" {} ", confirm.title))
                .border_style(Style::new().fg(Color::Red)),
        ),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::{elide, footer_hints};
    use crate::screen::dashboard::metric_value;
    use crate::screen::gameday::capacity_bars;
    use crate::screen::provision::wrap_words;

    #[test]
    fn capacity_bars_scale_to_the_highest_value() {
        assert_eq!(capacity_bars(&[1, 0, 1]), "█▁█");
        assert_eq!(capacity_bars(&[10, 5, 1, 0]), "█▅▂▁");
        assert_eq!(capacity_bars(&[0, 0]), "▁▁");
        assert_eq!(capacity_bars(&[]), "");
    }
    use provision::port::MetricUnit;

    #[test]
    fn metric_values_carry_their_unit_and_period() {
        assert_eq!(metric_value(12.4, MetricUnit::Count, 1), "12/s");
        assert_eq!(metric_value(340.0, MetricUnit::Count, 60), "340/min");
        assert_eq!(metric_value(3.0, MetricUnit::Count, 300), "3/300 s");
        assert_eq!(metric_value(0.84, MetricUnit::Milliseconds, 1), "0.8 ms");
        assert_eq!(metric_value(42.4, MetricUnit::Milliseconds, 60), "42 ms");
        assert_eq!(metric_value(37.0, MetricUnit::Percent, 60), "37 %");
    }

    #[test]
    fn footer_hints_drop_from_the_end_and_quit_stays() {
        let hints = ["? help", "d deploy", "g gameday"];
        assert_eq!(
            footer_hints("dashboard", &hints, Some("q quit"), 80),
            " dashboard · ? help  d deploy  g gameday  q quit"
        );
        let narrow = footer_hints("dashboard", &hints, Some("q quit"), 40);
        assert_eq!(narrow, " dashboard · ? help  d deploy  q quit");
        assert!(narrow.chars().count() <= 40);
        assert_eq!(
            footer_hints("dashboard", &hints, Some("q quit"), 10),
            " dashboard · q quit"
        );
        assert_eq!(
            footer_hints("gameday", &["s stop", "Esc back"], None, 80),
            " gameday · s stop  Esc back"
        );
    }

    #[test]
    fn elide_keeps_what_fits_and_marks_a_cut() {
        assert_eq!(elide("profile prod", 20), "profile prod");
        assert_eq!(elide("profile prod · eu-west-1", 10), "profile p…");
        assert_eq!(elide("abc", 0), "");
    }

    #[test]
    fn words_wrap_at_spaces_and_long_words_are_cut() {
        assert_eq!(
            wrap_words("pass --mailer-zip PATH to upload it", 12),
            vec!["pass", "--mailer-zip", "PATH to", "upload it"]
        );
        assert_eq!(
            wrap_words("s3://bucket/mailer/1.0.0/bootstrap.zip", 10),
            vec!["s3://bucke", "t/mailer/1", ".0.0/boots", "trap.zip"]
        );
        assert_eq!(wrap_words("", 10), vec![""]);
    }
}
