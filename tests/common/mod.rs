//! Shared fixtures for authwatch integration tests: fake DNS, HTTP(S) and proxy servers, a test PKI,
//! JWKS generators, a Prometheus text parser and a launcher for the real daemon binary.
//!
//! Every server binds 127.0.0.1 only (or, given a socket the test bound inside a network
//! namespace it created, that namespace's address) and stops when its handle is dropped. Servers run on the
//! test's tokio runtime, so tests that also drive the daemon should use
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`: a blocking call on a
//! current-thread runtime would freeze the fixtures the daemon is probing.
#![allow(dead_code)]

pub mod daemon;
pub mod dns;
pub mod http;
pub mod httpdate;
pub mod jwks;
pub mod jwt;
pub mod netns;
pub mod prom;
pub mod prometheus;
pub mod proxy;
pub mod tls;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A port free on 127.0.0.1 a moment ago, for servers that take their address as a flag (or a
/// port to be refused on, nothing listening there any more).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
    l.local_addr().expect("local addr").port()
}

/// Lays out rows as a Markdown table, each column padded to its widest cell (counted in
/// characters: cells hold `—`, `≤` and `×`), left-aligned or right-aligned.
pub fn markdown_table(head: &[&str], rows: &[Vec<String>], right_align: bool) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                if right_align {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let mut out = line(head.to_vec());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Seconds since the Unix epoch, for comparing with timestamps the daemon exports.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// rustls refuses to build configs until a process-wide provider is chosen; every fixture that
/// touches TLS calls this first so tests never have to remember.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
