//! Diagnosis: pure functions from the latest probe results to the causes of an auth outage,
//! each with the fix an operator should try first.

mod cause;

use std::collections::BTreeSet;
use std::time::SystemTime;

pub use cause::Cause;

use crate::config::base::Role;
use crate::config::global::DiagnosisSpec;
use crate::failure::Reason;
use crate::net::resolve::ResolverSpec;
use crate::net::trace::Phase;
use crate::probe::auth::Auth;
use crate::probe::dns::Dns;
use crate::probe::jwks::{Jwks, group_agreement};
use crate::probe::state::ProbeState;

/// What the diagnosis needs besides the probes.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub spec: &'a DiagnosisSpec,
    pub trust_store_certificates: usize,
    pub now: SystemTime,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnosis {
    pub causes: BTreeSet<Cause>,
    /// Every auth-critical probe succeeded and no cause but an expiry warning is active.
    pub auth_healthy: bool,
    /// Some probe has finished a run (before that, nothing is known).
    pub ran_any: bool,
}

impl Diagnosis {
    /// Auth is unhealthy and no known cause explains it.
    pub fn unexplained(&self) -> bool {
        !self.auth_healthy && self.causes.is_empty() && self.ran_any
    }
}

/// Causes that explain connectivity failures; while one is active, a stale JWKS is its
/// consequence, not a second cause.
const ROOT: [Cause; 6] = [
    Cause::DnsResolverBroken,
    Cause::DnsNameMissing,
    Cause::EgressBlocked,
    Cause::CaCertificatesMissing,
    Cause::TlsIntercepted,
    Cause::ProxyMisconfigured,
];

fn any_failed(probes: &[ProbeState], reason: Reason) -> bool {
    probes.iter().any(|p| p.failure() == Some(reason))
}

/// The clock offset furthest from zero that any probe measured in its latest run.
pub fn worst_clock_offset(probes: &[ProbeState]) -> Option<f64> {
    probes
        .iter()
        .filter_map(ProbeState::clock_offset)
        .fold(None, |acc: Option<f64>, o| match acc {
            Some(a) if a.abs() >= o.abs() => Some(a),
            _ => Some(o),
        })
}

fn dns_resolver_broken(probes: &[ProbeState]) -> bool {
    probes.iter().filter(|p| p.role() == Role::Clerk).any(|p| {
        let Some(lookups) = p.details::<Dns>() else {
            return false;
        };
        lookups.iter().any(|l| {
            let of_name = lookups.iter().filter(|o| o.name == l.name);
            let (mut system_ok, mut system_seen, mut other_ok) = (false, false, false);
            for o in of_name {
                if o.resolver == ResolverSpec::System {
                    system_seen = true;
                    system_ok |= o.failure.is_none();
                } else {
                    other_ok |= o.failure.is_none();
                }
            }
            system_seen && !system_ok && other_ok
        })
    })
}

fn dns_name_missing(probes: &[ProbeState]) -> bool {
    probes.iter().filter(|p| p.role() == Role::Clerk).any(|p| {
        let Some(lookups) = p.details::<Dns>() else {
            return false;
        };
        // Resolvers that did not answer say nothing about the name; every one that did must
        // have said NXDOMAIN.
        lookups.iter().any(|l| {
            let answered: Vec<_> = lookups
                .iter()
                .filter(|o| o.name == l.name && o.rcode.is_some())
                .collect();
            !answered.is_empty() && answered.iter().all(|o| o.nxdomain())
        })
    })
}

/// Every direct Clerk HTTP probe that ran failed while connecting (so its name resolved).
fn egress_blocked(probes: &[ProbeState]) -> bool {
    let direct: Vec<&ProbeState> = probes
        .iter()
        .filter(|p| p.role() == Role::Clerk && p.kind().is_http() && !p.proxied() && p.ran())
        .collect();
    !direct.is_empty()
        && direct.iter().all(|p| {
            let in_connect = p.trace().is_some_and(|t| t.current == Some(Phase::Connect));
            in_connect
                && matches!(
                    p.failure(),
                    Some(
                        Reason::ConnectRefused
                            | Reason::ConnectTimeout
                            | Reason::NetworkUnreachable
                    )
                )
        })
}

fn unknown_issuer(probes: &[ProbeState]) -> impl Iterator<Item = &ProbeState> {
    probes
        .iter()
        .filter(|p| p.role() == Role::Clerk && p.failure() == Some(Reason::TlsUnknownIssuer))
}

fn reference_verified(p: &ProbeState) -> Option<bool> {
    p.trace()
        .and_then(|t| t.tls.as_ref())
        .and_then(|t| t.reference_verified)
}

/// Whether one probe's chain was rejected as an unknown issuer because the local store
/// lacks CA certificates (rather than because something intercepts TLS).
fn store_lacks_cas(p: &ProbeState, inputs: &Inputs) -> bool {
    inputs.trust_store_certificates == 0 || reference_verified(p) == Some(true)
}

