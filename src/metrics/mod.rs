//! Every exported metric family, defined in one place, rendered from the results store at
//! scrape time (so ages keep growing while fetches fail and removed probes simply vanish).

pub mod encode;
pub mod process;

use std::time::SystemTime;

use encode::{Encoder, Family, MetricType::*};

use crate::config::DiagnosisSpec;
use crate::diagnosis::{Cause, Diagnosis};
use crate::failure::Kind;
use crate::outcome::{Details, DnsLookup, Phase};
use crate::store::{DURATION_BUCKETS, ProbeState, jwks_group_agreement};

macro_rules! family {
    ($id:ident, $name:literal, $ty:ident, $help:literal) => {
        pub const $id: Family = Family {
            name: $name,
            help: $help,
            ty: $ty,
        };
    };
}

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
    DNS_SUCCESS,
    "authwatch_dns_lookup_success",
    Gauge,
    "Whether the lookup of the name and type through the resolver returned answers."
);
family!(
    DNS_RCODE,
    "authwatch_dns_rcode",
    Gauge,
    "DNS response code of the lookup (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED; -1 no response)."
);
family!(
    DNS_ANSWERS,
    "authwatch_dns_answers",
    Gauge,
    "Records in the answer section of the lookup."
);
family!(
    DNS_DURATION,
    "authwatch_dns_lookup_duration_seconds",
    Gauge,
    "Duration of the lookup."
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
    TLS_STORE,
    "authwatch_tls_trust_store_certificates",
    Gauge,
    "Certificates in the system trust store (0: the image lacks CA certificates)."
);
family!(
    JWKS_KEYS,
    "authwatch_jwks_keys",
    Gauge,
    "Keys in the last successfully fetched JWKS."
);
family!(
    JWKS_LAST_SUCCESS,
    "authwatch_jwks_last_success_timestamp_seconds",
    Gauge,
    "Unix time of the last successful JWKS fetch."
);
family!(
    JWKS_AGE,
    "authwatch_jwks_age_seconds",
    Gauge,
    "Seconds since the last successful JWKS fetch (or since the probe was configured, if none succeeded yet), computed at scrape time."
);
family!(
    JWKS_LAST_CHANGE,
    "authwatch_jwks_last_change_timestamp_seconds",
    Gauge,
    "Unix time the key set last changed (first seen, then each rotation)."
);
family!(
    JWKS_ROTATIONS,
    "authwatch_jwks_rotations",
    Counter,
    "Changes of the key set seen since authwatch started."
);
family!(
    JWKS_KEY_INFO,
    "authwatch_jwks_key_info",
    Gauge,
    "One series per key of the last good JWKS (capped by max_keys)."
);
family!(
    JWKS_PINNED_MISSING,
    "authwatch_jwks_pinned_missing_kids",
    Gauge,
    "Live keys that the pinned JWKS/PEM copy does not contain."
);
family!(
    JWKS_GROUP_AGREEMENT,
    "authwatch_jwks_group_agreement",
    Gauge,
    "Whether the JWKS probes of a group publish the same kids (1) or not (0)."
);
family!(
    API_CHECK,
    "authwatch_api_health_check_success",
    Gauge,
    "Per-check result reported by the API's health endpoint."
);
family!(
    API_TRUNCATED,
    "authwatch_api_health_checks_truncated",
    Gauge,
    "Whether the API reported more checks than max_checks (the rest are not exported)."
);
family!(
    CLOCK_OFFSET,
    "authwatch_clock_offset_seconds",
    Gauge,
    "Local clock minus the server's Date header (negative: the local clock is behind)."
);
family!(
    DIAGNOSIS,
    "authwatch_diagnosis",
    Gauge,
    "1 for each active cause of an auth outage (consequences of an active connectivity cause are not repeated), 0 for the others."
);
family!(
    AUTH_HEALTHY,
    "authwatch_auth_healthy",
    Gauge,
    "1 when every auth-critical probe succeeds and no cause other than an expiry warning is active."
);
family!(
    CAUSE_INFO,
    "authwatch_cause_info",
    Gauge,
    "Static description of every diagnosis cause: severity, summary and remediation (for dashboards)."
);
family!(
    THRESHOLD,
    "authwatch_diagnosis_threshold_seconds",
    Gauge,
    "Configured diagnosis thresholds, so alert rules can compare against the daemon's settings."
);
family!(
    AUTH_CASE_SUCCESS,
    "authwatch_auth_case_success",
    Gauge,
    "Whether the API answered the case as it must: valid_token 2xx; no_token, forged_token, expired_token a rejection status."
);
family!(
    AUTH_CASE_DURATION,
    "authwatch_auth_case_duration_seconds",
    Gauge,
    "How long the API took to answer the case (a verifier stalling on its JWKS fetch shows here)."
);
family!(
    AUTH_CASE_STATUS,
    "authwatch_auth_case_status_code",
    Gauge,
    "HTTP status the API answered the case with (0: no answer)."
);
family!(
    AUTH_FAIL_OPEN,
    "authwatch_auth_fail_open",
    Gauge,
    "1 when the API answered 2xx to a request it must reject (no, forged or expired token)."
);
family!(
    AUTH_MINT_SUCCESS,
    "authwatch_auth_token_mint_success",
    Gauge,
    "Whether getting a real session token (Backend API, file or command) worked."
);
family!(
    AUTH_MINT_DURATION,
    "authwatch_auth_token_mint_duration_seconds",
    Gauge,
    "How long getting the session token took."
);
family!(
    AUTH_TOKEN_VERIFIED,
    "authwatch_auth_token_verified",
    Gauge,
    "Whether the real token verified locally against the fetched JWKS (signature, issuer, exp/nbf with leeway)."
);
family!(
    AUTH_KID_KNOWN,
    "authwatch_auth_token_kid_known",
    Gauge,
    "Whether the real token's kid is in the fetched JWKS (0: keys from different Clerk instances)."
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

fn unix(t: SystemTime) -> f64 {
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
    pub diagnosis: &'a Diagnosis,
    pub diagnosis_spec: &'a DiagnosisSpec,
}

/// Writes one family: its header, then `each` for every probe state.
fn per_probe<'a>(
    e: &mut Encoder,
    f: &Family,
    probes: impl IntoIterator<Item = &'a ProbeState>,
    mut each: impl FnMut(&mut Encoder, &ProbeState, [(&'static str, &str); 2]),
) {
    e.header(f);
    for p in probes {
        each(
            e,
            p,
            [("probe", p.name.as_str()), ("kind", p.kind.as_label())],
        );
    }
}

fn is_http(p: &ProbeState) -> bool {
    !matches!(p.kind, Kind::Dns)
}

/// Renders every family. `now` is the scrape time.
pub fn render(
    probes: &[ProbeState],
    g: &Globals,
    openmetrics: bool,
    now: SystemTime,
) -> (String, &'static str) {
    let mut e = Encoder::new(openmetrics);
    per_probe(&mut e, &PROBE_SUCCESS, probes, |e, p, l| {
        if let Some(last) = &p.last {
            e.sample(
                &PROBE_SUCCESS,
                &l,
                if last.failure.is_none() { 1.0 } else { 0.0 },
            );
        }
    });
    per_probe(&mut e, &PROBE_FAILURE, probes, |e, p, [a, b]| {
        if let Some(last) = &p.last {
            for r in p.kind.reasons() {
                let v = if last.failure == Some(r) { 1.0 } else { 0.0 };
                e.sample(&PROBE_FAILURE, &[a, b, ("reason", r.as_label())], v);
            }
        }
    });
    per_probe(&mut e, &PROBE_DURATION, probes, |e, p, l| {
        let h = &p.durations;
        if h.count > 0 {
            e.histogram(
                &PROBE_DURATION,
                &l,
                DURATION_BUCKETS,
                &h.counts,
                h.sum,
                h.count,
            );
        }
    });
    per_probe(&mut e, &PROBE_PHASE, probes, |e, p, [a, b]| {
        if let Some(last) = &p.last {
            for ph in Phase::ALL {
                if !is_http(p) && ph != Phase::Resolve {
                    continue;
                }
                let v = last.trace.phase_secs(ph);
                e.sample(&PROBE_PHASE, &[a, b, ("phase", ph.as_label())], v);
            }
        }
    });
    per_probe(&mut e, &PROBE_RUNS, probes, |e, p, l| {
        e.sample(&PROBE_RUNS, &l, p.runs as f64)
    });
    per_probe(&mut e, &PROBE_FAILURES, probes, |e, p, [a, b]| {
        for r in p.kind.reasons() {
            let n = p.failures.get(&r).copied().unwrap_or(0);
            e.sample(&PROBE_FAILURES, &[a, b, ("reason", r.as_label())], n as f64);
        }
    });
    per_probe(&mut e, &PROBE_LAST_SUCCESS, probes, |e, p, l| {
        if let Some(t) = p.last_success {
            e.sample(&PROBE_LAST_SUCCESS, &l, unix(t));
        }
    });
    per_probe(&mut e, &PROBE_LAST_RUN, probes, |e, p, l| {
        if let Some(last) = &p.last {
            e.sample(&PROBE_LAST_RUN, &l, unix(last.finished_at));
        }
    });
    per_probe(&mut e, &PROBE_INTERVAL, probes, |e, p, l| {
        e.sample(&PROBE_INTERVAL, &l, p.interval.as_secs_f64())
    });

    // DNS lookups, one series per (resolver, name, type).
    type Get = fn(&DnsLookup) -> f64;
    let dns_families: [(&Family, Get); 4] = [
        (&DNS_SUCCESS, |l| f64::from(u8::from(l.failure.is_none()))),
        (&DNS_RCODE, |l| l.rcode.map(f64::from).unwrap_or(-1.0)),
        (&DNS_ANSWERS, |l| l.answers as f64),
        (&DNS_DURATION, |l| l.duration.as_secs_f64()),
    ];
    for (f, get) in dns_families {
        per_probe(&mut e, f, probes, |e, p, [a, b]| {
            let Some(Details::Dns(lookups)) = p.last.as_ref().map(|l| &l.details) else {
                return;
            };
            for l in lookups {
                let labels = [
                    a,
                    b,
                    ("resolver", l.resolver.as_str()),
                    ("name", l.name.as_str()),
                    ("type", l.rtype),
                ];
                e.sample(f, &labels, get(l));
            }
        });
    }

    per_probe(&mut e, &HTTP_STATUS, probes, |e, p, l| {
        if let Some(last) = p.last.as_ref().filter(|_| is_http(p)) {
            e.sample(
                &HTTP_STATUS,
                &l,
                last.trace.status_code.map(f64::from).unwrap_or(0.0),
            );
        }
    });
    per_probe(&mut e, &HTTP_IP_PROTOCOL, probes, |e, p, l| {
        if let Some(last) = p.last.as_ref().filter(|_| is_http(p)) {
            e.sample(
                &HTTP_IP_PROTOCOL,
                &l,
                last.trace.ip_protocol.map(f64::from).unwrap_or(0.0),
            );
        }
    });
    per_probe(&mut e, &HTTP_BODY, probes, |e, p, l| {
        if let Some(b) = p.last.as_ref().and_then(|l| l.trace.body_bytes) {
            e.sample(&HTTP_BODY, &l, b as f64);
        }
    });
    per_probe(&mut e, &TLS_NOT_AFTER, probes, |e, p, [a, b]| {
        if let Some(tls) = &p.last_tls {
            if let Some(t) = tls.leaf_not_after {
                e.sample(&TLS_NOT_AFTER, &[a, b, ("cert", "leaf")], t as f64);
            }
            if let Some(t) = tls.earliest_not_after {
                e.sample(&TLS_NOT_AFTER, &[a, b, ("cert", "earliest")], t as f64);
            }
        }
    });
    per_probe(&mut e, &TLS_VERIFIED, probes, |e, p, l| {
        if let Some(tls) = p.last.as_ref().and_then(|l| l.trace.tls.as_ref()) {
            e.sample(&TLS_VERIFIED, &l, f64::from(u8::from(tls.verified)));
        }
    });
    per_probe(&mut e, &TLS_REFERENCE_VERIFIED, probes, |e, p, l| {
        if let Some(v) = p
            .last
            .as_ref()
            .and_then(|l| l.trace.tls.as_ref())
            .and_then(|t| t.reference_verified)
        {
            e.sample(&TLS_REFERENCE_VERIFIED, &l, f64::from(u8::from(v)));
        }
    });
    per_probe(&mut e, &TLS_VERSION, probes, |e, p, [a, b]| {
        if let Some(v) = p
            .last
            .as_ref()
            .and_then(|l| l.trace.tls.as_ref())
            .and_then(|t| t.version.as_deref())
        {
            e.sample(&TLS_VERSION, &[a, b, ("version", v)], 1.0);
        }
    });
    e.header(&TLS_STORE);
    e.sample(&TLS_STORE, &[], g.trust_store_certificates as f64);

    let jwks: Vec<&ProbeState> = probes
        .iter()
        .filter(|p| p.jwks.last_success.is_some())
        .collect();
    per_probe(&mut e, &JWKS_KEYS, jwks.iter().copied(), |e, p, l| {
        e.sample(&JWKS_KEYS, &l, p.jwks.keys.len() as f64)
    });
    per_probe(
        &mut e,
        &JWKS_LAST_SUCCESS,
        jwks.iter().copied(),
        |e, p, l| {
            e.sample(
                &JWKS_LAST_SUCCESS,
                &l,
                p.jwks.last_success.map(unix).unwrap_or(0.0),
            );
        },
    );
    // The age exists from a JWKS probe's first run: one that never succeeded is as stale as
    // the time since it was configured.
    let jwks_ran = probes
        .iter()
        .filter(|p| p.kind == Kind::Jwks && p.last.is_some());
    per_probe(&mut e, &JWKS_AGE, jwks_ran, |e, p, l| {
        let since = p.jwks.last_success.unwrap_or(p.created_at);
        e.sample(&JWKS_AGE, &l, (unix(now) - unix(since)).max(0.0));
    });
    per_probe(
        &mut e,
        &JWKS_LAST_CHANGE,
        jwks.iter().copied(),
        |e, p, l| {
            e.sample(
                &JWKS_LAST_CHANGE,
                &l,
                p.jwks.last_change.map(unix).unwrap_or(0.0),
            );
        },
    );
    per_probe(&mut e, &JWKS_ROTATIONS, jwks.iter().copied(), |e, p, l| {
        e.sample(&JWKS_ROTATIONS, &l, p.jwks.rotations as f64)
    });
    per_probe(
        &mut e,
        &JWKS_KEY_INFO,
        jwks.iter().copied(),
        |e, p, [a, b]| {
            for k in p.jwks.keys.iter().take(p.jwks_max_keys) {
                let bits = k.bits.to_string();
                let labels = [
                    a,
                    b,
                    ("kid", k.kid.as_str()),
                    ("kty", k.kty.as_str()),
                    ("alg", k.alg.as_str()),
                    ("use", k.use_.as_str()),
                    ("bits", bits.as_str()),
                ];
                e.sample(&JWKS_KEY_INFO, &labels, 1.0);
            }
        },
    );
    per_probe(
        &mut e,
        &JWKS_PINNED_MISSING,
        jwks.iter().copied(),
        |e, p, l| {
            if let Some(n) = p.jwks.pinned_missing {
                e.sample(&JWKS_PINNED_MISSING, &l, n as f64);
            }
        },
    );
    e.header(&JWKS_GROUP_AGREEMENT);
    for (group, agree) in jwks_group_agreement(probes) {
        e.sample(
            &JWKS_GROUP_AGREEMENT,
            &[("group", group.as_str())],
            f64::from(u8::from(agree)),
        );
    }

    per_probe(&mut e, &API_CHECK, probes, |e, p, [a, b]| {
        if let Some(Details::ApiHealth { checks, .. }) = p.last.as_ref().map(|l| &l.details) {
            for (name, ok) in checks {
                e.sample(
                    &API_CHECK,
                    &[a, b, ("check", name.as_str())],
                    f64::from(u8::from(*ok)),
                );
            }
        }
    });
    per_probe(&mut e, &API_TRUNCATED, probes, |e, p, l| {
        if let Some(Details::ApiHealth { truncated, .. }) = p.last.as_ref().map(|l| &l.details) {
            e.sample(&API_TRUNCATED, &l, f64::from(u8::from(*truncated)));
        }
    });
    per_probe(&mut e, &CLOCK_OFFSET, probes, |e, p, l| {
        if let Some(o) = p.last.as_ref().and_then(|l| l.trace.clock_offset) {
            e.sample(&CLOCK_OFFSET, &l, o);
        }
    });

    type CaseGet = fn(&crate::outcome::CaseResult) -> f64;
    let case_families: [(&Family, CaseGet); 3] = [
        (&AUTH_CASE_SUCCESS, |c| f64::from(u8::from(c.passed))),
        (&AUTH_CASE_DURATION, |c| c.duration.as_secs_f64()),
        (&AUTH_CASE_STATUS, |c| {
            c.status.map(f64::from).unwrap_or(0.0)
        }),
    ];
    for (f, get) in case_families {
        per_probe(&mut e, f, probes, |e, p, [a, b]| {
            for c in p.auth_details().iter().flat_map(|d| d.cases.iter()) {
                e.sample(f, &[a, b, ("case", c.case.as_label())], get(c));
            }
        });
    }
    per_probe(&mut e, &AUTH_FAIL_OPEN, probes, |e, p, l| {
        if let Some(d) = p.auth_details() {
            e.sample(&AUTH_FAIL_OPEN, &l, f64::from(u8::from(d.fail_open)));
        }
    });
    per_probe(&mut e, &AUTH_MINT_SUCCESS, probes, |e, p, l| {
        if let Some((ok, _)) = p.auth_details().and_then(|d| d.mint) {
            e.sample(&AUTH_MINT_SUCCESS, &l, f64::from(u8::from(ok)));
        }
    });
    per_probe(&mut e, &AUTH_MINT_DURATION, probes, |e, p, l| {
        if let Some((_, d)) = p.auth_details().and_then(|d| d.mint) {
            e.sample(&AUTH_MINT_DURATION, &l, d.as_secs_f64());
        }
    });
    per_probe(&mut e, &AUTH_TOKEN_VERIFIED, probes, |e, p, l| {
        if let Some(v) = p.auth_details().and_then(|d| d.token_verified) {
            e.sample(&AUTH_TOKEN_VERIFIED, &l, f64::from(u8::from(v)));
        }
    });
    per_probe(&mut e, &AUTH_KID_KNOWN, probes, |e, p, l| {
        if let Some(v) = p.auth_details().and_then(|d| d.kid_known) {
            e.sample(&AUTH_KID_KNOWN, &l, f64::from(u8::from(v)));
        }
    });

    e.header(&DIAGNOSIS);
    for c in Cause::ALL {
        let v = f64::from(u8::from(g.diagnosis.causes.contains(&c)));
        e.sample(&DIAGNOSIS, &[("cause", c.as_label())], v);
    }
    e.header(&AUTH_HEALTHY);
    e.sample(
        &AUTH_HEALTHY,
        &[],
        f64::from(u8::from(g.diagnosis.auth_healthy)),
    );
    e.header(&CAUSE_INFO);
    for c in Cause::ALL {
        let labels = [
            ("cause", c.as_label()),
            ("severity", c.severity()),
            ("summary", c.summary()),
            ("remediation", c.remediation()),
        ];
        e.sample(&CAUSE_INFO, &labels, 1.0);
    }
    e.header(&THRESHOLD);
    let s = g.diagnosis_spec;
    for (name, d) in [
        ("clock_skew_warning", s.clock_skew_warning),
        ("clock_skew_critical", s.clock_skew_critical),
        ("jwks_max_age", s.jwks_max_age),
        ("cert_expiry_warning", s.cert_expiry_warning),
    ] {
        e.sample(&THRESHOLD, &[("threshold", name)], d.as_secs_f64());
    }

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
    e.sample(&RELOAD_OK, &[], f64::from(u8::from(g.reload_successful)));
    e.header(&RELOAD_TS);
    e.sample(&RELOAD_TS, &[], unix(g.reload_timestamp));

    let ps = process::read(g.started_at);
    for (f, v) in [
        (&PROC_CPU, ps.cpu_seconds),
        (&PROC_RSS, ps.resident_bytes),
        (&PROC_VSZ, ps.virtual_bytes),
        (&PROC_FDS, ps.open_fds),
        (&PROC_MAX_FDS, ps.max_fds),
        (&PROC_START, ps.start_time),
    ] {
        if let Some(v) = v {
            e.header(f);
            e.sample(f, &[], v);
        }
    }
    let ct = e.content_type();
    (e.finish(), ct)
}
