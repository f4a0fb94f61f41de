//! The help screen: the key table, grouped by where the keys work, scrolled with j/k. Nothing
//! here names a key: every row comes from [`crate::keys::TABLE`], so help cannot disagree
//! with the handlers.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::app::State;
use crate::keys::{self, Binding, Context};

/// The sections of help: a title and the contexts whose bindings it lists (each binding once,
/// in the first section it belongs to).
const SECTIONS: &[(&str, &[Context])] = &[
    ("", &[Context::Dashboard, Context::Provision]),
    (
        "in the deploy and GameDay dialogs",
        &[Context::Deploy, Context::GameDay],
    ),
    ("on a GameDay's drill view", &[Context::Drill]),
    ("in the log view", &[Context::Logs]),
    (
        "in command mode, the filter line and a confirmation",
        &[Context::Command, Context::Filter, Context::Confirm],
    ),
];

/// Where a binding works, when it is not everywhere its section covers.
fn only_on(binding: &Binding, section: &[Context]) -> Option<&'static str> {
    if section.iter().all(|c| binding.contexts.contains(c)) {
        return None;
    }
    match binding.contexts {
        [Context::Provision] => Some("provisioning screen"),
        [Context::Deploy] => Some("deploy"),
        [Context::GameDay] => Some("GameDay"),
        [Context::Command] => Some("command mode"),
        [Context::Filter] => Some("filter line"),
        [Context::Confirm] => Some("confirmation"),
        _ => None,
    }
}

/// The help text for this session (a read-only one does not list what changes the stack).
fn lines(read_only: bool) -> Vec<Line<'static>> {
    let mut shown: Vec<*const Binding> = Vec::new();
    let mut lines = Vec::new();
    for (title, contexts) in SECTIONS {
        let rows: Vec<&Binding> = keys::TABLE
            .iter()
            .filter(|b| !b.keys.is_empty() && keys::offered(b, read_only))
            .filter(|b| b.contexts.iter().any(|c| contexts.contains(c)))
            .filter(|b| !shown.contains(&std::ptr::from_ref(*b)))
            .collect();
        if !title.is_empty() {
            lines.push(Line::from(""));
            lines.push(Line::from(title.to_string()).bold());
        }
        for binding in rows {
            shown.push(std::ptr::from_ref(binding));
            let mut text = binding.help.to_string();
            if binding.act == keys::Act::CommandMode {
                let names: Vec<&str> = keys::commands(read_only).collect();
                text.push_str(&format!(": {}", names.join(" ")));
            }
            if let Some(place) = only_on(binding, contexts) {
                text.push_str(&format!(" ({place})"));
            }
            lines.push(Line::from(vec![
                Span::styled(format!("{:<10} ", binding.shown), Style::new().bold()),
                Span::raw(text),
            ]));
        }
    }
    lines
}

/// How many lines help has: how far j/k scroll it.
pub(crate) fn line_count(state: &State) -> usize {
    lines(state.read_only).len()
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
    let title = if state.read_only {
        " help · j k scroll · read-only session: changes are hidden "
    } else {
        " help · j k scroll "
    };
    let scroll = u16::try_from(state.row).unwrap_or(u16::MAX);
    frame.render_widget(
        Paragraph::new(lines(state.read_only))
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0))
            .block(Block::bordered().title(title)),
        area,
    );
}
