//! Everything that touches a cloud. `console` talks to AWS or to the local sandbox only
//! through this crate.

pub mod aws;
#[cfg(feature = "memory")]
pub mod memory;
pub mod model;
pub mod port;
pub mod sandbox;
pub mod spec;
pub mod template;
