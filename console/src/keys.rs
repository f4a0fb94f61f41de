//! The console's one key table. Each [`Binding`] says which keys do what, where, how help and
//! the footer show it, which `:` command names it, and whether it changes the stack. The table
//! drives everything that knows about keys:
//!
//! - the key handler (`app::update` looks the key up here and performs the binding's [`Act`]);
//! - the `?` help screen (every binding, grouped by where it works);
//! - the footer (the bindings of where the operator is that have a footer rank, most wanted
//!   first: a dialog's footer shows the dialog's keys);
//! - command mode (`:`) and its completion (the bindings that name a command);
//! - read-only refusals: a binding that changes the stack is refused, from here, in a
//!   read-only session, and not offered by help, footer or completion.
//!
//! A new key is one new row (and, for a new kind of action, one arm in `app::perform`); a test
//! walks the table to check that help and the handlers agree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::{Mode, Screen, State};

/// Where the operator is, as far as keys go: a screen, or an input mode on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Dashboard,
    Instances,
    Events,
    Provision,
    Help,
    /// The deploy dialog.
    Deploy,
    /// The GameDay dialog, before a drill.
    GameDay,
    /// The GameDay screen while it shows a drill (running or finished).
    Drill,
    /// The load dialog, before a load.
    LoadForm,
    /// The load screen while it shows a load (running or finished).
    Load,
    /// Command mode (`:`).
    Command,
    /// The filter line (`/`).
    Filter,
    /// A confirmation dialog.
    Confirm,
    /// The log view.
    Logs,
}

impl Context {
    pub const ALL: [Context; 14] = [
        Context::Dashboard,
        Context::Instances,
        Context::Events,
        Context::Provision,
        Context::Help,
        Context::Deploy,
        Context::GameDay,
        Context::Drill,
        Context::LoadForm,
        Context::Load,
        Context::Command,
        Context::Filter,
        Context::Confirm,
        Context::Logs,
    ];

    /// The context the state is in.
    pub fn of(state: &State) -> Context {
        match &state.mode {
            Mode::Command(_) => Context::Command,
            Mode::Filter(_) => Context::Filter,
            Mode::Confirm(_) => Context::Confirm,
            Mode::Normal => match state.screen {
                Screen::Dashboard => Context::Dashboard,
                Screen::Instances => Context::Instances,
                Screen::Events => Context::Events,
                Screen::Provision => Context::Provision,
                Screen::Help => Context::Help,
                Screen::Logs => Context::Logs,
                Screen::Deploy => Context::Deploy,
                Screen::GameDay if state.drill.is_some() => Context::Drill,
                Screen::GameDay => Context::GameDay,
                Screen::Load if state.load.is_some() => Context::Load,
                Screen::Load => Context::LoadForm,
            },
        }
    }

    /// The name the footer starts with.
    pub fn title(self) -> &'static str {
        match self {
            Context::Dashboard => "dashboard",
            Context::Instances => "instances",
            Context::Events => "events",
            Context::Provision => "provision",
            Context::Help => "help",
            Context::Deploy => "deploy",
            Context::GameDay | Context::Drill => "gameday",
            Context::LoadForm | Context::Load => "load",
            Context::Command => "command",
            Context::Filter => "filter",
            Context::Confirm => "confirm",
            Context::Logs => "logs",
        }
    }
}

/// A key, or a class of keys, a binding answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// This key, without Control (Shift is part of an upper-case letter).
    Code(KeyCode),
    /// Control and this letter.
    Ctrl(char),
    /// Any printable character (typing into a field).
    Text,
    /// Any digit (typing into a number field).
    Digit,
}

impl Key {
    pub fn matches(self, key: &KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            Key::Code(code) => !ctrl && key.code == code,
            Key::Ctrl(c) => ctrl && key.code == KeyCode::Char(c),
            Key::Text => !ctrl && matches!(key.code, KeyCode::Char(_)),
            Key::Digit => !ctrl && matches!(key.code, KeyCode::Char(c) if c.is_ascii_digit()),
        }
    }
}

