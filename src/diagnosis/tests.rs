//! Table-driven tests of the diagnosis: one row per combination of probe outcomes, and
//! exactly the expected causes out (no other), with auth health and the pending state. (Long
//! by design: the table is the specification, one row per case.)

use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;
use crate::config::Config;
use crate::failure::{Failure, Reason};
use crate::net::resolve::ResolverSpec;
use crate::net::tls::TlsInfo;
use crate::net::trace::{Phase, TraceData};
use crate::probe::auth::{AuthCase, AuthDetails, CaseResult};
use crate::probe::dns::DnsLookup;
use crate::probe::jwks::Jwks;
use crate::probe::{Details, Kept, RunResult};

const YAML: &str = r#"
probes:
  - name: dns
    dns: {names: [clerk.test], resolvers: [system, "127.0.0.1:5353"]}
  - name: fapi
    https: {url: "https://clerk.test/"}
  - name: bapi
    https: {url: "https://api.clerk.test/"}
  - name: jwks
    jwks: {url: "https://clerk.test/.well-known/jwks.json"}
  - name: api
    role: api
    api_health: {url: "http://127.0.0.1:8020/health/network"}
  - name: auth
    auth: {url: "http://127.0.0.1:8020/me", token_source: file, token_file: /run/probe-token}
"#;
const DNS: usize = 0;
const FAPI: usize = 1;
const BAPI: usize = 2;
const JWKS: usize = 3;
const API: usize = 4;
const AUTH: usize = 5;

fn states(yaml: &str) -> Vec<ProbeState> {
    let c = Config::parse(yaml, "t", &|_| None).unwrap();
    c.probes.iter().map(ProbeState::new).collect()
}

fn lookup(resolver: &str, rcode: Option<u16>, failure: Option<Reason>) -> DnsLookup {
    DnsLookup {
        resolver: ResolverSpec::parse(resolver).unwrap(),
        name: "clerk.test".into(),
        rtype: RecordType::A,
        rcode: rcode.map(<ResponseCode as From<u16>>::from),
        answers: usize::from(failure.is_none()),
        authorities: 0,
        additionals: 0,
        exchange: [Duration::ZERO; 2],
        duration: Duration::from_millis(1),
        failure,
    }
}

/// One finished run: its reason (if failed), the phase it ended in, and what it found.
struct Run {
    reason: Option<Reason>,
    phase: Option<Phase>,
    details: Option<Details>,
    trace: TraceData,
    at: SystemTime,
}

fn ok() -> Run {
    Run {
        reason: None,
        phase: None,
        details: None,
        trace: TraceData::default(),
        at: SystemTime::now(),
    }
}

fn fail(reason: Reason, phase: Phase) -> Run {
    Run {
        reason: Some(reason),
        phase: Some(phase),
        ..ok()
    }
}

fn status(reason: Reason, code: u16) -> Run {
    let mut r = fail(reason, Phase::Processing);
    r.trace.status_code = Some(code);
    r
}

fn record(p: &mut ProbeState, run: Run) {
    let mut trace = run.trace;
    trace.current = run.phase;
    let result = RunResult {
        details: run.details,
        failure: run.reason.map(|r| Failure::new(r, "x")),
    };
    p.record(result, trace, Duration::from_millis(5), run.at);
}

fn dns_run(lookups: Vec<DnsLookup>) -> Run {
    let reason = lookups
        .iter()
        .all(|l| l.failure.is_some())
        .then(|| lookups[0].failure)
        .flatten();
    Run {
        reason,
        details: Some(Details::Dns(lookups)),
        ..ok()
    }
}

fn auth_run(reason: Option<Reason>, fail_open: bool) -> Run {
    let d = AuthDetails {
        cases: vec![CaseResult {
            case: AuthCase::NoToken,
            passed: !fail_open,
            status: Some(if fail_open { 200 } else { 401 }),
            duration: Duration::from_millis(3),
            clerk_reason: None,
        }],
        fail_open,
        mint: Some((reason != Some(Reason::TokenMintFailed), Duration::ZERO)),
        token_verified: Some(true),
        kid_known: Some(reason != Some(Reason::TokenKidUnknown)),
        ..AuthDetails::default()
    };
    Run {
        reason,
        phase: reason.map(|_| Phase::Processing),
        details: Some(Details::Auth(d)),
        ..ok()
    }
}

fn healthy() -> Vec<ProbeState> {
    let mut s = states(YAML);
    record(
        &mut s[DNS],
        dns_run(vec![
            lookup("system", Some(0), None),
            lookup("127.0.0.1:5353", Some(0), None),
        ]),
    );
    for i in [FAPI, BAPI, JWKS, API] {
        record(&mut s[i], ok());
    }
    record(&mut s[AUTH], auth_run(None, false));
    s
}

