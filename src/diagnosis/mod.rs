//! Diagnosis: pure functions from the latest probe results to the causes of an auth outage,
//! each with the evidence behind it and the fix an operator should try first.
//!
//! Two passes. Cross-probe rules (`rules.rs`) read comparisons no single probe shows: the
//! container's resolver against the others, every direct Clerk host, key sets, ages, the
//! clock. Then every auth-critical probe still failing is attributed by where its path broke
//! (`attribute.rs`: resolver, name, TCP, proxy, TLS trust, certificate, HTTP status, content,
//! the API's answers), so each failure is named; what is left is contradictory evidence and
//! listed as such, and a comparison resting on results from different times waits.

mod attribute;
mod cause;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

pub use cause::Cause;

use crate::config::base::Role;
use crate::config::global::DiagnosisSpec;
use crate::probe::state::ProbeState;
use crate::probe::{KindId, ProbeSpec};

/// What the diagnosis needs besides the probes.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub spec: &'a DiagnosisSpec,
    pub trust_store_certificates: usize,
    pub now: SystemTime,
}

/// One fact behind a cause: the probe it comes from and what it showed (derived from typed
/// results, never error text, so it can be a label).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Evidence {
    pub probe: String,
    pub detail: String,
}

/// At most this many facts are kept per cause: enough to act on, bounded for labels.
pub const MAX_EVIDENCE: usize = 5;

/// What of the user's setup is watched at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// A JWKS probe that counts for auth: the user's Clerk instance.
    pub clerk_instance: bool,
    /// A probe with role `api`: the API's own view or behaviour.
    pub api: bool,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnosis {
    pub causes: BTreeSet<Cause>,
    /// Why each active cause is active.
    pub evidence: BTreeMap<Cause, Vec<Evidence>>,
    /// When each active cause became active (kept across evaluations by the caller).
    pub since: BTreeMap<Cause, SystemTime>,
    /// Failures no cause explains: contradictory evidence.
    pub residue: Vec<Evidence>,
    /// API probes failing because the Clerk side fails too: what explains the Clerk probes
    /// explains them (the status page says so on their rows).
    pub consequences: Vec<String>,
    /// Auth-critical probes whose verdict waits for a run (the first, or one fresh enough to
    /// compare with).
    pub pending: Vec<String>,
    pub coverage: Coverage,
    /// Every auth-critical probe succeeded, the Clerk instance is watched, and no cause but a
    /// non-blocking warning is active.
    pub auth_healthy: bool,
    /// Some probe has finished a run (before that, nothing is known).
    pub ran_any: bool,
}

impl Diagnosis {
    /// Auth is unhealthy, no cause explains it, and nothing is waiting for a run.
    pub fn unexplained(&self) -> bool {
        !self.auth_healthy && self.causes.is_empty() && self.ran_any && self.pending.is_empty()
    }

    /// Keeps the since-times of causes that stay active; new ones start now.
    pub fn carry_since(&mut self, previous: &Diagnosis, now: SystemTime) {
        self.since = self
            .causes
            .iter()
            .map(|c| (*c, previous.since.get(c).copied().unwrap_or(now)))
            .collect();
    }
}

/// Whether a cause's evidence names probes whose failure it explains (a stale JWKS, an
/// expiring certificate, a clock offset or a coverage gap are facts beside a failure, not its
/// explanation).
fn explains_failures(c: Cause) -> bool {
    !matches!(
        c,
        Cause::JwksStale | Cause::CertExpiring | Cause::ClockSkew | Cause::CoverageMissing
    )
}

/// Causes that do not make auth unhealthy on their own.
const NON_BLOCKING: [Cause; 3] = [
    Cause::CertExpiring,
    Cause::CoverageMissing,
    Cause::SystemTrustUnused,
];

/// The clock offset estimate furthest from zero that a Clerk probe measured in its latest run.
pub fn worst_clock_offset(probes: &[Arc<ProbeState>]) -> Option<f64> {
    probes
        .iter()
        .filter_map(|p| p.clock_offset())
        .map(|o| o.estimate)
        .fold(None, |acc: Option<f64>, o| match acc {
            Some(a) if a.abs() >= o.abs() => Some(a),
            _ => Some(o),
        })
}

/// What a configuration watches of the user's setup.
pub fn coverage_of<'a>(probes: impl Iterator<Item = &'a ProbeSpec> + Clone) -> Coverage {
    Coverage {
        clerk_instance: probes
            .clone()
            .any(|p| p.kind() == KindId::Jwks && p.role != Role::Other),
        api: probes.clone().any(|p| p.role == Role::Api),
    }
}

