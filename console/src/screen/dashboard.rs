//! The dashboard: one column per AZ, and the keys that act on the active instance refresh
//! (cancel, roll back).
//!
//! Each column is, top to bottom: its header ([`header_lines`]: healthy/total, the database's
//! role, the AZ's part of an active refresh — a list of lines others extend), its charts
//! ([`CHARTS`]: requests, 5xx, p99 and CPU over the last [`WINDOW_SECONDS`], each with its
//! last value), then its instances ([`instance_lines`]: lifecycle, health, target state,
//! version, uptime, and per-instance CPU and requests where the backend measures them). The
//! layout adapts ([`plan_column`]): on a small terminal the charts become one-line sparklines;
//! on a big one they grow, with axes. A metric without data says why — "no traffic yet",
//! "metrics unavailable: …" — never a bare dash.

use provision::port::{
    AzView, BackendKind, DbRole, Instance, LifecycleState, MetricKind, MetricSeries, MetricUnit,
    RefreshId, Section, Snapshot, TargetState,
};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Chart, Dataset, GraphType, Paragraph, Sparkline, SparklineBar, Wrap,
};
use time::OffsetDateTime;

use crate::app::{Effect, Level, State};
use crate::ui::{LIST_LIMIT, instance_glyph, scroll_start};

pub(crate) fn ask_cancel(state: &mut State) -> Vec<Effect> {
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

pub(crate) fn ask_rollback(state: &mut State) -> Vec<Effect> {
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

pub(crate) fn active_refresh_id(state: &State) -> Option<RefreshId> {
    state
        .snapshot
        .as_ref()
        .and_then(|s| s.active_refresh())
        .map(|r| r.id.clone())
}

/// A metric's latest value with its unit: counts per period ("12/s", "340/min"),
/// milliseconds with a decimal below 10 ("0.8 ms", "42 ms"), percentages.
pub(crate) fn metric_value(value: f64, unit: MetricUnit, period_seconds: u32) -> String {
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
pub(crate) fn refresh_progress(snapshot: &Snapshot, az: &AzView) -> Option<Line<'static>> {
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

/// How far back the charts reach.
pub const WINDOW_SECONDS: i64 = 300;
/// Requests and 5xx are shown per second, averaged over this many seconds (or one period,
/// when the backend's periods are longer).
pub const RATE_SECONDS: i64 = 10;

/// The charts of a column: the metric and its label.
pub const CHARTS: [(MetricKind, &str); 4] = [
    (MetricKind::Requests, "req/s"),
    (MetricKind::Target5xx, "5xx/s"),
    (MetricKind::LatencyP99, "p99"),
    (MetricKind::Cpu, "CPU"),
];

/// A chart's data, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum ChartData {
    /// Points over the window: (seconds before the snapshot, value), oldest first, and the
    /// value to show ("12/s", "48 ms").
    Points {
        points: Vec<(f64, Option<f64>)>,
        last: String,
    },
    /// No data, and why.
    Missing(String),
}

/// A rate per second with one decimal below 10: "0.7/s", "12/s".
pub(crate) fn rate(value: f64) -> String {
    // An empty sum is -0.0.
    let value = if value > 0.0 { value } else { 0.0 };
    if value < 10.0 && value.fract().abs() > f64::EPSILON {
        format!("{value:.1}/s")
    } else {
        format!("{value:.0}/s")
    }
}

/// The chart of `metric` in `az`: its points over the window (counts per second, a missing
/// second of a count being zero) and its last value, or why there is none.
pub fn chart_data(snapshot: &Snapshot, metric: MetricKind, az: &str) -> ChartData {
    if let Some(error) = snapshot.error_for(Section::Metrics) {
        return ChartData::Missing(error.to_string());
    }
    let period = i64::from(snapshot.metrics.period_seconds.max(1));
    let series: Option<&MetricSeries> = snapshot.metrics.series(metric, Some(az));
    let now = snapshot.taken_at;
    let age = |at: OffsetDateTime| (now - at).whole_seconds();
    let points: Vec<(i64, f64)> = series
        .map(|s| {
            s.points
                .iter()
                .filter(|p| (0..WINDOW_SECONDS).contains(&age(p.at)))
                .map(|p| (age(p.at), p.value))
                .collect()
        })
        .unwrap_or_default();
    let requests_seen = snapshot
        .metrics
        .series(MetricKind::Requests, Some(az))
        .is_some_and(|s| s.points.iter().any(|p| p.value > 0.0));
    let why_empty = || match metric {
        MetricKind::Cpu => "no CPU sample yet".to_owned(),
        MetricKind::Target5xx if requests_seen => "none".to_owned(),
        _ => "no traffic yet".to_owned(),
    };
    if points.is_empty() || (metric == MetricKind::Requests && !requests_seen) {
        return ChartData::Missing(why_empty());
    }
    let unit = metric.unit();
    // One slot per period over the window, oldest first.
    let slots = (WINDOW_SECONDS / period).max(1);
    let mut dense: Vec<(f64, Option<f64>)> = (0..slots)
        .rev()
        .map(|slot| (-(slot * period) as f64, None))
        .collect();
    for (seconds, value) in &points {
        let slot = (slots - 1 - seconds / period).clamp(0, slots - 1) as usize;
        let cell = &mut dense[slot].1;
        *cell = Some(match (unit, *cell) {
            (MetricUnit::Count, Some(v)) => v + value,
            (_, Some(v)) => v.max(*value),
            (_, None) => *value,
        });
    }
    if unit == MetricUnit::Count {
        // A count with no point in a period counted nothing; per second.
        for (_, value) in &mut dense {
            *value = Some(value.unwrap_or(0.0) / period as f64);
        }
    }
    let last = match unit {
        MetricUnit::Count => {
            let span = RATE_SECONDS.max(period);
            let sum: f64 = points
                .iter()
                .filter(|(seconds, _)| *seconds < span)
                .map(|(_, v)| v)
                .sum();
            rate(sum / span as f64)
        }
        _ => {
            let newest = points.iter().min_by_key(|(seconds, _)| *seconds);
            newest.map_or_else(why_empty, |(_, v)| {
                metric_value(*v, unit, snapshot.metrics.period_seconds)
            })
        }
    };
    ChartData::Points {
        points: dense,
        last,
    }
}

/// How a column uses its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnPlan {
    /// Rows per chart; 1 means a one-line sparkline.
    pub chart_rows: u16,
    /// Lines per instance (1, or 2 with its details on a line of their own).
    pub instance_lines: u16,
}

/// How a column of `width` × `height` shows `header` header lines, `instances` instances
/// (each wanting `lines_each` lines for its state and figures) and the charts, `present` of
/// which have data (the others take one line: why there is none). Charts with axes
/// ([`MIN_CHART_ROWS`] rows or more) if the instances leave room for them, with their full
/// lines if possible, else one line each; else sparklines (up to 3 rows) the same way; at
/// least a line per chart when there is room for one (the list scrolls).
pub fn plan_column(
    width: u16,
    height: u16,
    header: u16,
    instances: u16,
    lines_each: u16,
    present: u16,
) -> ColumnPlan {
    let charts = CHARTS.len() as u16;
    let present = present.min(charts);
    let missing = charts - present;
    let room = height.saturating_sub(header);
    if room <= charts {
        return ColumnPlan {
            chart_rows: 0,
            instance_lines: 1,
        };
    }
    let per_chart = |lines: u16| {
        let spare = room.saturating_sub(missing + instances.max(1) * lines);
        if present == 0 {
            // Only the one-line reasons: any room will do.
            return if spare > 0 || lines == 1 {
                MAX_CHART_ROWS
            } else {
                0
            };
        }
        (spare / present).min(MAX_CHART_ROWS)
    };
    let choices = [lines_each.max(1), 1];
    if width >= 24 {
        for lines in choices {
            let per = per_chart(lines);
            if per >= MIN_CHART_ROWS {
                return ColumnPlan {
                    chart_rows: per,
                    instance_lines: lines,
                };
            }
        }
    }
    for lines in choices {
        let per = per_chart(lines);
        if per >= 1 {
            return ColumnPlan {
                chart_rows: per.min(MIN_CHART_ROWS - 1),
                instance_lines: lines,
            };
        }
    }
    ColumnPlan {
        chart_rows: 1,
        instance_lines: 1,
    }
}

/// The shortest chart drawn with axes (a label line and three rows).
pub const MIN_CHART_ROWS: u16 = 4;
/// The tallest chart.
pub const MAX_CHART_ROWS: u16 = 10;

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
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

/// The column's header lines: healthy/total and the database's role, then the AZ's part of
/// an active refresh. Each is a line of spans, so a later marker (a zonal shift, a scaling
/// decision) is one more span or one more line here.
pub(crate) fn header_lines(snapshot: &Snapshot, az: &AzView) -> Vec<Line<'static>> {
    let healthy = az.healthy_capacity();
    let live = az
        .instances
        .iter()
        .filter(|i| {
            !matches!(
                i.lifecycle,
                LifecycleState::Terminated | LifecycleState::Detached
            )
        })
        .count();
    let color = if healthy == 0 {
        Color::Red
    } else if healthy < live || az.targets.iter().any(|t| t.state != TargetState::Healthy) {
        Color::Yellow
    } else {
        Color::Green
    };
    let mut first = vec![Span::styled(
        format!("{healthy}/{live} healthy"),
        Style::new().fg(color).bold(),
    )];
    for (state, name) in [
        (TargetState::Unhealthy, "unhealthy"),
        (TargetState::Initial, "initial"),
        (TargetState::Draining, "draining"),
    ] {
        let n = az.targets.iter().filter(|t| t.state == state).count();
        if n > 0 {
            first.push(Span::styled(
                format!(" · {n} {name}"),
                Style::new().fg(color),
            ));
        }
    }
    first.push(Span::raw(" · "));
    match &az.database {
        Some(db) => {
            first.push(match db.role {
                DbRole::Primary => Span::styled("DB primary", Style::new().bold()),
                DbRole::Standby => Span::raw("DB standby"),
            });
            first.push(Span::raw(format!(" {}", db.status)).dim());
        }
        None => first.push(Span::raw("no DB here").dim()),
    }
    let mut lines = vec![Line::from(first)];
    if let Some(line) = refresh_progress(snapshot, az) {
        lines.push(line);
    }
    lines
}

