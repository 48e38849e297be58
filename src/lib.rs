//! authwatch: probes everything Clerk authentication depends on and exports Prometheus metrics.

//!
//! Modules, lowest first; each uses only those before it:
//! `failure`, `secret` → `net` → `encode`, `jwk`, `jwt`, `token` → `config::{base,
//! connection, clerk, global}` → `probe` (the kinds and their registry) → `config` (the
//! file) → `store`, `scheduler` → `diagnosis` → `metrics`, `status`, `blackbox` → `app` →
//! `server`, `web` → `main`.

pub mod app;
pub mod blackbox;
pub mod config;
pub mod diagnosis;
pub mod encode;
pub mod failure;
pub mod files;
pub mod jwk;
pub mod jwt;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod probe;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod status;
pub mod store;
pub mod token;
pub mod web;

/// Locks a mutex, carrying on with the data if a panicking thread poisoned it: every value
/// guarded here stays consistent between statements, and a daemon must not stop probing.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
