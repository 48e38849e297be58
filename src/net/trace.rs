//! What one probe run observed phase by phase (timings, TLS, status, clock offset), filled in
//! as the run goes so that a run cut off by its deadline still says how far it got.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::failure::Reason;
use crate::net::tls::TlsInfo;

/// The phases of a network probe, named as blackbox_exporter names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Resolve,
    Connect,
    Tls,
    Processing,
    Transfer,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The reason for a run cut off by its deadline while in this phase.
    pub fn timeout_reason(self) -> Reason {
        match self {
            Phase::Resolve => Reason::DnsTimeout,
            Phase::Connect => Reason::ConnectTimeout,
            _ => Reason::Timeout,
        }
    }
}

/// Observations of one run that are not specific to a kind.
#[derive(Debug, Clone, Default)]
pub struct TraceData {
    /// Time spent per phase; phases entered twice (an OIDC discovery then a JWKS fetch) add up.
    pub phases: [Option<Duration>; 5],
    pub current: Option<Phase>,
    pub tls: Option<TlsInfo>,
    /// 4 or 6: the address family of the connection used.
    pub ip_protocol: Option<u8>,
    /// The address last dialled: the one that connected, or the last one tried (a `dns`
    /// probe's server). `/probe` reports it as blackbox_exporter does, hashed, and its family.
    pub dialled: Option<std::net::IpAddr>,
    pub status_code: Option<u16>,
    pub body_bytes: Option<u64>,
    /// The last response's `Last-Modified`, in Unix seconds, when it parsed; blackbox's
    /// `probe_http_last_modified_timestamp_seconds`.
    pub last_modified: Option<f64>,
    /// The last response's declared `Content-Length` (−1: none declared); blackbox's
    /// `probe_http_content_length`.
    pub content_length: Option<i64>,
    /// Local clock minus the server's `Date`, in seconds.
    pub clock_offset: Option<crate::net::http::ClockOffset>,
    /// What the `/probe` allowlist kept the run from dialling: `host:port` or an address.
    pub refused: Option<String>,
}

impl TraceData {
    /// Time spent in `phase`, if the run entered it.
    pub fn phase(&self, phase: Phase) -> Option<Duration> {
        self.phases[phase.index()]
    }

    /// Seconds spent in `phase`; 0 when the run never entered it.
    pub fn phase_secs(&self, phase: Phase) -> f64 {
        self.phase(phase).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }
}

/// Filled in by a running probe; read by the scheduler when the run ends or is cut off.
#[derive(Debug, Default)]
pub struct Trace {
    data: Mutex<(TraceData, Option<Instant>)>,
}

impl Trace {
    fn with<R>(&self, f: impl FnOnce(&mut (TraceData, Option<Instant>)) -> R) -> R {
        let mut g = crate::lock(&self.data);
        f(&mut g)
    }

    fn close(state: &mut (TraceData, Option<Instant>)) {
        if let (Some(p), Some(start)) = (state.0.current, state.1) {
            let slot = &mut state.0.phases[p.index()];
            *slot = Some(slot.unwrap_or_default() + start.elapsed());
        }
        state.0.current = None;
        state.1 = None;
    }

    /// Ends the current phase (if any) and starts `phase`.
    pub fn enter(&self, phase: Phase) {
        self.with(|s| {
            Trace::close(s);
            s.0.current = Some(phase);
            s.1 = Some(Instant::now());
        });
    }

    /// Ends the current phase.
    pub fn leave(&self) {
        self.with(Trace::close);
    }

    /// The phase the run is in now.
    pub fn current(&self) -> Option<Phase> {
        self.with(|s| s.0.current)
    }

    pub fn update(&self, f: impl FnOnce(&mut TraceData)) {
        self.with(|s| f(&mut s.0));
    }

    /// The trace so far, with the current phase closed; `current` still names where it was.
    pub fn snapshot(&self) -> TraceData {
        self.with(|s| {
            let current = s.0.current;
            Trace::close(s);
            let mut d = s.0.clone();
            d.current = current;
            d
        })
    }
}
