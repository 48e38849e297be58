//! The daemon's own resource bounds: the file-descriptor limit raised and shared out so that
//! no client can take the descriptors the scheduled probes need, and the counts of what the
//! web server turned away because of them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Descriptors a `/probe` run may hold at once: its connection and one DNS socket, with one
/// to spare for a resolver falling over to TCP.
const FDS_PER_PROBE_RUN: usize = 3;

/// Descriptors kept out of every budget: the listener, logs, the runtime's own, /proc reads.
const BASE_RESERVE: u64 = 64;

/// How the descriptor limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft `RLIMIT_NOFILE` after raising it to the hard limit.
    pub fd_limit: u64,
    /// Accepted connections served at once.
    pub connections: usize,
    /// `/probe` runs at once.
    pub probe_runs: usize,
}

/// Raises the soft descriptor limit to the hard one, as the Go runtime does for every
/// Prometheus exporter since Go 1.19, so a unit's `LimitNOFILE` is what authwatch gets.
/// Returns the soft limit in force afterwards (`u64::MAX` when unlimited).
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if setrlimit(Resource::Nofile, lim).is_err() {
            // Keep what we have; the budget below is computed from it.
            lim = getrlimit(Resource::Nofile);
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

impl Limits {
    /// Shares `fd_limit` out: at most half goes to the web server (connections and `/probe`
    /// runs), the other half stays for the scheduled probes, so a flood of clients meets the
    /// server's limits long before the probes meet `EMFILE`. Requests beyond the budget are
    /// cut in proportion; the second value says so, for the start-up log.
    pub fn plan(fd_limit: u64, connections: usize, probe_runs: usize) -> (Limits, Option<String>) {
        let budget =
            usize::try_from(fd_limit.saturating_sub(BASE_RESERVE) / 2).unwrap_or(usize::MAX);
        // Each connection slot may have one evicted connection still draining behind it.
        let want = connections
            .saturating_mul(2)
            .saturating_add(probe_runs.saturating_mul(FDS_PER_PROBE_RUN));
        if want <= budget {
            return (
                Limits {
                    fd_limit,
                    connections,
                    probe_runs,
                },
                None,
            );
        }
        let scale = |n: usize| {
            usize::try_from(n as u128 * budget as u128 / want.max(1) as u128).unwrap_or(n)
        };
        let limits = Limits {
            fd_limit,
            connections: scale(connections).max(1),
            probe_runs: scale(probe_runs).max(1),
        };
        let note = format!(
            "the descriptor limit {fd_limit} leaves {budget} for the web server: serving at most {} connections and {} /probe runs at once (asked for {connections} and {probe_runs}); raise LimitNOFILE / ulimit -n",
            limits.connections, limits.probe_runs
        );
        (limits, Some(note))
    }

    /// The ones used when nothing is configured: enough for Prometheus, Grafana and a few
    /// people, and for a blackbox-style job of hundreds of targets.
    pub fn defaults() -> (usize, usize) {
        (256, 64)
    }
}

/// What the web server turned away or closed because of its limits; exported on `/metrics`.
#[derive(Debug, Default)]
pub struct WebCounters {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections answered 503 and closed on arrival: every slot was busy.
    pub refused_connections: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted_connections: AtomicU64,
    /// `/probe` requests answered 429: the concurrent run limit was reached.
    pub refused_probes: AtomicU64,
}

impl WebCounters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_server_gets_at_most_half_the_descriptors() {
        let (l, note) = Limits::plan(1 << 20, 256, 64);
        assert_eq!((l.connections, l.probe_runs), (256, 64));
        assert!(note.is_none());
        let (l, note) = Limits::plan(256, 256, 64);
        let used = 2 * l.connections + l.probe_runs * FDS_PER_PROBE_RUN;
        assert!(used <= 96, "{l:?}");
        assert!(l.connections >= 1 && l.probe_runs >= 1);
        assert!(note.is_some_and(|n| n.contains("LimitNOFILE")));
        let (l, _) = Limits::plan(0, 256, 64);
        assert_eq!((l.connections, l.probe_runs), (1, 1));
    }
}
