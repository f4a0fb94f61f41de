//! The GameDay drill engine: steady-state check → inject → observe → recover → restore →
//! report. UI-free: nothing here imports ratatui; the console renders what it publishes.

pub mod engine;
pub mod journal;
pub mod probe;
pub mod remedy;
pub mod report;
