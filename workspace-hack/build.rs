//! Present so that the host-side `[build-dependencies]` in `Cargo.toml` take part in feature
//! resolution; it does nothing.
fn main() {}
