//! Attribution: where one failing auth-critical probe's path broke, named as a cause. A Clerk
//! dependency is read layer by layer (resolver, name, TCP, proxy, TLS trust, certificate, HTTP
//! status, content); the API's own probes are compared with Clerk's fresh results, so "the API
//! fails while Clerk answers" rests on runs from the same window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Cause, Evidence, Inputs};
use crate::config::base::Role;
use crate::failure::{DNS_REASONS, Reason};
use crate::net::http::Roots;
use crate::net::trace::Phase;
use crate::probe::KindId;
use crate::probe::auth::{Auth, AuthCase};
use crate::probe::state::{LastRun, ProbeState};

/// What one failing probe amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Cause(Cause, String),
    /// Explained by an active cause of the Clerk side (the API fails because Clerk does).
    Consequence,
    /// The comparison it needs rests on older results: wait for the next run.
    Wait,
    /// The evidence contradicts every cause.
    Contradiction(String),
}

/// The probe's reason, status and host, as evidence.
fn detail(p: &ProbeState) -> String {
    let reason = p.failure().map(|r| r.as_label()).unwrap_or("ok");
    let status = p
        .trace()
        .and_then(|t| t.status_code)
        .map(|s| format!(" (status {s})"))
        .unwrap_or_default();
    format!("{}: {reason}{status}", p.spec.settings.host())
}

/// DNS-layer causes the cross-probe rules found, most fundamental first.
const DNS_CAUSES: [Cause; 4] = [
    Cause::NetworkDown,
    Cause::DnsEgressBlocked,
    Cause::DnsNameMissing,
    Cause::DnsResolverBroken,
];

pub fn attribute(
    p: &ProbeState,
    probes: &[Arc<ProbeState>],
    found: &BTreeMap<Cause, Vec<Evidence>>,
    inputs: &Inputs,
) -> Verdict {
    let Some(reason) = p.failure() else {
        return Verdict::Consequence;
    };
    if reason == Reason::LocalResourcesExhausted {
        return Verdict::Cause(Cause::LocalResourcesExhausted, detail(p));
    }
    match p.role() {
        Role::Api => api(p, reason, probes, found, inputs),
        _ => clerk(p, reason, probes, found, inputs),
    }
}

/// The second fault behind the first: what the probe's run through an answering resolver
/// found while its own resolver fails (`None` when the detour passed or there is none).
pub fn detour(p: &ProbeState, inputs: &Inputs) -> Option<(Cause, String)> {
    let det = p.detour.as_ref()?;
    let reason = det.failure?;
    let mut through = p.clone();
    through.last = Some(LastRun {
        failure: Some(reason),
        message: String::new(),
        duration: std::time::Duration::ZERO,
        finished_at: det.finished_at,
        trace: det.trace.clone(),
        details: None,
    });
    match clerk(&through, reason, &[], &BTreeMap::new(), inputs) {
        Verdict::Cause(c, d) => Some((c, format!("via {}: {d}", det.resolver.label()))),
        _ => None,
    }
}

