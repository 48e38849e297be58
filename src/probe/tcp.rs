//! The `tcp` probe: resolve a `host:port` as the API would and open a TCP connection to it,
//! for the API's own dependencies (its database, cache or queue) next to the Clerk probes.

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, Role, Text};
use crate::failure::{DNS_REASONS, Reason};
use crate::net::http::{ConnSpec, admit, connect_any};
use crate::net::resolve::{IpFamily, Resolver, ResolverSpec};
use crate::net::target::{Target, split_host_port};
use crate::net::trace::{Phase, Trace};
use crate::probe::kind::{Deps, Kind, Outcome, SectionCx};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    address: Option<Spanned<Text>>,
    resolver: Option<Spanned<Text>>,
    ip_family: Option<Spanned<Text>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpSpec {
    pub host: String,
    pub port: u16,
    pub resolver: ResolverSpec,
    pub ip_family: IpFamily,
}

#[derive(Debug)]
pub struct Tcp {
    spec: TcpSpec,
    resolver: Resolver,
    guard: Option<std::sync::Arc<crate::net::allow::Allowlist>>,
}

/// `host:port` or `[v6]:port`; the port is required (there is no default service).
fn address(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("tcp: address {s:?} must be host:port or [IPv6]:port");
    match split_host_port(s.trim(), 0) {
        Some((h, p)) if !h.is_empty() && p != 0 => Ok((h.to_ascii_lowercase(), p)),
        _ => Err(bad()),
    }
}

impl Kind for Tcp {
    const NAME: &'static str = "tcp";
    const HTTP: bool = false;
    const PHASES: &'static [Phase] = &[Phase::Resolve, Phase::Connect];
    const REASONS: &'static [&'static [Reason]] = &[
        DNS_REASONS,
        &[
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::NetworkUnreachable,
        Reason::ConnectionReset,
        Reason::LocalResourcesExhausted,
        Reason::Timeout,
        ],
    ];
    /// The API's own dependencies are not Clerk's: informational unless the config says the
    /// API cannot serve without them (`role: api`).
    const DEFAULT_ROLE: Role = Role::Other;
    type Raw = RawTcp;
    type Spec = TcpSpec;
    type Details = ();
    type State = ();

    fn validate(raw: &RawTcp, cx: &SectionCx<'_>) -> Result<TcpSpec, ConfigError> {
        let (host, port) = match (&raw.address, cx.module) {
            (Some(a), false) => address(&a.value.0).map_err(|e| cx.cx.at(a, e))?,
            (None, false) => return Err(cx.err("tcp: address is required")),
            (Some(a), true) => {
                return Err(cx.cx.at(
                    a,
                    "tcp: a module gets its address from each request; remove address",
                ));
            }
            (None, true) => ("placeholder.invalid".to_string(), 1),
        };
        let resolver = match &raw.resolver {
            None => ResolverSpec::System,
            Some(r) => ResolverSpec::parse(&r.value.0).map_err(|e| cx.cx.at(r, e))?,
        };
        let ip_family = match &raw.ip_family {
            None => IpFamily::Dual,
            Some(f) => IpFamily::parse(&f.value.0).map_err(|e| cx.cx.at(f, e))?,
        };
        Ok(TcpSpec {
            host,
            port,
            resolver,
            ip_family,
        })
    }

    fn target(_spec: &TcpSpec) -> Option<&Target> {
        None
    }

    fn host(spec: &TcpSpec) -> String {
        spec.host.clone()
    }

    fn port(spec: &TcpSpec) -> Option<u16> {
        Some(spec.port)
    }

    fn retarget(spec: &TcpSpec, target: &str) -> Result<TcpSpec, String> {
        let (host, port) = address(target)?;
        Ok(TcpSpec {
            host,
            port,
            ..spec.clone()
        })
    }

    fn new(spec: &TcpSpec, conn: &ConnSpec, deps: &Deps) -> Self {
        Tcp {
            spec: spec.clone(),
            guard: conn.guard.clone(),
            resolver: Resolver {
                spec: spec.resolver.clone(),
                files: deps.files.clone(),
            },
        }
    }

    async fn run(&self, trace: &Trace, deadline: Instant) -> Outcome<()> {
        let (host, port) = (&self.spec.host, self.spec.port);
        let admitted = match admit(self.guard.as_deref(), host, port, trace) {
            Ok(a) => a,
            Err(f) => return f.into(),
        };
        trace.enter(Phase::Resolve);
        let addrs = match self
            .resolver
            .addresses(host, self.spec.ip_family, deadline)
            .await
        {
            Ok(a) => a,
            Err(f) => return f.into(),
        };
        trace.enter(Phase::Connect);
        let connected = connect_any(&addrs, port, deadline, trace, admitted.as_ref()).await;
        trace.leave();
        match connected {
            Ok(_) => Outcome::passed(),
            Err(f) => f.into(),
        }
    }
}