fn clerk_http(probes: &[ProbeState]) -> impl Iterator<Item = &ProbeState> {
    probes
        .iter()
        .filter(|p| p.role() == Role::Clerk && p.kind().is_http())
}

fn ca_certificates_missing(probes: &[ProbeState], inputs: &Inputs) -> bool {
    unknown_issuer(probes).any(|p| store_lacks_cas(p, inputs))
}

fn tls_intercepted(probes: &[ProbeState], inputs: &Inputs) -> bool {
    unknown_issuer(probes).any(|p| !store_lacks_cas(p, inputs))
}

fn proxy_misconfigured(probes: &[ProbeState], _: &Inputs) -> bool {
    clerk_http(probes).any(|p| {
        matches!(
            p.failure(),
            Some(Reason::ProxyConnectFailed | Reason::ProxyAuthRequired)
        )
    })
}

fn clock_skew(probes: &[ProbeState], inputs: &Inputs) -> bool {
    let skew = inputs.spec.clock_skew_warning.as_secs_f64();
    worst_clock_offset(probes).is_some_and(|o| o.abs() > skew)
}

/// Clerk answers, but with 5xx or an unhealthy health check.
fn provider_outage(probes: &[ProbeState], _: &Inputs) -> bool {
    clerk_http(probes).any(|p| {
        let status = p.trace().and_then(|t| t.status_code).unwrap_or(0);
        match p.failure() {
            Some(Reason::HttpStatus) => status >= 500,
            Some(Reason::HealthCheckFailed) => true,
            _ => false,
        }
    })
}

fn secret_key_invalid(probes: &[ProbeState], _: &Inputs) -> bool {
    any_failed(probes, Reason::AuthSecretKeyInvalid)
}

fn jwks_stale(probes: &[ProbeState], inputs: &Inputs) -> bool {
    let max_age = inputs.spec.jwks_max_age.as_secs_f64();
    probes
        .iter()
        .filter_map(|p| Some((p, p.kept::<Jwks>()?)))
        .any(|(p, k)| k.age(p.created_at, inputs.now) > max_age)
}

/// A pinned copy lacks a live key, grouped sources disagree, or the real token's kid is in
/// none of the fetched key sets.
fn jwks_key_mismatch(probes: &[ProbeState], _: &Inputs) -> bool {
    probes
        .iter()
        .filter_map(ProbeState::kept::<Jwks>)
        .any(|k| k.pinned_missing.unwrap_or(0) > 0)
        || group_agreement(probes).values().any(|agree| !agree)
        || probes
            .iter()
            .filter_map(ProbeState::details::<Auth>)
            .any(|d| d.kid_known == Some(false))
}

/// The API's own view fails while every Clerk probe that ran passes.
fn api_network_unhealthy(probes: &[ProbeState], _: &Inputs) -> bool {
    let clerk_all_ok = probes
        .iter()
        .filter(|p| p.role() == Role::Clerk && p.ran())
        .all(|p| p.failure().is_none());
    let has_clerk = probes.iter().any(|p| p.role() == Role::Clerk && p.ran());
    has_clerk
        && clerk_all_ok
        && probes.iter().any(|p| {
            p.role() == Role::Api
                && matches!(
                    p.failure(),
                    Some(Reason::HealthCheckFailed | Reason::HttpStatus)
                )
        })
}

fn auth_fail_open(probes: &[ProbeState], _: &Inputs) -> bool {
    probes
        .iter()
        .filter_map(ProbeState::details::<Auth>)
        .any(|d| d.fail_open)
}

fn auth_rejects_valid_tokens(probes: &[ProbeState], _: &Inputs) -> bool {
    any_failed(probes, Reason::AuthValidTokenRejected)
}

/// A presented certificate (the last chain seen) expires within the warning.
fn cert_expiring(probes: &[ProbeState], inputs: &Inputs) -> bool {
    let warn_before = inputs.spec.cert_expiry_warning.as_secs_f64();
    let now = inputs
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    probes.iter().any(|p| {
        p.last_tls
            .as_ref()
            .and_then(|t| t.earliest_not_after.or(t.leaf_not_after))
            .is_some_and(|na| (na as f64) - now < warn_before)
    })
}

type Rule = fn(&[ProbeState], &Inputs) -> bool;