/// A Clerk dependency, by the layer its path broke at.
fn clerk(
    p: &ProbeState,
    reason: Reason,
    probes: &[Arc<ProbeState>],
    found: &BTreeMap<Cause, Vec<Evidence>>,
    inputs: &Inputs,
) -> Verdict {
    let d = detail(p);
    if let Some((c, why)) = sdk_disagreement(p, reason, probes) {
        return Verdict::Cause(c, format!("{d}; {why}"));
    }
    if DNS_REASONS.contains(&reason)
        && let Some(c) = DNS_CAUSES.iter().find(|c| found.contains_key(c))
    {
        return Verdict::Cause(*c, d);
    }
    if let Some(c) = token_cause(reason) {
        return Verdict::Cause(c, d);
    }
    let status = p.trace().and_then(|t| t.status_code).unwrap_or(0);
    let phase = p.trace().and_then(|t| t.current);
    let cause = match reason {
        Reason::DnsNxdomain | Reason::DnsNodata => Cause::DnsNameMissing,
        Reason::DnsUnreachable | Reason::NetworkUnreachable => Cause::NetworkDown,
        Reason::DnsServfail | Reason::DnsRefused | Reason::DnsTimeout | Reason::DnsError => {
            Cause::DnsResolverBroken
        }
        Reason::ConnectRefused | Reason::ConnectTimeout | Reason::ConnectionReset
            if p.proxied() =>
        {
            Cause::ProxyMisconfigured
        }
        Reason::ConnectRefused | Reason::ConnectTimeout | Reason::ConnectionReset => {
            Cause::EgressBlocked
        }
        Reason::ProxyConnectFailed | Reason::ProxyAuthRequired => Cause::ProxyMisconfigured,
        Reason::TlsUnknownIssuer if store_lacks_cas(p, inputs) => Cause::CaCertificatesMissing,
        Reason::TlsUnknownIssuer | Reason::TlsHandshake => Cause::TlsIntercepted,
        Reason::TlsExpired | Reason::TlsNotYetValid | Reason::TlsHostnameMismatch => {
            Cause::CertInvalid
        }
        Reason::Timeout if phase == Some(Phase::Tls) => Cause::TlsIntercepted,
        Reason::HttpStatus if status == 429 => Cause::RateLimited,
        Reason::HttpStatus if status >= 500 => Cause::ProviderOutage,
        Reason::HttpStatus => Cause::EndpointRejected,
        Reason::Timeout | Reason::HealthCheckFailed => Cause::ProviderOutage,
        Reason::HttpProtocol
        | Reason::BodyTooLarge
        | Reason::BodyInvalid
        | Reason::JwksNoKeys
        | Reason::JwksInvalidKey
        | Reason::JwksDuplicateKid => Cause::ResponseInvalid,
        Reason::ClockSkew => Cause::ClockSkew,
        _ => return Verdict::Contradiction(d),
    };
    Verdict::Cause(cause, d)
}

/// Where a probe fetching the way the API's SDK does and a generic probe disagree: the SDK
/// ignores a proxy the network needs, or trusts another bundle than the system store.
fn sdk_disagreement(
    p: &ProbeState,
    reason: Reason,
    probes: &[Arc<ProbeState>],
) -> Option<(Cause, String)> {
    let clerk_passing = |f: &dyn Fn(&ProbeState) -> bool| {
        probes
            .iter()
            .find(|q| q.role() == Role::Clerk && q.passing() && f(q))
            .map(|q| q.name().to_string())
    };
    let unreachable = DNS_REASONS.contains(&reason)
        || matches!(
            reason,
            Reason::ConnectRefused | Reason::ConnectTimeout | Reason::NetworkUnreachable
        );
    match p.spec.sdk {
        Some(sdk) if unreachable && !sdk.honours_proxy_env() && !p.proxied() => {
            let via = clerk_passing(&|q| q.proxied())?;
            Some((
                Cause::SdkIgnoresProxy,
                format!(
                    "the {} SDK ignores HTTPS_PROXY; {via} passes through the proxy",
                    sdk.as_label()
                ),
            ))
        }
        Some(sdk) if reason == Reason::TlsUnknownIssuer && p.spec.conn.roots == Roots::Bundled => {
            let system = clerk_passing(&|q| q.spec.conn.roots == Roots::System)?;
            Some((
                Cause::SdkTrustMismatch,
                format!(
                    "the {} SDK bundle lacks the root; {system} verifies with the system store",
                    sdk.as_label()
                ),
            ))
        }
        None if reason == Reason::TlsUnknownIssuer => {
            let sdk =
                clerk_passing(&|q| q.spec.sdk.is_some() && q.spec.conn.roots == Roots::Bundled)?;
            Some((
                Cause::SystemTrustUnused,
                format!("{sdk}, fetching as the API SDK does, verifies with its own bundle"),
            ))
        }
        _ => None,
    }
}

/// Reasons that name a cause wherever they come from: the keys and tokens.
fn token_cause(reason: Reason) -> Option<Cause> {
    Some(match reason {
        Reason::AuthSecretKeyInvalid => Cause::SecretKeyInvalid,
        Reason::TokenMintFailed | Reason::TokenInvalid => Cause::ProbeTokenUnavailable,
        Reason::TokenKidUnknown => Cause::JwksKeyMismatch,
        Reason::AuthValidTokenRejected => Cause::AuthRejectsValidTokens,
        Reason::AuthAcceptsInvalidToken => Cause::AuthFailOpen,
        _ => return None,
    })
}

