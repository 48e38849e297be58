//! What both benchmarks (`compare`, `load`) share: their settings from the environment, the
//! machine's load, and the entry point that keeps `cargo test --all-targets` from running them.

use std::future::Future;

/// A whole number from the environment, `default` when unset or blank; anything else stops
/// the benchmark, since a typo would silently measure something else.
pub fn env_u64(name: &str, default: u64) -> u64 {
    let v = std::env::var(name).ok();
    let v = v.as_deref().map(str::trim).filter(|v| !v.is_empty());
    v.map_or(default, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a whole number"))
    })
}

/// The 1, 5 and 15 minute load averages, to print beside figures that other load would skew.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs the benchmark `bench` (made only when it will run) on two runtime workers.
/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs the binary without it, and a
/// test run must not spend minutes loading the machine: then it prints `hint` and returns.
/// Ctrl-C drops the benchmark's future, and with it every child process it started.
pub fn main<F: Future<Output = ()>>(hint: &str, bench: impl FnOnce() -> F) {
    if !std::env::args().any(|a| a == "--bench") {
        println!("{hint}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        tokio::select! {
            _ = bench() => {}
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted; child processes stopped"),
        }
    });
}
