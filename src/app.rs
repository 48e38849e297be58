//! The running daemon: the configuration in force, the probes' tasks, the diagnosis loop and
//! the shared state.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::config::global::DiagnosisSpec;
use crate::diagnosis::{self, Diagnosis};
use crate::lock;
use crate::metrics::{self, Globals};
use crate::net::resolve::SystemFiles;
use crate::net::tls::TrustCache;
use crate::probe::kind::Deps;
use crate::probe::{Probe, ProbeSpec};
use crate::scheduler;
use crate::store::Store;

/// The configuration in force and the task of each probe.
#[derive(Debug, Default)]
struct Running {
    /// Without its probes: they are in `specs`, shared with the tasks, so that thousands of
    /// probe settings are held once (and `/probe` takes the modules without copying them).
    config: Option<Arc<Config>>,
    specs: HashMap<String, Arc<ProbeSpec>>,
    tasks: BTreeMap<String, JoinHandle<()>>,
}

/// How often the diagnosis is re-evaluated (and its transitions logged).
const DIAGNOSIS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct App {
    pub store: Arc<Store>,
    /// The file the configuration came from (`None`: the embedded default), for reloads.
    config_path: Option<PathBuf>,
    trust: Mutex<Arc<TrustCache>>,
    running: Mutex<Running>,
    diagnosis_spec: Mutex<DiagnosisSpec>,
    diagnosis: Mutex<Diagnosis>,
    diagnosis_task: Mutex<Option<JoinHandle<()>>>,
    /// What the web server's limits turned away, for `/metrics`.
    pub web: crate::limits::WebCounters,
    probe_rt: scheduler::ProbeRuntime,
}

