//! Everything that touches a cloud. `console` talks to AWS or to the local sandbox only
//! through this crate.

pub mod sandbox;