/// Each cause and the rule that finds it.
const RULES: [(Cause, Rule); 15] = [
    (Cause::DnsResolverBroken, |p, _| dns_resolver_broken(p)),
    (Cause::DnsNameMissing, |p, _| dns_name_missing(p)),
    (Cause::EgressBlocked, |p, _| egress_blocked(p)),
    (Cause::CaCertificatesMissing, ca_certificates_missing),
    (Cause::TlsIntercepted, tls_intercepted),
    (Cause::ProxyMisconfigured, proxy_misconfigured),
    (Cause::ClockSkew, clock_skew),
    (Cause::ProviderOutage, provider_outage),
    (Cause::SecretKeyInvalid, secret_key_invalid),
    (Cause::JwksStale, jwks_stale),
    (Cause::JwksKeyMismatch, jwks_key_mismatch),
    (Cause::ApiNetworkUnhealthy, api_network_unhealthy),
    (Cause::CertExpiring, cert_expiring),
    (Cause::AuthFailOpen, auth_fail_open),
    (Cause::AuthRejectsValidTokens, auth_rejects_valid_tokens),
];

/// Pure: the same inputs always give the same verdict.
pub fn diagnose(probes: &[ProbeState], inputs: &Inputs) -> Diagnosis {
    let mut causes: BTreeSet<Cause> = RULES
        .iter()
        .filter(|(_, rule)| rule(probes, inputs))
        .map(|(cause, _)| *cause)
        .collect();
    if ROOT.iter().any(|c| causes.contains(c)) {
        causes.remove(&Cause::JwksStale);
    }
    let critical_ok = probes
        .iter()
        .filter(|p| p.role() != Role::Other)
        .all(ProbeState::passing);
    let ran_any = probes.iter().any(ProbeState::ran);
    let auth_healthy = ran_any && critical_ok && causes.iter().all(|c| *c == Cause::CertExpiring);
    Diagnosis {
        causes,
        auth_healthy,
        ran_any,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::failure::Failure;
    use crate::net::tls::TlsInfo;
    use crate::net::trace::TraceData;
    use crate::probe::dns::DnsLookup;
    use crate::probe::{Details, RunResult};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;

    const YAML: &str = r#"
probes:
  - name: dns
    dns: {names: [clerk.test], resolvers: [system, "127.0.0.1:5353"]}
  - name: fapi
    https: {url: "https://clerk.test/"}
  - name: bapi
    https: {url: "https://api.clerk.test/"}
  - name: api
    role: api
    api_health: {url: "http://127.0.0.1:8020/health/network"}
"#;

    fn states() -> Vec<ProbeState> {
        let c = Config::parse(YAML, "t", &|_| None).unwrap();
        c.probes.iter().map(ProbeState::new).collect()
    }

    fn spec() -> DiagnosisSpec {
        Config::parse(YAML, "t", &|_| None).unwrap().diagnosis
    }

    fn lookup(resolver: &str, rcode: Option<u16>, ok: bool) -> DnsLookup {
        DnsLookup {
            resolver: ResolverSpec::parse(resolver).unwrap(),
            name: "clerk.test".into(),
            rtype: RecordType::A,
            rcode: rcode.map(<ResponseCode as From<u16>>::from),
            answers: usize::from(ok),
            duration: Duration::from_millis(1),
            failure: if ok { None } else { Some(Reason::DnsTimeout) },
        }
    }

    fn record(
        p: &mut ProbeState,
        failure: Option<(Reason, Option<Phase>)>,
        details: Option<Details>,
        mut trace: TraceData,
    ) {
        let result = RunResult {
            details,
            failure: failure.map(|(r, _)| Failure::new(r, "x")),
        };
        trace.current = failure.and_then(|(_, ph)| ph);
        p.record(result, trace, Duration::from_millis(5), SystemTime::now());
    }

    fn healthy() -> Vec<ProbeState> {
        let mut s = states();
        let dns = Some(Details::Dns(vec![
            lookup("system", Some(0), true),
            lookup("127.0.0.1:5353", Some(0), true),
        ]));
        record(&mut s[0], None, dns, TraceData::default());
        for p in &mut s[1..] {
            record(p, None, None, TraceData::default());
        }
        s
    }

    fn run(s: &[ProbeState], store: usize) -> Diagnosis {
        let spec = spec();
        diagnose(
            s,
            &Inputs {
                spec: &spec,
                trust_store_certificates: store,
                now: SystemTime::now(),
            },
        )
    }

    fn only(d: &Diagnosis, c: Cause) {
        assert_eq!(d.causes.iter().copied().collect::<Vec<_>>(), vec![c]);
        assert!(!d.auth_healthy);
    }

    #[test]
    fn every_cause_has_one_rule() {
        let ruled: Vec<Cause> = RULES.iter().map(|(c, _)| *c).collect();
        assert_eq!(ruled, Cause::ALL.to_vec());
    }

    #[test]
    fn healthy_has_no_cause() {
        let d = run(&healthy(), 140);
        assert!(d.causes.is_empty());
        assert!(d.auth_healthy);
    }

    #[test]
    fn system_resolver_failing_alone() {
        let mut s = healthy();
        let dns = Some(Details::Dns(vec![
            lookup("system", None, false),
            lookup("127.0.0.1:5353", Some(0), true),
        ]));
        record(
            &mut s[0],
            Some((Reason::DnsTimeout, None)),
            dns,
            TraceData::default(),
        );
        only(&run(&s, 140), Cause::DnsResolverBroken);
    }

    #[test]
    fn nxdomain_everywhere() {
        let mut s = healthy();
        let mut a = lookup("system", Some(3), false);
        a.failure = Some(Reason::DnsNxdomain);
        let mut b = lookup("127.0.0.1:5353", Some(3), false);
        b.failure = Some(Reason::DnsNxdomain);
        record(
            &mut s[0],
            Some((Reason::DnsNxdomain, None)),
            Some(Details::Dns(vec![a, b])),
            TraceData::default(),
        );
        only(&run(&s, 140), Cause::DnsNameMissing);
    }

    #[test]
    fn connect_failures_on_every_clerk_host() {
        let mut s = healthy();
        for p in &mut s[1..3] {
            record(
                p,
                Some((Reason::ConnectRefused, Some(Phase::Connect))),
                None,
                TraceData::default(),
            );
        }
        only(&run(&s, 140), Cause::EgressBlocked);
        // One host still reachable: not egress.
        let mut s = healthy();
        record(
            &mut s[1],
            Some((Reason::ConnectRefused, Some(Phase::Connect))),
            None,
            TraceData::default(),
        );
        assert!(run(&s, 140).causes.is_empty());
    }

    #[test]
    fn unknown_issuer_is_missing_cas_or_interception() {
        let tls = |reference| TraceData {
            tls: Some(TlsInfo {
                reference_verified: Some(reference),
                ..TlsInfo::default()
            }),
            ..TraceData::default()
        };
        let mut s = healthy();
        record(
            &mut s[1],
            Some((Reason::TlsUnknownIssuer, Some(Phase::Tls))),
            None,
            tls(false),
        );
        only(&run(&s, 0), Cause::CaCertificatesMissing);
        only(&run(&s, 140), Cause::TlsIntercepted);
        record(
            &mut s[1],
            Some((Reason::TlsUnknownIssuer, Some(Phase::Tls))),
            None,
            tls(true),
        );
        only(&run(&s, 140), Cause::CaCertificatesMissing);
    }

    #[test]
    fn clock_skew_over_the_warning() {
        let mut s = healthy();
        record(
            &mut s[1],
            None,
            None,
            TraceData {
                clock_offset: Some(-30.0),
                ..TraceData::default()
            },
        );
        only(&run(&s, 140), Cause::ClockSkew);
        record(
            &mut s[1],
            None,
            None,
            TraceData {
                clock_offset: Some(-1.0),
                ..TraceData::default()
            },
        );
        assert!(run(&s, 140).causes.is_empty());
    }

    #[test]
    fn api_fails_while_clerk_passes() {
        let mut s = healthy();
        record(
            &mut s[3],
            Some((Reason::HealthCheckFailed, None)),
            None,
            TraceData::default(),
        );
        only(&run(&s, 140), Cause::ApiNetworkUnhealthy);
        // With Clerk failing too, the fault is not inside the API.
        record(
            &mut s[1],
            Some((Reason::Timeout, Some(Phase::Tls))),
            None,
            TraceData::default(),
        );
        assert!(!run(&s, 140).causes.contains(&Cause::ApiNetworkUnhealthy));
    }

    #[test]
    fn a_failure_that_fits_no_cause_is_unexplained() {
        let mut s = healthy();
        record(
            &mut s[1],
            Some((Reason::Timeout, Some(Phase::Processing))),
            None,
            TraceData::default(),
        );
        let d = run(&s, 140);
        assert!(d.causes.is_empty());
        assert!(!d.auth_healthy);
    }

    #[test]
    fn provider_5xx_and_expiring_certs() {
        let mut s = healthy();
        record(
            &mut s[2],
            Some((Reason::HttpStatus, Some(Phase::Processing))),
            None,
            TraceData {
                status_code: Some(503),
                ..TraceData::default()
            },
        );
        only(&run(&s, 140), Cause::ProviderOutage);
        let mut s = healthy();
        let soon = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 86_400;
        let tls = TlsInfo {
            leaf_not_after: Some(soon),
            earliest_not_after: Some(soon),
            verified: true,
            ..TlsInfo::default()
        };
        record(
            &mut s[1],
            None,
            None,
            TraceData {
                tls: Some(tls),
                ..TraceData::default()
            },
        );
        let d = run(&s, 140);
        assert_eq!(
            d.causes.iter().copied().collect::<Vec<_>>(),
            vec![Cause::CertExpiring]
        );
        assert!(
            d.auth_healthy,
            "an expiry warning alone does not make auth unhealthy"
        );
    }
}