/// What a binding does; `app::perform` carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Quit,
    Help,
    CommandMode,
    FilterMode,
    /// Clear the filter, else go back.
    Back,
    /// Leave the screen (forms and the drill view).
    Leave,
    RowDown,
    RowUp,
    NextAz,
    PreviousAz,
    Dashboard,
    Instances,
    Events,
    Deploy,
    GameDay,
    Plan,
    Apply,
    Destroy,
    Failover,
    CancelRefresh,
    Rollback,
    StopDrill,
    /// The load dialog, or the running load's view.
    Load,
    StopLoad,
    /// One-instance actions on the selected instance.
    TerminateInstance,
    UnhealthyInstance,
    StandbyInstance,
    ResumeInstance,
    /// Zonal shift away from the focused AZ, or cancel the one active there.
    ZonalShift,
    Copy,
    /// The log view of the focused AZ (of the AZ under fault, on a drill).
    AzLogs,
    /// The log view of the selected instance.
    InstanceLogs,
    /// The log view of every AZ.
    LogsAll,
    // The log view.
    Follow,
    Expand,
    LogLevel,
    // Forms.
    NextField,
    PreviousField,
    ChooseNext,
    ChoosePrevious,
    Type,
    Erase,
    Submit,
    // Command mode, the filter line and confirmations.
    Complete,
    Run,
    SetFilter,
    ClearFilter,
    Confirm,
    Cancel,
}

/// One row of the key table.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys; empty for a command without a key.
    pub keys: &'static [Key],
    /// The keys as help and the footer show them.
    pub shown: &'static str,
    /// The name in command mode (`:name`), if it has one.
    pub command: Option<&'static str>,
    pub act: Act,
    /// What help says it does.
    pub help: &'static str,
    /// Where the keys work (a command works from every screen).
    pub contexts: &'static [Context],
    /// Changes the stack: refused, and not offered, in a read-only session.
    pub changes_stack: bool,
    /// Its place in the footer (lower first) and the footer's word for it.
    pub footer: Option<(u8, &'static str)>,
}

use Context as C;
use KeyCode as K;

/// The screens with the list keys and the screen keys.
const SCREENS: &[Context] = &[C::Dashboard, C::Instances, C::Events, C::Provision, C::Help];
/// The screens and the log view: the list keys, the filter, copy, back, help and quit.
const SCREENS_LOGS: &[Context] = &[
    C::Dashboard,
    C::Instances,
    C::Events,
    C::Provision,
    C::Help,
    C::Logs,
];
/// The screens but one: a key that opens a screen does nothing on that screen.
const BUT_INSTANCES: &[Context] = &[C::Dashboard, C::Events, C::Provision, C::Help];
const BUT_EVENTS: &[Context] = &[C::Dashboard, C::Instances, C::Provision, C::Help];
const BUT_HELP: &[Context] = &[C::Dashboard, C::Instances, C::Events, C::Provision, C::Logs];
/// The screens that list instances: the instances list and the dashboard's AZ columns.
const LISTS: &[Context] = &[C::Dashboard, C::Instances];
const FORMS: &[Context] = &[C::Deploy, C::GameDay, C::LoadForm];
/// The forms with fields to choose from.
const CHOICE_FORMS: &[Context] = &[C::Deploy, C::GameDay];
const TYPING: &[Context] = &[C::Command, C::Filter, C::Confirm];

const fn row(
    keys: &'static [Key],
    shown: &'static str,
    command: Option<&'static str>,
    act: Act,
    help: &'static str,
    contexts: &'static [Context],
) -> Binding {
    Binding {
        keys,
        shown,
        command,
        act,
        help,
        contexts,
        changes_stack: false,
        footer: None,
    }
}

const fn changes(mut binding: Binding) -> Binding {
    binding.changes_stack = true;
    binding
}

const fn footer(mut binding: Binding, rank: u8, word: &'static str) -> Binding {
    binding.footer = Some((rank, word));
    binding
}

/// The footer rank of the hint that always stays, last ("q quit").
pub const PINNED: u8 = u8::MAX;

