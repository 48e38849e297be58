//! Diagnosis: pure functions from the latest probe results to the causes of an auth outage,
//! each with the fix an operator should try first.

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::config::{DiagnosisSpec, Role};
use crate::failure::{Kind, Reason};
use crate::outcome::{Details, Phase};
use crate::store::{ProbeState, jwks_group_agreement};

/// A cause of an auth outage (or of one to come). The set is closed: alert rules and the
/// dashboard are written against these labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    DnsResolverBroken,
    DnsNameMissing,
    EgressBlocked,
    CaCertificatesMissing,
    TlsIntercepted,
    ProxyMisconfigured,
    ClockSkew,
    ProviderOutage,
    SecretKeyInvalid,
    JwksStale,
    JwksKeyMismatch,
    ApiNetworkUnhealthy,
    CertExpiring,
    AuthFailOpen,
    AuthRejectsValidTokens,
}

impl Cause {
    pub const ALL: [Cause; 15] = [
        Cause::DnsResolverBroken,
        Cause::DnsNameMissing,
        Cause::EgressBlocked,
        Cause::CaCertificatesMissing,
        Cause::TlsIntercepted,
        Cause::ProxyMisconfigured,
        Cause::ClockSkew,
        Cause::ProviderOutage,
        Cause::SecretKeyInvalid,
        Cause::JwksStale,
        Cause::JwksKeyMismatch,
        Cause::ApiNetworkUnhealthy,
        Cause::CertExpiring,
        Cause::AuthFailOpen,
        Cause::AuthRejectsValidTokens,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => "dns_resolver_broken",
            Cause::DnsNameMissing => "dns_name_missing",
            Cause::EgressBlocked => "egress_blocked",
            Cause::CaCertificatesMissing => "ca_certificates_missing",
            Cause::TlsIntercepted => "tls_intercepted",
            Cause::ProxyMisconfigured => "proxy_misconfigured",
            Cause::ClockSkew => "clock_skew",
            Cause::ProviderOutage => "provider_outage",
            Cause::SecretKeyInvalid => "secret_key_invalid",
            Cause::JwksStale => "jwks_stale",
            Cause::JwksKeyMismatch => "jwks_key_mismatch",
            Cause::ApiNetworkUnhealthy => "api_network_unhealthy",
            Cause::CertExpiring => "cert_expiring",
            Cause::AuthFailOpen => "auth_fail_open",
            Cause::AuthRejectsValidTokens => "auth_rejects_valid_tokens",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Cause::ClockSkew | Cause::CertExpiring | Cause::JwksStale => "warning",
            _ => "critical",
        }
    }

    /// One line for a page title.
    pub fn summary(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => {
                "The container's DNS resolver fails for the Clerk names while public resolvers answer."
            }
            Cause::DnsNameMissing => "Every resolver answers NXDOMAIN for a Clerk name.",
            Cause::EgressBlocked => {
                "Clerk names resolve, but TCP connections to every Clerk host are refused or time out."
            }
            Cause::CaCertificatesMissing => {
                "TLS to Clerk fails because the local trust store lacks CA certificates."
            }
            Cause::TlsIntercepted => {
                "The certificate presented for Clerk verifies against no trusted root: TLS is intercepted."
            }
            Cause::ProxyMisconfigured => "The HTTP proxy refuses to tunnel to Clerk.",
            Cause::ClockSkew => "The local clock is off from Clerk's beyond the token tolerance.",
            Cause::ProviderOutage => "Clerk is reachable but failing (5xx or unhealthy).",
            Cause::SecretKeyInvalid => "Clerk's Backend API rejects the secret key.",
            Cause::JwksStale => "No successful JWKS fetch for longer than the allowed age.",
            Cause::JwksKeyMismatch => {
                "A live signing key is missing from the pinned copy, or grouped JWKS sources disagree."
            }
            Cause::ApiNetworkUnhealthy => {
                "The API's own network health check fails while authwatch reaches the same dependencies."
            }
            Cause::CertExpiring => "A certificate presented for a probed host expires soon.",
            Cause::AuthFailOpen => {
                "The API accepts requests with no token, a forged token or an expired token."
            }
            Cause::AuthRejectsValidTokens => "The API rejects a valid session token.",
        }
    }

    /// What to do about it, drawn from the outage that started this project.
    pub fn remediation(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => {
                "Give the service working DNS servers (docker-compose `dns: [8.8.8.8, 8.8.4.4]` or your internal resolvers), check the Docker daemon's DNS settings, or fix the resolver named in the container's /etc/resolv.conf."
            }
            Cause::DnsNameMissing => {
                "Check that the publishable key belongs to this environment (it encodes the Frontend API host) and that the clerk.<your-domain> CNAME exists in your DNS zone."
            }
            Cause::EgressBlocked => {
                "Allow outbound HTTPS (TCP 443) to Clerk in the firewall, security group or container network policy; use a custom bridge network, or host networking (network_mode: host) only as a last resort for testing."
            }
            Cause::CaCertificatesMissing => {
                "Install CA certificates in the image (apt-get install ca-certificates, apk add ca-certificates) or mount the host's bundle and point SSL_CERT_FILE at it."
            }
            Cause::TlsIntercepted => {
                "Exempt Clerk's domains from TLS inspection on the proxy or firewall, or add the intercepting proxy's CA to the image's trust store."
            }
            Cause::ProxyMisconfigured => {
                "Check HTTPS_PROXY/NO_PROXY and the proxy's allowlist and credentials for Clerk's domains; the Python SDK ignores HTTPS_PROXY for its JWKS fetch, so allow direct egress or pin the JWKS."
            }
            Cause::ClockSkew => {
                "Enable time synchronisation (chrony, systemd-timesyncd or NTP) on the host; containers share the host clock."
            }
            Cause::ProviderOutage => {
                "Check Clerk's status page; tokens keep verifying with cached keys, but new keys and sessions will not load until Clerk recovers."
            }
            Cause::SecretKeyInvalid => {
                "Set CLERK_SECRET_KEY to a current key of the same Clerk instance as the publishable key, then redeploy."
            }
            Cause::JwksStale => {
                "Restore connectivity to the JWKS endpoint; on networks that cannot reach Clerk, pin the JWKS (download it and configure it as a static key) and watch authwatch_jwks_pinned_missing_kids."
            }
            Cause::JwksKeyMismatch => {
                "Refresh the pinned JWKS from Clerk, and check that the publishable key and the secret key come from the same Clerk instance."
            }
            Cause::ApiNetworkUnhealthy => {
                "The fault is inside the API's container: compare its /etc/resolv.conf, CA certificates, proxy variables and network mode with authwatch's; run authwatch as a sidecar in the API's network namespace to see what it sees."
            }
            Cause::CertExpiring => {
                "Renew the certificate for your own domains; for Clerk's custom domain check that the CNAME still points to Clerk so it can renew."
            }
            Cause::AuthFailOpen => {
                "Make every protected route require a verified token: check that the auth dependency is applied to the route and that a verification error rejects the request instead of falling through; redeploy and watch authwatch_auth_fail_open."
            }
            Cause::AuthRejectsValidTokens => {
                "Check the API's Clerk settings (secret key, publishable key and JWKS URL of one instance, authorized parties), restart it to drop a JWKS cached before a key rotation, and check its clock; its logs say why verification failed."
            }
        }
    }

    /// The probes the cause needs; without them it never fires.
    pub fn needs(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => "a dns probe with `system` and an explicit resolver",
            Cause::DnsNameMissing => "a dns probe",
            Cause::EgressBlocked => "https/jwks/clock probes with role clerk, direct (no proxy)",
            Cause::CaCertificatesMissing | Cause::TlsIntercepted => {
                "an HTTPS probe with role clerk"
            }
            Cause::ProxyMisconfigured => {
                "an HTTP-based probe with role clerk going through a proxy"
            }
            Cause::ClockSkew => "any HTTP-based probe whose server sends Date",
            Cause::ProviderOutage => {
                "an HTTP-based probe with role clerk (clerk-fapi-health for /v1/health)"
            }
            Cause::SecretKeyInvalid => "a jwks probe with source backend",
            Cause::JwksStale => "a jwks probe",
            Cause::JwksKeyMismatch => {
                "a jwks probe with pinned_file, or two jwks probes in one group"
            }
            Cause::ApiNetworkUnhealthy => {
                "an api_health probe with role api, and probes with role clerk"
            }
            Cause::CertExpiring => "an HTTPS probe",
            Cause::AuthFailOpen | Cause::AuthRejectsValidTokens => "an auth probe",
        }
    }
}

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

