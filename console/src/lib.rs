//! `triad`'s console: the command line, the terminal UI and the GameDay drill engine.
//! The binary (`main.rs`) only parses arguments and dispatches here.
//!
//! - [`activity`]: what runs against a stack now (a GameDay, a load), for each to note the other.
//! - [`app`]: the state and the one pure `update(state, action) -> effects`.
//! - [`screen`]: each screen's state, keys and drawing, side by side.
//! - [`ui`]: the frame around the screens (header, strip, events pane, footer, dialogs).
//! - [`run`]: the terminal loop and the effect runner.
//! - [`commands`]: the non-interactive commands (status, deploy, gameday).
//! - [`logs`]: `triad logs`.
//! - [`drill`]: the GameDay engine, UI-free.
//! - [`load`]: `triad load`, the load generator and its report, UI-free.
//! - [`policy`]: what the command line and the console both decide (production, the word
//!   to type, where reports go).
//! - [`backend`]: connecting to the chosen backend; the working area.
//! - [`chart`]: the SVG charts of the GameDay and load reports.

pub mod activity;
pub mod app;
pub mod backend;
pub mod chart;
pub mod cli;
pub mod commands;
pub mod drill;
pub mod init;
pub mod keys;
pub mod load;
pub mod logs;
pub mod policy;
pub mod run;
pub mod screen;
pub mod ui;
