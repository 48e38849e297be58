//! The registry of probe kinds: one line per kind below, from which `kind::kinds!` makes
//! the kind enums, the raw config entries and the dispatch to each kind's file. Adding a kind
//! is a new file implementing `kind::Kind` plus one line here.

pub mod kind;
pub mod state;

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, Role, Text, de_duration};
use crate::config::connection::RawConnection;
use crate::encode::{Encoder, Family};
use crate::failure::{Failure, Reason};
use crate::net::http::ConnSpec;
use crate::net::target::Target;
use crate::net::trace::{Phase, Trace};
use kind::{Deps, Kind, KindStatus, SectionCx, View, kinds, reasons_of};
use state::ProbeState;

// One line per kind: `section_key: KindType,` for `probe/section_key.rs`.
kinds! {
    dns: Dns,
    https: Https,
    jwks: Jwks,
    api_health: ApiHealth,
    clock: Clock,
    auth: Auth,
    tcp: Tcp,
}

/// One validated probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub name: String,
    pub role: Role,
    pub interval: Duration,
    pub timeout: Duration,
    pub settings: Spec,
    /// The connection of HTTP-based kinds (defaults for the others).
    pub conn: ConnSpec,
    /// The Clerk SDK whose fetching the probe reproduces, if any.
    pub sdk: Option<crate::config::connection::Sdk>,
}

impl ProbeSpec {
    pub fn kind(&self) -> KindId {
        self.settings.kind()
    }
}

impl KindId {
    /// The role of a probe of this kind whose config sets none.
    pub fn role_by_default(self) -> Role {
        self.default_role()
    }

    /// Whether a `/probe` module may be of this kind.
    pub fn module_allowed(self) -> bool {
        self.can_be_module()
    }
}

/// Links every probe to the others (the auth probe to the JWKS probes it checks against).
pub fn link(probes: &mut [ProbeSpec]) -> Result<(), String> {
    let all: Vec<(String, KindId)> = probes.iter().map(|p| (p.name.clone(), p.kind())).collect();
    for p in probes.iter_mut() {
        p.settings
            .link(&all)
            .map_err(|e| format!("probe {:?}: {e}", p.name))?;
    }
    Ok(())
}

fn exactly_one(what: &str, cx: &SectionCx<'_>, set: &[(KindId, bool)]) -> Result<(), ConfigError> {
    if set.iter().filter(|(_, s)| *s).count() == 1 {
        return Ok(());
    }
    let names: Vec<&str> = set.iter().map(|(k, _)| k.as_label()).collect();
    Err(cx.err(format!(
        "{what} must have exactly one of: {}",
        names.join(", ")
    )))
}

/// A configured probe, ready to run.
#[derive(Debug)]
pub struct Probe {
    pub spec: std::sync::Arc<ProbeSpec>,
    imp: Runner,
    deps: Deps,
    /// The same probe through another resolver, built once per resolver (see `detour`).
    detour: std::sync::Mutex<Option<std::sync::Arc<Probe>>>,
}

impl Probe {
    /// When the container's resolver fails this probe, the same probe through a resolver the
    /// DNS probes saw answer for its host, so the layers above DNS (TLS, HTTP, the JWKS) are
    /// still measured and a second fault is seen while the first is fixed. Only for direct
    /// Clerk probes whose runs spend nothing of the customer's.
    pub fn detour(&self, failure: Option<Reason>) -> Option<std::sync::Arc<Probe>> {
        let dns_failed = failure.is_some_and(|r| crate::failure::DNS_REASONS.contains(&r));
        let eligible = dns_failed
            && self.spec.role == Role::Clerk
            && self.kind_is_repeatable_http()
            && self.spec.conn.resolver == crate::net::resolve::ResolverSpec::System
            && self.spec.conn.proxy == crate::net::http::ProxyChoice::Direct;
        if !eligible {
            return None;
        }
        let host = self.spec.settings.target()?.host.clone();
        let resolver = self.deps.hints.answering(&host)?;
        let mut cached = crate::lock(&self.detour);
        if let Some(p) = cached.as_ref().filter(|p| p.spec.conn.resolver == resolver) {
            return Some(p.clone());
        }
        let mut spec = (*self.spec).clone();
        spec.conn.resolver = resolver;
        let probe = std::sync::Arc::new(Probe::new(spec, &self.deps));
        *cached = Some(probe.clone());
        Some(probe)
    }

    fn kind_is_repeatable_http(&self) -> bool {
        let k = self.spec.kind();
        k.is_http() && k.repeatable()
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub details: Option<Details>,
    pub failure: Option<Failure>,
}

impl RunResult {
    pub fn failed(failure: Failure) -> Self {
        RunResult {
            details: None,
            failure: Some(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_label_and_distinct_reasons() {
        let mut labels: Vec<&str> = KindId::ALL.iter().map(|k| k.as_label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), KindId::ALL.len());
        for k in KindId::ALL {
            let r = k.reasons();
            let mut d = r.to_vec();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), r.len(), "{k:?} repeats a reason");
            assert!(!r.is_empty(), "{k:?} has no reasons");
        }
        assert_eq!(
            KindId::Dns.reasons(),
            [
                Reason::DnsNxdomain,
                Reason::DnsNodata,
                Reason::DnsServfail,
                Reason::DnsRefused,
                Reason::DnsTimeout,
                Reason::DnsError,
                Reason::DnsUnreachable,
                Reason::LocalResourcesExhausted,
                Reason::Timeout,
            ]
        );
        assert_eq!(KindId::Https.reasons(), crate::failure::HTTP_REASONS);
    }
}
