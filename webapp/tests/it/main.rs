//! The webapp's integration tests, in one binary: real PostgreSQL (a fresh database per test)
//! and moto over HTTP for SNS, SQS, DynamoDB and Secrets Manager, all started by
//! `scripts/test`. Endpoint tests run Rocket in process; drain, logging and configuration
//! errors run the built binary.

mod api;
mod binary;
mod common;
mod contract;
mod deploy;
mod migrations;
mod outbox;
mod schemathesis;
mod secrets;
