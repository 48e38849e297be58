//! authwatch: probes everything Clerk authentication depends on and exports Prometheus metrics.

pub mod app;
pub mod config;
pub mod diagnosis;
pub mod failure;
pub mod metrics;
pub mod net;
pub mod outcome;
pub mod probe;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod store;