/// "42s", "3m", "5h12m", "2d".
pub(crate) fn uptime(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d", s / 86_400),
    }
}

/// An instance's state: lifecycle, Auto Scaling health, and its target's state.
fn instance_state(az: &AzView, instance: &Instance) -> String {
    let target = az
        .targets
        .iter()
        .find(|t| t.id == instance.id)
        .map_or("no target".to_owned(), |t| format!("target {}", t.state));
    format!("{} · {} · {target}", instance.lifecycle, instance.health)
}

/// An instance's figures: uptime, then CPU and requests where the backend measures them per
/// instance.
fn instance_figures(snapshot: &Snapshot, instance: &Instance) -> String {
    let mut text = instance.launch_time.map_or("up ?".to_owned(), |at| {
        format!("up {}", uptime((snapshot.taken_at - at).whole_seconds()))
    });
    if let Some(figures) = snapshot.metrics.instance(&instance.id) {
        if let Some(cpu) = figures.cpu_percent {
            text.push_str(&format!(" · cpu {cpu:.0} %"));
        }
        if let Some(rps) = figures.requests_per_second {
            text.push_str(&format!(" · {}", rate(rps).replace("/s", " req/s")));
        }
    }
    text
}

/// The parts of an instance's entry, packed into as few lines of `width` as they fit in, at
/// most `most`: its glyph, id and version, then its state, then its figures (a part that
/// does not fit on the line goes to the next, indented; on the last allowed line the rest is
/// cut at the column's edge).
fn pack_instance(
    first: Vec<Span<'static>>,
    parts: [String; 2],
    width: usize,
    most: usize,
) -> Vec<Line<'static>> {
    let len = |spans: &[Span]| {
        spans
            .iter()
            .map(|s| s.content.chars().count())
            .sum::<usize>()
    };
    let mut lines: Vec<Vec<Span<'static>>> = vec![first];
    for part in parts {
        let current = lines.last().map_or(0, |l| len(l));
        if current + 2 + part.chars().count() <= width || lines.len() >= most.max(1) {
            if let Some(line) = lines.last_mut() {
                line.push(Span::raw(format!("  {part}")).dim());
            }
        } else {
            lines.push(vec![Span::raw(format!("  {part}")).dim()]);
        }
    }
    lines.into_iter().map(Line::from).collect()
}

