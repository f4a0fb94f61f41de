//! The one definition of what `webapp`, `mailer` and `provision`'s template share: the
//! "user created" message (and the mailer's answer to it), the token table's schema and how idempotency records are keyed in
//! it, and the programs' environment variables. Nothing else in the workspace re-declares
//! these strings; change them here and every side follows.

pub mod env;
pub mod message;
pub mod tokens;

pub use message::{MailerResponse, UserCreated};
