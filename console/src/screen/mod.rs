//! The screens. Each file holds one screen's state, its keys and its drawing, side by side;
//! the one `State`, `Action` and `update` live in `app`, the frame around the screens in `ui`.

pub mod command;
pub mod dashboard;
pub mod deploy;
pub mod events;
pub mod gameday;
pub mod help;
pub mod instances;
pub mod load;
pub mod logs;
pub mod provision;
