//! The results store: every probe's state, shared by the scheduler (which records runs), the
//! auth probe (which reads the fetched key sets through `KeySource`), and the metrics,
//! diagnosis and status readers; plus the outcome of the last configuration load.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::jwk::JwkInfo;
use crate::lock;
use crate::net::resolve::ResolverSpec;
use crate::probe::ProbeSpec;
use crate::probe::dns::{Dns, ResolverHints};
use crate::probe::jwks::{Jwks, KeySource};
use crate::probe::state::ProbeState;

/// The outcome of the last configuration load, for `authwatch_config_*`.
#[derive(Debug, Clone, Copy)]
pub struct ReloadStatus {
    pub successful: bool,
    pub last_success: SystemTime,
}

/// Shared state of the daemon.
#[derive(Debug)]
pub struct Store {
    /// Each state is swapped whole on every run (copy-on-write), so a snapshot is a list of
    /// `Arc`s rather than a deep copy of every probe.
    probes: RwLock<BTreeMap<String, Arc<Mutex<Arc<ProbeState>>>>>,
    pub reload: Mutex<ReloadStatus>,
    pub started_at: SystemTime,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let now = SystemTime::now();
        Store {
            probes: RwLock::new(BTreeMap::new()),
            reload: Mutex::new(ReloadStatus {
                successful: true,
                last_success: now,
            }),
            started_at: now,
        }
    }

    /// Makes the store hold exactly these probes. State of a probe whose settings are
    /// unchanged is kept; others start afresh, and removed probes disappear.
    pub fn set_probes(&self, specs: &[(Arc<ProbeSpec>, bool)]) -> Vec<Arc<Mutex<Arc<ProbeState>>>> {
        let mut map = match self.probes.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next = BTreeMap::new();
        let mut out = Vec::new();
        for (spec, keep) in specs {
            let slot = match map.remove(&spec.name) {
                Some(existing) if *keep => existing,
                _ => Arc::new(Mutex::new(Arc::new(ProbeState::shared(spec.clone())))),
            };
            out.push(slot.clone());
            next.insert(spec.name.clone(), slot);
        }
        *map = next;
        out
    }

    /// Every probe's latest state, in name order: shared, not copied.
    pub fn snapshot(&self) -> Vec<Arc<ProbeState>> {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.values().map(|s| lock(s).clone()).collect()
    }

    /// True once every probe has finished at least one run.
    pub fn all_ran(&self) -> bool {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.values().all(|s| lock(s).runs > 0)
    }
}

impl ResolverHints for Store {
    fn answering(&self, host: &str) -> Option<ResolverSpec> {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.values().find_map(|s| {
            let s = lock(s);
            s.details::<Dns>()?
                .iter()
                .find(|l| {
                    l.name == host && l.resolver != ResolverSpec::System && l.failure.is_none()
                })
                .map(|l| l.resolver.clone())
        })
    }
}

impl KeySource for Store {
    fn fetched_at(&self, probes: &[String]) -> Option<SystemTime> {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let times: Option<Vec<SystemTime>> = probes
            .iter()
            .map(|n| {
                map.get(n)
                    .and_then(|s| lock(s).kept::<Jwks>()?.last_success)
            })
            .collect();
        times.and_then(|t| t.into_iter().min())
    }

    fn passing(&self, probes: &[String]) -> bool {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        !probes.is_empty()
            && probes
                .iter()
                .all(|n| map.get(n).is_some_and(|s| lock(s).passing()))
    }

    fn keys(&self, probes: &[String]) -> Vec<JwkInfo> {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        probes
            .iter()
            .filter_map(|n| map.get(n))
            .flat_map(|s| {
                lock(s)
                    .kept::<Jwks>()
                    .map(|k| k.keys.clone())
                    .unwrap_or_default()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::config::Config;
    use crate::failure::{Failure, Reason};
    use crate::jwk::JwkInfo;
    use crate::net::tls::TlsInfo;
    use crate::net::trace::TraceData;
    use crate::probe::jwks::{Jwks, JwksFetch};
    use crate::probe::state::ProbeState;
    use crate::probe::{Details, RunResult};

    fn state(yaml: &str) -> ProbeState {
        ProbeState::new(&Config::parse(yaml, "t", &|_| None).unwrap().probes[0])
    }

    fn key(kid: &str) -> JwkInfo {
        JwkInfo {
            kid: kid.into(),
            kty: "RSA".into(),
            alg: "RS256".into(),
            use_: "sig".into(),
            bits: 2048,
            material: 1,
            rsa: None,
        }
    }

    #[test]
    fn chain_expiry_survives_a_run_that_failed_before_tls() {
        let mut p = state("probes: [{name: a, https: {url: \"https://x.test/\"}}]");
        let tls = TlsInfo {
            leaf_not_after: Some(42),
            ..TlsInfo::default()
        };
        let with_tls = TraceData {
            tls: Some(tls.clone()),
            ..TraceData::default()
        };
        p.record(
            RunResult {
                details: None,
                failure: None,
            },
            with_tls,
            Duration::ZERO,
            SystemTime::now(),
        );
        let failed = RunResult::failed(Failure::new(Reason::DnsTimeout, "x"));
        let changed = p.record(
            failed,
            TraceData::default(),
            Duration::ZERO,
            SystemTime::now(),
        );
        assert_eq!(p.last_tls, Some(tls));
        assert_eq!(
            changed,
            Some(None),
            "a change from healthy is reported once"
        );
        assert_eq!(p.failures.get(&Reason::DnsTimeout), Some(&1));
    }

    #[test]
    fn jwks_rotation_is_counted_on_change_only() {
        let mut p = state("probes: [{name: j, jwks: {url: \"https://x.test/jwks\"}}]");
        let fetch = |kid: &str| RunResult {
            details: Some(Details::Jwks(JwksFetch {
                keys: vec![key(kid)],
                pinned_missing: None,
            })),
            failure: None,
        };
        for kid in ["a", "a", "b", "b"] {
            p.record(
                fetch(kid),
                TraceData::default(),
                Duration::ZERO,
                SystemTime::now(),
            );
        }
        assert_eq!(p.kept::<Jwks>().unwrap().rotations, 1);
        let failed = RunResult::failed(Failure::new(Reason::HttpStatus, "x"));
        p.record(
            failed,
            TraceData::default(),
            Duration::ZERO,
            SystemTime::now(),
        );
        assert_eq!(
            p.kept::<Jwks>().unwrap().keys,
            vec![key("b")],
            "the last good key set is kept"
        );
    }
}