/// The key table, in the order help lists it.
pub const TABLE: &[Binding] = &[
    // Moving around.
    row(
        &[Key::Code(K::Char('j')), Key::Code(K::Down)],
        "j ↓",
        None,
        Act::RowDown,
        "next row in the list (a log line: pauses follow)",
        SCREENS_LOGS,
    ),
    row(
        &[Key::Code(K::Char('k')), Key::Code(K::Up)],
        "k ↑",
        None,
        Act::RowUp,
        "previous row in the list",
        SCREENS_LOGS,
    ),
    row(
        &[
            Key::Code(K::Char('l')),
            Key::Code(K::Right),
            Key::Code(K::Tab),
        ],
        "l → Tab",
        None,
        Act::NextAz,
        "focus the next AZ",
        SCREENS,
    ),
    row(
        &[
            Key::Code(K::Char('h')),
            Key::Code(K::Left),
            Key::Code(K::BackTab),
        ],
        "h ← S-Tab",
        None,
        Act::PreviousAz,
        "focus the previous AZ",
        SCREENS,
    ),
    row(
        &[],
        "",
        Some("dashboard"),
        Act::Dashboard,
        "the dashboard: one column per AZ",
        SCREENS,
    ),
    footer(
        row(
            &[Key::Code(K::Enter), Key::Code(K::Char('i'))],
            "Enter i",
            Some("instances"),
            Act::Instances,
            "instances (all AZs, filterable)",
            BUT_INSTANCES,
        ),
        8,
        "instances",
    ),
    footer(
        row(
            &[Key::Code(K::Char('e'))],
            "e",
            Some("events"),
            Act::Events,
            "events: everything seen this session, newest first",
            BUT_EVENTS,
        ),
        9,
        "events",
    ),
    footer(
        row(
            &[Key::Code(K::Char('t'))],
            "t",
            None,
            Act::AzLogs,
            "logs of the focused AZ, followed live (on a drill: of the AZ under fault)",
            &[C::Dashboard, C::Drill],
        ),
        6,
        "logs",
    ),
    row(
        &[Key::Code(K::Char('T'))],
        "T",
        None,
        Act::InstanceLogs,
        "logs of the selected instance, followed live",
        LISTS,
    ),
    row(
        &[],
        "",
        Some("logs"),
        Act::LogsAll,
        "logs of every AZ, followed live",
        SCREENS,
    ),
    footer(
        row(
            &[Key::Code(K::Char('/'))],
            "/",
            None,
            Act::FilterMode,
            "filter instances by id or version, events and log lines by text",
            SCREENS_LOGS,
        ),
        7,
        "filter",
    ),
    footer(
        row(
            &[Key::Code(K::Char(':'))],
            ":",
            None,
            Act::CommandMode,
            "command mode (Tab completes)",
            SCREENS,
        ),
        2,
        "command",
    ),
    footer(
        row(
            &[Key::Code(K::Char('p'))],
            "p",
            Some("plan"),
            Act::Plan,
            "provisioning: plan the stack spec",
            SCREENS,
        ),
        5,
        "provision",
    ),
    row(
        &[Key::Code(K::Char('y'))],
        "y",
        None,
        Act::Copy,
        "copy the selected instance id, event or log line (OSC 52: the terminal's clipboard, over SSH too, where the terminal allows it)",
        SCREENS_LOGS,
    ),
    row(
        &[Key::Code(K::Esc)],
        "Esc",
        None,
        Act::Back,
        "clear the filter, else back",
        SCREENS_LOGS,
    ),
    // What changes the stack.
    footer(
        changes(row(
            &[Key::Code(K::Char('d'))],
            "d",
            Some("deploy"),
            Act::Deploy,
            "deploy a version (instance refresh)",
            SCREENS,
        )),
        3,
        "deploy",
    ),
    changes(row(
        &[Key::Code(K::Char('C'))],
        "C",
        Some("cancel"),
        Act::CancelRefresh,
        "cancel the active instance refresh",
        SCREENS,
    )),
    changes(row(
        &[Key::Code(K::Char('R'))],
        "R",
        Some("rollback"),
        Act::Rollback,
        "roll the active instance refresh back",
        SCREENS,
    )),
    footer(
        changes(row(
            &[Key::Code(K::Char('g'))],
            "g",
            Some("gameday"),
            Act::GameDay,
            "GameDay: fail one AZ, measure, restore, report",
            SCREENS,
        )),
        4,
        "gameday",
    ),
    footer(
        changes(row(
            &[Key::Code(K::Char('F'))],
            "F",
            Some("failover"),
            Act::Failover,
            "fail the database over",
            SCREENS,
        )),
        6,
        "failover",
    ),
    changes(row(
        &[Key::Code(K::Char('s'))],
        "s",
        Some("stop"),
        Act::StopDrill,
        "stop the running GameDay (restores at once)",
        SCREENS,
    )),
    // A load changes no resource but puts the stack under stress: refused in read-only mode.
    changes(row(
        &[Key::Code(K::Char('L'))],
        "L",
        Some("load"),
        Act::Load,
        "load: drive requests at the endpoint, watch it scale, report",
        SCREENS,
    )),
    changes(row(
        &[Key::Code(K::Char('X'))],
        "X",
        Some("terminate"),
        Act::TerminateInstance,
        "terminate the selected instance (the group replaces it)",
        LISTS,
    )),
    changes(row(
        &[Key::Code(K::Char('U'))],
        "U",
        Some("unhealthy"),
        Act::UnhealthyInstance,
        "mark the selected instance unhealthy (replaced after the grace period)",
        LISTS,
    )),
    changes(row(
        &[Key::Code(K::Char('S'))],
        "S",
        Some("standby"),
        Act::StandbyInstance,
        "move the selected instance to standby (the group replaces it)",
        LISTS,
    )),
    changes(row(
        &[Key::Code(K::Char('B'))],
        "B",
        Some("resume"),
        Act::ResumeInstance,
        "bring the selected instance back from standby",
        LISTS,
    )),
    changes(row(
        &[Key::Code(K::Char('Z'))],
        "Z",
        Some("shift"),
        Act::ZonalShift,
        "zonal shift away from the focused AZ for 30 min (on a shifted AZ: cancel it)",
        &[C::Dashboard],
    )),
    changes(row(
        &[Key::Code(K::Char('a'))],
        "a",
        Some("up"),
        Act::Apply,
        "apply the plan (asks first)",
        &[C::Provision],
    )),
    changes(row(
        &[Key::Code(K::Char('D'))],
        "D",
        Some("down"),
        Act::Destroy,
        "destroy the stack (asks for its name)",
        &[C::Provision],
    )),
    footer(
        row(
            &[Key::Code(K::Char('?'))],
            "?",
            Some("help"),
            Act::Help,
            "this help",
            BUT_HELP,
        ),
        1,
        "help",
    ),
    footer(
        row(
            &[Key::Code(K::Char('q'))],
            "q",
            Some("quit"),
            Act::Quit,
            "quit (the stack keeps running)",
            SCREENS_LOGS,
        ),
        PINNED,
        "quit",
    ),
    row(
        &[Key::Ctrl('c')],
        "Ctrl-C",
        None,
        Act::Quit,
        "quit, from anywhere",
        &Context::ALL,
    ),
    // The drill view.
    footer(
        changes(row(
            &[Key::Code(K::Char('s'))],
            "s",
            None,
            Act::StopDrill,
            "stop the drill: restore now, then the report",
            &[C::Drill],
        )),
        1,
        "stop",
    ),
    footer(
        row(
            &[Key::Code(K::Esc), Key::Code(K::Char('q'))],
            "Esc q",
            None,
            Act::Leave,
            "back (a running drill goes on)",
            &[C::Drill],
        ),
        2,
        "back",
    ),
    // The log view.
    footer(
        row(
            &[Key::Code(K::Char('f'))],
            "f",
            None,
            Act::Follow,
            "follow: keep the newest line selected as lines arrive, or pause",
            &[C::Logs],
        ),
        1,
        "follow",
    ),
    footer(
        row(
            &[Key::Code(K::Char('v'))],
            "v",
            None,
            Act::LogLevel,
            "level: every line → debug → info → warn → error and above",
            &[C::Logs],
        ),
        2,
        "level",
    ),
    footer(
        row(
            &[Key::Code(K::Enter)],
            "Enter",
            None,
            Act::Expand,
            "show or hide the selected line's JSON fields",
            &[C::Logs],
        ),
        3,
        "fields",
    ),
    // The load view.
    footer(
        changes(row(
            &[Key::Code(K::Char('s'))],
            "s",
            None,
            Act::StopLoad,
            "stop the load now, then the report",
            &[C::Load],
        )),
        1,
        "stop",
    ),
    footer(
        row(
            &[Key::Code(K::Esc), Key::Code(K::Char('q'))],
            "Esc q",
            None,
            Act::Leave,
            "back (a running load goes on)",
            &[C::Load],
        ),
        2,
        "back",
    ),
    // The deploy and GameDay dialogs.
    footer(
        row(
            &[Key::Code(K::Tab), Key::Code(K::Down)],
            "Tab ↓",
            None,
            Act::NextField,
            "next field",
            FORMS,
        ),
        1,
        "field",
    ),
    row(
        &[Key::Code(K::BackTab), Key::Code(K::Up)],
        "S-Tab ↑",
        None,
        Act::PreviousField,
        "previous field",
        FORMS,
    ),
    footer(
        row(
            &[Key::Code(K::Right)],
            "→",
            None,
            Act::ChooseNext,
            "next choice (space too, on a choice)",
            &[C::Deploy],
        ),
        3,
        "choose",
    ),
    footer(
        row(
            &[Key::Code(K::Right), Key::Code(K::Char(' '))],
            "→ space",
            None,
            Act::ChooseNext,
            "next choice",
            &[C::GameDay],
        ),
        3,
        "choose",
    ),
    row(
        &[Key::Code(K::Left)],
        "←",
        None,
        Act::ChoosePrevious,
        "previous choice",
        CHOICE_FORMS,
    ),
    footer(
        row(
            &[Key::Text],
            "type",
            None,
            Act::Type,
            "edit the field (space flips a yes/no)",
            &[C::Deploy],
        ),
        2,
        "edit",
    ),
    footer(
        row(
            &[Key::Digit],
            "digits",
            None,
            Act::Type,
            "edit the number",
            &[C::GameDay, C::LoadForm],
        ),
        2,
        "edit",
    ),
    row(
        &[Key::Code(K::Backspace)],
        "Backspace",
        None,
        Act::Erase,
        "erase a character",
        &[
            C::Deploy,
            C::GameDay,
            C::LoadForm,
            C::Command,
            C::Filter,
            C::Confirm,
        ],
    ),
    footer(
        row(
            &[Key::Code(K::Enter)],
            "Enter",
            None,
            Act::Submit,
            "review the deploy, then confirm it",
            &[C::Deploy],
        ),
        4,
        "review",
    ),
    footer(
        row(
            &[Key::Code(K::Enter)],
            "Enter",
            None,
            Act::Submit,
            "dry run: what the fault would touch, then confirm it",
            &[C::GameDay],
        ),
        4,
        "dry run",
    ),
    footer(
        row(
            &[Key::Code(K::Enter)],
            "Enter",
            None,
            Act::Submit,
            "review the load (endpoint, peak rate), then confirm it",
            &[C::LoadForm],
        ),
        4,
        "review",
    ),
    footer(
        row(
            &[Key::Code(K::Esc)],
            "Esc",
            None,
            Act::Leave,
            "back (the form keeps what was typed)",
            FORMS,
        ),
        5,
        "back",
    ),
    // Command mode, the filter line, confirmations.
    row(
        &[Key::Text],
        "type",
        None,
        Act::Type,
        "type the command, the filter or the word asked for",
        TYPING,
    ),
    footer(
        row(
            &[Key::Code(K::Tab)],
            "Tab",
            None,
            Act::Complete,
            "complete the command",
            &[C::Command],
        ),
        1,
        "complete",
    ),
    footer(
        row(
            &[Key::Code(K::Enter)],
            "Enter",
            None,
            Act::Run,
            "run the command",
            &[C::Command],
        ),
        2,
        "run",
    ),
    footer(
        row(
            &[Key::Code(K::Enter)],
            "Enter",
            None,
            Act::SetFilter,
            "keep the filter",
            &[C::Filter],
        ),
        1,
        "keep",
    ),
    footer(
        row(
            &[Key::Code(K::Esc)],
            "Esc",
            None,
            Act::ClearFilter,
            "clear the filter",
            &[C::Filter],
        ),
        2,
        "clear",
    ),
    footer(
        row(
            &[Key::Code(K::Enter)],
            "Enter",
            None,
            Act::Confirm,
            "go ahead if the word typed is the one asked for, else cancel",
            &[C::Confirm],
        ),
        1,
        "go ahead",
    ),
    footer(
        row(
            &[Key::Code(K::Esc)],
            "Esc",
            None,
            Act::Cancel,
            "cancel",
            &[C::Command, C::Confirm],
        ),
        2,
        "cancel",
    ),
];

