//! Drawing: a pure function of the [`State`]. Nothing here changes state or does I/O, so every
//! screen is tested by rendering into ratatui's `TestBackend` and snapshotting the buffer.
//!
//! Layout (readable at 80×24, using more room when there is more):
//! - header: stack, region or origin, backend (a red PRODUCTION cue on AWS), capacity;
//! - strip: the active instance refresh or drill, with its progress;
//! - body: one column per AZ (DB role, target counts, instances, sparklines), or the current
//!   screen (instances list, events, dialogs, help, drill view);
//! - events pane; footer: key hints, or the command / filter line.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, List, ListItem, Paragraph, Sparkline, Wrap};

use provision::port::{
    AzView, ChangeAction, DbRole, Event, HealthStatus, Instance, LifecycleState, MetricKind,
    MetricUnit, RefreshStatus, ResourceStatus, Snapshot, Target, TargetState,
};

use crate::app::{
    DeployForm, GamedayForm, Level, Mode, Notice, ProvisionPhase, ProvisionView, Screen, State,
    source_label,
};

/// Above this many instances in one AZ column, the column shows counts per state instead of
/// one line per instance (Enter opens the full, filterable list).
const LIST_LIMIT: usize = 12;

pub fn draw(frame: &mut Frame, state: &State) {
    let area = frame.area();
    let events_height = if area.height >= 30 { 8 } else { 4 };
    // The events screen takes the events pane's room too.
    let events_height = if state.screen == Screen::Events {
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
        Screen::Dashboard => draw_dashboard(frame, body, state),
        Screen::Instances => draw_instances(frame, body, state),
        Screen::Events => draw_event_log(frame, body, state),
        Screen::Deploy => draw_deploy(frame, body, state),
        Screen::GameDay => draw_gameday(frame, body, state),
        Screen::Provision => draw_provision(frame, body, state),
        Screen::Help => draw_help(frame, body, state),
    }
    if state.screen != Screen::Events {
        draw_events(
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
fn instance_glyph(instance: &Instance, target: Option<&Target>) -> (&'static str, Color) {
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
        (LifecycleState::Terminating, _) | (LifecycleState::TerminatingWait, _) => {
            ("◍", Color::Yellow)
        }
        _ => ("○", Color::DarkGray),
    }
}

fn target_counts(az: &AzView) -> String {
    let count = |s: TargetState| az.targets.iter().filter(|t| t.state == s).count();
    let mut parts = vec![format!("{} healthy", count(TargetState::Healthy))];
    for (state, name) in [
        (TargetState::Unhealthy, "unhealthy"),
        (TargetState::Initial, "initial"),
        (TargetState::Draining, "draining"),
    ] {
        let n = count(state);
        if n > 0 {
            parts.push(format!("{n} {name}"));
        }
    }
    parts.join(" · ")
}

fn series_values(snapshot: &Snapshot, metric: MetricKind, az: &str, width: usize) -> Vec<u64> {
    snapshot
        .metrics
        .series(metric, Some(az))
        .map(|s| {
            let skip = s.points.len().saturating_sub(width);
            s.points[skip..]
                .iter()
                .map(|p| p.value.max(0.0).round() as u64)
                .collect()
        })
        .unwrap_or_default()
}

/// A metric's latest value with its unit: counts per period ("12/s", "340/min"),
/// milliseconds with a decimal below 10 ("0.8 ms", "42 ms"), percentages.
fn metric_value(value: f64, unit: MetricUnit, period_seconds: u32) -> String {
    match unit {
        MetricUnit::Count => {
            let per = match period_seconds {
                1 => "/s".to_owned(),
                60 => "/min".to_owned(),
                n => format!("/{n} s"),
            };
            format!("{value:.0}{per}")
        }
        MetricUnit::Milliseconds if value < 10.0 => format!("{value:.1} ms"),
        MetricUnit::Milliseconds => format!("{value:.0} ms"),
        MetricUnit::Percent => format!("{value:.0} %"),
    }
}

/// During a refresh, this AZ's part of it: in-service instances on the desired version out of
/// the AZ's instances ("refresh 1/2 on v2").
fn refresh_progress(snapshot: &Snapshot, az: &AzView) -> Option<Line<'static>> {
    let refresh = snapshot.active_refresh()?;
    let version = refresh.desired_version.as_deref()?;
    let done = az
        .instances
        .iter()
        .filter(|i| {
            i.lifecycle == LifecycleState::InService && i.version.as_deref() == Some(version)
        })
        .count();
    let color = if done == az.instances.len() {
        Color::Green
    } else {
        Color::Cyan
    };
    Some(Line::from(Span::styled(
        format!("refresh {done}/{} on {version}", az.instances.len()),
        Style::new().fg(color),
    )))
}

fn draw_dashboard(frame: &mut Frame, area: Rect, state: &State) {
    let Some(snapshot) = &state.snapshot else {
        let msg = state
            .watch_error
            .clone()
            .unwrap_or_else(|| "waiting for the first snapshot…".to_string());
        frame.render_widget(
            Paragraph::new(msg)
                .wrap(Wrap { trim: true })
                .block(Block::bordered().title(" stack ")),
            area,
        );
        return;
    };
    if snapshot.azs.is_empty() {
        frame.render_widget(
            Paragraph::new("the stack has no Availability Zones yet (is it up?)")
                .block(Block::bordered()),
            area,
        );
        return;
    }
    let n = snapshot.azs.len() as u32;
    let columns = Layout::horizontal((0..n).map(|_| Constraint::Ratio(1, n))).split(area);
    for (i, (az, col)) in snapshot.azs.iter().zip(columns.iter()).enumerate() {
        draw_az(frame, *col, state, snapshot, az, i == state.az);
    }
}

fn draw_az(
    frame: &mut Frame,
    area: Rect,
    state: &State,
    snapshot: &Snapshot,
    az: &AzView,
    focused: bool,
) {
    let healthy = az.healthy_capacity();
    let title_style = if healthy == 0 {
        Style::new().fg(Color::Red).bold()
    } else if az.targets.iter().any(|t| t.state != TargetState::Healthy) {
        Style::new().fg(Color::Yellow).bold()
    } else {
        Style::new().fg(Color::Green).bold()
    };
    let block = Block::bordered()
        .title(Span::styled(format!(" {} ", az.az), title_style))
        .border_style(if focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        });
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let spark_rows = if inner.height >= 14 { 3 } else { 0 };
    let [text_area, spark_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(spark_rows * 2)]).areas(inner);

    let mut lines = Vec::new();
    let db = match &az.database {
        Some(db) => {
            let role = match db.role {
                DbRole::Primary => Span::styled("DB primary", Style::new().bold()),
                DbRole::Standby => Span::raw("DB standby"),
            };
            Line::from(vec![role, Span::raw(format!(" {}", db.status)).dim()])
        }
        None => Line::from("DB —".dim()),
    };
    lines.push(db);
    lines.push(Line::from(format!("targets {}", target_counts(az))));
    if let Some(line) = refresh_progress(snapshot, az) {
        lines.push(line);
    }
    let instances: Vec<_> = az
        .instances
        .iter()
        .filter(|i| state.matches_filter(&i.id, i.version.as_deref()))
        .collect();
    if instances.len() > LIST_LIMIT {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for i in &instances {
            *counts
                .entry(format!("{} {}", i.lifecycle, i.health))
                .or_default() += 1;
        }
        for (state_name, n) in counts {
            lines.push(Line::from(format!("{n:>4} {state_name}")));
        }
        lines.push(Line::from("Enter: list all".dim()));
    } else {
        // A column shorter than its list scrolls so that the selected row stays in view.
        let room = usize::from(text_area.height)
            .saturating_sub(lines.len())
            .max(1);
        let selected = if focused { state.row } else { 0 };
        let first = scroll_start(selected.min(instances.len().saturating_sub(1)), room);
        for (row, i) in instances.iter().enumerate().skip(first).take(room) {
            let (glyph, color) = instance_glyph(i, az.targets.iter().find(|t| t.id == i.id));
            let selected = focused && row == state.row;
            let mut style = Style::new();
            if selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            lines.push(Line::from(vec![
                Span::styled(format!("{glyph} "), Style::new().fg(color)),
                Span::styled(i.id.clone(), style),
                Span::raw(format!(" {}", i.version.as_deref().unwrap_or("?"))).dim(),
            ]));
        }
    }
    frame.render_widget(Paragraph::new(lines), text_area);

    if spark_rows > 0 {
        let width = spark_area.width as usize;
        let rows = Layout::vertical([Constraint::Length(2); 3]).split(spark_area);
        for (row, (metric, label)) in rows.iter().zip([
            (MetricKind::Requests, "req"),
            (MetricKind::Target5xx, "5xx"),
            (MetricKind::LatencyP99, "p99"),
        ]) {
            let data = series_values(snapshot, metric, &az.az, width);
            let last = snapshot
                .metrics
                .series(metric, Some(&az.az))
                .and_then(|s| s.points.last());
            let [label_area, spark] =
                Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(*row);
            // No data is not zero: say so.
            let value = last.map_or("—".to_owned(), |p| {
                metric_value(p.value, metric.unit(), snapshot.metrics.period_seconds)
            });
            frame.render_widget(Line::from(format!("{label} {value}")).dim(), label_area);
            frame.render_widget(
                Sparkline::default()
                    .data(&data)
                    .style(Style::new().fg(if label == "5xx" {
                        Color::Red
                    } else {
                        Color::Cyan
                    })),
                spark,
            );
        }
    }
}

