//! Command mode (`:`, completed with Tab) and the filter line (`/`).

use crossterm::event::{KeyCode, KeyEvent};

use crate::app::{Effect, Level, Mode, Screen, State};
use crate::screen::dashboard::{ask_cancel, ask_rollback};
use crate::screen::deploy::open_deploy;
use crate::screen::gameday::{ask_failover, open_gameday, stop_drill};
use crate::screen::provision::{ask_apply, ask_destroy, open_provision};

/// Commands accepted in command mode (`:`), completed with Tab.
pub const COMMANDS: &[&str] = &[
    "dashboard",
    "instances",
    "events",
    "deploy",
    "gameday",
    "plan",
    "up",
    "down",
    "failover",
    "cancel",
    "rollback",
    "stop",
    "help",
    "quit",
];

/// Commands that change something: not offered (and refused) in a read-only session.
pub(crate) const MUTATING_COMMANDS: &[&str] = &[
    "deploy", "gameday", "up", "down", "failover", "cancel", "rollback", "stop",
];

/// The commands this session offers, in [`COMMANDS`] order.
pub fn commands(read_only: bool) -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .copied()
        .filter(move |c| !(read_only && MUTATING_COMMANDS.contains(c)))
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

pub(crate) fn on_command_key(state: &mut State, mut input: String, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Esc => Vec::new(),
        KeyCode::Tab => {
            state.mode = Mode::Command(complete(&input, state.read_only));
            Vec::new()
        }
        KeyCode::Backspace => {
            input.pop();
            state.mode = Mode::Command(input);
            Vec::new()
        }
        KeyCode::Char(c) => {
            input.push(c);
            state.mode = Mode::Command(input);
            Vec::new()
        }
        KeyCode::Enter => {
            let command = complete(input.trim(), state.read_only);
            run_command(state, &command)
        }
        _ => {
            state.mode = Mode::Command(input);
            Vec::new()
        }
    }
}

pub(crate) fn run_command(state: &mut State, command: &str) -> Vec<Effect> {
    match command {
        "dashboard" => state.go(Screen::Dashboard),
        "instances" => state.go(Screen::Instances),
        "events" => state.go(Screen::Events),
        "help" => state.go(Screen::Help),
        "deploy" => return open_deploy(state),
        "gameday" => return open_gameday(state),
        "plan" => return open_provision(state),
        "up" => return ask_apply(state),
        "down" => return ask_destroy(state),
        "failover" => return ask_failover(state),
        "cancel" => return ask_cancel(state),
        "rollback" => return ask_rollback(state),
        "stop" => return stop_drill(state),
        "quit" | "q" => {
            state.quit = true;
            return vec![Effect::Quit];
        }
        "" => {}
        other => state.notice(Level::Warn, format!("unknown command :{other}")),
    }
    Vec::new()
}

pub(crate) fn on_filter_key(state: &mut State, mut input: String, key: KeyEvent) {
    match key.code {
        KeyCode::Esc => state.filter.clear(),
        KeyCode::Enter => state.filter = input,
        KeyCode::Backspace => {
            input.pop();
            state.mode = Mode::Filter(input);
        }
        KeyCode::Char(c) => {
            input.push(c);
            state.mode = Mode::Filter(input);
        }
        _ => state.mode = Mode::Filter(input),
    }
    state.row = 0;
}