fn failure(p: &ProbeState) -> Option<Reason> {
    p.last.as_ref().and_then(|l| l.failure)
}

fn any_failed(probes: &[ProbeState], reason: Reason) -> bool {
    probes.iter().any(|p| failure(p) == Some(reason))
}

fn secs_since(now: SystemTime, then: SystemTime) -> f64 {
    now.duration_since(then)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn is_http(p: &ProbeState) -> bool {
    p.kind != Kind::Dns
}

fn dns_resolver_broken(probes: &[ProbeState]) -> bool {
    probes.iter().filter(|p| p.role == Role::Clerk).any(|p| {
        let Some(Details::Dns(lookups)) = p.last.as_ref().map(|l| &l.details) else {
            return false;
        };
        lookups.iter().any(|l| {
            let of_name = lookups.iter().filter(|o| o.name == l.name);
            let (mut system_ok, mut system_seen, mut other_ok) = (false, false, false);
            for o in of_name {
                if o.resolver == "system" {
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
    probes.iter().filter(|p| p.role == Role::Clerk).any(|p| {
        let Some(Details::Dns(lookups)) = p.last.as_ref().map(|l| &l.details) else {
            return false;
        };
        // Resolvers that did not answer say nothing about the name; every one that did must
        // have said NXDOMAIN.
        lookups.iter().any(|l| {
            let answered: Vec<_> = lookups
                .iter()
                .filter(|o| o.name == l.name && o.rcode.is_some())
                .collect();
            !answered.is_empty() && answered.iter().all(|o| o.rcode == Some(3))
        })
    })
}

/// Every direct Clerk HTTP probe that ran failed while connecting (so its name resolved).
fn egress_blocked(probes: &[ProbeState]) -> bool {
    let direct: Vec<&ProbeState> = probes
        .iter()
        .filter(|p| p.role == Role::Clerk && is_http(p) && !p.proxied && p.last.is_some())
        .collect();
    !direct.is_empty()
        && direct.iter().all(|p| {
            let last = p.last.as_ref();
            let in_connect = last.is_some_and(|l| l.trace.current == Some(Phase::Connect));
            in_connect
                && matches!(
                    failure(p),
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
        .filter(|p| p.role == Role::Clerk && failure(p) == Some(Reason::TlsUnknownIssuer))
}

fn reference_verified(p: &ProbeState) -> Option<bool> {
    p.last
        .as_ref()
        .and_then(|l| l.trace.tls.as_ref())
        .and_then(|t| t.reference_verified)
}

/// Pure: the same inputs always give the same verdict.
pub fn diagnose(probes: &[ProbeState], inputs: &Inputs) -> Diagnosis {
    let mut causes = BTreeSet::new();
    let spec = inputs.spec;
    if dns_resolver_broken(probes) {
        causes.insert(Cause::DnsResolverBroken);
    }
    if dns_name_missing(probes) {
        causes.insert(Cause::DnsNameMissing);
    }
    if egress_blocked(probes) {
        causes.insert(Cause::EgressBlocked);
    }
    for p in unknown_issuer(probes) {
        if inputs.trust_store_certificates == 0 || reference_verified(p) == Some(true) {
            causes.insert(Cause::CaCertificatesMissing);
        } else {
            causes.insert(Cause::TlsIntercepted);
        }
    }
    let clerk_http = || {
        probes
            .iter()
            .filter(|p| p.role == Role::Clerk && is_http(p))
    };
    if clerk_http().any(|p| {
        matches!(
            failure(p),
            Some(Reason::ProxyConnectFailed | Reason::ProxyAuthRequired)
        )
    }) {
        causes.insert(Cause::ProxyMisconfigured);
    }
    let skew = spec.clock_skew_warning.as_secs_f64();
    if probes
        .iter()
        .filter_map(|p| p.last.as_ref().and_then(|l| l.trace.clock_offset))
        .any(|o| o.abs() > skew)
    {
        causes.insert(Cause::ClockSkew);
    }
    if clerk_http().any(|p| {
        let status = p
            .last
            .as_ref()
            .and_then(|l| l.trace.status_code)
            .unwrap_or(0);
        match failure(p) {
            Some(Reason::HttpStatus) => status >= 500,
            Some(Reason::HealthCheckFailed) => p.kind == Kind::ApiHealth,
            _ => false,
        }
    }) {
        causes.insert(Cause::ProviderOutage);
    }
    if any_failed(probes, Reason::AuthSecretKeyInvalid) {
        causes.insert(Cause::SecretKeyInvalid);
    }
    let max_age = spec.jwks_max_age.as_secs_f64();
    if probes
        .iter()
        .filter(|p| p.kind == Kind::Jwks)
        .any(|p| match p.jwks.last_success {
            Some(t) => secs_since(inputs.now, t) > max_age,
            None => secs_since(inputs.now, p.created_at) > max_age,
        })
    {
        causes.insert(Cause::JwksStale);
    }
    if probes
        .iter()
        .any(|p| p.jwks.pinned_missing.unwrap_or(0) > 0)
        || jwks_group_agreement(probes).values().any(|agree| !agree)
        || probes
            .iter()
            .filter_map(ProbeState::auth_details)
            .any(|d| d.kid_known == Some(false))
    {
        causes.insert(Cause::JwksKeyMismatch);
    }
    let clerk_all_ok = probes
        .iter()
        .filter(|p| p.role == Role::Clerk && p.last.is_some())
        .all(|p| failure(p).is_none());
    let has_clerk = probes
        .iter()
        .any(|p| p.role == Role::Clerk && p.last.is_some());
    if has_clerk
        && clerk_all_ok
        && probes.iter().any(|p| {
            p.role == Role::Api
                && matches!(
                    failure(p),
                    Some(Reason::HealthCheckFailed | Reason::HttpStatus)
                )
        })
    {
        causes.insert(Cause::ApiNetworkUnhealthy);
    }
    if probes
        .iter()
        .filter_map(ProbeState::auth_details)
        .any(|d| d.fail_open)
    {
        causes.insert(Cause::AuthFailOpen);
    }
    if any_failed(probes, Reason::AuthValidTokenRejected) {
        causes.insert(Cause::AuthRejectsValidTokens);
    }
    let warn_before = spec.cert_expiry_warning.as_secs_f64();
    let now = inputs
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if probes.iter().any(|p| {
        p.last_tls
            .as_ref()
            .and_then(|t| t.earliest_not_after.or(t.leaf_not_after))
            .is_some_and(|na| (na as f64) - now < warn_before)
    }) {
        causes.insert(Cause::CertExpiring);
    }
    if ROOT.iter().any(|c| causes.contains(c)) {
        causes.remove(&Cause::JwksStale);
    }
    let critical_ok = probes
        .iter()
        .filter(|p| p.role != Role::Other)
        .all(|p| p.last.is_some() && failure(p).is_none());
    let ran_any = probes.iter().any(|p| p.last.is_some());
    let auth_healthy = ran_any && critical_ok && causes.iter().all(|c| *c == Cause::CertExpiring);
    Diagnosis {
        causes,
        auth_healthy,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::net::tls::TlsInfo;
    use crate::outcome::{DnsLookup, Failure, RunResult, TraceData};

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
            resolver: resolver.into(),
            name: "clerk.test".into(),
            rtype: "A",
            rcode,
            answers: usize::from(ok),
            duration: Duration::from_millis(1),
            failure: if ok { None } else { Some(Reason::DnsTimeout) },
        }
    }

    fn record(
        p: &mut ProbeState,
        failure: Option<(Reason, Option<Phase>)>,
        details: Details,
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
        let dns = Details::Dns(vec![
            lookup("system", Some(0), true),
            lookup("127.0.0.1:5353/udp", Some(0), true),
        ]);
        record(&mut s[0], None, dns, TraceData::default());
        for p in &mut s[1..] {
            record(p, None, Details::None, TraceData::default());
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
    fn healthy_has_no_cause() {
        let d = run(&healthy(), 140);
        assert!(d.causes.is_empty());
        assert!(d.auth_healthy);
    }

    #[test]
    fn system_resolver_failing_alone() {
        let mut s = healthy();
        let dns = Details::Dns(vec![
            lookup("system", None, false),
            lookup("127.0.0.1:5353/udp", Some(0), true),
        ]);
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
        let mut b = lookup("127.0.0.1:5353/udp", Some(3), false);
        b.failure = Some(Reason::DnsNxdomain);
        record(
            &mut s[0],
            Some((Reason::DnsNxdomain, None)),
            Details::Dns(vec![a, b]),
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
                Details::None,
                TraceData::default(),
            );
        }
        only(&run(&s, 140), Cause::EgressBlocked);
        // One host still reachable: not egress.
        let mut s = healthy();
        record(
            &mut s[1],
            Some((Reason::ConnectRefused, Some(Phase::Connect))),
            Details::None,
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
            Details::None,
            tls(false),
        );
        only(&run(&s, 0), Cause::CaCertificatesMissing);
        only(&run(&s, 140), Cause::TlsIntercepted);
        record(
            &mut s[1],
            Some((Reason::TlsUnknownIssuer, Some(Phase::Tls))),
            Details::None,
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
            Details::None,
            TraceData {
                clock_offset: Some(-30.0),
                ..TraceData::default()
            },
        );
        only(&run(&s, 140), Cause::ClockSkew);
        record(
            &mut s[1],
            None,
            Details::None,
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
            Details::None,
            TraceData::default(),
        );
        only(&run(&s, 140), Cause::ApiNetworkUnhealthy);
        // With Clerk failing too, the fault is not inside the API.
        record(
            &mut s[1],
            Some((Reason::Timeout, Some(Phase::Tls))),
            Details::None,
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
            Details::None,
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
            Details::None,
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
            Details::None,
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
