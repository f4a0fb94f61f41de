//! The events log: every event the watch has seen this session (newest first, de-duplicated,
//! bounded), the events pane under the other screens, and the events screen.

use provision::port::{Event, EventSource};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph};

use crate::app::{Level, Notice, State};
use crate::ui::scroll_start;

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
}

/// The events pane under every other screen: the console's own notices, then the newest
/// events, then the sections the watch could not read.
pub(crate) fn draw_pane(frame: &mut Frame, area: Rect, state: &State, limit: usize) {
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
pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
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

pub(crate) fn notice_line(notice: &Notice) -> Line<'static> {
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

pub(crate) fn event_line(e: &Event) -> Line<'static> {
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