fn tls(reference: Option<bool>, not_after: Option<i64>) -> TraceData {
    TraceData {
        tls: Some(TlsInfo {
            reference_verified: reference,
            leaf_not_after: not_after,
            earliest_not_after: not_after,
            ..TlsInfo::default()
        }),
        ..TraceData::default()
    }
}

fn offset(estimate: f64, lower: f64, upper: f64) -> crate::net::http::ClockOffset {
    crate::net::http::ClockOffset {
        estimate,
        lower,
        upper,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn judge(s: &[ProbeState], store: usize) -> Diagnosis {
    let spec = Config::parse(YAML, "t", &|_| None).unwrap().diagnosis;
    let shared: Vec<std::sync::Arc<ProbeState>> =
        s.iter().cloned().map(std::sync::Arc::new).collect();
    diagnose(
        &shared,
        &Inputs {
            spec: &spec,
            trust_store_certificates: store,
            now: SystemTime::now(),
        },
    )
}

type Setup = fn(&mut Vec<ProbeState>);

/// (name, what happens, trust store size, exactly these causes, auth healthy)
const ROWS: &[(&str, Setup, usize, &[Cause], bool)] = &[
    ("healthy", |_| {}, 140, &[], true),
    (
        "container resolver fails alone",
        |s| {
            record(
                &mut s[DNS],
                dns_run(vec![
                    lookup("system", None, Some(Reason::DnsTimeout)),
                    lookup("127.0.0.1:5353", Some(0), None),
                ]),
            );
            s[DNS].last.as_mut().unwrap().failure = Some(Reason::DnsTimeout);
            for i in [FAPI, BAPI, JWKS] {
                record(&mut s[i], fail(Reason::DnsTimeout, Phase::Resolve));
            }
        },
        140,
        &[Cause::DnsResolverBroken],
        false,
    ),
    (
        "NXDOMAIN from every resolver",
        |s| {
            let nx = Some(Reason::DnsNxdomain);
            record(
                &mut s[DNS],
                dns_run(vec![
                    lookup("system", Some(3), nx),
                    lookup("127.0.0.1:5353", Some(3), nx),
                ]),
            );
            record(&mut s[FAPI], fail(Reason::DnsNxdomain, Phase::Resolve));
        },
        140,
        &[Cause::DnsNameMissing],
        false,
    ),
    (
        "every resolver silent",
        |s| {
            let t = Some(Reason::DnsTimeout);
            record(
                &mut s[DNS],
                dns_run(vec![
                    lookup("system", None, t),
                    lookup("127.0.0.1:5353", None, t),
                ]),
            );
            for i in [FAPI, BAPI, JWKS] {
                record(&mut s[i], fail(Reason::DnsTimeout, Phase::Resolve));
            }
        },
        140,
        &[Cause::DnsEgressBlocked],
        false,
    ),
    (
        "no route anywhere",
        |s| {
            let u = Some(Reason::DnsUnreachable);
            record(
                &mut s[DNS],
                dns_run(vec![
                    lookup("system", None, u),
                    lookup("127.0.0.1:5353", None, u),
                ]),
            );
            for i in [FAPI, BAPI, JWKS] {
                record(&mut s[i], fail(Reason::DnsUnreachable, Phase::Resolve));
            }
            for i in [API, AUTH] {
                record(&mut s[i], fail(Reason::NetworkUnreachable, Phase::Connect));
            }
        },
        140,
        &[Cause::NetworkDown],
        false,
    ),
    (
        "every Clerk host refuses connections",
        |s| {
            for i in [FAPI, BAPI, JWKS] {
                record(&mut s[i], fail(Reason::ConnectRefused, Phase::Connect));
            }
        },
        140,
        &[Cause::EgressBlocked],
        false,
    ),
    (
        "one Clerk host refuses connections",
        |s| record(&mut s[BAPI], fail(Reason::ConnectTimeout, Phase::Connect)),
        140,
        &[Cause::EgressBlocked],
        false,
    ),
    (
        "unknown issuer, empty trust store",
        |s| {
            let mut r = fail(Reason::TlsUnknownIssuer, Phase::Tls);
            r.trace = tls(Some(false), None);
            record(&mut s[FAPI], r);
        },
        0,
        &[Cause::CaCertificatesMissing],
        false,
    ),
    (
        "unknown issuer that the reference roots do not know",
        |s| {
            let mut r = fail(Reason::TlsUnknownIssuer, Phase::Tls);
            r.trace = tls(Some(false), None);
            record(&mut s[FAPI], r);
        },
        140,
        &[Cause::TlsIntercepted],
        false,
    ),
    (
        "unknown issuer that the reference roots know",
        |s| {
            let mut r = fail(Reason::TlsUnknownIssuer, Phase::Tls);
            r.trace = tls(Some(true), None);
            record(&mut s[FAPI], r);
        },
        140,
        &[Cause::CaCertificatesMissing],
        false,
    ),
    (
        "expired certificate on a Clerk host (not also cert_expiring)",
        |s| {
            let mut r = fail(Reason::TlsExpired, Phase::Tls);
            r.trace = tls(None, Some(unix_now() - 3600));
            record(&mut s[FAPI], r);
        },
        140,
        &[Cause::CertInvalid],
        false,
    ),
    (
        "certificate for another name",
        |s| record(&mut s[FAPI], fail(Reason::TlsHostnameMismatch, Phase::Tls)),
        140,
        &[Cause::CertInvalid],
        false,
    ),
    (
        "certificate valid for one more day",
        |s| {
            let mut r = ok();
            r.trace = tls(None, Some(unix_now() + 86_400));
            record(&mut s[FAPI], r);
        },
        140,
        &[Cause::CertExpiring],
        true,
    ),
    (
        "429 on the JWKS",
        |s| record(&mut s[JWKS], status(Reason::HttpStatus, 429)),
        140,
        &[Cause::RateLimited],
        false,
    ),
    (
        "503 from the Backend API",
        |s| record(&mut s[BAPI], status(Reason::HttpStatus, 503)),
        140,
        &[Cause::ProviderOutage],
        false,
    ),
    (
        "404 on the JWKS path",
        |s| record(&mut s[JWKS], status(Reason::HttpStatus, 404)),
        140,
        &[Cause::EndpointRejected],
        false,
    ),
    (
        "a captive portal instead of the JWKS, long enough to be stale",
        |s| {
            s[JWKS].created_at = SystemTime::now() - Duration::from_secs(3600);
            record(&mut s[JWKS], status(Reason::BodyInvalid, 200));
        },
        140,
        &[Cause::ResponseInvalid],
        false,
    ),
    (
        "a JWKS last fetched an hour ago while its probe passes (a long interval)",
        |s| {
            if let Kept::Jwks(k) = &mut s[JWKS].kept {
                k.last_success = Some(SystemTime::now() - Duration::from_secs(3600));
            }
        },
        140,
        &[Cause::JwksStale],
        false,
    ),
    (
        "Backend API rejects the secret key",
        |s| record(&mut s[BAPI], status(Reason::AuthSecretKeyInvalid, 401)),
        140,
        &[Cause::SecretKeyInvalid],
        false,
    ),
    (
        "the proxy refuses to tunnel",
        |s| {
            record(
                &mut s[FAPI],
                fail(Reason::ProxyConnectFailed, Phase::Connect),
            )
        },
        140,
        &[Cause::ProxyMisconfigured],
        false,
    ),
    (
        "local clock 30 s behind",
        |s| {
            let mut r = ok();
            r.trace.clock_offset = Some(offset(-30.0, -30.6, -29.4));
            record(&mut s[FAPI], r);
        },
        140,
        &[Cause::ClockSkew],
        false,
    ),
    (
        "a slow Clerk answer: its Date allows anything from -4 s to +0.5 s, so no skew",
        |s| {
            let mut r = ok();
            r.trace.clock_offset = Some(offset(-1.7, -4.0, 0.5));
            record(&mut s[FAPI], r);
        },
        140,
        &[],
        true,
    ),
    (
        "the API's own Date is not a reference clock",
        |s| {
            let mut r = ok();
            r.trace.clock_offset = Some(offset(-30.0, -30.6, -29.4));
            record(&mut s[API], r);
        },
        140,
        &[],
        true,
    ),
    (
        "authwatch out of file descriptors",
        |s| {
            for i in [FAPI, BAPI] {
                record(
                    &mut s[i],
                    fail(Reason::LocalResourcesExhausted, Phase::Connect),
                );
            }
        },
        140,
        &[Cause::LocalResourcesExhausted],
        false,
    ),
    (
        "the API's health fails while Clerk passes in fresher runs",
        |s| {
            let mut r = fail(Reason::HealthCheckFailed, Phase::Transfer);
            r.at = SystemTime::now() - Duration::from_secs(1);
            record(&mut s[API], r);
        },
        140,
        &[Cause::ApiNetworkUnhealthy],
        false,
    ),
    (
        "the API's health fails while Clerk fails: Clerk's cause only",
        |s| {
            record(&mut s[BAPI], status(Reason::HttpStatus, 502));
            record(
                &mut s[API],
                fail(Reason::HealthCheckFailed, Phase::Transfer),
            );
        },
        140,
        &[Cause::ProviderOutage],
        false,
    ),
    (
        "the API is not reachable at all",
        |s| record(&mut s[API], fail(Reason::ConnectRefused, Phase::Connect)),
        140,
        &[Cause::ApiUnreachable],
        false,
    ),
    (
        "the protected route hangs while Clerk answers",
        |s| {
            let mut r = auth_run(Some(Reason::Timeout), false);
            r.at = SystemTime::now() - Duration::from_secs(1);
            record(&mut s[AUTH], r);
        },
        140,
        &[Cause::VerifierStalling],
        false,
    ),
    (
        "the probe's own token cannot be had",
        |s| record(&mut s[AUTH], auth_run(Some(Reason::TokenMintFailed), false)),
        140,
        &[Cause::ProbeTokenUnavailable],
        false,
    ),
    (
        "the token's kid is in no fetched JWKS",
        |s| record(&mut s[AUTH], auth_run(Some(Reason::TokenKidUnknown), false)),
        140,
        &[Cause::JwksKeyMismatch],
        false,
    ),
    (
        "the API rejects a valid token",
        |s| {
            record(
                &mut s[AUTH],
                auth_run(Some(Reason::AuthValidTokenRejected), false),
            )
        },
        140,
        &[Cause::AuthRejectsValidTokens],
        false,
    ),
    (
        "two faults: the container resolver and a fail-open API",
        |s| {
            record(
                &mut s[DNS],
                dns_run(vec![
                    lookup("system", Some(2), Some(Reason::DnsServfail)),
                    lookup("127.0.0.1:5353", Some(0), None),
                ]),
            );
            s[DNS].last.as_mut().unwrap().failure = Some(Reason::DnsServfail);
            record(&mut s[FAPI], fail(Reason::DnsServfail, Phase::Resolve));
            record(
                &mut s[AUTH],
                auth_run(Some(Reason::AuthAcceptsInvalidToken), true),
            );
        },
        140,
        &[Cause::DnsResolverBroken, Cause::AuthFailOpen],
        false,
    ),
];

#[test]
fn each_row_names_exactly_its_causes() {
    for (name, setup, store, want, healthy_want) in ROWS {
        let mut s = healthy();
        setup(&mut s);
        let d = judge(&s, *store);
        let got: Vec<Cause> = d.causes.iter().copied().collect();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want, "{name}: {:?}", d.evidence);
        assert_eq!(d.auth_healthy, *healthy_want, "{name}");
        assert!(
            !d.unexplained(),
            "{name}: unexplained, residue {:?}",
            d.residue
        );
        for (c, ev) in &d.evidence {
            assert!(
                !ev.is_empty() && ev.len() <= MAX_EVIDENCE,
                "{name}: {c:?} {ev:?}"
            );
        }
    }
}

#[test]
fn every_cause_has_a_row() {
    let named: BTreeSet<Cause> = ROWS.iter().flat_map(|r| r.3.iter().copied()).collect();
    let missing: Vec<Cause> = Cause::ALL
        .iter()
        .copied()
        .filter(|c| {
            !named.contains(c)
                && !matches!(
                    c,
                    Cause::CoverageMissing
                        | Cause::SdkIgnoresProxy
                        | Cause::SdkTrustMismatch
                        | Cause::SystemTrustUnused
                )
        })
        .collect();
    assert!(missing.is_empty(), "causes no row produces: {missing:?}");
}

#[test]
fn a_pass_older_than_the_failure_is_not_evidence() {
    let mut s = healthy();
    // The API's failing run began after every Clerk probe's last pass: wait, do not guess.
    let mut r = fail(Reason::HealthCheckFailed, Phase::Transfer);
    r.at = SystemTime::now() + Duration::from_secs(5);
    record(&mut s[API], r);
    let d = judge(&s, 140);
    assert!(d.causes.is_empty(), "{:?}", d.causes);
    assert_eq!(d.pending, ["api"]);
    assert!(!d.auth_healthy && !d.unexplained());
    // Once every Clerk probe has passed again after the API's failures began, it is evidence.
    for i in [DNS, FAPI, BAPI, JWKS] {
        let mut pass = ok();
        pass.at = SystemTime::now() + Duration::from_secs(6);
        if i == DNS {
            pass.details = s[DNS].last.as_ref().and_then(|l| l.details.clone());
        }
        record(&mut s[i], pass);
    }
    let d = judge(&s, 140);
    assert_eq!(
        d.causes.iter().copied().collect::<Vec<_>>(),
        [Cause::ApiNetworkUnhealthy]
    );
    assert!(d.pending.is_empty());
}

#[test]
fn watching_nothing_of_the_user_is_never_healthy() {
    let mut s = states("probes: [{name: c, https: {url: \"https://clerk.com/\"}}]");
    record(&mut s[0], ok());
    let d = judge(&s, 140);
    assert_eq!(
        d.causes.iter().copied().collect::<Vec<_>>(),
        [Cause::CoverageMissing]
    );
    assert!(!d.auth_healthy);
    assert_eq!(d.evidence[&Cause::CoverageMissing].len(), 2);
    assert!(!d.coverage.clerk_instance && !d.coverage.api);
}

#[test]
fn probes_that_have_not_run_are_pending_not_unexplained() {
    let s = states(YAML);
    let d = judge(&s, 140);
    assert!(d.causes.is_empty() && !d.auth_healthy && !d.unexplained());
    assert_eq!(d.pending.len(), 6);
}

#[test]
fn since_is_kept_while_a_cause_stays() {
    let mut s = healthy();
    record(&mut s[BAPI], status(Reason::HttpStatus, 503));
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let mut first = judge(&s, 140);
    first.carry_since(&Diagnosis::default(), t0);
    let mut second = judge(&s, 140);
    second.carry_since(&first, SystemTime::now());
    assert_eq!(second.since[&Cause::ProviderOutage], t0);
    let _ = s[JWKS].kept::<Jwks>();
}

/// The API verifies with the Python SDK, behind a proxy the container needs: the derived
/// `clerk-sdk-jwks` fetches as the SDK does (direct, certifi-like bundle), `clerk-bapi-jwks`
/// as a generic client does (through the proxy, the system store).
fn sdk_states() -> Vec<ProbeState> {
    let yaml = r#"
clerk: {secret_key: sk_test_sdk, api_url: "https://api.clerk.test", sdk: python}
probes:
  - name: api
    role: api
    api_health: {url: "http://127.0.0.1:8020/health/network"}
"#;
    let env = |k: &str| (k == "HTTPS_PROXY").then(|| "http://127.0.0.1:3128".to_string());
    let c = Config::parse(yaml, "t", &env).unwrap();
    let mut s: Vec<ProbeState> = c.probes.iter().map(ProbeState::new).collect();
    for p in &mut s {
        record(p, ok());
    }
    s
}

fn named<'a>(s: &'a mut [ProbeState], name: &str) -> &'a mut ProbeState {
    s.iter_mut().find(|p| p.name() == name).unwrap()
}

