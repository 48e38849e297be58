//! The cross-probe rules: causes that only a comparison shows (the container's resolver
//! against the others, every direct Clerk host, key sets, ages, the clock), each returning the
//! evidence it rests on (empty: inactive).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Cause, Evidence, Inputs};
use crate::config::base::Role;
use crate::failure::Reason;
use crate::net::dns::rcode_name;
use crate::net::resolve::ResolverSpec;
use crate::net::trace::Phase;
use crate::probe::auth::Auth;
use crate::probe::dns::{Dns, DnsLookup, type_label};
use crate::probe::jwks::{Jwks, group_agreement};
use crate::probe::state::ProbeState;

type Rule = fn(&[Arc<ProbeState>], &Inputs) -> Vec<Evidence>;

/// The cross-probe rules and the cause each finds.
pub const RULES: [(Cause, Rule); 10] = [
    (Cause::NetworkDown, network_down),
    (Cause::DnsEgressBlocked, dns_egress_blocked),
    (Cause::DnsResolverBroken, dns_resolver_broken),
    (Cause::DnsNameMissing, dns_name_missing),
    (Cause::EgressBlocked, egress_blocked),
    (Cause::ClockSkew, clock_skew),
    (Cause::JwksStale, jwks_stale),
    (Cause::JwksKeyMismatch, jwks_key_mismatch),
    (Cause::CertExpiring, cert_expiring),
    (Cause::AuthFailOpen, auth_fail_open),
];

pub fn evidence(p: &ProbeState, detail: impl Into<String>) -> Evidence {
    Evidence {
        probe: p.name().to_string(),
        detail: detail.into(),
    }
}

/// What one lookup got, as `system clerk.com A: SERVFAIL` or `... no reply (dns_timeout)`.
pub fn lookup_detail(l: &DnsLookup) -> String {
    let got = match (l.rcode, l.failure) {
        (Some(rc), _) => format!("{} with {} answers", rcode_name(rc), l.answers),
        (None, Some(r)) => format!("no reply ({})", r.as_label()),
        (None, None) => "no reply".into(),
    };
    format!(
        "{} {} {}: {got}",
        l.resolver.label(),
        l.name,
        type_label(l.rtype)
    )
}

fn clerk_dns(probes: &[Arc<ProbeState>]) -> impl Iterator<Item = (&ProbeState, &Vec<DnsLookup>)> {
    probes
        .iter()
        .filter(|p| p.role() == Role::Clerk)
        .filter_map(|p| Some((&**p, p.details::<Dns>()?)))
}

/// The lookups of one name, each name once, in configured order.
fn by_name(lookups: &[DnsLookup]) -> Vec<(&str, Vec<&DnsLookup>)> {
    let mut out: Vec<(&str, Vec<&DnsLookup>)> = Vec::new();
    for l in lookups {
        match out.iter_mut().find(|(n, _)| *n == l.name) {
            Some((_, v)) => v.push(l),
            None => out.push((&l.name, vec![l])),
        }
    }
    out
}

/// Every Clerk probe that ran failed because nothing could be reached.
fn network_down(probes: &[Arc<ProbeState>], _: &Inputs) -> Vec<Evidence> {
    let ran: Vec<&ProbeState> = probes
        .iter()
        .filter(|p| p.role() == Role::Clerk && p.ran())
        .map(|p| &**p)
        .collect();
    let unreachable = |p: &&ProbeState| {
        matches!(
            p.failure(),
            Some(Reason::NetworkUnreachable | Reason::DnsUnreachable)
        )
    };
    if ran.is_empty() || !ran.iter().all(unreachable) {
        return Vec::new();
    }
    ran.iter()
        .map(|p| evidence(p, p.failure().map(|r| r.as_label()).unwrap_or("")))
        .collect()
}