/// The bindings that work in `context`, in table order.
pub fn bindings(context: Context) -> impl Iterator<Item = &'static Binding> {
    TABLE.iter().filter(move |b| b.contexts.contains(&context))
}

/// The binding `key` triggers in `context`, if any.
pub fn lookup(context: Context, key: &KeyEvent) -> Option<&'static Binding> {
    bindings(context).find(|b| b.keys.iter().any(|k| k.matches(key)))
}

/// The binding a command-mode word names, if any.
pub fn command(name: &str) -> Option<&'static Binding> {
    TABLE.iter().find(|b| b.command == Some(name))
}

/// Whether this session offers the binding (a read-only one hides what changes the stack).
pub fn offered(binding: &Binding, read_only: bool) -> bool {
    !(read_only && binding.changes_stack)
}

/// The rows help shows for `context` in this session: the keys, then what they do.
pub fn help_rows(context: Context, read_only: bool) -> Vec<(&'static str, &'static str)> {
    bindings(context)
        .filter(|b| !b.keys.is_empty() && offered(b, read_only))
        .map(|b| (b.shown, b.help))
        .collect()
}

/// The footer's hints for `context`, most wanted first ("d deploy"), at most six, and the one
/// that always stays ("q quit"): the footer drops hints from the end when they do not fit,
/// and help lists everything.
pub fn footer_hints(context: Context, read_only: bool) -> (Vec<String>, Option<String>) {
    let mut ranked: Vec<(u8, String)> = bindings(context)
        .filter(|b| offered(b, read_only))
        .filter_map(|b| {
            let first = b.shown.split(' ').next().unwrap_or(b.shown);
            b.footer
                .map(|(rank, word)| (rank, format!("{first} {word}")))
        })
        .collect();
    ranked.sort_by_key(|(rank, _)| *rank);
    let pinned = ranked
        .iter()
        .position(|(rank, _)| *rank == PINNED)
        .map(|i| ranked.remove(i).1);
    let hints = ranked.into_iter().map(|(_, hint)| hint).take(6).collect();
    (hints, pinned)
}