/// The first row to draw of a list scrolled so that row `selected` is in view in `room` rows.
fn scroll_start(selected: usize, room: usize) -> usize {
    (selected + 1).saturating_sub(room)
}

fn draw_instances(frame: &mut Frame, area: Rect, state: &State) {
    let Some(snapshot) = &state.snapshot else {
        frame.render_widget(Block::bordered().title(" instances "), area);
        return;
    };
    let listed = |i: &&Instance| state.matches_filter(&i.id, i.version.as_deref());
    let total = snapshot
        .azs
        .iter()
        .map(|az| az.instances.iter().filter(listed).count())
        .sum::<usize>();
    // Only the rows that fit are built, scrolled so that the selected row is in view: a fleet
    // of a thousand instances costs a screenful of lines, not a thousand.
    let room = usize::from(area.height.saturating_sub(2)).max(1);
    let first = scroll_start(state.row.min(total.saturating_sub(1)), room);
    let rows = snapshot
        .azs
        .iter()
        .flat_map(|az| az.instances.iter().filter(listed).map(move |i| (az, i)))
        .enumerate()
        .skip(first)
        .take(room);
    let mut items = Vec::with_capacity(room);
    for (row, (az, i)) in rows {
        let target = az.targets.iter().find(|t| t.id == i.id);
        let (glyph, color) = instance_glyph(i, target);
        let target = target.map_or("—".to_string(), |t| match &t.reason {
            Some(r) => format!("{} ({r})", t.state),
            None => t.state.to_string(),
        });
        let mut line = Line::from(vec![
            Span::styled(format!("{glyph} "), Style::new().fg(color)),
            Span::raw(format!(
                "{:<22} {:<12} {:<12} {:<10} {:<10} {}",
                i.id,
                az.az,
                i.lifecycle.to_string(),
                i.health.to_string(),
                i.version.as_deref().unwrap_or("?"),
                target
            )),
        ]);
        if row == state.row {
            line = line.reversed();
        }
        items.push(ListItem::new(line));
    }
    // The count follows the filter as it is typed, so the title does too.
    let filter = state.current_filter();
    let title = if filter.is_empty() {
        format!(" instances ({total}) ")
    } else {
        format!(" instances ({total}) /{filter} ")
    };
    frame.render_widget(List::new(items).block(Block::bordered().title(title)), area);
}