/// How many lines the column's instances take with their state and figures in full.
fn instance_lines_wanted(snapshot: &Snapshot, az: &AzView, width: u16) -> u16 {
    az.instances
        .iter()
        .map(|i| {
            let first = format!("● {} {}", i.id, i.version.as_deref().unwrap_or("?"));
            pack_instance(
                vec![Span::raw(first)],
                [instance_state(az, i), instance_figures(snapshot, i)],
                usize::from(width),
                3,
            )
            .len() as u16
        })
        .max()
        .unwrap_or(1)
}

/// The column's instance lines: glyph, id, version, state and figures (on up to
/// `lines_each` lines each); more than [`LIST_LIMIT`] are counted per state.
pub(crate) fn instance_lines(
    state: &State,
    snapshot: &Snapshot,
    az: &AzView,
    focused: bool,
    lines_each: u16,
    area: Rect,
) -> Vec<Line<'static>> {
    let instances: Vec<&Instance> = az
        .instances
        .iter()
        .filter(|i| state.matches_filter(&i.id, i.version.as_deref()))
        .collect();
    let mut lines = Vec::new();
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
        return lines;
    }
    if instances.is_empty() {
        lines.push(Line::from("no instance in this AZ").dim());
        return lines;
    }
    // A column shorter than its list scrolls so that the selected row stays in view.
    let each = usize::from(lines_each.max(1));
    let fit = (usize::from(area.height) / each).max(1);
    let selected = if focused { state.row } else { 0 };
    let first = scroll_start(selected.min(instances.len().saturating_sub(1)), fit);
    for (row, i) in instances.iter().enumerate().skip(first).take(fit) {
        let (glyph, color) = instance_glyph(i, az.targets.iter().find(|t| t.id == i.id));
        let mut style = Style::new();
        if focused && row == state.row {
            style = style.add_modifier(Modifier::REVERSED);
        }
        let mut spans = vec![
            Span::styled(format!("{glyph} "), Style::new().fg(color)),
            Span::styled(i.id.clone(), style),
            Span::raw(format!(" {}", i.version.as_deref().unwrap_or("?"))),
        ];
        if matches!(
            i.lifecycle,
            LifecycleState::Standby | LifecycleState::EnteringStandby
        ) {
            spans.push(Span::styled(" standby", Style::new().fg(color)));
        }
        lines.extend(pack_instance(
            spans,
            [instance_state(az, i), instance_figures(snapshot, i)],
            usize::from(area.width),
            each,
        ));
    }
    lines
}