/// The commands this session offers, in table order.
pub fn commands(read_only: bool) -> impl Iterator<Item = &'static str> {
    TABLE
        .iter()
        .filter(move |b| offered(b, read_only))
        .filter_map(|b| b.command)
}

/// The offered commands that start with `input`.
pub fn command_matches(input: &str, read_only: bool) -> Vec<&'static str> {
    commands(read_only)
        .filter(|c| c.starts_with(input.trim()))
        .collect()
}

/// Completes a command-mode word: the one command it starts, or the longest common prefix.
pub fn complete(input: &str, read_only: bool) -> String {
    match command_matches(input, read_only).as_slice() {
        [] => input.to_string(),
        [one] => (*one).to_string(),
        many => {
            let first = many[0];
            let mut len = first.len();
            for other in &many[1..] {
                len = len.min(
                    first
                        .chars()
                        .zip(other.chars())
                        .take_while(|(a, b)| a == b)
                        .count(),
                );
            }
            first[..len].to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    //! The key table against the handlers: every key help lists does something where help says
    //! it works, every key that does something is listed, and no key means two things at once.

    use super::*;
    use crate::app::testing::{plan, state, with_versions};
    use crate::app::{Action, Confirm, DrillView, Effect, LoadView, update};
    use crate::screen::deploy::DeployField;
    use crate::screen::gameday::GamedayField;
    use crate::screen::load::LoadField;
    use provision::port::BackendKind;

    /// Every key a terminal sends that the console could care about.
    fn universe() -> Vec<KeyEvent> {
        let mut keys: Vec<KeyEvent> = (' '..='~')
            .map(|c| {
                let shift = if c.is_ascii_uppercase() {
                    KeyModifiers::SHIFT
                } else {
                    KeyModifiers::NONE
                };
                KeyEvent::new(KeyCode::Char(c), shift)
            })
            .collect();
        for code in [
            KeyCode::Esc,
            KeyCode::Enter,
            KeyCode::Tab,
            KeyCode::BackTab,
            KeyCode::Backspace,
            KeyCode::Delete,
            KeyCode::Insert,
            KeyCode::Up,
            KeyCode::Down,
            KeyCode::Left,
            KeyCode::Right,
            KeyCode::Home,
            KeyCode::End,
            KeyCode::PageUp,
            KeyCode::PageDown,
            KeyCode::F(1),
            KeyCode::F(5),
        ] {
            keys.push(KeyEvent::new(code, KeyModifiers::NONE));
        }
        keys.extend(('a'..='z').map(|c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)));
        keys
    }

    /// One key event for each key a binding answers to.
    fn examples(key: Key) -> Vec<KeyEvent> {
        match key {
            Key::Code(KeyCode::Char(c)) if c.is_ascii_uppercase() => {
                vec![KeyEvent::new(KeyCode::Char(c), KeyModifiers::SHIFT)]
            }
            Key::Code(code) => vec![KeyEvent::new(code, KeyModifiers::NONE)],
            Key::Ctrl(c) => vec![KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)],
            Key::Text => vec![KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE)],
            Key::Digit => vec![KeyEvent::new(KeyCode::Char('7'), KeyModifiers::NONE)],
        }
    }

    /// States in `context` where each of its keys has something to act on: a stack with two
    /// AZs of three instances, a logged event list, the second row selected, a screen to go
    /// back to; the forms once on a typed field and once on a chosen one.
    fn states(context: Context) -> Vec<State> {
        let mut base = state(BackendKind::Sandbox, false);
        with_versions(&mut base, &["1.0.0", "1.0.0", "1.1.0"]);
        if let Some(snapshot) = base.snapshot.as_mut() {
            let mut second = snapshot.azs[0].clone();
            second.az = "eu-west-1b".into();
            for instance in &mut second.instances {
                instance.id.push('b');
            }
            snapshot.azs.push(second);
        }
        let events: Vec<provision::port::Event> = (0..3)
            .rev()
            .map(|i| provision::port::Event {
                at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(i),
                source: provision::port::EventSource::Scaling,
                az: Some("eu-west-1a".into()),
                message: format!("event {i}"),
            })
            .collect();
        base.log_events(&events);
        base.row = 1;
        let on = |screen: Screen| {
            let mut s = base.clone();
            s.previous = vec![Screen::Dashboard];
            s.screen = screen;
            s
        };
        match context {
            Context::Dashboard => vec![base.clone()],
            Context::Instances => vec![on(Screen::Instances)],
            Context::Events => vec![on(Screen::Events)],
            Context::Help => vec![on(Screen::Help)],
            Context::Provision => {
                let mut s = on(Screen::Provision);
                let mut view = crate::app::ProvisionView::new(crate::app::ProvisionPhase::Planned);
                view.plan = Some(Box::new(plan(&s.stack, 2)));
                s.provision = Some(view);
                vec![s]
            }
            Context::Deploy => [DeployField::Version, DeployField::ScaleInProtected]
                .into_iter()
                .map(|field| {
                    let mut s = on(Screen::Deploy);
                    s.deploy.version = "v2".into();
                    s.deploy.field = field;
                    s
                })
                .collect(),
            Context::GameDay => [GamedayField::Duration, GamedayField::Fault]
                .into_iter()
                .map(|field| {
                    let mut s = on(Screen::GameDay);
                    s.gameday.field = field;
                    s
                })
                .collect(),
            Context::Drill => {
                let mut s = on(Screen::GameDay);
                s.drill = Some(DrillView {
                    running: true,
                    ..DrillView::default()
                });
                vec![s]
            }
            Context::LoadForm => [LoadField::Rate, LoadField::To]
                .into_iter()
                .map(|field| {
                    let mut s = on(Screen::Load);
                    s.load_form.field = field;
                    if let Some(snapshot) = s.snapshot.as_mut() {
                        snapshot.endpoint = Some("http://127.0.0.1:8080".into());
                    }
                    s
                })
                .collect(),
            Context::Load => {
                let mut s = on(Screen::Load);
                s.load = Some(LoadView {
                    running: true,
                    ..LoadView::default()
                });
                vec![s]
            }
            Context::Command => {
                let mut s = base.clone();
                s.mode = Mode::Command("dep".into());
                vec![s]
            }
            Context::Filter => {
                let mut s = base.clone();
                s.mode = Mode::Filter("i-".into());
                vec![s]
            }
            Context::Logs => {
                let mut s = on(Screen::Logs);
                let mut view = crate::app::LogView::new(crate::app::LogScope::default(), 1);
                view.lines = (0..3)
                    .map(|i| {
                        provision::port::LogLine::parse(
                            &format!(r#"{{"level":"INFO","message":"line {i}","status":200}}"#),
                            "i-0",
                            "eu-west-1a",
                            time::OffsetDateTime::UNIX_EPOCH,
                        )
                    })
                    .collect();
                view.loaded = true;
                s.logs = Some(view);
                vec![s]
            }
            Context::Confirm => {
                let mut s = base.clone();
                s.mode = Mode::Confirm(Box::new(Confirm {
                    title: "Go?".into(),
                    lines: Vec::new(),
                    expected: "x".into(),
                    input: "x".into(),
                    effect: Effect::CancelRefresh,
                }));
                vec![s]
            }
        }
    }

    /// Whether `key` did anything: changed the state or asked for an effect.
    fn acts(state: &State, key: KeyEvent) -> bool {
        let mut after = state.clone();
        let effects = update(&mut after, Action::Key(key));
        !effects.is_empty() || format!("{after:?}") != format!("{state:?}")
    }

    #[test]
    fn the_sample_states_are_in_their_contexts() {
        for context in Context::ALL {
            for s in states(context) {
                assert_eq!(Context::of(&s), context);
            }
        }
    }

    #[test]
    fn every_key_in_help_is_handled_on_its_screens() {
        for context in Context::ALL {
            for binding in bindings(context) {
                for key in binding.keys.iter().flat_map(|k| examples(*k)) {
                    assert!(
                        states(context).iter().any(|s| acts(s, key)),
                        "{} ({}) does nothing in {context:?}",
                        binding.shown,
                        binding.help
                    );
                }
            }
        }
    }

    #[test]
    fn every_handled_key_is_in_help() {
        for context in Context::ALL {
            for key in universe() {
                if lookup(context, &key).is_some() {
                    continue;
                }
                for s in states(context) {
                    assert!(
                        !acts(&s, key),
                        "{key:?} acts in {context:?} but the key table does not list it"
                    );
                }
            }
        }
    }

    #[test]
    fn no_two_bindings_share_a_key_in_one_context() {
        for context in Context::ALL {
            for key in universe() {
                let matching: Vec<&str> = bindings(context)
                    .filter(|b| b.keys.iter().any(|k| k.matches(&key)))
                    .map(|b| b.help)
                    .collect();
                assert!(
                    matching.len() <= 1,
                    "{key:?} means {matching:?} in {context:?}"
                );
            }
        }
    }

    #[test]
    fn every_command_names_one_binding_and_help_lists_the_screens_keys() {
        let names: Vec<&str> = commands(false).collect();
        for name in &names {
            assert_eq!(
                names.iter().filter(|n| *n == name).count(),
                1,
                ":{name} names one binding"
            );
        }
        // Read-only: nothing that changes the stack is offered, by key or by name.
        assert!(commands(true).all(|c| command(c).is_some_and(|b| !b.changes_stack)));
        let rows = help_rows(Context::Dashboard, true);
        assert!(rows.iter().any(|(keys, _)| *keys == "p"));
        assert!(!rows.iter().any(|(keys, _)| *keys == "d"));
    }

    #[test]
    fn read_only_refuses_every_binding_that_changes_the_stack_from_the_table() {
        for context in Context::ALL {
            for binding in bindings(context).filter(|b| b.changes_stack) {
                for key in binding.keys.iter().flat_map(|k| examples(*k)) {
                    for mut s in states(context) {
                        s.read_only = true;
                        let screen = s.screen;
                        let effects = update(&mut s, Action::Key(key));
                        assert!(effects.is_empty(), "{} in {context:?}", binding.shown);
                        assert_eq!(s.screen, screen);
                        assert!(
                            s.notices[0].text.contains("read-only"),
                            "{} in {context:?}: {:?}",
                            binding.shown,
                            s.notices
                        );
                    }
                }
            }
        }
    }
}
