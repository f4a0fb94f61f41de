//! The local sandbox cloud: real processes on this machine standing in for AWS's managed
//! parts, addressed per Availability Zone on loopback (AZ `k` on `127.0.k+1.x`).
//!
//! - [`db`]: a Multi-AZ PostgreSQL cluster (primary, synchronous standby, one endpoint,
//!   RDS-style monitoring and failover);
//! - [`lb`]: an HTTP load balancer with ALB semantics (health checks, target states,
//!   deregistration delay, per-AZ metrics);
//! - [`process`]: process groups, the unprivileged user and per-AZ loopback addresses they use;
//! - [`fleet`]: the Auto Scaling group of webapp instances and its instance refreshes;
//! - [`side_channel`]: SNS → queue → the mailer binary under a [`lambda`] Runtime API, with
//!   Lambda's retries and a dead-letter queue;
//! - [`logs`]: each instance's log, rotated, read and numbered for the port's `logs`;
//! - [`metrics`]: per-second samples of healthy hosts and of the instances' CPU;
//! - [`traffic`]: the gentle traffic a demo stack sends itself (`[sandbox] traffic`);
//! - [`daemon`]: the per-stack daemon that runs all of the above and serves the control API;
//! - [`client`]: [`client::SandboxCloud`], the Cloud port over that control API.

pub mod client;
pub mod daemon;
pub mod db;
pub mod fleet;
pub mod lambda;
pub mod lb;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod side_channel;
pub mod traffic;
