//! The mailer crate's integration tests, in one binary (one link of the AWS SDKs instead of one
//! per file). Each module was once its own test binary; its own doc comment says what it covers.

mod lambda;
mod process;
mod support;