/// The events pane under every other screen: the console's own notices, then the newest
/// events, then the sections the watch could not read.
fn draw_events(frame: &mut Frame, area: Rect, state: &State, limit: usize) {
    let mut lines: Vec<Line> = state.notices.iter().take(limit).map(notice_line).collect();
    let room = limit.saturating_sub(lines.len());
    lines.extend(state.events.iter().take(room).map(event_line));
    if let Some(snapshot) = &state.snapshot {
        for err in &snapshot.errors {
            lines.push(Line::from(Span::styled(
                format!("{} unavailable: {}", err.section, err.message),
                Style::new().fg(Color::Yellow),
            )));
        }
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::TOP)
                .title(" events ")
                .border_style(Style::new().fg(Color::DarkGray)),
        ),
        area,
    );
}

/// The events screen: the whole log the console has kept, filtered with `/`, scrolled to the
/// selected row, with the console's own notices above it.
fn draw_event_log(frame: &mut Frame, area: Rect, state: &State) {
    let notices = state.notices.len().min(3);
    let [notice_area, log_area] =
        Layout::vertical([Constraint::Length(notices as u16), Constraint::Min(3)]).areas(area);
    frame.render_widget(
        Paragraph::new(
            state
                .notices
                .iter()
                .take(notices)
                .map(notice_line)
                .collect::<Vec<_>>(),
        ),
        notice_area,
    );
    let listed: Vec<&Event> = state.listed_events().collect();
    let room = usize::from(log_area.height.saturating_sub(2)).max(1);
    let selected = state.row.min(listed.len().saturating_sub(1));
    let first = scroll_start(selected, room);
    let items: Vec<ListItem> = listed
        .iter()
        .enumerate()
        .skip(first)
        .take(room)
        .map(|(row, e)| {
            let line = event_line(e);
            ListItem::new(if row == selected {
                line.reversed()
            } else {
                line
            })
        })
        .collect();
    let mut title = format!(" events ({}", listed.len());
    if listed.len() != state.events.len() {
        title.push_str(&format!(" of {}", state.events.len()));
    }
    title.push_str(") ");
    let filter = state.current_filter();
    if !filter.is_empty() {
        title.push_str(&format!("/{filter} "));
    }
    frame.render_widget(
        List::new(items).block(Block::bordered().title(title)),
        log_area,
    );
}

