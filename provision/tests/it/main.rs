//! The provision crate's integration tests, in one binary (one link of the AWS SDKs instead of one
//! per file). Each module was once its own test binary; its own doc comment says what it covers.

mod aws_cfn;
mod aws_cfn_mocks;
mod aws_logs;
mod aws_ops;
mod aws_ops_mocks;
mod model_group;
mod model_scaling;
mod port_backend;
mod port_guard;
mod port_memory;
mod port_serde;
mod sandbox_db;
mod sandbox_e2e;
mod sandbox_lb;
mod spec_errors;
mod template_cli;
mod template_properties;
mod template_snapshots;
