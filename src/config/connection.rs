//! The `connection` section every HTTP-based kind takes: resolver, address family, proxy
//! (explicit or from `HTTPS_PROXY`/`NO_PROXY`), body limit, headers and TLS settings.
//!
//! The environment is read once, at load: a `/probe` module decides its proxy per request
//! from that snapshot, so a request never reads the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::base::{ConfigError, Cx, Pos, Text};
use crate::net::http::{ConnSpec, ProxyChoice, ProxySpec, Roots};
use crate::net::resolve::{IpFamily, ResolverSpec};

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    resolver: Option<Spanned<Text>>,
    ip_family: Option<Spanned<Text>>,
    proxy_url: Option<Spanned<Text>>,
    proxy_from_env: Option<bool>,
    body_limit_bytes: Option<u64>,
    headers: Option<BTreeMap<String, Text>>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<Text>,
    server_name: Option<Text>,
    roots: Option<Spanned<Text>>,
}

/// How a Clerk backend SDK fetches the JWKS, as a profile of the connection (DESIGN.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// `clerk-backend-api`: httpx with an explicit transport, so `HTTPS_PROXY`/`NO_PROXY`
    /// are ignored, and certifi's bundle unless `SSL_CERT_FILE`/`SSL_CERT_DIR` is set.
    Python,
    /// `@clerk/backend` on Node's global fetch with no agent of its own
    /// (packages/backend/src/runtime.ts: `fetch.bind(globalThis)`): no proxy from the
    /// environment unless `NODE_USE_ENV_PROXY=1`, Node's bundled roots plus
    /// `NODE_EXTRA_CA_CERTS`.
    Node,
    /// `clerk-sdk-go`: `defaultHTTPClient = &http.Client{Timeout: 5s}` with the default
    /// transport (clerk.go), so the proxy from the environment and the system roots, as the
    /// generic behaviour.
    Go,
}

impl Sdk {
    pub fn parse(s: &str) -> Result<Option<Sdk>, String> {
        match s {
            "python" => Ok(Some(Sdk::Python)),
            "node" => Ok(Some(Sdk::Node)),
            "go" => Ok(Some(Sdk::Go)),
            "generic" | "" => Ok(None),
            other => Err(format!(
                "unknown sdk {other:?}: use python, node, go or generic"
            )),
        }
    }

    pub fn as_label(self) -> &'static str {
        match self {
            Sdk::Python => "python",
            Sdk::Node => "node",
            Sdk::Go => "go",
        }
    }

    /// Whether the SDK takes its proxy from `HTTPS_PROXY`.
    pub fn honours_proxy_env(self) -> bool {
        matches!(self, Sdk::Go)
    }
}

/// The proxy variables as they were at load, per scheme.
#[derive(Debug, Clone, PartialEq)]
struct EnvProxies {
    https: Option<String>,
    http: Option<String>,
    no_proxy: String,
}

/// How a connection picks its proxy once the target is known.
#[derive(Debug, Clone, PartialEq)]
enum ProxyRule {
    Fixed(ProxyChoice),
    FromEnv(EnvProxies),
}

/// A validated `connection` section whose proxy is decided per target.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnPlan {
    base: ConnSpec,
    rule: ProxyRule,
    /// `tls.roots` was set explicitly (a profile does not override it).
    roots_set: bool,
}

/// `NO_PROXY` matching as curl and Go do it: `*`, exact hosts, and domain suffixes with or
/// without a leading dot; a port on an entry is ignored.
fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            let entry = entry.split(':').next().unwrap_or(entry);
            host == entry || host.ends_with(&format!(".{entry}"))
        })
}

fn from_env(cx: &Cx, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| (cx.env)(n).filter(|v| !v.is_empty()))
}

