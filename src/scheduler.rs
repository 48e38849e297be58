//! Runs each probe on its own task: its own slot in its interval, its own deadline, never two
//! runs of one probe at once, and nothing one probe does can delay another or a scrape.
//!
//! Probes sharing an interval are spread evenly over it (ordered by a hash of their names, as
//! Prometheus spreads scrape targets by a hash of each target), and each slot is anchored to
//! the wall clock, so a reload or restart does not move or align them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::failure::{Failure, Reason};
use crate::lock;
use crate::net::trace::{Trace, TraceData};
use crate::probe::state::ProbeState;
use crate::probe::{Probe, RunResult};

/// Where in its interval a probe runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    pub interval: Duration,
    /// Offset of the runs from multiples of `interval` on the Unix clock.
    pub phase: Duration,
    /// The gap to the neighbouring probes' slots: the jitter is a part of it, so that random
    /// shifts never bunch neighbours together.
    pub spacing: Duration,
    /// First runs of a probe whose interval is longer come within this window of start-up,
    /// at the same relative place, so a fresh daemon is ready (and its dashboards full) soon.
    pub start_window: Duration,
}

/// The start-up window: 200 first runs a second, but at least 5 s and at most 60 s.
fn start_window(probes: usize) -> Duration {
    Duration::from_secs_f64((probes as f64 / 200.0).clamp(5.0, 60.0))
}

