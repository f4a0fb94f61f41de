//! `triad`'s console: the command line, the terminal UI and the GameDay drill engine.
//! The binary (`main.rs`) only parses arguments and dispatches here.
//!
//! - [`app`]: the state and the one pure `update(state, action) -> effects`.
//! - [`ui`]: drawing, a pure function of the state.
//! - [`run`]: the terminal loop and the effect runner.
//! - [`commands`]: the non-interactive commands (status, deploy, gameday).
//! - [`logs`]: `triad logs`.
//! - [`drill`]: the GameDay engine, UI-free.
//! - [`backend`]: connecting to the chosen backend; the working area.

pub mod app;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod drill;
pub mod logs;
pub mod run;
pub mod ui;
