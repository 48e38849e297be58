//! What one probe keeps: its latest run, its counters and duration histogram, the last TLS
//! chain it saw, and its kind's own state, with the accessors every reader uses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::base::Role;
use crate::failure::Reason;
use crate::net::http::{ClockOffset, ProxyChoice};
use crate::net::resolve::ResolverSpec;
use crate::net::tls::TlsInfo;
use crate::net::trace::TraceData;
use crate::probe::kind::View;
use crate::probe::{Details, Kept, KindId, Member, ProbeSpec, RunResult};

/// Upper bounds of the run-duration histogram, in seconds: four, as every series is paid for
/// on every probe (with `+Inf`, sum and count a histogram is seven series). They split a
/// same-region answer (≤ 100 ms), a typical one to Clerk from afar (≤ 250 ms), a slow one
/// (≤ 1 s) and one near an SDK's patience (≤ 5 s); above that, `+Inf` up to the deadline.
/// The latest run's phases are in `authwatch_probe_phase_duration_seconds` at full precision.
pub const DURATION_BUCKETS: [f64; 4] = [0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub counts: [u64; DURATION_BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Runs kept per probe for the status page's history strip.
pub const HISTORY: usize = 30;

/// One past run, small: thousands of probes each keep `HISTORY` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastRun {
    /// When it finished, Unix seconds.
    pub at: u32,
    /// How long it took, in milliseconds (capped at 65 s).
    pub millis: u16,
    pub ok: bool,
}

/// The latest completed run.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub failure: Option<Reason>,
    pub message: String,
    pub duration: Duration,
    pub finished_at: SystemTime,
    pub trace: TraceData,
    pub details: Option<Details>,
}

#[derive(Debug, Clone)]
pub struct ProbeState {
    pub spec: Arc<ProbeSpec>,
    /// When the probe was configured (a JWKS never fetched is as stale as this is old).
    pub created_at: SystemTime,
    pub runs: u64,
    pub failures: BTreeMap<Reason, u64>,
    pub durations: Histogram,
    pub last: Option<LastRun>,
    pub last_success: Option<SystemTime>,
    /// The chain seen by the last run that got one: a run failing before TLS says nothing
    /// about the certificate, so its expiry stays known (and alerts on it do not flap).
    pub last_tls: Option<TlsInfo>,
    /// When the run that began the current streak of failures started (`None` while
    /// passing): results of other probes taken after it saw the same fault.
    pub failing_since: Option<SystemTime>,
    /// The latest run through another resolver while the container's fails (cleared when the
    /// probe passes again).
    /// Boxed: most probes never take a detour, and each would otherwise carry its room.
    pub detour: Option<Box<Detour>>,
    pub kept: Kept,
    /// The latest runs, oldest first, at most `HISTORY`.
    pub history: std::collections::VecDeque<PastRun>,
}

/// A run of the probe through a resolver that answers, while its own resolver fails.
#[derive(Debug, Clone)]
pub struct Detour {
    pub resolver: ResolverSpec,
    pub failure: Option<Reason>,
    pub message: String,
    pub finished_at: SystemTime,
    pub trace: TraceData,
}

impl ProbeState {
    pub fn new(spec: &ProbeSpec) -> Self {
        Self::shared(Arc::new(spec.clone()))
    }

    /// A fresh state sharing `spec` with the probe's runner.
    pub fn shared(spec: Arc<ProbeSpec>) -> Self {
        ProbeState {
            kept: Kept::new(spec.kind()),
            spec,
            created_at: SystemTime::now(),
            runs: 0,
            failures: BTreeMap::new(),
            durations: Histogram::default(),
            last: None,
            last_success: None,
            last_tls: None,
            failing_since: None,
            detour: None,
            history: std::collections::VecDeque::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn kind(&self) -> KindId {
        self.spec.kind()
    }

    pub fn role(&self) -> Role {
        self.spec.role
    }

    /// Whether the probe goes through an HTTP proxy (then connect failures are the proxy's).
    pub fn proxied(&self) -> bool {
        matches!(self.spec.conn.proxy, ProxyChoice::Proxy(_))
    }

    /// The `probe` and `kind` labels of its series.
    pub fn labels(&self) -> [(&'static str, &str); 2] {
        [
            ("probe", self.spec.name.as_str()),
            ("kind", self.kind().as_label()),
        ]
    }

    /// Whether the probe has finished a run.
    pub fn ran(&self) -> bool {
        self.last.is_some()
    }

    /// The reason of the latest run, if it failed.
    pub fn failure(&self) -> Option<Reason> {
        self.last.as_ref().and_then(|l| l.failure)
    }

    /// The latest run finished and succeeded.
    pub fn passing(&self) -> bool {
        self.ran() && self.failure().is_none()
    }

    /// The trace of the latest run.
    pub fn trace(&self) -> Option<&TraceData> {
        self.last.as_ref().map(|l| &l.trace)
    }

    /// The clock offset the latest run measured, from a Clerk server (the reference clock:
    /// the API's own servers and others are not).
    pub fn clock_offset(&self) -> Option<ClockOffset> {
        self.trace()
            .and_then(|t| t.clock_offset)
            .filter(|_| self.role() == Role::Clerk)
    }

    /// What the latest run of a kind-`K` probe found.
    pub fn details<K: Member>(&self) -> Option<&K::Details> {
        self.last
            .as_ref()
            .and_then(|l| l.details.as_ref())
            .and_then(K::details_of)
    }

    /// What a kind-`K` probe keeps across runs.
    pub fn kept<K: Member>(&self) -> Option<&K::State> {
        K::kept_of(&self.kept)
    }

    /// The probe as a kind-`K` renderer sees it, if it is of kind `K`.
    pub fn view<K: Member>(&self) -> Option<View<'_, K>> {
        Some(View {
            probe: self,
            spec: K::spec_of(&self.spec.settings)?,
            kept: K::kept_of(&self.kept)?,
            details: self.details::<K>(),
        })
    }

    /// Keeps a run made through another resolver. Its chain counts as the last one seen (it
    /// is the same server's); nothing else of the probe's own state changes.
    pub fn record_detour(
        &mut self,
        resolver: ResolverSpec,
        result: RunResult,
        trace: TraceData,
        now: SystemTime,
    ) {
        if trace.tls.is_some() {
            self.last_tls = trace.tls.clone();
        }
        self.detour = Some(Box::new(Detour {
            resolver,
            failure: result.failure.as_ref().map(|f| f.reason),
            message: result.failure.map(|f| f.message).unwrap_or_default(),
            finished_at: now,
            trace,
        }));
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
            if self.failing_since.is_none() {
                self.failing_since = Some(now.checked_sub(duration).unwrap_or(now));
            }
        } else {
            self.last_success = Some(now);
            self.failing_since = None;
            self.detour = None;
        }
        self.durations.observe(duration.as_secs_f64());
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        let at = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.history.push_back(PastRun {
            at: u32::try_from(at).unwrap_or(u32::MAX),
            millis: u16::try_from(duration.as_millis()).unwrap_or(u16::MAX),
            ok: failure.is_none(),
        });
        // A detour stands only while this probe's own resolver is what fails.
        if !failure.is_some_and(|r| crate::failure::DNS_REASONS.contains(&r)) {
            self.detour = None;
        }
        if trace.tls.is_some() {
            self.last_tls = trace.tls.clone();
        }
        self.kept
            .record(result.details.as_ref(), failure.is_none(), now);
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
