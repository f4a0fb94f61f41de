//! `triad`'s console: the command line, the terminal UI and the GameDay drill engine.
//! The binary (`main.rs`) only parses arguments and dispatches here.

pub mod app;
pub mod cli;
pub mod drill;
pub mod ui;
