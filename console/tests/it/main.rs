//! The console crate's integration tests, in one binary (one link of the AWS SDKs instead of one
//! per file). Each module was once its own test binary; its own doc comment says what it covers.

mod aws_cli;
mod cli;
mod console_tmux;
mod load;
mod probe;
mod render;
mod sandbox_cli;
mod support;
