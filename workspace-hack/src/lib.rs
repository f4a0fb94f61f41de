//! Feature unification for the workspace, and nothing else: see this crate's `Cargo.toml`.