impl ConnPlan {
    /// The connection as `sdk` makes it: its proxy behaviour instead of the environment's, and
    /// its trust store (unless `tls.roots` says otherwise), from the environment read at load.
    pub fn with_sdk(mut self, sdk: Sdk, cx: &Cx) -> ConnPlan {
        // Node (22.21+/24) reads the proxy variables only with NODE_USE_ENV_PROXY=1.
        let node_env_proxy =
            sdk == Sdk::Node && (cx.env)("NODE_USE_ENV_PROXY").as_deref() == Some("1");
        if !sdk.honours_proxy_env() && !node_env_proxy && matches!(self.rule, ProxyRule::FromEnv(_))
        {
            self.rule = ProxyRule::Fixed(ProxyChoice::Direct);
        }
        if self.roots_set {
            return self;
        }
        let set = |n: &str| (cx.env)(n).is_some_and(|v| !v.is_empty());
        self.base.roots = match sdk {
            Sdk::Python if !(set("SSL_CERT_FILE") || set("SSL_CERT_DIR")) => Roots::Bundled,
            Sdk::Node => Roots::Bundled,
            _ => Roots::System,
        };
        if sdk == Sdk::Node && self.base.ca_file.is_none() {
            self.base.ca_file = (cx.env)("NODE_EXTRA_CA_CERTS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_file());
        }
        self
    }

    /// The connection for a target host and scheme. An unusable proxy variable is an error
    /// only for targets that would use it.
    pub fn for_target(&self, host: &str, https: bool) -> Result<ConnSpec, String> {
        let proxy = match &self.rule {
            ProxyRule::Fixed(p) => p.clone(),
            ProxyRule::FromEnv(env) => {
                let url = if https { &env.https } else { &env.http };
                match url {
                    Some(url) if !no_proxy_matches(&env.no_proxy, host) => {
                        let url = if url.contains("://") {
                            url.clone()
                        } else {
                            format!("http://{url}")
                        };
                        ProxyChoice::Proxy(
                            ProxySpec::parse(&url)
                                .map_err(|e| format!("proxy from the environment: {e}"))?,
                        )
                    }
                    _ => ProxyChoice::Direct,
                }
            }
        };
        Ok(ConnSpec {
            proxy,
            ..self.base.clone()
        })
    }
}

impl RawConnection {
    /// Validates the section; `pos` locates errors that have no position of their own.
    pub fn plan(&self, cx: &Cx, pos: Pos, global_body_limit: u64) -> Result<ConnPlan, ConfigError> {
        let resolver = match &self.resolver {
            None => ResolverSpec::System,
            Some(r) => ResolverSpec::parse(&r.value.0).map_err(|e| cx.at(r, e))?,
        };
        let ip_family = match &self.ip_family {
            None => IpFamily::Dual,
            Some(f) => IpFamily::parse(&f.value.0).map_err(|e| cx.at(f, e))?,
        };
        let rule = match &self.proxy_url {
            Some(p) if !p.value.0.is_empty() => ProxyRule::Fixed(ProxyChoice::Proxy(
                ProxySpec::parse(&p.value.0).map_err(|e| cx.at(p, e))?,
            )),
            _ if self.proxy_from_env.unwrap_or(true) => ProxyRule::FromEnv(EnvProxies {
                https: from_env(
                    cx,
                    &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
                ),
                http: from_env(cx, &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]),
                no_proxy: ["NO_PROXY", "no_proxy"]
                    .iter()
                    .find_map(|n| (cx.env)(n))
                    .unwrap_or_default(),
            }),
            _ => ProxyRule::Fixed(ProxyChoice::Direct),
        };
        let mut headers = Vec::new();
        for (k, v) in self.headers.iter().flatten() {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(&v.0).is_err()
            {
                return Err(cx.err(pos, format!("invalid HTTP header {k:?}")));
            }
            headers.push((k.clone(), v.0.clone()));
        }
        let tls = self.tls.clone().unwrap_or_default();
        let ca_file = tls
            .ca_file
            .filter(|t| !t.0.is_empty())
            .map(|t| PathBuf::from(t.0));
        if let Some(p) = &ca_file
            && !p.is_file()
        {
            return Err(cx.err(pos, format!("tls.ca_file {} does not exist", p.display())));
        }
        let roots = match &tls.roots {
            None => Roots::System,
            Some(r) => match r.value.0.as_str() {
                "system" => Roots::System,
                "bundled" => Roots::Bundled,
                other => {
                    return Err(cx.at(
                        r,
                        format!("invalid tls.roots {other:?}: use system or bundled"),
                    ));
                }
            },
        };
        Ok(ConnPlan {
            base: ConnSpec {
                resolver,
                ip_family,
                proxy: ProxyChoice::Direct,
                body_limit: self.body_limit_bytes.unwrap_or(global_body_limit),
                headers,
                ca_file,
                server_name: tls.server_name.map(|t| t.0).filter(|s| !s.is_empty()),
                roots,
                guard: None,
                leaf_details: false,
            },
            rule,
            roots_set: tls.roots.is_some(),
        })
    }

    /// Validates the section and decides the proxy for a known target at once.
    pub fn for_target(
        &self,
        cx: &Cx,
        pos: Pos,
        global_body_limit: u64,
        host: &str,
        https: bool,
    ) -> Result<ConnSpec, ConfigError> {
        self.plan(cx, pos, global_body_limit)?
            .for_target(host, https)
            .map_err(|e| cx.err(pos, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_rules() {
        assert!(no_proxy_matches("localhost,.clerk.com", "api.clerk.com"));
        assert!(no_proxy_matches("clerk.com", "clerk.com"));
        assert!(!no_proxy_matches("clerk.com", "notclerk.com"));
        assert!(no_proxy_matches("*", "x"));
    }

    #[test]
    fn module_proxy_is_decided_per_target_from_the_load_time_environment() {
        let env = |k: &str| match k {
            "HTTPS_PROXY" => Some("127.0.0.1:3128".to_string()),
            "NO_PROXY" => Some(".internal".to_string()),
            _ => None,
        };
        let cx = Cx {
            file: "t",
            env: &env,
        };
        let plan = RawConnection::default()
            .plan(&cx, Pos::default(), 1)
            .unwrap();
        let proxied = plan.for_target("clerk.com", true).unwrap();
        assert!(matches!(proxied.proxy, ProxyChoice::Proxy(ref p) if p.port == 3128));
        let direct = plan.for_target("db.internal", true).unwrap();
        assert_eq!(direct.proxy, ProxyChoice::Direct);
        assert_eq!(
            plan.for_target("clerk.com", false).unwrap().proxy,
            ProxyChoice::Direct
        );
    }
}
