//! The `/metrics` body: the catalogue of every exported family, and the render that writes
//! the generic per-probe families, then each kind's own block, then the diagnosis and the
//! daemon's families, all from the results store at scrape time (so ages keep growing while
//! fetches fail and removed probes simply vanish).

mod diagnosis;
pub mod process;

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::global::DiagnosisSpec;
use crate::diagnosis::Diagnosis;
use crate::encode::{Encoder, Family, family, flag, le_label};
use crate::net::http::ClockOffset;
use crate::net::tls::TlsInfo;
use crate::net::trace::TraceData;
use crate::probe::state::{DURATION_BUCKETS, ProbeState};
use crate::probe::{KindId, render_kinds};

family!(
    PROBE_SUCCESS,
    "authwatch_probe_success",
    Gauge,
    "Whether the latest run of the probe succeeded (1) or failed (0)."
);

family!(
    PROBE_FAILURE,
    "authwatch_probe_failure",
    Gauge,
    "One-hot over the kind's failure reasons: 1 for the reason of the latest run, 0 for the others (all 0 on success)."
);

family!(
    PROBE_DURATION,
    "authwatch_probe_duration_seconds",
    Histogram,
    "Duration of probe runs."
);

family!(
    PROBE_PHASE,
    "authwatch_probe_phase_duration_seconds",
    Gauge,
    "Time the latest run spent in each phase (resolve, connect, tls, processing, transfer)."
);

family!(
    PROBE_RUNS,
    "authwatch_probe_runs",
    Counter,
    "Probe runs completed."
);

family!(
    PROBE_FAILURES,
    "authwatch_probe_failures",
    Counter,
    "Failed probe runs by reason."
);

family!(
    PROBE_LAST_SUCCESS,
    "authwatch_probe_last_success_timestamp_seconds",
    Gauge,
    "Unix time of the probe's last successful run (absent until one succeeds)."
);

family!(
    PROBE_LAST_RUN,
    "authwatch_probe_last_run_timestamp_seconds",
    Gauge,
    "Unix time the probe's latest run finished."
);

family!(
    PROBE_INTERVAL,
    "authwatch_probe_interval_seconds",
    Gauge,
    "Configured interval between runs of the probe."
);

family!(
    PROBE_DETOUR_SUCCESS,
    "authwatch_probe_detour_success",
    Gauge,
    "While the probe's own resolver fails: whether the same probe through a resolver that answers succeeded (the layers above DNS, measured through the fault)."
);
family!(
    PROBE_DETOUR_FAILURE,
    "authwatch_probe_detour_failure",
    Gauge,
    "One-hot reason of the latest run through the answering resolver (all 0 on success)."
);
family!(
    HTTP_STATUS,
    "authwatch_http_status_code",
    Gauge,
    "HTTP status code of the latest response (0 when none arrived)."
);

family!(
    HTTP_IP_PROTOCOL,
    "authwatch_http_ip_protocol",
    Gauge,
    "IP version of the latest connection: 4 or 6 (0 when none was made)."
);

family!(
    HTTP_BODY,
    "authwatch_http_response_body_bytes",
    Gauge,
    "Size of the latest response body read (up to the body limit)."
);

family!(
    TLS_NOT_AFTER,
    "authwatch_tls_cert_not_after_timestamp_seconds",
    Gauge,
    "notAfter of the server certificate (cert=\"leaf\") and the earliest in the presented chain (cert=\"earliest\"), even when verification failed; from the last run that got a chain."
);

family!(
    TLS_VERIFIED,
    "authwatch_tls_verified",
    Gauge,
    "Whether the presented chain verified against the trust store plus the probe's ca_file."
);

family!(
    TLS_REFERENCE_VERIFIED,
    "authwatch_tls_reference_verified",
    Gauge,
    "For a chain rejected as an unknown issuer: whether it verifies against the reference roots (1: the local store lacks CA certificates; 0: TLS is intercepted)."
);

family!(
    TLS_VERSION,
    "authwatch_tls_version_info",
    Gauge,
    "Negotiated TLS version of the latest handshake."
);

family!(
    CLOCK_OFFSET,
    "authwatch_clock_offset_seconds",
    Gauge,
    "Local clock minus the server's Date header (negative: the local clock is behind)."
);
family!(
    CLOCK_OFFSET_LOWER,
    "authwatch_clock_offset_lower_seconds",
    Gauge,
    "Lowest local-minus-server offset the Date header allows (sent time minus the end of its whole second)."
);
family!(
    CLOCK_OFFSET_UPPER,
    "authwatch_clock_offset_upper_seconds",
    Gauge,
    "Highest local-minus-server offset the Date header allows (receive time minus the start of its whole second)."
);

