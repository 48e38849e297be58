//! Runs each probe on its own task: its own interval with jitter, its own deadline, never two
//! runs of one probe at once, and nothing one probe does can delay another or a scrape.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::failure::{Failure, Reason};
use crate::lock;
use crate::net::trace::{Trace, TraceData};
use crate::probe::state::ProbeState;
use crate::probe::{Probe, RunResult};

/// `base` scaled by a random factor in [1 - jitter, 1 + jitter].
fn jittered(base: Duration, jitter: f64) -> Duration {
    let f = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
    base.mul_f64(f.max(0.0))
}

/// Runs the probe once within `timeout`: the result, the trace, and how long it took. A run
/// cut off by the deadline fails with the timeout reason of the phase it was in.
pub async fn execute(probe: &Probe, timeout: Duration) -> (RunResult, TraceData, Duration) {
    let started = Instant::now();
    let deadline = started + timeout;
    let trace = Trace::default();
    let result = tokio::time::timeout_at(deadline, probe.run(&trace, deadline)).await;
    let duration = started.elapsed();
    let data = trace.snapshot();
    let result = match result {
        Ok(r) => r,
        Err(_) => {
            let (reason, during) = match data.current {
                Some(p) => (p.timeout_reason(), p.as_label()),
                None => (Reason::Timeout, "the run"),
            };
            RunResult::failed(Failure::new(
                reason,
                format!(
                    "deadline of {} exceeded during {during}",
                    humantime::format_duration(timeout)
                ),
            ))
        }
    };
    (result, data, duration)
}

/// Runs the probe once within its deadline and folds the result into its state.
pub async fn run_once(probe: &Probe, state: &Mutex<ProbeState>) {
    let (result, data, duration) = execute(probe, probe.spec.timeout).await;
    let message = result.failure.as_ref().map(|f| f.message.clone());
    let failure = result.failure.as_ref().map(|f| f.reason);
    let changed = lock(state).record(result, data, duration, SystemTime::now());
    if let Some(detour) = probe.detour(failure) {
        let (result, data, _) = execute(&detour, probe.spec.timeout).await;
        let resolver = detour.spec.conn.resolver.clone();
        lock(state).record_detour(resolver, result, data, SystemTime::now());
    }
    if let Some(previous) = changed {
        let name = &probe.spec.name;
        let kind = probe.spec.kind().as_label();
        let first = lock(state).runs == 1;
        let was = match previous {
            Some(r) => r.as_label(),
            None if first => "starting",
            None => "ok",
        };
        match (lock(state).failure(), message) {
            (Some(reason), Some(error)) => tracing::warn!(
                probe = %name, kind, reason = reason.as_label(), was, error = %error, "probe failing"
            ),
            _ => tracing::info!(probe = %name, kind, was, "probe recovered"),
        }
    }
}

/// Starts the probe's loop. The first run comes after a random part of the jitter window so
/// that probes configured together do not fire together.
pub fn spawn(probe: Arc<Probe>, state: Arc<Mutex<ProbeState>>, jitter: f64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = probe.spec.interval;
        let first = interval
            .mul_f64(jitter * fastrand::f64())
            .min(Duration::from_secs(5));
        tokio::time::sleep(first).await;
        loop {
            let started = Instant::now();
            run_once(&probe, &state).await;
            let next = started + jittered(interval, jitter);
            tokio::time::sleep_until(next.max(Instant::now())).await;
        }
    })
}
