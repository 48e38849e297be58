//! The running daemon: the configuration in force, the probes' tasks, the diagnosis loop and
//! the shared state.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use crate::config::{Config, DiagnosisSpec};
use crate::diagnosis::{self, Diagnosis};
use crate::lock;
use crate::metrics::{self, Globals};
use crate::net::resolve::SystemFiles;
use crate::net::tls::TrustCache;
use crate::probe::{Probe, Shared};
use crate::scheduler;
use crate::store::Store;

/// How often the diagnosis is re-evaluated (and its transitions logged).
const DIAGNOSIS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct App {
    pub store: Arc<Store>,
    trust: Mutex<Arc<TrustCache>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    diagnosis_spec: Mutex<DiagnosisSpec>,
    diagnosis: Mutex<Diagnosis>,
    diagnosis_task: Mutex<Option<JoinHandle<()>>>,
}

impl App {
    /// Starts every probe of `config` and the diagnosis loop.
    pub fn start(config: &Config) -> Arc<App> {
        let app = Arc::new(App {
            store: Arc::new(Store::new()),
            trust: Mutex::new(Arc::new(TrustCache::new(
                config.global.trust_store_file.clone(),
                config.global.reference_trust_store_file.clone(),
            ))),
            tasks: Mutex::new(Vec::new()),
            diagnosis_spec: Mutex::new(config.diagnosis.clone()),
            diagnosis: Mutex::new(Diagnosis::default()),
            diagnosis_task: Mutex::new(None),
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

    fn apply(&self, config: &Config) {
        let trust = lock(&self.trust).clone();
        let shared = Shared {
            files: SystemFiles {
                resolv_conf: config.global.resolv_conf.clone(),
                resolv_conf_port: config.global.resolv_conf_port,
                hosts_file: config.global.hosts_file.clone(),
            },
            trust,
            store: self.store.clone(),
        };
        let specs: Vec<_> = config.probes.iter().map(|p| (p.clone(), false)).collect();
        let states = self.store.set_probes(&specs);
        let mut tasks = lock(&self.tasks);
        for t in tasks.drain(..) {
            t.abort();
        }
        for (spec, state) in config.probes.iter().zip(states) {
            let probe = Arc::new(Probe::new(spec.clone(), &shared));
            tasks.push(scheduler::spawn(probe, state, config.global.jitter));
        }
        *lock(&self.diagnosis_spec) = config.diagnosis.clone();
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
        let next = diagnosis::diagnose(&probes, &inputs);
        let mut current = lock(&self.diagnosis);
        for cause in next.causes.difference(&current.causes) {
            tracing::warn!(
                cause = cause.as_label(),
                severity = cause.severity(),
                summary = cause.summary(),
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
            } else if next.causes.is_empty() {
                tracing::warn!("auth unhealthy, no known cause matches (see the failing probes)");
            } else {
                tracing::warn!("auth unhealthy");
            }
        }
        *current = next;
    }

    /// The `/metrics` body and its content type.
    pub fn render_metrics(&self, openmetrics: bool) -> (String, &'static str) {
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
            diagnosis: &diagnosis,
            diagnosis_spec: &spec,
        };
        metrics::render(&probes, &globals, openmetrics, SystemTime::now())
    }

    pub fn shutdown(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        if let Some(t) = lock(&self.diagnosis_task).take() {
            t.abort();
        }
    }
}