pub(crate) fn draw_az(
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
    // An active zonal shift is on the AZ's header, with when it ends.
    let title = match snapshot.shift_away_from(&az.az) {
        Some(shift) => {
            let until = shift.expires_at.time();
            format!(
                " {} ⇄ shifted away until {:02}:{:02} ",
                az.az,
                until.hour(),
                until.minute()
            )
        }
        None => format!(" {} ", az.az),
    };
    let block = Block::bordered()
        .title(Span::styled(title, title_style))
        .border_style(if focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        });
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let header = header_lines(snapshot, az);
    let listed = az
        .instances
        .iter()
        .filter(|i| state.matches_filter(&i.id, i.version.as_deref()))
        .count();
    let list_rows = if listed > LIST_LIMIT {
        // Counts per state and a hint.
        4
    } else {
        listed.max(1)
    };
    // On AWS, a line saying why the instances have no figures of their own.
    let aws_note = state.backend == BackendKind::Aws && snapshot.metrics.instances.is_empty();
    let charts: Vec<ChartData> = CHARTS
        .iter()
        .map(|(metric, _)| chart_data(snapshot, *metric, &az.az))
        .collect();
    let present = charts
        .iter()
        .filter(|d| matches!(d, ChartData::Points { .. }))
        .count() as u16;
    let plan = plan_column(
        inner.width,
        inner.height,
        header.len() as u16 + u16::from(aws_note),
        list_rows as u16,
        if listed > LIST_LIMIT {
            1
        } else {
            instance_lines_wanted(snapshot, az, inner.width)
        },
        present,
    );
    let heights: Vec<u16> = charts
        .iter()
        .map(|d| match d {
            _ if plan.chart_rows == 0 => 0,
            ChartData::Points { .. } => plan.chart_rows,
            ChartData::Missing(_) => 1,
        })
        .collect();
    let [header_area, charts_area, list_area] = Layout::vertical([
        Constraint::Length(header.len() as u16),
        Constraint::Length(heights.iter().sum()),
        Constraint::Min(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(header), header_area);
    let rows = Layout::vertical(heights.iter().map(|h| Constraint::Length(*h))).split(charts_area);
    for ((row, (metric, label)), data) in rows.iter().zip(CHARTS).zip(&charts) {
        if row.height >= MIN_CHART_ROWS {
            draw_chart(frame, *row, label, metric, data);
        } else if row.height > 0 {
            draw_sparkline(frame, *row, label, metric, data);
        }
    }
    let mut list = list_area;
    if aws_note {
        list.height = list.height.saturating_sub(1);
    }
    let mut lines = instance_lines(state, snapshot, az, focused, plan.instance_lines, list);
    if aws_note {
        lines.push(Line::from("per-instance CPU and req/s: not on AWS (per AZ above)").dark_gray());
    }
    frame.render_widget(Paragraph::new(lines), list_area);
}

fn chart_color(metric: MetricKind) -> Color {
    match metric {
        MetricKind::Target5xx => Color::Red,
        MetricKind::LatencyP99 => Color::Yellow,
        MetricKind::Cpu => Color::Magenta,
        _ => Color::Cyan,
    }
}

/// The label and value (or why there is none) on one line: "req/s 12/s".
fn chart_label(label: &str, data: &ChartData) -> Vec<Span<'static>> {
    match data {
        ChartData::Points { last, .. } => vec![
            Span::raw(format!("{label} ")).dim(),
            Span::raw(last.clone()).bold(),
        ],
        ChartData::Missing(why) => vec![
            Span::raw(format!("{label} ")).dim(),
            Span::raw(why.clone()).dark_gray(),
        ],
    }
}

