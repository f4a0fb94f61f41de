//! The dashboard: one column per AZ (database role, target counts, instances, sparklines),
//! and the keys that act on the active instance refresh (cancel, roll back).

use provision::port::{
    AzView, DbRole, LifecycleState, MetricKind, MetricUnit, RefreshId, Snapshot, TargetState,
};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline, Wrap};

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

pub(crate) fn target_counts(az: &AzView) -> String {
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

pub(crate) fn series_values(
    snapshot: &Snapshot,
    metric: MetricKind,
    az: &str,
    width: usize,
) -> Vec<u64> {
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
            let mut spans = vec![
                Span::styled(format!("{glyph} "), Style::new().fg(color)),
                Span::styled(i.id.clone(), style),
                Span::raw(format!(" {}", i.version.as_deref().unwrap_or("?"))).dim(),
            ];
            if matches!(
                i.lifecycle,
                LifecycleState::Standby | LifecycleState::EnteringStandby
            ) {
                spans.push(Span::styled(" standby", Style::new().fg(color)));
            }
            // Launched by a scale-out and not in service yet.
            if snapshot
                .scaling
                .as_ref()
                .is_some_and(|s| s.launching.contains(&i.id))
            {
                spans.push(Span::styled(" scale-out", Style::new().fg(Color::Cyan)));
            }
            lines.push(Line::from(spans));
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