fn coverage(probes: &[Arc<ProbeState>]) -> Coverage {
    coverage_of(probes.iter().map(|p| p.spec.as_ref()))
}

/// The coverage gaps, as evidence (also printed by `check-config` and logged at start).
pub fn coverage_evidence(c: Coverage) -> Vec<Evidence> {
    let mut out = Vec::new();
    if !c.clerk_instance {
        out.push(Evidence {
            probe: "config".into(),
            detail: "no jwks probe of your Clerk instance (set clerk.publishable_key)".into(),
        });
    }
    if !c.api {
        out.push(Evidence {
            probe: "config".into(),
            detail: "no probe with role api (set clerk.app_api_url or add an auth probe)".into(),
        });
    }
    out
}

/// The longest detail kept: a label value, and one line on the status page.
const MAX_DETAIL: usize = 160;

/// Adds a fact to a cause, bounded, without repeating one.
fn note(found: &mut BTreeMap<Cause, Vec<Evidence>>, cause: Cause, mut e: Evidence) {
    if let Some((i, _)) = e.detail.char_indices().nth(MAX_DETAIL) {
        e.detail.truncate(i);
    }
    let list = found.entry(cause).or_default();
    if list.len() < MAX_EVIDENCE && !list.contains(&e) {
        list.push(e);
    }
}

/// Pure: the same inputs always give the same verdict (`since` is left to the caller).
pub fn diagnose(probes: &[Arc<ProbeState>], inputs: &Inputs) -> Diagnosis {
    let mut found: BTreeMap<Cause, Vec<Evidence>> = BTreeMap::new();
    for (cause, rule) in rules::RULES {
        for e in rule(probes, inputs) {
            note(&mut found, cause, e);
        }
    }
    let cov = coverage(probes);
    for e in coverage_evidence(cov) {
        note(&mut found, Cause::CoverageMissing, e);
    }
    let mut residue = Vec::new();
    let mut pending = Vec::new();
    let mut consequences = Vec::new();
    let critical = probes.iter().filter(|p| p.role() != Role::Other);
    for p in critical {
        if !p.ran() {
            pending.push(p.name().to_string());
            continue;
        }
        let explained = found
            .iter()
            .filter(|(c, _)| explains_failures(**c))
            .flat_map(|(_, ev)| ev.iter())
            .any(|e| e.probe == p.name());
        if p.passing() || explained {
            continue;
        }
        match attribute::attribute(p, probes, &found, inputs) {
            attribute::Verdict::Cause(c, detail) => note(
                &mut found,
                c,
                Evidence {
                    probe: p.name().to_string(),
                    detail,
                },
            ),
            attribute::Verdict::Consequence if consequences.len() < MAX_EVIDENCE => {
                consequences.push(p.name().to_string())
            }
            attribute::Verdict::Consequence => {}
            attribute::Verdict::Wait => pending.push(p.name().to_string()),
            // Bounded like every cause's evidence: the log line and labels carry them all.
            attribute::Verdict::Contradiction(detail) if residue.len() < MAX_EVIDENCE => residue
                .push(Evidence {
                    probe: p.name().to_string(),
                    detail,
                }),
            attribute::Verdict::Contradiction(_) => {}
        }
    }
    for p in probes.iter().filter(|p| p.role() == Role::Clerk) {
        if let Some((c, detail)) = attribute::detour(p, inputs) {
            let probe = p.name().to_string();
            note(&mut found, c, Evidence { probe, detail });
        }
    }
    rules::suppress_consequences(&mut found, probes);
    let causes: BTreeSet<Cause> = found.keys().copied().collect();
    let ran_any = probes.iter().any(|p| p.ran());
    // A failing probe whose failure only a non-blocking cause explains (a system store the
    // API's SDK never reads) does not make auth unhealthy.
    let excused = |p: &ProbeState| {
        let named: Vec<Cause> = found
            .iter()
            .filter(|(_, ev)| ev.iter().any(|e| e.probe == p.name()))
            .map(|(c, _)| *c)
            .collect();
        !named.is_empty() && named.iter().all(|c| NON_BLOCKING.contains(c))
    };
    let critical_ok = probes
        .iter()
        .filter(|p| p.role() != Role::Other)
        .all(|p| p.passing() || excused(p));
    let auth_healthy = ran_any
        && critical_ok
        && cov.clerk_instance
        && causes.iter().all(|c| NON_BLOCKING.contains(c));
    Diagnosis {
        causes,
        evidence: found,
        since: BTreeMap::new(),
        residue,
        pending,
        consequences,
        coverage: cov,
        auth_healthy,
        ran_any,
    }
}