fn name_hash(name: &str, seed: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same name gets the same place on every start.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// One slot per `(name, interval)`, in the same order: within each interval, probes are ordered
/// by a hash of their name and spaced evenly. `seed` turns the whole pattern (this host's
/// name, so two vantages do not probe at the same instants).
pub fn slots(probes: &[(&str, Duration)], seed: u64) -> Vec<Slot> {
    let mut groups: std::collections::BTreeMap<Duration, Vec<(u64, usize)>> = Default::default();
    for (i, (name, interval)) in probes.iter().enumerate() {
        groups
            .entry(*interval)
            .or_default()
            .push((name_hash(name, seed), i));
    }
    let turn = (seed % 10_000) as f64 / 10_000.0;
    let window = start_window(probes.len());
    let mut out = vec![
        Slot {
            interval: Duration::ZERO,
            phase: Duration::ZERO,
            spacing: Duration::ZERO,
            start_window: window,
        };
        probes.len()
    ];
    for (interval, mut members) in groups {
        members.sort_unstable();
        let n = members.len() as f64;
        for (rank, (_, i)) in members.into_iter().enumerate() {
            let at = ((rank as f64 + 0.5) / n + turn).fract();
            out[i] = Slot {
                interval,
                phase: interval.mul_f64(at),
                spacing: interval.div_f64(n),
                start_window: window,
            };
        }
    }
    out
}

/// A seed from this host's name, so each vantage has its own pattern.
pub fn host_seed() -> u64 {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name_hash(host.trim(), 0)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

impl Slot {
    /// How long from `now` (on the Unix clock) until the slot's next run strictly after it.
    fn until_next(&self, now: Duration) -> Duration {
        let interval = self.interval.as_nanos().max(1);
        let into = (now.as_nanos() + interval - self.phase.as_nanos() % interval) % interval;
        Duration::from_nanos(u64::try_from(interval - into).unwrap_or(u64::MAX))
    }

    /// The wait before the first run: the next slot, or for intervals longer than the
    /// start-up window the same place scaled into that window.
    fn first_wait(&self, now: Duration) -> Duration {
        let next = self.until_next(now);
        if self.interval <= self.start_window {
            return next;
        }
        let at = self.phase.as_secs_f64() / self.interval.as_secs_f64();
        next.min(self.start_window.mul_f64(at))
    }

    /// A random shift within `±jitter` of the spacing, for one run.
    fn shift(&self, jitter: f64) -> f64 {
        self.spacing.as_secs_f64() * jitter * (fastrand::f64() * 2.0 - 1.0)
    }
}

fn shifted(wait: Duration, by: f64) -> Duration {
    Duration::from_secs_f64((wait.as_secs_f64() + by).max(0.0))
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
pub async fn run_once(probe: &Probe, state: &Mutex<Arc<ProbeState>>) {
    let (result, data, duration) = execute(probe, probe.spec.timeout).await;
    let message = result.failure.as_ref().map(|f| f.message.clone());
    let failure = result.failure.as_ref().map(|f| f.reason);
    let changed = Arc::make_mut(&mut lock(state)).record(result, data, duration, SystemTime::now());
    if let Some(detour) = probe.detour(failure) {
        let (result, data, _) = execute(&detour, probe.spec.timeout).await;
        let resolver = detour.spec.conn.resolver.clone();
        Arc::make_mut(&mut lock(state)).record_detour(resolver, result, data, SystemTime::now());
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

/// The runtime the scheduled probes run on: one thread of its own. Thousands of short runs a
/// second spread over a work-stealing pool cost more in wake-ups between threads than in work
/// (a profile showed a fifth of the CPU in context switches); on one thread each run's I/O is
/// handled where it waits. The web server keeps the multi-thread runtime, so a scrape or a flood
/// of requests never shares a thread with the probes.
#[derive(Debug)]
pub struct ProbeRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ProbeRuntime {
    /// Starts the thread; if that fails, probes run on the caller's runtime.
    pub fn start() -> ProbeRuntime {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = std::thread::Builder::new()
            .name("authwatch-probes".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    // Bounded file reads only (token and pinned-key files).
                    .max_blocking_threads(8)
                    .build();
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Some(rt.handle().clone()));
                        let _ = rt.block_on(stopped);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the probe runtime; probes share the server's");
                        let _ = tx.send(None);
                    }
                }
            });
        let handle = started
            .ok()
            .and_then(|_| rx.recv().ok().flatten())
            .unwrap_or_else(tokio::runtime::Handle::current);
        ProbeRuntime {
            handle,
            stop: Some(stop),
        }
    }
}

impl Drop for ProbeRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the probe's loop in its slot; a run that overruns its slot skips to the next one.
pub fn spawn(
    rt: &ProbeRuntime,
    probe: Arc<Probe>,
    state: Arc<Mutex<Arc<ProbeState>>>,
    slot: Slot,
    jitter: f64,
) -> JoinHandle<()> {
    rt.handle.spawn(async move {
        tokio::time::sleep(shifted(slot.first_wait(unix_now()), slot.shift(jitter))).await;
        loop {
            // Boxed so that a sleeping probe's task holds only this loop, not the run's
            // state machine: thousands of idle probes then cost little memory.
            Box::pin(run_once(&probe, &state)).await;
            // At least half the spacing after this run, so a jittered run just before its
            // slot does not run again at once.
            let wait = slot.until_next(unix_now() + slot.spacing / 2) + slot.spacing / 2;
            tokio::time::sleep(shifted(wait, slot.shift(jitter))).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_sharing_an_interval_are_spread_evenly() {
        let names: Vec<String> = (0..1000).map(|i| format!("probe-{i}")).collect();
        let probes: Vec<(&str, Duration)> = names
            .iter()
            .map(|n| (n.as_str(), Duration::from_secs(30)))
            .collect();
        let slots = slots(&probes, 42);
        let mut per_second = [0u32; 30];
        for s in &slots {
            per_second[s.phase.as_secs() as usize] += 1;
        }
        let (lo, hi) = (per_second.iter().min(), per_second.iter().max());
        assert!(lo >= Some(&33) && hi <= Some(&34), "{per_second:?}");
        // Stable: the same names get the same slots again.
        assert_eq!(slots, super::slots(&probes, 42));
        assert!(slots.iter().all(|s| s.spacing == Duration::from_millis(30)));
    }

    #[test]
    fn the_next_run_is_in_the_slot() {
        let slot = Slot {
            interval: Duration::from_secs(30),
            phase: Duration::from_secs(7),
            spacing: Duration::from_secs(1),
            start_window: Duration::from_secs(60),
        };
        assert_eq!(
            slot.until_next(Duration::from_secs(600)),
            Duration::from_secs(7)
        );
        assert_eq!(
            slot.until_next(Duration::from_secs(607)),
            Duration::from_secs(30)
        );
        assert_eq!(
            slot.until_next(Duration::from_secs(610)),
            Duration::from_secs(27)
        );
        let long = Slot {
            interval: Duration::from_secs(600),
            phase: Duration::from_secs(300),
            spacing: Duration::from_secs(1),
            start_window: Duration::from_secs(60),
        };
        assert_eq!(
            long.first_wait(Duration::from_secs(0)),
            Duration::from_secs(30)
        );
    }
}