fn notice_line(notice: &Notice) -> Line<'static> {
    let color = match notice.level {
        Level::Info => Color::Gray,
        Level::Warn => Color::Yellow,
        Level::Error => Color::Red,
    };
    Line::from(Span::styled(
        format!("triad  {}", notice.text),
        Style::new().fg(color),
    ))
}

fn event_line(e: &Event) -> Line<'static> {
    let at =
        e.at.format(time::macros::format_description!(
            "[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    Line::from(vec![
        Span::raw(format!("{at} ")).dim(),
        Span::raw(format!("{:<5} ", source_label(e.source))),
        Span::raw(e.message.clone()),
    ])
}

fn form_lines(labels: &[&str], values: &[String], focused: usize) -> Vec<Line<'static>> {
    labels
        .iter()
        .zip(values)
        .enumerate()
        .map(|(i, (label, value))| {
            let style = if i == focused {
                Style::new().fg(Color::Cyan).bold()
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(format!("{label:>20}  "), style),
                Span::styled(
                    format!("{value}{}", if i == focused { "▏" } else { "" }),
                    style,
                ),
            ])
        })
        .collect()
}

/// Puts each field's hint, dim, after its value.
fn add_hints(lines: &mut [Line<'static>], hint: impl Fn(usize) -> Option<String>) {
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

fn draw_deploy(frame: &mut Frame, area: Rect, state: &State) {
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

fn gameday_values(form: &GamedayForm, azs: &[String]) -> Vec<String> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    vec![
        if form.fault_kind() == "failover-db" {
            "(the primary's AZ)".to_string()
        } else {
            azs.get(form.az_index % azs.len().max(1))
                .cloned()
                .map_or("—".into(), |a| format!("‹ {a} ›"))
        },
        format!("‹ {} ›", form.fault_kind()),
        form.duration.clone(),
        form.rate.clone(),
        form.signups.clone(),
        form.max_error_pct.clone(),
        form.min_healthy.clone(),
        yes_no(form.force),
    ]
}

fn draw_gameday(frame: &mut Frame, area: Rect, state: &State) {
    let Some(drill) = &state.drill else {
        let form = &state.gameday;
        let values = gameday_values(form, &state.az_names());
        let mut lines = form_lines(&GamedayForm::LABELS, &values, form.field);
        add_hints(&mut lines, |i| form.hint(i));
        lines.push(Line::from(""));
        lines.push(Line::from(
            "Tab/↑↓ field · ←→ choose · digits edit · Enter dry run · Esc back".dim(),
        ));
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
fn capacity_bars(series: &[u64]) -> String {
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

fn change_color(action: ChangeAction) -> Color {
    match action {
        ChangeAction::Add => Color::Green,
        ChangeAction::Modify => Color::Yellow,
        ChangeAction::Replace => Color::Magenta,
        ChangeAction::Delete => Color::Red,
    }
}

fn resource_color(status: ResourceStatus) -> Color {
    let name = status.to_string();
    if name.ends_with("_FAILED") {
        Color::Red
    } else if name.contains("ROLLBACK") {
        Color::Magenta
    } else if name.ends_with("_IN_PROGRESS") {
        Color::Cyan
    } else {
        Color::Green
    }
}

/// The plan's diff, one line per resource.
/// `text` cut into lines of at most `width` characters at spaces (a longer word is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let rest: String = line.chars().skip(width).collect();
            lines.push(line.chars().take(width).collect());
            line = rest;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn plan_lines(view: &ProvisionView, width: u16) -> Vec<Line<'static>> {
    let Some(plan) = &view.plan else {
        return vec![Line::from("planning…".dim())];
    };
    if plan.is_empty() {
        return vec![Line::from(
            "No changes: the stack matches the stack spec.".green(),
        )];
    }
    let red = Style::new().fg(Color::Red);
    let mut lines: Vec<Line> = plan
        .blockers
        .iter()
        .flat_map(|b| {
            wrap_words(b, usize::from(width).saturating_sub(4))
                .into_iter()
                .enumerate()
                .map(move |(i, part)| {
                    let mark = if i == 0 { "  ! " } else { "    " };
                    Line::from(Span::styled(format!("{mark}{part}"), red))
                })
        })
        .chain(plan.prepare.iter().map(|p| {
            Line::from(vec![
                Span::styled("  first ", Style::new().bold()),
                Span::raw(p.clone()),
            ])
        }))
        .collect();
    lines.push(Line::from(vec![
        Span::styled(
            if plan.creates_stack {
                "Creates the stack: "
            } else {
                "Plan: "
            },
            Style::new().bold(),
        ),
        Span::raw(plan.summary().to_string()),
    ]));
    if plan.changes.is_empty() {
        lines.push(Line::from(
            "No resource changes; the stack's parameters or outputs change.".dim(),
        ));
    }
    for change in &plan.changes {
        let color = change_color(change.action);
        let mut spans = vec![
            Span::styled(
                format!("{:>3} ", change.action.marker()),
                Style::new().fg(color).bold(),
            ),
            Span::styled(
                format!("{:<26} ", change.logical_id),
                Style::new().fg(color),
            ),
            Span::raw(change.resource_type.clone()).dim(),
        ];
        if !change.reasons.is_empty() {
            spans.push(Span::raw(format!("  {}", change.reasons.join("; "))).dim());
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// The live progress: each resource's latest status, newest changes at the bottom.
fn progress_lines(view: &ProvisionView, room: usize, width: u16) -> Vec<Line<'static>> {
    let mut lines: Vec<Line> = Vec::new();
    for r in &view.resources {
        let color = resource_color(r.status);
        let mut spans = vec![
            Span::styled(
                format!("{:<19} ", r.status.to_string()),
                Style::new().fg(color),
            ),
            Span::raw(format!("{:<26} ", r.logical_id)),
            Span::raw(r.resource_type.clone()).dim(),
        ];
        match &r.reason {
            // On a narrow terminal the reason gets its own line, so it is never cut off.
            Some(reason) if width < 120 => {
                lines.push(Line::from(spans));
                lines.push(Line::from(Span::styled(
                    format!("    ↳ {reason}"),
                    Style::new().fg(color),
                )));
            }
            Some(reason) => {
                spans.push(Span::styled(format!("  {reason}"), Style::new().fg(color)));
                lines.push(Line::from(spans));
            }
            None => lines.push(Line::from(spans)),
        }
    }
    if let Some(status) = view.status {
        let color = if status.is_success() {
            Color::Green
        } else {
            Color::Red
        };
        lines.push(Line::from(Span::styled(
            format!("stack {status}"),
            Style::new().fg(color).bold(),
        )));
        if let Some(summary) = &view.summary {
            lines.extend(summary.lines().map(|l| Line::from(l.to_string())));
        }
        for (key, value) in &view.outputs.0 {
            lines.push(Line::from(format!("  {key} = {value}")));
        }
    }
    let skip = lines.len().saturating_sub(room);
    lines.split_off(skip)
}

fn draw_provision(frame: &mut Frame, area: Rect, state: &State) {
    let block = Block::bordered().title(" provision: plan · apply · destroy ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [gauge_area, list_area, hint_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let Some(view) = &state.provision else {
        frame.render_widget(Line::from(" p: plan the stack spec".dim()), gauge_area);
        return;
    };
    let headline = match view.phase {
        ProvisionPhase::Planning => Line::from(" planning…".cyan()),
        ProvisionPhase::Planned => Line::from(" plan ready".bold()),
        ProvisionPhase::Preparing => Line::from(" preparing: artefact bucket and releases…".cyan()),
        ProvisionPhase::Running(_) | ProvisionPhase::Finished => {
            let verb = match (view.phase, view.status) {
                (ProvisionPhase::Running(provision::port::StackOperation::Delete), _) => {
                    "deleting".to_string()
                }
                (ProvisionPhase::Running(provision::port::StackOperation::Create), _) => {
                    "creating".to_string()
                }
                (ProvisionPhase::Running(_), _) => "updating".to_string(),
                (_, Some(status)) => status.to_string(),
                _ => "done".to_string(),
            };
            let percent = if view.total == 0 {
                if view.phase == ProvisionPhase::Finished {
                    100
                } else {
                    0
                }
            } else {
                (u64::from(view.done.min(view.total)) * 100 / u64::from(view.total)) as u16
            };
            let color = match view.status {
                Some(s) if !s.is_success() => Color::Red,
                Some(_) => Color::Green,
                None => Color::Cyan,
            };
            frame.render_widget(
                Gauge::default()
                    .gauge_style(Style::new().fg(color))
                    .percent(percent)
                    .label(format!(
                        "{verb} {}: {} of {} resources",
                        state.stack.name, view.done, view.total
                    )),
                gauge_area,
            );
            Line::default()
        }
        ProvisionPhase::Failed => Line::from(Span::styled(
            format!(" failed: {}", view.error.as_deref().unwrap_or("?")),
            Style::new().fg(Color::Red),
        )),
    };
    if !matches!(
        view.phase,
        ProvisionPhase::Running(_) | ProvisionPhase::Finished
    ) {
        frame.render_widget(headline, gauge_area);
    }
    let room = list_area.height as usize;
    let lines = match view.phase {
        ProvisionPhase::Planning | ProvisionPhase::Planned => plan_lines(view, list_area.width),
        ProvisionPhase::Preparing => view
            .notes
            .iter()
            .rev()
            .take(room)
            .rev()
            .map(|l| Line::from(l.clone()))
            .collect(),
        ProvisionPhase::Failed if view.resources.is_empty() => plan_lines(view, list_area.width),
        _ => progress_lines(view, room, list_area.width),
    };
    frame.render_widget(Paragraph::new(lines), list_area);
    let hint = if view.is_busy() {
        "following the operation · Esc back (it goes on)"
    } else if state.read_only {
        "p plan again · Esc back"
    } else {
        "a apply the plan · p plan again · D destroy the stack · Esc back"
    };
    frame.render_widget(Line::from(hint.dim()), hint_area);
}

fn draw_help(frame: &mut Frame, area: Rect, state: &State) {
    let commands = format!(
        "command mode (Tab completes): {}",
        crate::app::commands(state.read_only)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut rows = vec![
        ("j k ↑ ↓", "move in the list"),
        ("h l ← → Tab", "focus another AZ"),
        ("Enter i", "instances (all AZs, filterable)"),
        ("e", "events: everything seen this session, newest first"),
        (
            "/",
            "filter instances by id or version, events by text (Esc clears)",
        ),
        (":", commands.as_str()),
        (
            "p",
            "provisioning: plan the stack spec (a applies, D destroys)",
        ),
        ("y", "copy the selected instance id, or event (OSC 52)"),
        ("Esc", "back"),
        ("q Ctrl-C", "quit"),
    ];
    if !state.read_only {
        rows.extend([
            ("d", "deploy a version (instance refresh)"),
            ("C R", "cancel / roll back the active refresh"),
            ("g", "GameDay: fail one AZ, measure, restore, report"),
            ("F", "fail the database over"),
            ("s", "stop the running GameDay (restores at once)"),
        ]);
    }
    let lines: Vec<Line> = rows
        .into_iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:>12}  "), Style::new().bold()),
                Span::raw(v),
            ])
        })
        .collect();
    let title = if state.read_only {
        " help (read-only session: changes are hidden) "
    } else {
        " help "
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(title)),
        area,
    );
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &State) {
    let line = match &state.mode {
        Mode::Command(input) => {
            // What the typed word can still become, so completion is never a guess.
            let matches = crate::app::command_matches(input, state.read_only);
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
            // Most wanted first: what does not fit is dropped from the end (help lists all).
            let hints: &[&str] = if state.read_only {
                &[
                    "? help",
                    ": command",
                    "/ filter",
                    "Enter instances",
                    "e events",
                ]
            } else {
                &[
                    "? help",
                    ": command",
                    "d deploy",
                    "g gameday",
                    "p provision",
                    "F failover",
                ]
            };
            Line::from(footer_hints(state.screen.title(), hints, area.width).dim())
        }
    };
    frame.render_widget(line, area);
}

/// " screen · hint  hint … q quit", with as many hints as fit in `width`; "q quit" always
/// stays, and "? help" lists the rest.
fn footer_hints(screen: &str, hints: &[&str], width: u16) -> String {
    const QUIT: &str = "q quit";
    let mut text = format!(" {screen} · ");
    let room = usize::from(width).saturating_sub(QUIT.len());
    for hint in hints {
        if text.chars().count() + hint.chars().count() + 2 > room {
            break;
        }
        text.push_str(hint);
        text.push_str("  ");
    }
    text.push_str(QUIT);
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
    use super::{capacity_bars, elide, footer_hints, metric_value, wrap_words};

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
            footer_hints("dashboard", &hints, 80),
            " dashboard · ? help  d deploy  g gameday  q quit"
        );
        let narrow = footer_hints("dashboard", &hints, 40);
        assert_eq!(narrow, " dashboard · ? help  d deploy  q quit");
        assert!(narrow.chars().count() <= 40);
        assert_eq!(footer_hints("dashboard", &hints, 10), " dashboard · q quit");
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