family!(
    TLS_STORE,
    "authwatch_tls_trust_store_certificates",
    Gauge,
    "Certificates in the system trust store (0: the image lacks CA certificates)."
);

family!(
    BUILD_INFO,
    "authwatch_build_info",
    Gauge,
    "Build information."
);

family!(
    RELOAD_OK,
    "authwatch_config_last_reload_successful",
    Gauge,
    "Whether the last configuration load succeeded."
);

family!(
    RELOAD_TS,
    "authwatch_config_last_reload_success_timestamp_seconds",
    Gauge,
    "Unix time of the last successful configuration load."
);

family!(
    WEB_OPEN,
    "authwatch_web_connections",
    Gauge,
    "Connections to authwatch's own web server open now."
);

family!(
    WEB_REFUSED,
    "authwatch_web_refused",
    Counter,
    "Requests turned away by a limit: connections (503, every slot busy) or probe_runs (429 on /probe)."
);

family!(
    WEB_EVICTED,
    "authwatch_web_evicted_connections",
    Counter,
    "Idle connections closed to make room for a new one at --web.max-connections."
);

family!(
    PROC_CPU,
    "process_cpu_seconds",
    Counter,
    "Total user and system CPU time spent in seconds."
);

family!(
    PROC_RSS,
    "process_resident_memory_bytes",
    Gauge,
    "Resident memory size in bytes."
);

family!(
    PROC_VSZ,
    "process_virtual_memory_bytes",
    Gauge,
    "Virtual memory size in bytes."
);

family!(
    PROC_FDS,
    "process_open_fds",
    Gauge,
    "Number of open file descriptors."
);

family!(
    PROC_MAX_FDS,
    "process_max_fds",
    Gauge,
    "Maximum number of open file descriptors."
);

family!(
    PROC_START,
    "process_start_time_seconds",
    Gauge,
    "Start time of the process since unix epoch in seconds."
);

/// The families every probe gets, whatever its kind.
const GENERIC: &[&Family] = &[
    &PROBE_SUCCESS,
    &PROBE_FAILURE,
    &PROBE_DURATION,
    &PROBE_PHASE,
    &PROBE_RUNS,
    &PROBE_FAILURES,
    &PROBE_LAST_SUCCESS,
    &PROBE_LAST_RUN,
    &PROBE_INTERVAL,
    &PROBE_DETOUR_SUCCESS,
    &PROBE_DETOUR_FAILURE,
    &HTTP_STATUS,
    &HTTP_IP_PROTOCOL,
    &HTTP_BODY,
    &TLS_NOT_AFTER,
    &TLS_VERIFIED,
    &TLS_REFERENCE_VERIFIED,
    &TLS_VERSION,
    &CLOCK_OFFSET,
    &CLOCK_OFFSET_LOWER,
    &CLOCK_OFFSET_UPPER,
];
const PROCESS: &[&Family] = &[
    &PROC_CPU,
    &PROC_RSS,
    &PROC_VSZ,
    &PROC_FDS,
    &PROC_MAX_FDS,
    &PROC_START,
];
const DAEMON: &[&Family] = &[
    &TLS_STORE,
    &BUILD_INFO,
    &RELOAD_OK,
    &RELOAD_TS,
    &WEB_OPEN,
    &WEB_REFUSED,
    &WEB_EVICTED,
];

/// Every family authwatch exports, on `/metrics` and `/probe`, each declared once.
pub fn catalogue() -> Vec<&'static Family> {
    let mut all: Vec<&'static Family> = Vec::new();
    let groups = [
        GENERIC.to_vec(),
        KindId::families(),
        diagnosis::FAMILIES.to_vec(),
        DAEMON.to_vec(),
        PROCESS.to_vec(),
        crate::blackbox::FAMILIES.to_vec(),
    ];
    for f in groups.into_iter().flatten() {
        if !all.iter().any(|g| std::ptr::eq(*g, f)) {
            all.push(f);
        }
    }
    all
}

pub(crate) fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a scrape renders besides the probes.
#[derive(Debug, Clone, Copy)]
pub struct Globals<'a> {
    pub trust_store_certificates: usize,
    pub reload_successful: bool,
    pub reload_timestamp: SystemTime,
    pub started_at: SystemTime,
    pub web: &'a crate::limits::WebCounters,
    /// Zeros for the reasons a probe is not failing with (`global.failure_series: all`).
    pub failure_zeros: bool,
    pub diagnosis: &'a Diagnosis,
    pub diagnosis_spec: &'a DiagnosisSpec,
}

