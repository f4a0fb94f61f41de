//! The instances screen: every instance of every AZ, filterable, one line each.

use provision::port::Instance;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem};

use crate::app::State;
use crate::ui::{instance_glyph, scroll_start};

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
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