#[test]
fn sdk_profiles_name_where_the_sdk_and_a_generic_client_disagree() {
    let s = sdk_states();
    let sdk = s.iter().find(|p| p.name() == "clerk-sdk-jwks").unwrap();
    let generic = s.iter().find(|p| p.name() == "clerk-bapi-jwks").unwrap();
    assert!(
        !sdk.proxied() && generic.proxied(),
        "python ignores HTTPS_PROXY"
    );
    assert_eq!(sdk.spec.conn.roots, crate::net::http::Roots::Bundled);

    // The network needs the proxy; the SDK goes direct and cannot connect.
    let mut s = sdk_states();
    record(
        named(&mut s, "clerk-sdk-jwks"),
        fail(Reason::ConnectTimeout, Phase::Connect),
    );
    let d = judge(&s, 140);
    assert_eq!(
        d.causes.iter().copied().collect::<Vec<_>>(),
        [Cause::SdkIgnoresProxy]
    );

    // The SDK's bundle lacks the root the system store has (a corporate CA).
    let mut s = sdk_states();
    record(
        named(&mut s, "clerk-sdk-jwks"),
        fail(Reason::TlsUnknownIssuer, Phase::Tls),
    );
    let d = judge(&s, 140);
    assert_eq!(
        d.causes.iter().copied().collect::<Vec<_>>(),
        [Cause::SdkTrustMismatch]
    );

    // The system store is empty, but the SDK never reads it: no page, auth healthy.
    let mut s = sdk_states();
    record(
        named(&mut s, "clerk-bapi-jwks"),
        fail(Reason::TlsUnknownIssuer, Phase::Tls),
    );
    let d = judge(&s, 0);
    assert_eq!(
        d.causes.iter().copied().collect::<Vec<_>>(),
        [Cause::SystemTrustUnused]
    );
    assert!(d.auth_healthy, "{:?}", d.evidence);
}