impl App {
    /// Starts every probe of `config` and the diagnosis loop.
    pub fn start(config: Config, config_path: Option<PathBuf>) -> Arc<App> {
        let app = Arc::new(App {
            store: Arc::new(Store::new()),
            config_path,
            trust: Mutex::new(Arc::new(TrustCache::new(
                config.global.trust_store_file.clone(),
                config.global.reference_trust_store_file.clone(),
            ))),
            running: Mutex::new(Running::default()),
            diagnosis_spec: Mutex::new(config.diagnosis.clone()),
            diagnosis: Mutex::new(Diagnosis::default()),
            diagnosis_task: Mutex::new(None),
            web: Default::default(),
            probe_rt: scheduler::ProbeRuntime::start(),
        });
        app.apply(config);
        let weak = Arc::downgrade(&app);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(DIAGNOSIS_EVERY);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(app) => app.evaluate(),
                    None => return,
                }
            }
        });
        *lock(&app.diagnosis_task) = Some(task);
        app
    }

    /// Reloads the configuration file. A configuration that fails validation changes
    /// nothing but `authwatch_config_last_reload_successful`; the reason is returned and logged.
    pub fn reload(&self) -> Result<usize, String> {
        match Config::load(self.config_path.as_deref()) {
            Ok(config) => {
                let (source, probes) = (config.source.clone(), config.probes.len());
                self.apply(config);
                tracing::info!(config = %source, probes, "configuration reloaded");
                Ok(probes)
            }
            Err(e) => {
                lock(&self.store.reload).successful = false;
                tracing::error!(error = %e, "configuration reload failed; the running configuration stays");
                Err(e.to_string())
            }
        }
    }

    /// Makes `config` the running configuration. Probes whose settings did not change keep
    /// their state (counters, JWKS freshness and rotations) and, when the global settings did
    /// not change either, their running task; removed probes and their series disappear.
    fn apply(&self, mut config: Config) {
        let mut running = lock(&self.running);
        let probes = std::mem::take(&mut config.probes);
        let old_specs = std::mem::take(&mut running.specs);
        let old = running.config.take();
        let trust_same = old.as_ref().is_some_and(|o| {
            o.global.trust_store_file == config.global.trust_store_file
                && o.global.reference_trust_store_file == config.global.reference_trust_store_file
        });
        if !trust_same && old.is_some() {
            *lock(&self.trust) = Arc::new(TrustCache::new(
                config.global.trust_store_file.clone(),
                config.global.reference_trust_store_file.clone(),
            ));
        }
        let global_same = trust_same && old.as_ref().is_some_and(|o| o.global == config.global);
        let deps = self.deps_for(&config);
        // An unchanged probe keeps the spec its task already shares.
        let specs: Vec<(Arc<ProbeSpec>, bool)> = probes
            .into_iter()
            .map(|p| match old_specs.get(&p.name) {
                Some(o) if **o == p => (o.clone(), true),
                _ => (Arc::new(p), false),
            })
            .collect();
        drop(old_specs);
        let states = self.store.set_probes(&specs);
        let mut previous = std::mem::take(&mut running.tasks);
        let placed: Vec<(&str, std::time::Duration)> = specs
            .iter()
            .map(|(p, _)| (p.name.as_str(), p.interval))
            .collect();
        let slots = scheduler::slots(&placed, scheduler::host_seed());
        for (((spec, keep), state), slot) in specs.into_iter().zip(states).zip(slots) {
            let name = spec.name.clone();
            running.specs.insert(name.clone(), spec.clone());
            let task = match previous.remove(&name) {
                Some(task) if keep && global_same => task,
                other => {
                    if let Some(t) = other {
                        t.abort();
                    }
                    let probe = Arc::new(Probe::new(spec, &deps));
                    scheduler::spawn(&self.probe_rt, probe, state, slot, config.global.jitter)
                }
            };
            running.tasks.insert(name, task);
        }
        for (_, t) in previous {
            t.abort();
        }
        *lock(&self.diagnosis_spec) = config.diagnosis.clone();
        running.config = Some(Arc::new(config));
        let mut reload = lock(&self.store.reload);
        reload.successful = true;
        reload.last_success = SystemTime::now();
    }

    /// Re-runs the diagnosis on the latest results and logs what changed, once per change.
    pub fn evaluate(&self) {
        let probes = self.store.snapshot();
        let spec = lock(&self.diagnosis_spec).clone();
        let inputs = diagnosis::Inputs {
            spec: &spec,
            trust_store_certificates: lock(&self.trust).get().count,
            now: SystemTime::now(),
        };
        let mut next = diagnosis::diagnose(&probes, &inputs);
        let mut current = lock(&self.diagnosis);
        next.carry_since(&current, inputs.now);
        for cause in next.causes.difference(&current.causes) {
            let evidence: Vec<String> = next
                .evidence
                .get(cause)
                .into_iter()
                .flatten()
                .map(|e| format!("{}: {}", e.probe, e.detail))
                .collect();
            tracing::warn!(
                cause = cause.as_label(),
                severity = cause.severity(),
                summary = cause.summary(),
                evidence = %evidence.join("; "),
                remediation = cause.remediation(),
                "diagnosis: cause active"
            );
        }
        for cause in current.causes.difference(&next.causes) {
            tracing::info!(cause = cause.as_label(), "diagnosis: cause cleared");
        }
        if next.auth_healthy != current.auth_healthy {
            if next.auth_healthy {
                tracing::info!("auth healthy");
            } else if next.unexplained() {
                let residue: Vec<String> = next
                    .residue
                    .iter()
                    .map(|e| format!("{}: {}", e.probe, e.detail))
                    .collect();
                tracing::warn!(
                    evidence = %residue.join("; "),
                    "auth unhealthy, no known cause matches (see the failing probes)"
                );
            } else {
                tracing::warn!("auth unhealthy");
            }
        }
        *current = next;
    }

    /// Renders `/metrics` into `e` (which may stream it out as it goes).
    pub fn render_metrics_into(&self, e: &mut crate::encode::Encoder) {
        let probes = self.store.snapshot();
        let reload = *lock(&self.store.reload);
        let trust = lock(&self.trust).get();
        let diagnosis = lock(&self.diagnosis).clone();
        let spec = lock(&self.diagnosis_spec).clone();
        let globals = Globals {
            trust_store_certificates: trust.count,
            reload_successful: reload.successful,
            reload_timestamp: reload.last_success,
            started_at: self.store.started_at,
            web: &self.web,
            failure_zeros: lock(&self.running)
                .config
                .as_ref()
                .is_none_or(|c| c.global.failure_zeros),
            diagnosis: &diagnosis,
            diagnosis_spec: &spec,
        };
        metrics::render_into(e, &probes, &globals, SystemTime::now())
    }

    /// The status, for `/api/v1/status` and the status page.
    pub fn status(&self) -> crate::status::StatusView {
        let probes = self.store.snapshot();
        let diagnosis = lock(&self.diagnosis).clone();
        crate::status::StatusView::new(&probes, &diagnosis, SystemTime::now())
    }

    /// What a probe built now would share with the running ones.
    pub fn deps(&self) -> Option<Deps> {
        let running = lock(&self.running);
        running.config.as_ref().map(|c| self.deps_for(c))
    }

    fn deps_for(&self, config: &Config) -> Deps {
        Deps {
            files: SystemFiles {
                resolv_conf: config.global.resolv_conf.clone(),
                resolv_conf_port: config.global.resolv_conf_port,
                hosts_file: config.global.hosts_file.clone(),
            },
            trust: lock(&self.trust).clone(),
            keys: self.store.clone(),
            hints: self.store.clone(),
        }
    }

    /// The configuration in force, without its probes (see `Running::config`).
    pub fn config(&self) -> Option<Arc<Config>> {
        lock(&self.running).config.clone()
    }

    pub fn shutdown(&self) {
        for (_, t) in std::mem::take(&mut lock(&self.running).tasks) {
            t.abort();
        }
        if let Some(t) = lock(&self.diagnosis_task).take() {
            t.abort();
        }
    }
}