/// What the API's own Clerk middleware said of a rejected valid token, as the cause it names
/// (the reason codes of `@clerk/backend`'s TokenVerificationErrorReason).
fn clerk_said(p: &ProbeState) -> Option<(Cause, String)> {
    let said = p
        .details::<Auth>()?
        .cases
        .iter()
        .find(|c| c.case == AuthCase::ValidToken && !c.passed)?
        .clerk_reason
        .clone()?;
    let cause = match said.as_str() {
        "jwk-remote-failed-to-load" | "jwk-failed-to-load" | "jwk-failed-to-resolve" => {
            Cause::ApiNetworkUnhealthy
        }
        "jwk-kid-mismatch" | "jwk-remote-missing" | "jwk-local-missing" => Cause::JwksKeyMismatch,
        "token-not-active-yet" | "token-iat-in-the-future" => Cause::ClockSkew,
        "secret-key-invalid" => Cause::SecretKeyInvalid,
        _ => Cause::AuthRejectsValidTokens,
    };
    Some((cause, said))
}

fn store_lacks_cas(p: &ProbeState, inputs: &Inputs) -> bool {
    let reference = p
        .trace()
        .and_then(|t| t.tls.as_ref())
        .and_then(|t| t.reference_verified);
    inputs.trust_store_certificates == 0 || reference == Some(true)
}

/// How the Clerk side looks next to an API probe's failing run.
enum ClerkSide {
    /// Every Clerk probe passes, each in a run that ended after the API's failures began.
    FreshlyPassing,
    /// Every Clerk probe passes, but some pass predates the API's failure: not evidence yet.
    Stale,
    /// Some Clerk probe fails: the API's failure is (at least also) Clerk's.
    Failing,
    /// No Clerk probe ran: nothing to compare with.
    Unknown,
}

fn clerk_side(api: &ProbeState, probes: &[Arc<ProbeState>]) -> ClerkSide {
    let began: Option<SystemTime> = api.failing_since;
    let clerk: Vec<&ProbeState> = probes
        .iter()
        .filter(|p| p.role() == Role::Clerk && p.ran())
        .map(|p| &**p)
        .collect();
    if clerk.is_empty() {
        return ClerkSide::Unknown;
    }
    if clerk.iter().any(|p| !p.passing()) {
        return ClerkSide::Failing;
    }
    let fresh = |p: &&ProbeState| {
        let ended = p.last.as_ref().map(|l| l.finished_at);
        matches!((ended, began), (Some(e), Some(b)) if e >= b)
    };
    if clerk.iter().all(fresh) {
        ClerkSide::FreshlyPassing
    } else {
        ClerkSide::Stale
    }
}

/// The API's own probes: the API unreachable, its verifier stalling or its network unhealthy,
/// judged against Clerk's fresh results.
fn api(
    p: &ProbeState,
    reason: Reason,
    probes: &[Arc<ProbeState>],
    found: &BTreeMap<Cause, Vec<Evidence>>,
    inputs: &Inputs,
) -> Verdict {
    // The auth probe's real token comes from Clerk's Backend API: a failure getting it is on
    // the Clerk side of the path, whatever the reason says.
    let minting_failed = p
        .details::<Auth>()
        .is_some_and(|a| a.mint.is_some_and(|(ok, _)| !ok));
    if minting_failed {
        return clerk(p, reason, probes, found, inputs);
    }
    let d = detail(p);
    if let Some((c, said)) = clerk_said(p) {
        return Verdict::Cause(c, format!("{d}; x-clerk-auth-reason: {said}"));
    }
    if let Some(c) = token_cause(reason) {
        return Verdict::Cause(c, d);
    }
    let transport = DNS_REASONS.contains(&reason)
        || matches!(
            reason,
            Reason::ConnectRefused
                | Reason::ConnectTimeout
                | Reason::NetworkUnreachable
                | Reason::ConnectionReset
                | Reason::ProxyConnectFailed
                | Reason::ProxyAuthRequired
                | Reason::TlsUnknownIssuer
                | Reason::TlsExpired
                | Reason::TlsNotYetValid
                | Reason::TlsHostnameMismatch
                | Reason::TlsHandshake
        );
    if transport {
        if found.contains_key(&Cause::NetworkDown) {
            return Verdict::Cause(Cause::NetworkDown, d);
        }
        return Verdict::Cause(Cause::ApiUnreachable, d);
    }
    let cause = if p.kind() == KindId::Auth {
        Cause::VerifierStalling
    } else {
        Cause::ApiNetworkUnhealthy
    };
    match clerk_side(p, probes) {
        ClerkSide::FreshlyPassing | ClerkSide::Unknown => Verdict::Cause(cause, d),
        ClerkSide::Stale => Verdict::Wait,
        ClerkSide::Failing => Verdict::Consequence,
    }
}
