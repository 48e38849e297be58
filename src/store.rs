//! The results store: the latest run of every probe plus what must survive across runs
//! (counters, duration histogram, JWKS freshness and rotation history). Probes never touch
//! it directly; the scheduler records each run and the metrics, diagnosis and status read it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{ProbeSettings, ProbeSpec, ProxyChoice, Role};
use crate::failure::{Kind, Reason};
use crate::lock;
use crate::outcome::{Details, JwkInfo, RunResult, TraceData};

/// Upper bounds of the run-duration histogram, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; DURATION_BUCKETS.len()];
        }
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// The latest completed run.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub failure: Option<Reason>,
    pub message: String,
    pub duration: Duration,
    pub finished_at: SystemTime,
    pub trace: TraceData,
    pub details: Details,
}

/// JWKS freshness, kept across runs and across failures.
#[derive(Debug, Clone, Default)]
pub struct JwksHistory {
    /// The key set of the last successful fetch: what a verifier would have cached.
    pub keys: Vec<JwkInfo>,
    pub last_success: Option<SystemTime>,
    pub last_change: Option<SystemTime>,
    pub rotations: u64,
    pub pinned_missing: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ProbeState {
    pub name: String,
    pub kind: Kind,
    pub role: Role,
    /// Whether the probe goes through an HTTP proxy (then connect failures are the proxy's).
    pub proxied: bool,
    pub created_at: SystemTime,
    pub interval: Duration,
    pub jwks_group: Option<String>,
    pub jwks_max_keys: usize,
    pub runs: u64,
    pub failures: BTreeMap<Reason, u64>,
    pub durations: Histogram,
    pub last: Option<LastRun>,
    pub last_success: Option<SystemTime>,
    pub jwks: JwksHistory,
    /// The chain seen by the last run that got one: a run failing before TLS says nothing
    /// about the certificate, so its expiry stays known (and alerts on it do not flap).
    pub last_tls: Option<crate::net::tls::TlsInfo>,
}

impl ProbeState {
    /// What the latest run of an auth probe saw.
    pub fn auth_details(&self) -> Option<&crate::outcome::AuthDetails> {
        match self.last.as_ref().map(|l| &l.details) {
            Some(Details::Auth(d)) => Some(d),
            _ => None,
        }
    }

    pub fn new(spec: &ProbeSpec) -> Self {
        let (group, max_keys) = match &spec.settings {
            ProbeSettings::Jwks(j) => (j.group.clone(), j.max_keys),
            _ => (None, 0),
        };
        ProbeState {
            name: spec.name.clone(),
            kind: spec.kind(),
            role: spec.role,
            proxied: matches!(spec.conn.proxy, ProxyChoice::Proxy(_)),
            created_at: SystemTime::now(),
            interval: spec.interval,
            jwks_group: group,
            jwks_max_keys: max_keys,
            runs: 0,
            failures: BTreeMap::new(),
            durations: Histogram::default(),
            last: None,
            last_success: None,
            jwks: JwksHistory::default(),
            last_tls: None,
        }
    }

