//! The mailer Lambda's logic: a "user created" event (delivered by SNS) becomes a verification
//! token in DynamoDB and an e-mail through SES v2 carrying the link that redeems it.
//!
//! The binary (`main.rs`) only reads [`config::Config`], builds the AWS clients once and hands
//! each invocation to [`handler::handle_sns_event`]. Everything below it is plain functions
//! over two small traits, [`store::TokenStore`] and [`email::EmailSender`], which the tests
//! drive directly against moto.

pub mod config;
pub mod email;
pub mod handler;
pub mod store;
pub mod token;