/// A short chart: on one line, label, sparkline and value; on two or three, the label and
/// value above a sparkline.
fn draw_sparkline(
    frame: &mut Frame,
    area: Rect,
    label: &str,
    metric: MetricKind,
    data: &ChartData,
) {
    let ChartData::Points { points, last } = data else {
        frame.render_widget(Line::from(chart_label(label, data)), area);
        return;
    };
    let spark_area = if area.height >= 2 {
        let [label_area, spark_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
        frame.render_widget(Line::from(chart_label(label, data)), label_area);
        spark_area
    } else {
        let value_width = (last.chars().count() as u16 + 1).min(area.width / 2);
        let [label_area, spark_area, value_area] = Layout::horizontal([
            Constraint::Length(6),
            Constraint::Min(1),
            Constraint::Length(value_width),
        ])
        .areas(area);
        frame.render_widget(Line::from(format!("{label:<5}")).dim(), label_area);
        frame.render_widget(
            Line::from(format!(" {last}")).bold().right_aligned(),
            value_area,
        );
        spark_area
    };
    // One bar per slot of the window (several slots to a bar when narrower), newest right.
    let width = usize::from(spark_area.width).max(1);
    let bucket = points.len().div_ceil(width).max(1);
    let bars: Vec<SparklineBar> = points
        .chunks(bucket)
        .map(|chunk| {
            let values: Vec<f64> = chunk.iter().filter_map(|(_, v)| *v).collect();
            if values.is_empty() {
                SparklineBar::from(None::<u64>)
            } else {
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                SparklineBar::from(Some((mean * 10.0).round() as u64))
            }
        })
        .collect();
    let skip = bars.len().saturating_sub(width);
    frame.render_widget(
        Sparkline::default()
            .data(bars.into_iter().skip(skip))
            .style(Style::new().fg(chart_color(metric))),
        spark_area,
    );
}

/// A chart with a label line (label, value, the window) and a y axis from 0 to the highest
/// value; with room, the time axis too.
fn draw_chart(frame: &mut Frame, area: Rect, label: &str, metric: MetricKind, data: &ChartData) {
    let [label_area, chart_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let mut spans = chart_label(label, data);
    spans.push(Span::raw(format!(" · last {} min", WINDOW_SECONDS / 60)).dark_gray());
    frame.render_widget(Line::from(spans), label_area);
    let ChartData::Points { points, .. } = data else {
        return;
    };
    let plotted: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|(x, v)| v.map(|v| (*x, v)))
        .collect();
    let top = plotted.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let top = match metric.unit() {
        MetricUnit::Percent => top.max(100.0_f64.min(top.max(1.0) * 1.25)),
        _ => top.max(1.0) * 1.1,
    };
    let y_label = |v: f64| match metric.unit() {
        MetricUnit::Count => rate(v).trim_end_matches("/s").to_owned(),
        MetricUnit::Milliseconds => format!("{v:.0}ms"),
        MetricUnit::Percent => format!("{v:.0}%"),
    };
    let mut x_axis = Axis::default().bounds([-(WINDOW_SECONDS as f64), 0.0]);
    if chart_area.height >= 6 {
        x_axis = x_axis
            .labels([
                Span::raw(format!("-{}m", WINDOW_SECONDS / 60)),
                Span::raw("now"),
            ])
            .style(Style::new().dark_gray());
    }
    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(chart_color(metric)))
        .data(&plotted);
    let chart = Chart::new(vec![dataset]).x_axis(x_axis).y_axis(
        Axis::default()
            .bounds([0.0, top])
            .labels([Span::raw("0"), Span::raw(y_label(top))])
            .style(Style::new().dark_gray()),
    );
    frame.render_widget(chart, chart_area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use provision::port::{MetricPoint, Metrics, StackRef};

    fn snapshot_with(metric: MetricKind, points: &[(i64, f64)]) -> Snapshot {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_000);
        let mut snapshot = Snapshot::empty(StackRef::new("demo").expect("name"), now);
        snapshot.metrics = Metrics {
            period_seconds: 1,
            series: vec![MetricSeries {
                metric,
                az: Some("a".into()),
                points: points
                    .iter()
                    .map(|(ago, value)| MetricPoint {
                        at: now - time::Duration::seconds(*ago),
                        value: *value,
                    })
                    .collect(),
            }],
            instances: Vec::new(),
        };
        snapshot
    }

    #[test]
    fn a_metric_without_data_says_why() {
        let empty = snapshot_with(MetricKind::Requests, &[]);
        assert_eq!(
            chart_data(&empty, MetricKind::Requests, "a"),
            ChartData::Missing("no traffic yet".into())
        );
        assert_eq!(
            chart_data(&empty, MetricKind::LatencyP99, "a"),
            ChartData::Missing("no traffic yet".into())
        );
        assert_eq!(
            chart_data(&empty, MetricKind::Cpu, "a"),
            ChartData::Missing("no CPU sample yet".into())
        );
        // Requests all zero is no traffic either.
        let idle = snapshot_with(MetricKind::Requests, &[(3, 0.0)]);
        assert_eq!(
            chart_data(&idle, MetricKind::Requests, "a"),
            ChartData::Missing("no traffic yet".into())
        );
        let mut failing = empty.clone();
        failing.errors.push(provision::port::SectionError {
            section: Section::Metrics,
            message: "AccessDenied".into(),
        });
        assert_eq!(
            chart_data(&failing, MetricKind::Requests, "a"),
            ChartData::Missing("metrics unavailable: AccessDenied".into())
        );
    }

    #[test]
    fn counts_are_per_second_over_the_last_seconds_and_gaps_are_zero() {
        // 3 requests 2 s ago, 4 requests 5 s ago, 100 a minute ago: 7 in the last 10 s.
        let s = snapshot_with(MetricKind::Requests, &[(60, 100.0), (5, 4.0), (2, 3.0)]);
        let ChartData::Points { points, last } = chart_data(&s, MetricKind::Requests, "a") else {
            panic!("points");
        };
        assert_eq!(last, "0.7/s");
        assert_eq!(points.len(), WINDOW_SECONDS as usize);
        assert_eq!(points.last(), Some(&(0.0, Some(0.0))));
        assert_eq!(points[points.len() - 3], (-2.0, Some(3.0)));
        assert_eq!(points[points.len() - 61], (-60.0, Some(100.0)));
        // Latency is not filled: a second without requests has no latency.
        let p99 = snapshot_with(MetricKind::LatencyP99, &[(9, 48.4), (4, 12.0)]);
        let ChartData::Points { points, last } = chart_data(&p99, MetricKind::LatencyP99, "a")
        else {
            panic!("points");
        };
        assert_eq!(last, "12 ms");
        assert_eq!(points.iter().filter(|(_, v)| v.is_some()).count(), 2);
    }

    #[test]
    fn the_column_plan_fits_80x24_and_grows() {
        // 80×24: a column 24 wide, 15 high; 1 header line, 2 instances of 3 lines: short
        // sparklines.
        assert_eq!(
            plan_column(24, 15, 1, 2, 3, 4),
            ColumnPlan {
                chart_rows: 2,
                instance_lines: 3
            }
        );
        // Without data the charts take a line each and the list the rest.
        assert_eq!(plan_column(24, 15, 1, 2, 3, 0).instance_lines, 3);
        // A long list scrolls under one-line charts.
        assert_eq!(plan_column(24, 15, 1, 12, 3, 4).chart_rows, 1);
        // 120×40: charts with axes and each instance in full.
        let plan = plan_column(38, 27, 1, 2, 3, 4);
        assert!(plan.chart_rows >= MIN_CHART_ROWS, "{plan:?}");
        assert_eq!(plan.instance_lines, 3);
        // 200×60: tall charts.
        let plan = plan_column(64, 47, 1, 2, 2, 4);
        assert_eq!(plan.chart_rows, MAX_CHART_ROWS);
        assert_eq!(plan.instance_lines, 2);
        // No room for charts: the instances keep theirs.
        assert_eq!(plan_column(24, 4, 1, 2, 3, 4).chart_rows, 0);
    }

    #[test]
    fn an_instance_s_parts_go_on_as_few_lines_as_fit() {
        let parts = || {
            [
                "InService · Healthy".to_owned(),
                "up 3m · cpu 5 %".to_owned(),
            ]
        };
        let text = |lines: Vec<Line>| {
            lines
                .iter()
                .map(|l| {
                    l.spans
                        .iter()
                        .map(|s| s.content.as_ref())
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(pack_instance(vec![Span::raw("● i-1 v1")], parts(), 80, 3)),
            ["● i-1 v1  InService · Healthy  up 3m · cpu 5 %"]
        );
        assert_eq!(
            text(pack_instance(vec![Span::raw("● i-1 v1")], parts(), 30, 3)),
            ["● i-1 v1  InService · Healthy", "  up 3m · cpu 5 %"]
        );
        assert_eq!(
            text(pack_instance(vec![Span::raw("● i-1 v1")], parts(), 20, 1)),
            ["● i-1 v1  InService · Healthy  up 3m · cpu 5 %"]
        );
    }

    #[test]
    fn uptime_reads_at_a_glance() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(180), "3m");
        assert_eq!(uptime(5 * 3600 + 12 * 60), "5h12m");
        assert_eq!(uptime(3 * 86_400), "3d");
    }
}
