//! Probe kinds behind one interface: run once against a deadline, filling a trace and
//! returning a failure reason (if any) and kind-specific details. A new kind is one file
//! and one arm in `Probe::new` / `Probe::run`.

pub mod api_health;
pub mod auth;
pub mod clock;
pub mod dns;
pub mod https;
pub mod jwks;

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::{ConnSpec, ProbeSettings, ProbeSpec, TokenSource};
use crate::net::http::HttpClient;
use crate::net::resolve::{Resolver, SystemFiles};
use crate::net::tls::TrustCache;
use crate::outcome::{RunResult, Trace};
use crate::store::Store;

/// What every probe shares: the system files, the trust store, and the results store (the
/// auth probe checks tokens against the keys the JWKS probes fetched).
#[derive(Debug, Clone)]
pub struct Shared {
    pub files: SystemFiles,
    pub trust: Arc<TrustCache>,
    pub store: Arc<Store>,
}

/// A configured probe, ready to run.
#[derive(Debug)]
pub struct Probe {
    pub spec: ProbeSpec,
    imp: Impl,
}

#[derive(Debug)]
enum Impl {
    Dns(dns::DnsProbe),
    Https(https::HttpsProbe),
    Jwks(jwks::JwksProbe),
    ApiHealth(api_health::ApiHealthProbe),
    Clock(clock::ClockProbe),
    /// Boxed: it carries an RSA key and is much larger than the other kinds.
    Auth(Box<auth::AuthProbe>),
}

impl Probe {
    pub fn new(spec: ProbeSpec, shared: &Shared) -> Probe {
        let client_for = |conn: &ConnSpec| {
            HttpClient::new(
                conn.clone(),
                Resolver {
                    spec: conn.resolver.clone(),
                    files: shared.files.clone(),
                },
                shared.trust.clone(),
            )
        };
        let client = || client_for(&spec.conn);
        let imp = match &spec.settings {
            ProbeSettings::Dns(d) => Impl::Dns(dns::DnsProbe::new(d.clone(), shared.files.clone())),
            ProbeSettings::Https(h) => Impl::Https(https::HttpsProbe::new(h.clone(), client())),
            ProbeSettings::Jwks(j) => Impl::Jwks(jwks::JwksProbe::new(j.clone(), client())),
            ProbeSettings::ApiHealth(a) => {
                Impl::ApiHealth(api_health::ApiHealthProbe::new(a.clone(), client()))
            }
            ProbeSettings::Clock(c) => Impl::Clock(clock::ClockProbe::new(c.clone(), client())),
            ProbeSettings::Auth(a) => {
                let mint = match &a.source {
                    TokenSource::Backend { conn, .. } => Some(client_for(conn)),
                    _ => None,
                };
                Impl::Auth(Box::new(auth::AuthProbe::new(
                    a.clone(),
                    client(),
                    mint,
                    shared.store.clone(),
                )))
            }
        };
        Probe { spec, imp }
    }

    /// Runs once. The caller enforces `deadline` by dropping the future; the trace says how
    /// far the run got.
    pub async fn run(&self, trace: &Trace, deadline: Instant) -> RunResult {
        match &self.imp {
            Impl::Dns(p) => p.run(trace, deadline).await,
            Impl::Https(p) => p.run(trace, deadline).await,
            Impl::Jwks(p) => p.run(trace, deadline).await,
            Impl::ApiHealth(p) => p.run(trace, deadline).await,
            Impl::Clock(p) => p.run(trace, deadline).await,
            // Boxed: the auth run's future is four times any other kind's, and every probe
            // task would otherwise carry that much for its whole life.
            Impl::Auth(p) => Box::pin(p.run(trace, deadline)).await,
        }
    }
}
