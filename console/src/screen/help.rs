//! The help screen.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::app::State;

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
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
