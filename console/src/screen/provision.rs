//! The provisioning screen: the plan's diff, then an apply or destroy's live "X of Y"
//! progress with each resource's latest status and reason, then how it ended.

use provision::port::{
    ChangeAction, Outputs, Plan, ProvisionEvent, ResourceEvent, ResourceStatus, StackOperation,
    StackStatus,
};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph};

use crate::app::{Effect, Level, Screen, State};

/// Where the provisioning screen is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionPhase {
    Planning,
    Planned,
    /// Doing what the plan says comes first (the artefact bucket and uploads on AWS).
    Preparing,
    Running(StackOperation),
    Finished,
    Failed,
}

/// What the provisioning screen shows: the plan's diff, then the live "X of Y" progress of
/// an apply or destroy with each resource's latest status and reason, then how it ended.
#[derive(Debug, Clone)]
pub struct ProvisionView {
    pub phase: ProvisionPhase,
    pub plan: Option<Box<Plan>>,
    /// Resources finished so far and in all (the "X of Y").
    pub done: u32,
    pub total: u32,
    /// Each resource's latest event, in the order they first appeared.
    pub resources: Vec<ResourceEvent>,
    /// The stack's status when the operation ended.
    pub status: Option<StackStatus>,
    /// What was and was not changed, when it did not go as asked.
    pub summary: Option<String>,
    pub outputs: Outputs,
    pub error: Option<String>,
    /// What was done before the stack's own changes, one line each.
    pub notes: Vec<String>,
}

impl ProvisionView {
    pub(crate) fn new(phase: ProvisionPhase) -> Self {
        ProvisionView {
            phase,
            plan: None,
            done: 0,
            total: 0,
            resources: Vec::new(),
            status: None,
            summary: None,
            outputs: Outputs::default(),
            error: None,
            notes: Vec::new(),
        }
    }

    /// Whether an apply or destroy is under way (its stream still open).
    pub fn is_busy(&self) -> bool {
        matches!(
            self.phase,
            ProvisionPhase::Planning | ProvisionPhase::Preparing | ProvisionPhase::Running(_)
        )
    }

    fn record(&mut self, event: ProvisionEvent) {
        match event {
            ProvisionEvent::Started {
                operation, total, ..
            } => {
                self.phase = ProvisionPhase::Running(operation);
                self.total = total;
                self.done = 0;
                self.resources.clear();
            }
            ProvisionEvent::Resource(resource) => {
                self.done = resource.done;
                self.total = resource.total;
                match self
                    .resources
                    .iter_mut()
                    .find(|r| r.logical_id == resource.logical_id)
                {
                    Some(slot) => *slot = resource,
                    None => self.resources.push(resource),
                }
            }
            ProvisionEvent::Finished {
                stack_status,
                outputs,
                summary,
                ..
            } => {
                self.phase = ProvisionPhase::Finished;
                self.status = Some(stack_status);
                self.summary = summary;
                self.outputs = outputs;
            }
        }
    }
}

pub(crate) fn on_planned(state: &mut State, plan: Box<Plan>) {
    let summary = if plan.is_empty() {
        "no changes".to_string()
    } else if plan.creates_stack {
        format!("creates the stack: {}", plan.summary())
    } else {
        plan.summary().to_string()
    };
    state.notice(Level::Info, format!("plan for {}: {summary}", state.stack));
    let mut view = ProvisionView::new(ProvisionPhase::Planned);
    view.plan = Some(plan);
    state.provision = Some(view);
}

pub(crate) fn on_provision_event(state: &mut State, event: ProvisionEvent) {
    let ended = match &event {
        ProvisionEvent::Finished {
            stack_status,
            summary,
            ..
        } => Some((*stack_status, summary.clone())),
        _ => None,
    };
    state
        .provision
        .get_or_insert_with(|| ProvisionView::new(ProvisionPhase::Planned))
        .record(event);
    if let Some((status, summary)) = ended {
        let level = if status.is_success() {
            Level::Info
        } else {
            Level::Error
        };
        let mut text = format!("stack {}: {status}", state.stack);
        if let Some(summary) = summary {
            text.push_str(&format!(" — {summary}"));
        }
        state.notice(level, text);
    }
}