/// Every resolver (at least two) stays silent for a Clerk name.
fn dns_egress_blocked(probes: &[Arc<ProbeState>], _: &Inputs) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (p, lookups) in clerk_dns(probes) {
        for (name, of_name) in by_name(lookups) {
            let mut resolvers: Vec<String> = of_name.iter().map(|l| l.resolver.label()).collect();
            resolvers.dedup();
            let silent = of_name
                .iter()
                .all(|l| l.rcode.is_none() && l.failure == Some(Reason::DnsTimeout));
            if silent && resolvers.len() >= 2 {
                out.push(evidence(
                    p,
                    format!("{name}: no reply from {}", resolvers.join(", ")),
                ));
            }
        }
    }
    out
}

/// The system resolver fails for a Clerk name that another resolver answers.
fn dns_resolver_broken(probes: &[Arc<ProbeState>], _: &Inputs) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (p, lookups) in clerk_dns(probes) {
        for (name, of_name) in by_name(lookups) {
            let (system, other): (Vec<&&DnsLookup>, Vec<&&DnsLookup>) = of_name
                .iter()
                .partition(|l| l.resolver == ResolverSpec::System);
            let system_ok = system.iter().any(|l| l.failure.is_none());
            let answered: Vec<String> = other
                .iter()
                .filter(|l| l.failure.is_none())
                .map(|l| l.resolver.label())
                .collect();
            if let (false, Some(failed), false) = (system_ok, system.first(), answered.is_empty()) {
                out.push(evidence(
                    p,
                    format!(
                        "{}; {} answered {name}",
                        lookup_detail(failed),
                        answered.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

/// Every resolver that answered says NXDOMAIN for a Clerk name.
fn dns_name_missing(probes: &[Arc<ProbeState>], _: &Inputs) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (p, lookups) in clerk_dns(probes) {
        for (name, of_name) in by_name(lookups) {
            // Resolvers that did not answer say nothing about the name.
            let answered: Vec<&&DnsLookup> = of_name.iter().filter(|l| l.rcode.is_some()).collect();
            if !answered.is_empty() && answered.iter().all(|l| l.nxdomain()) {
                out.push(evidence(
                    p,
                    format!("{name}: NXDOMAIN from {} lookups", answered.len()),
                ));
            }
        }
    }
    out
}

/// Every direct Clerk HTTP probe that ran failed while connecting (so its name resolved).
fn egress_blocked(probes: &[Arc<ProbeState>], _: &Inputs) -> Vec<Evidence> {
    let direct: Vec<&ProbeState> = probes
        .iter()
        // Probes fetching as an SDK does are compared with the generic ones by attribution.
        .filter(|p| p.role() == Role::Clerk && p.kind().is_http() && !p.proxied() && p.ran())
        .filter(|p| p.spec.sdk.is_none())
        .map(|p| &**p)
        .collect();
    let in_connect = |p: &&ProbeState| {
        p.trace().is_some_and(|t| t.current == Some(Phase::Connect))
            && matches!(
                p.failure(),
                Some(Reason::ConnectRefused | Reason::ConnectTimeout)
            )
    };
    if direct.is_empty() || !direct.iter().all(in_connect) {
        return Vec::new();
    }
    direct
        .iter()
        .map(|p| {
            let host = p.spec.settings.host();
            evidence(
                p,
                format!(
                    "{host}: {}",
                    p.failure().map(|r| r.as_label()).unwrap_or("")
                ),
            )
        })
        .collect()
}

/// A Clerk server's clock is off from ours by more than the warning over the whole interval
/// its `Date` allows (a slow answer widens the interval instead of faking skew).
fn clock_skew(probes: &[Arc<ProbeState>], inputs: &Inputs) -> Vec<Evidence> {
    let skew = inputs.spec.clock_skew_warning.as_secs_f64();
    probes
        .iter()
        .filter_map(|p| Some((p, p.clock_offset()?)))
        .filter(|(_, o)| o.surely_beyond(skew))
        .map(|(p, o)| {
            let host = p.spec.settings.host();
            let d = format!(
                "local clock {:+.1} s (between {:+.1} and {:+.1}) against {host}",
                o.estimate, o.lower, o.upper
            );
            evidence(p, d)
        })
        .collect()
}

fn jwks_stale(probes: &[Arc<ProbeState>], inputs: &Inputs) -> Vec<Evidence> {
    let max_age = inputs.spec.jwks_max_age.as_secs_f64();
    probes
        .iter()
        .filter_map(|p| Some((p, p.kept::<Jwks>()?)))
        .map(|(p, k)| (p, k.age(p.created_at, inputs.now)))
        .filter(|(_, age)| *age > max_age)
        .map(|(p, age)| evidence(p, format!("{age:.0} s since the last good fetch")))
        .collect()
}

/// A pinned copy lacks a live key, grouped sources disagree, or the real token's kid is in
/// none of the fetched key sets.
fn jwks_key_mismatch(probes: &[Arc<ProbeState>], _: &Inputs) -> Vec<Evidence> {
    let mut out = Vec::new();
    for p in probes {
        if let Some(n) = p
            .kept::<Jwks>()
            .and_then(|k| k.pinned_missing)
            .filter(|n| *n > 0)
        {
            out.push(evidence(
                p,
                format!("{n} live keys missing from the pinned copy"),
            ));
        }
        if p.details::<Auth>()
            .is_some_and(|d| d.kid_known == Some(false))
        {
            out.push(evidence(
                p,
                "the session token's kid is in none of the fetched JWKS",
            ));
        }
    }
    for (group, agree) in group_agreement(probes) {
        if !agree {
            out.push(Evidence {
                probe: format!("group {group}"),
                detail: "the JWKS probes of the group publish different kids".into(),
            });
        }
    }
    out
}

/// A presented certificate, still valid, expires within the warning (an expired one fails
/// verification and is `cert_invalid`).
fn cert_expiring(probes: &[Arc<ProbeState>], inputs: &Inputs) -> Vec<Evidence> {
    let warn_before = inputs.spec.cert_expiry_warning.as_secs_f64();
    let now = unix(inputs.now);
    probes
        .iter()
        .filter_map(|p| {
            let t = p.last_tls.as_ref()?;
            let na = t.earliest_not_after.or(t.leaf_not_after)? as f64;
            (na > now && na - now < warn_before).then(|| {
                evidence(
                    p,
                    format!(
                        "{}: expires in {:.1} days",
                        p.spec.settings.host(),
                        (na - now) / 86_400.0
                    ),
                )
            })
        })
        .collect()
}

fn auth_fail_open(probes: &[Arc<ProbeState>], _: &Inputs) -> Vec<Evidence> {
    probes
        .iter()
        .filter_map(|p| Some((p, p.details::<Auth>()?)))
        .filter(|(_, d)| d.fail_open)
        .flat_map(|(p, d)| {
            d.cases
                .iter()
                .filter(|c| !c.passed && c.status.is_some_and(|s| (200..300).contains(&s)))
                .map(move |c| {
                    evidence(
                        p,
                        format!("{} answered {}", c.case.as_label(), c.status.unwrap_or(0)),
                    )
                })
        })
        .collect()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A stale JWKS whose probe's failure another cause explains is that cause's consequence.
pub fn suppress_consequences(
    found: &mut BTreeMap<Cause, Vec<Evidence>>,
    probes: &[Arc<ProbeState>],
) {
    let explained: Vec<String> = found
        .iter()
        .filter(|(c, _)| **c != Cause::JwksStale)
        .flat_map(|(_, ev)| ev.iter().map(|e| e.probe.clone()))
        .collect();
    let connectivity = [
        Cause::NetworkDown,
        Cause::DnsEgressBlocked,
        Cause::DnsResolverBroken,
        Cause::DnsNameMissing,
        Cause::EgressBlocked,
    ]
    .iter()
    .any(|c| found.contains_key(c));
    if let Some(stale) = found.get_mut(&Cause::JwksStale) {
        stale.retain(|e| {
            let failing = probes.iter().any(|p| p.name() == e.probe && !p.passing());
            !(explained.contains(&e.probe) || connectivity && failing)
        });
        if stale.is_empty() {
            found.remove(&Cause::JwksStale);
        }
    }
}
