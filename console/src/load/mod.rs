//! `triad load`: drive load at the stack's endpoint and measure how the stack scales.
//!
//! - [`generator`]: the open-loop request stream (constant rate or linear ramp), per second.
//! - [`phases`]: the phases of each scale-out, found in the snapshots taken during the load.
//! - [`engine`]: one load from start to report — the generator, a snapshot a second, the
//!   scale-in afterwards — publishing live updates for the console or the command line.
//! - [`report`]: the report as JSON, Markdown and an SVG chart.
//!
//! UI-free, like the GameDay engine: nothing here imports ratatui.

pub mod engine;
pub mod generator;
pub mod phases;
pub mod report;