/// Opens the provisioning screen and plans, unless an operation is already under way (then
/// it only shows its progress).
pub(crate) fn open_provision(state: &mut State) -> Vec<Effect> {
    state.go(Screen::Provision);
    if state.provision.as_ref().is_some_and(ProvisionView::is_busy) {
        return Vec::new();
    }
    state.provision = Some(ProvisionView::new(ProvisionPhase::Planning));
    vec![Effect::Plan]
}

/// Asks to carry out the current plan (planning first when there is none).
pub(crate) fn ask_apply(state: &mut State) -> Vec<Effect> {
    let plan = match &state.provision {
        Some(view) if view.phase == ProvisionPhase::Planned => view.plan.clone(),
        Some(view) if view.is_busy() => {
            state.go(Screen::Provision);
            state.notice(Level::Info, "an operation is already under way");
            return Vec::new();
        }
        _ => None,
    };
    let Some(plan) = plan else {
        state.notice(
            Level::Info,
            "planning first: press a again to apply the plan",
        );
        return open_provision(state);
    };
    state.go(Screen::Provision);
    if plan.is_empty() {
        state.notice(Level::Info, "the plan has no changes: nothing to apply");
        return Vec::new();
    }
    if let Some(blocker) = plan.blockers.first() {
        state.notice(Level::Error, format!("cannot apply: {blocker}"));
        return Vec::new();
    }
    let summary = plan.summary();
    let mut lines: Vec<String> = plan
        .prepare
        .iter()
        .map(|l| format!("First: {l}."))
        .collect();
    lines.extend([
        if plan.creates_stack {
            format!("Creates the stack: {summary}.")
        } else {
            format!("Changes the stack: {summary}.")
        },
        "Resources marked -/+ are replaced: the old one is deleted.".into(),
    ]);
    let title = format!("Apply the plan to {}?", state.stack.name);
    state.ask(title, lines, None, Effect::Apply(plan));
    Vec::new()
}

/// Asks to delete the stack: the stack's name must be typed, on every backend.
pub(crate) fn ask_destroy(state: &mut State) -> Vec<Effect> {
    if state.provision.as_ref().is_some_and(ProvisionView::is_busy) {
        state.go(Screen::Provision);
        state.notice(Level::Info, "an operation is already under way");
        return Vec::new();
    }
    state.go(Screen::Provision);
    let title = format!("Delete stack {} and everything in it?", state.stack.name);
    let lines = vec![
        "Every instance, the load balancer and the database are deleted.".into(),
        "The database's data is lost unless a final snapshot is kept.".into(),
    ];
    let expected = crate::policy::destroy_word(&state.stack);
    state.ask_for(title, lines, expected, Effect::Destroy);
    Vec::new()
}

pub(crate) fn change_color(action: ChangeAction) -> Color {
    match action {
        ChangeAction::Add => Color::Green,
        ChangeAction::Modify => Color::Yellow,
        ChangeAction::Replace => Color::Magenta,
        ChangeAction::Delete => Color::Red,
    }
}

pub(crate) fn resource_color(status: ResourceStatus) -> Color {
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

/// `text` cut into lines of at most `width` characters at spaces (a longer word is cut).
pub(crate) fn wrap_words(text: &str, width: usize) -> Vec<String> {
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

/// The plan's diff, one line per resource.
pub(crate) fn plan_lines(view: &ProvisionView, width: u16) -> Vec<Line<'static>> {
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
pub(crate) fn progress_lines(view: &ProvisionView, room: usize, width: u16) -> Vec<Line<'static>> {
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

pub(crate) fn draw(frame: &mut Frame, area: Rect, state: &State) {
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
