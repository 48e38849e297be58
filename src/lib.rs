//! authwatch: probes everything Clerk authentication depends on and exports Prometheus metrics.

pub mod app;
pub mod blackbox;
pub mod config;
pub mod diagnosis;
pub mod failure;
pub mod jwt;
pub mod metrics;
pub mod net;
pub mod outcome;
pub mod probe;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod status;
pub mod store;
pub mod web;

/// Locks a mutex, carrying on with the data if a panicking thread poisoned it: every value
/// guarded here stays consistent between statements, and a daemon must not stop probing.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