/// Writes one family: its header, then `each` for every probe state.
fn per_probe(
    e: &mut Encoder,
    f: &Family,
    probes: &[Arc<ProbeState>],
    mut each: impl FnMut(&mut Encoder, &ProbeState, [(&'static str, &str); 2]),
) {
    e.header(f);
    for p in probes {
        each(e, p, p.labels());
    }
}

/// Renders every family into `e` (which may be streaming); `now` is the scrape time.
pub fn render_into(e: &mut Encoder, probes: &[Arc<ProbeState>], g: &Globals, now: SystemTime) {
    render_runs(e, probes, g.failure_zeros);
    render_detours(e, probes, g.failure_zeros);
    render_http(e, probes);
    render_kinds(e, probes, now);
    diagnosis::render(e, g);
    render_daemon(e, g);
}

/// What every probe's runs have been: success, reason, durations, counters, timestamps.
fn render_runs(e: &mut Encoder, probes: &[Arc<ProbeState>], zeros: bool) {
    per_probe(e, &PROBE_SUCCESS, probes, |e, p, l| {
        if p.ran() {
            e.sample(&PROBE_SUCCESS, &l, flag(p.passing()));
        }
    });
    per_probe(e, &PROBE_FAILURE, probes, |e, p, [a, b]| {
        if !p.ran() {
            return;
        }
        if zeros {
            for &r in p.kind().reasons() {
                let on = p.failure() == Some(r);
                e.sample(&PROBE_FAILURE, &[a, b, ("reason", r.as_label())], flag(on));
            }
        } else if let Some(r) = p.failure() {
            // `active`: the one series that is 1, without walking the kind's reasons.
            e.sample(&PROBE_FAILURE, &[a, b, ("reason", r.as_label())], 1.0);
        }
    });
    let le: Vec<String> = DURATION_BUCKETS.iter().map(|b| le_label(*b)).collect();
    let le: Vec<&str> = le.iter().map(String::as_str).collect();
    per_probe(e, &PROBE_DURATION, probes, |e, p, l| {
        let h = &p.durations;
        if h.count > 0 {
            e.histogram(&PROBE_DURATION, &l, &le, &h.counts, h.sum, h.count);
        }
    });
    per_probe(e, &PROBE_PHASE, probes, |e, p, [a, b]| {
        if let Some(t) = p.trace() {
            for ph in p.kind().phases() {
                let v = t.phase_secs(*ph);
                e.sample(&PROBE_PHASE, &[a, b, ("phase", ph.as_label())], v);
            }
        }
    });
    per_probe(e, &PROBE_RUNS, probes, |e, p, l| {
        e.sample(&PROBE_RUNS, &l, p.runs as f64)
    });
    // Only reasons that occurred: a counter may appear when it first counts, and a healthy
    // probe would otherwise carry one zero per reason its kind can fail with.
    per_probe(e, &PROBE_FAILURES, probes, |e, p, [a, b]| {
        for (r, n) in &p.failures {
            e.sample(
                &PROBE_FAILURES,
                &[a, b, ("reason", r.as_label())],
                *n as f64,
            );
        }
    });
    per_probe(e, &PROBE_LAST_SUCCESS, probes, |e, p, l| {
        if let Some(t) = p.last_success {
            e.sample(&PROBE_LAST_SUCCESS, &l, unix(t));
        }
    });
    per_probe(e, &PROBE_LAST_RUN, probes, |e, p, l| {
        if let Some(last) = &p.last {
            e.sample(&PROBE_LAST_RUN, &l, unix(last.finished_at));
        }
    });
    per_probe(e, &PROBE_INTERVAL, probes, |e, p, l| {
        e.sample(&PROBE_INTERVAL, &l, p.spec.interval.as_secs_f64())
    });
}

/// The runs through an answering resolver while a probe's own resolver fails.
fn render_detours(e: &mut Encoder, probes: &[Arc<ProbeState>], zeros: bool) {
    per_probe(e, &PROBE_DETOUR_SUCCESS, probes, |e, p, [a, b]| {
        if let Some(d) = &p.detour {
            let r = d.resolver.label();
            e.sample(
                &PROBE_DETOUR_SUCCESS,
                &[a, b, ("resolver", r.as_str())],
                flag(d.failure.is_none()),
            );
        }
    });
    per_probe(e, &PROBE_DETOUR_FAILURE, probes, |e, p, [a, b]| {
        if let Some(d) = &p.detour {
            let r = d.resolver.label();
            for &reason in p.kind().reasons() {
                let on = d.failure == Some(reason);
                if !on && !zeros {
                    continue;
                }
                let labels = [
                    a,
                    b,
                    ("resolver", r.as_str()),
                    ("reason", reason.as_label()),
                ];
                e.sample(&PROBE_DETOUR_FAILURE, &labels, flag(on));
            }
        }
    });
}

fn http(p: &ProbeState) -> Option<&TraceData> {
    p.trace().filter(|_| p.kind().is_http())
}

fn tls(p: &ProbeState) -> Option<&TlsInfo> {
    p.trace().and_then(|t| t.tls.as_ref())
}

/// What the latest HTTP exchange and TLS handshake of each probe showed.
fn render_http(e: &mut Encoder, probes: &[Arc<ProbeState>]) {
    per_probe(e, &HTTP_STATUS, probes, |e, p, l| {
        if let Some(t) = http(p) {
            e.sample(
                &HTTP_STATUS,
                &l,
                t.status_code.map(f64::from).unwrap_or(0.0),
            );
        }
    });
    per_probe(e, &HTTP_IP_PROTOCOL, probes, |e, p, l| {
        if let Some(t) = http(p) {
            e.sample(
                &HTTP_IP_PROTOCOL,
                &l,
                t.ip_protocol.map(f64::from).unwrap_or(0.0),
            );
        }
    });
    per_probe(e, &HTTP_BODY, probes, |e, p, l| {
        if let Some(b) = p.trace().and_then(|t| t.body_bytes) {
            e.sample(&HTTP_BODY, &l, b as f64);
        }
    });
    per_probe(e, &TLS_NOT_AFTER, probes, |e, p, [a, b]| {
        if let Some(tls) = &p.last_tls {
            if let Some(t) = tls.leaf_not_after {
                e.sample(&TLS_NOT_AFTER, &[a, b, ("cert", "leaf")], t as f64);
            }
            if let Some(t) = tls.earliest_not_after {
                e.sample(&TLS_NOT_AFTER, &[a, b, ("cert", "earliest")], t as f64);
            }
        }
    });
    per_probe(e, &TLS_VERIFIED, probes, |e, p, l| {
        if let Some(t) = tls(p) {
            e.sample(&TLS_VERIFIED, &l, flag(t.verified));
        }
    });
    per_probe(e, &TLS_REFERENCE_VERIFIED, probes, |e, p, l| {
        if let Some(v) = tls(p).and_then(|t| t.reference_verified) {
            e.sample(&TLS_REFERENCE_VERIFIED, &l, flag(v));
        }
    });
    per_probe(e, &TLS_VERSION, probes, |e, p, [a, b]| {
        if let Some(v) = tls(p).and_then(|t| t.version.as_deref()) {
            e.sample(&TLS_VERSION, &[a, b, ("version", v)], 1.0);
        }
    });
    type Bound = fn(&ClockOffset) -> f64;
    let clock: [(&Family, Bound); 3] = [
        (&CLOCK_OFFSET, |o| o.estimate),
        (&CLOCK_OFFSET_LOWER, |o| o.lower),
        (&CLOCK_OFFSET_UPPER, |o| o.upper),
    ];
    for (f, get) in clock {
        per_probe(e, f, probes, |e, p, l| {
            if let Some(o) = p.clock_offset() {
                e.sample(f, &l, get(&o));
            }
        });
    }
}

fn render_daemon(e: &mut Encoder, g: &Globals) {
    e.header(&TLS_STORE);
    e.sample(&TLS_STORE, &[], g.trust_store_certificates as f64);
    e.header(&BUILD_INFO);
    e.sample(
        &BUILD_INFO,
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", env!("AUTHWATCH_REVISION")),
        ],
        1.0,
    );
    e.header(&RELOAD_OK);
    e.sample(&RELOAD_OK, &[], flag(g.reload_successful));
    e.header(&RELOAD_TS);
    e.sample(&RELOAD_TS, &[], unix(g.reload_timestamp));
    use crate::limits::WebCounters as W;
    e.header(&WEB_OPEN);
    e.sample(
        &WEB_OPEN,
        &[],
        g.web.open.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    e.header(&WEB_REFUSED);
    for (limit, n) in [
        ("connections", W::get(&g.web.refused_connections)),
        ("probe_runs", W::get(&g.web.refused_probes)),
    ] {
        e.sample(&WEB_REFUSED, &[("limit", limit)], n as f64);
    }
    e.header(&WEB_EVICTED);
    e.sample(&WEB_EVICTED, &[], W::get(&g.web.evicted_connections) as f64);
    let ps = process::read(g.started_at);
    let values = [
        ps.cpu_seconds,
        ps.resident_bytes,
        ps.virtual_bytes,
        ps.open_fds,
        ps.max_fds,
        ps.start_time,
    ];
    for (f, v) in PROCESS.iter().zip(values) {
        if let Some(v) = v {
            e.header(f);
            e.sample(f, &[], v);
        }
    }
}