    /// Folds a finished run into the state. Returns the previous failure state when it
    /// changed (`Some(None)` = was healthy), so the caller can log once per transition.
    pub fn record(
        &mut self,
        result: RunResult,
        trace: TraceData,
        duration: Duration,
        now: SystemTime,
    ) -> Option<Option<Reason>> {
        let previous = self.last.as_ref().map(|l| l.failure);
        let failure = result.failure.as_ref().map(|f| f.reason);
        self.runs += 1;
        if let Some(r) = failure {
            *self.failures.entry(r).or_default() += 1;
        } else {
            self.last_success = Some(now);
        }
        self.durations.observe(duration.as_secs_f64());
        if trace.tls.is_some() {
            self.last_tls = trace.tls.clone();
        }
        if let (Details::Jwks(fetch), None) = (&result.details, failure) {
            let h = &mut self.jwks;
            if h.last_success.is_none() {
                h.last_change = Some(now);
            } else if h.keys != fetch.keys {
                h.last_change = Some(now);
                h.rotations += 1;
            }
            h.keys = fetch.keys.clone();
            h.last_success = Some(now);
            h.pinned_missing = fetch.pinned_missing;
        }
        self.last = Some(LastRun {
            failure,
            message: result.failure.map(|f| f.message).unwrap_or_default(),
            duration,
            finished_at: now,
            trace,
            details: result.details,
        });
        match previous {
            Some(p) if p == failure => None,
            Some(p) => Some(p),
            None => failure.is_some().then_some(None),
        }
    }
}

/// Whether the JWKS probes of each group (with at least two members that have fetched keys)
/// publish the same kids.
pub fn jwks_group_agreement(probes: &[ProbeState]) -> BTreeMap<String, bool> {
    let mut groups: BTreeMap<&str, Vec<Vec<&str>>> = BTreeMap::new();
    for p in probes.iter().filter(|p| p.jwks.last_success.is_some()) {
        if let Some(g) = &p.jwks_group {
            let mut kids: Vec<&str> = p.jwks.keys.iter().map(|k| k.kid.as_str()).collect();
            kids.sort_unstable();
            groups.entry(g.as_str()).or_default().push(kids);
        }
    }
    groups
        .into_iter()
        .filter(|(_, sets)| sets.len() >= 2)
        .map(|(g, sets)| (g.to_string(), sets.windows(2).all(|w| w[0] == w[1])))
        .collect()
}

/// The outcome of the last configuration load, for `authwatch_config_*`.
#[derive(Debug, Clone, Copy)]
pub struct ReloadStatus {
    pub successful: bool,
    pub last_success: SystemTime,
}

/// Shared state of the daemon.
#[derive(Debug)]
pub struct Store {
    probes: RwLock<BTreeMap<String, Arc<Mutex<ProbeState>>>>,
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
    pub fn set_probes(&self, specs: &[(ProbeSpec, bool)]) -> Vec<Arc<Mutex<ProbeState>>> {
        let mut map = match self.probes.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next = BTreeMap::new();
        let mut out = Vec::new();
        for (spec, keep) in specs {
            let slot = match map.remove(&spec.name) {
                Some(existing) if *keep => existing,
                _ => Arc::new(Mutex::new(ProbeState::new(spec))),
            };
            out.push(slot.clone());
            next.insert(spec.name.clone(), slot);
        }
        *map = next;
        out
    }

    /// A consistent copy of every probe's state, in name order.
    pub fn snapshot(&self) -> Vec<ProbeState> {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.values().map(|s| lock(s).clone()).collect()
    }

    /// The keys of the last good fetch of each named JWKS probe.
    pub fn jwks_keys(&self, names: &[String]) -> Vec<crate::outcome::JwkInfo> {
        let map = match self.probes.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        names
            .iter()
            .filter_map(|n| map.get(n))
            .flat_map(|s| lock(s).jwks.keys.clone())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::net::tls::TlsInfo;
    use crate::outcome::{Failure, JwkInfo, JwksFetch};

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
            RunResult::ok(Details::None),
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
        let fetch = |kid: &str| {
            RunResult::ok(Details::Jwks(JwksFetch {
                keys: vec![key(kid)],
                pinned_missing: None,
            }))
        };
        for kid in ["a", "a", "b", "b"] {
            p.record(
                fetch(kid),
                TraceData::default(),
                Duration::ZERO,
                SystemTime::now(),
            );
        }
        assert_eq!(p.jwks.rotations, 1);
        let failed = RunResult::failed(Failure::new(Reason::HttpStatus, "x"));
        p.record(
            failed,
            TraceData::default(),
            Duration::ZERO,
            SystemTime::now(),
        );
        assert_eq!(p.jwks.keys, vec![key("b")], "the last good key set is kept");
    }
}
