//! The running daemon: the configuration in force, the probes' tasks and the shared state.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::{self, Globals};
use crate::net::resolve::SystemFiles;
use crate::net::tls::TrustCache;
use crate::probe::{Probe, Shared};
use crate::scheduler;
use crate::store::{Store, lock};

#[derive(Debug)]
pub struct App {
    pub store: Store,
    trust: Mutex<Arc<TrustCache>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl App {
    /// Starts every probe of `config`.
    pub fn start(config: &Config) -> Arc<App> {
        let app = Arc::new(App {
            store: Store::new(),
            trust: Mutex::new(Arc::new(TrustCache::new(
                config.global.trust_store_file.clone(),
            ))),
            tasks: Mutex::new(Vec::new()),
        });
        app.apply(config);
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
        let mut reload = lock(&self.store.reload);
        reload.successful = true;
        reload.last_success = SystemTime::now();
    }

    /// The `/metrics` body and its content type.
    pub fn render_metrics(&self, openmetrics: bool) -> (String, &'static str) {
        let probes = self.store.snapshot();
        let reload = *lock(&self.store.reload);
        let trust = lock(&self.trust).get();
        let globals = Globals {
            trust_store_certificates: trust.count,
            reload_successful: reload.successful,
            reload_timestamp: reload.last_success,
            started_at: self.store.started_at,
        };
        metrics::render(&probes, &globals, openmetrics, SystemTime::now())
    }

    pub fn shutdown(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}
