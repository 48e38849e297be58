//! Configuration: the YAML schema, `${ENV}` interpolation, secrets from files, and validation
//! into an immutable snapshot the rest of the daemon runs on.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_saphyr::Spanned;

use crate::failure::Kind;
use crate::secret::Secret;

/// The embedded default configuration: the documented `config.yaml` at the repository root.
pub const DEFAULT_CONFIG: &str = include_str!("../config.yaml");
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default config.yaml>";

/// A configuration problem, located in its file where the location is known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{file}: {message}")]
    Whole { file: String, message: String },
}

/// Where in the file a value came from, for semantic errors found after parsing.
#[derive(Debug, Clone, Copy, Default)]
struct Pos {
    line: u64,
    column: u64,
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Self {
        Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// A string scalar with `${VAR}` and `${VAR:-default}` expanded from the environment.
#[derive(Debug, Clone, Default)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw, &|k| std::env::var(k).ok())
            .map(Text)
            .map_err(de::Error::custom)
    }
}

/// Expands `${VAR}` (an error when unset) and `${VAR:-default}`; `$$` is a literal `$`.
/// The error names the variable, never its value.
pub fn expand_env(raw: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${ in string".to_string())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            match (get(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (use ${{{name}:-}} to make it optional)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let t = Option::<Text>::deserialize(d)?;
    match t {
        None => Ok(None),
        Some(Text(s)) => humantime::parse_duration(s.trim())
            .map(Some)
            .map_err(|e| de::Error::custom(format!("invalid duration {s:?}: {e} (e.g. 30s, 1m)"))),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    global: RawGlobal,
    #[serde(default)]
    clerk: Option<RawClerk>,
    #[serde(default)]
    probes: Vec<Spanned<RawProbe>>,
    #[serde(default)]
    diagnosis: RawDiagnosis,
    #[serde(default)]
    modules: BTreeMap<String, Spanned<RawModule>>,
    #[serde(default)]
    probe_allowlist: Option<Vec<Spanned<Text>>>,
}

/// A `/probe` module: a probe kind and its settings, with the target given per request.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    kind: Text,
    #[serde(default, deserialize_with = "de_duration")]
    timeout: Option<Duration>,
    valid_status_codes: Option<Vec<Spanned<Text>>>,
    record_types: Option<Vec<Text>>,
    resolvers: Option<Vec<Spanned<Text>>>,
    checks_pointer: Option<Text>,
    max_checks: Option<usize>,
    #[serde(default, deserialize_with = "de_duration")]
    max_offset: Option<Duration>,
    connection: Option<RawConnection>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDiagnosis {
    #[serde(default, deserialize_with = "de_duration")]
    clock_skew_warning: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    clock_skew_critical: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    jwks_max_age: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    cert_expiry_warning: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    #[serde(default, deserialize_with = "de_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    timeout: Option<Duration>,
    jitter: Option<f64>,
    resolv_conf: Option<Text>,
    resolv_conf_port: Option<u16>,
    hosts_file: Option<Text>,
    trust_store_file: Option<Text>,
    reference_trust_store_file: Option<Text>,
    body_limit_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClerk {
    publishable_key: Option<Spanned<Text>>,
    secret_key: Option<Text>,
    secret_key_file: Option<Text>,
    api_url: Option<Spanned<Text>>,
    app_api_url: Option<Spanned<Text>>,
    #[serde(default = "yes")]
    auto_probes: bool,
    dns_resolvers: Option<Vec<Spanned<Text>>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: Spanned<Text>,
    #[serde(default, deserialize_with = "de_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    timeout: Option<Duration>,
    dns: Option<RawDns>,
    https: Option<RawHttps>,
    jwks: Option<RawJwks>,
    api_health: Option<RawApiHealth>,
    clock: Option<RawClock>,
    auth: Option<RawAuth>,
    connection: Option<RawConnection>,
    role: Option<Spanned<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    names: Vec<Text>,
    #[serde(default)]
    record_types: Option<Vec<Text>>,
    #[serde(default)]
    resolvers: Option<Vec<Spanned<Text>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttps {
    url: Spanned<Text>,
    valid_status_codes: Option<Vec<Spanned<Text>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    #[serde(default)]
    source: Option<Spanned<Text>>,
    url: Option<Spanned<Text>>,
    pinned_file: Option<Text>,
    group: Option<Text>,
    max_keys: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiHealth {
    url: Spanned<Text>,
    valid_status_codes: Option<Vec<Spanned<Text>>>,
    checks_pointer: Option<Text>,
    max_checks: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    url: Spanned<Text>,
    token_source: Spanned<Text>,
    session_id: Option<Text>,
    token_file: Option<Text>,
    token_command: Option<Vec<Text>>,
    rejection_status_codes: Option<Vec<Spanned<Text>>>,
    issuer: Option<Text>,
    jwks_probes: Option<Vec<Spanned<Text>>>,
    #[serde(default, deserialize_with = "de_duration")]
    leeway: Option<Duration>,
    cases: Option<Vec<Spanned<Text>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClock {
    url: Spanned<Text>,
    #[serde(default, deserialize_with = "de_duration")]
    max_offset: Option<Duration>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawConnection {
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
}

/// How to reach a DNS server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResolverSpec {
    /// The nameservers in resolv.conf (after the hosts file, for HTTP probes).
    System,
    Server {
        addr: SocketAddr,
        tcp: bool,
    },
}

impl ResolverSpec {
    /// The stable label for metrics: `system`, `8.8.8.8:53/udp`.
    pub fn label(&self) -> String {
        match self {
            ResolverSpec::System => "system".into(),
            ResolverSpec::Server { addr, tcp } => {
                format!("{addr}/{}", if *tcp { "tcp" } else { "udp" })
            }
        }
    }

    pub fn parse(s: &str) -> Result<ResolverSpec, String> {
        let s = s.trim();
        if s == "system" {
            return Ok(ResolverSpec::System);
        }
        let (tcp, rest) = if let Some(r) = s.strip_prefix("tcp://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("udp://") {
            (false, r)
        } else {
            (false, s)
        };
        let addr = if let Ok(ip) = rest.parse::<IpAddr>() {
            SocketAddr::new(ip, 53)
        } else {
            rest.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "invalid resolver {s:?}: expected `system`, `IP`, `IP:PORT`, `[IPv6]:PORT`, optionally prefixed by udp:// or tcp://"
                )
            })?
        };
        Ok(ResolverSpec::Server { addr, tcp })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// Resolve both, try IPv6 addresses first and fall back to IPv4, as getaddrinfo does.
    Dual,
    Ipv4,
    Ipv6,
}

/// An HTTP CONNECT proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySpec {
    pub host: String,
    pub port: u16,
    /// `Basic` credentials, already base64-encoded.
    pub auth: Option<Secret>,
}

impl ProxySpec {
    pub fn parse(s: &str) -> Result<ProxySpec, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| "proxy URL must start with http:// (HTTP CONNECT proxy)".to_string())?;
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport, 80)
            .ok_or_else(|| "proxy URL has an invalid host or port".to_string())?;
        let auth =
            userinfo.map(|u| Secret::new(base64::engine::general_purpose::STANDARD.encode(u)));
        Ok(ProxySpec { host, port, auth })
    }
}

/// Splits `host:port`, `[v6]:port` or a bare host.
pub fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_string(), default_port)),
        None => None,
    }
}

/// Which proxy an HTTP probe uses.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyChoice {
    Direct,
    Proxy(ProxySpec),
}

/// Connection settings shared by every HTTP-based probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnSpec {
    pub resolver: ResolverSpec,
    pub ip_family: IpFamily,
    pub proxy: ProxyChoice,
    pub body_limit: u64,
    pub headers: Vec<(String, String)>,
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// A parsed absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("URL {s:?} must start with https:// or http://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported; use connection.headers".into());
        }
        let (host, port) = split_host_port(authority, if https { 443 } else { 80 })
            .ok_or_else(|| format!("URL {s:?} has an invalid host or port"))?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
        {
            return Err(format!("URL {s:?} has an invalid host"));
        }
        Ok(Target {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// The value for a Host header and for display.
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.https { "https" } else { "http" },
            self.authority(),
            self.path
        )
    }
}

/// A set of accepted HTTP status codes: single codes and inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    pub fn range(lo: u16, hi: u16) -> Self {
        StatusSet(vec![(lo, hi)])
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }

    fn parse_one(s: &str) -> Result<(u16, u16), String> {
        let s = s.trim();
        let bad = || format!("invalid status code {s:?}: use 200, \"2xx\" or \"200-299\"");
        if let Some(d) = s.strip_suffix("xx") {
            let d: u16 = d.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&d) {
                return Err(bad());
            }
            return Ok((d * 100, d * 100 + 99));
        }
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let c: u16 = s.parse().map_err(|_| bad())?;
                (c, c)
            }
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad());
        }
        Ok((lo, hi))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsSpec {
    pub names: Vec<String>,
    pub record_types: Vec<hickory_proto::rr::RecordType>,
    pub resolvers: Vec<ResolverSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpsSpec {
    pub target: Target,
    pub valid: StatusSet,
}

/// Where a JWKS comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// A plain GET of this URL.
    Url(Target),
    /// The Backend API: GET with the secret key as bearer; 401 means a bad key.
    Backend(Target, Secret),
    /// OIDC discovery document whose `jwks_uri` is then fetched.
    Oidc(Target),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwksSpec {
    pub source: JwksSource,
    pub pinned_file: Option<PathBuf>,
    pub group: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiHealthSpec {
    pub target: Target,
    pub valid: StatusSet,
    pub checks_pointer: Option<String>,
    pub max_checks: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClockSpec {
    pub target: Target,
    pub max_offset: Duration,
}

/// Where the auth probe gets a real session token.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    /// Clerk's Backend API: POST /v1/sessions/{id}/tokens with the secret key, over `conn`.
    Backend {
        target: Target,
        secret: Secret,
        conn: Box<ConnSpec>,
    },
    /// A file holding the token, read on every run.
    File(PathBuf),
    /// A command whose standard output is the token.
    Command(Vec<String>),
}

/// The cases the auth probe runs against the protected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthCase {
    ValidToken,
    NoToken,
    ForgedToken,
    ExpiredToken,
}

impl AuthCase {
    pub const ALL: [AuthCase; 4] = [
        AuthCase::ValidToken,
        AuthCase::NoToken,
        AuthCase::ForgedToken,
        AuthCase::ExpiredToken,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            AuthCase::ValidToken => "valid_token",
            AuthCase::NoToken => "no_token",
            AuthCase::ForgedToken => "forged_token",
            AuthCase::ExpiredToken => "expired_token",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthSpec {
    pub target: Target,
    pub source: TokenSource,
    pub rejection: StatusSet,
    pub issuer: Option<String>,
    /// The JWKS probes whose keys the token is checked against; filled with every jwks probe
    /// when not configured.
    pub jwks_probes: Vec<String>,
    pub leeway: Duration,
    pub cases: Vec<AuthCase>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeSettings {
    Dns(DnsSpec),
    Https(HttpsSpec),
    Jwks(JwksSpec),
    ApiHealth(ApiHealthSpec),
    Clock(ClockSpec),
    Auth(AuthSpec),
}

/// What a probe stands for in the diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A dependency on Clerk (DNS, Frontend/Backend API, JWKS, clock): auth-critical.
    Clerk,
    /// The API's own view of its dependencies (its `/health/network`): auth-critical.
    Api,
    /// Informational: never makes auth unhealthy.
    Other,
}

impl Role {
    pub fn as_label(self) -> &'static str {
        match self {
            Role::Clerk => "clerk",
            Role::Api => "api",
            Role::Other => "other",
        }
    }
}

/// Thresholds of the diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosisSpec {
    pub clock_skew_warning: Duration,
    pub clock_skew_critical: Duration,
    pub jwks_max_age: Duration,
    pub cert_expiry_warning: Duration,
}

/// One validated probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub name: String,
    pub role: Role,
    pub interval: Duration,
    pub timeout: Duration,
    pub settings: ProbeSettings,
    pub conn: ConnSpec,
}

impl ProbeSpec {
    pub fn kind(&self) -> Kind {
        match self.settings {
            ProbeSettings::Dns(_) => Kind::Dns,
            ProbeSettings::Https(_) => Kind::Https,
            ProbeSettings::Jwks(_) => Kind::Jwks,
            ProbeSettings::ApiHealth(_) => Kind::ApiHealth,
            ProbeSettings::Clock(_) => Kind::Clock,
            ProbeSettings::Auth(_) => Kind::Auth,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalSpec {
    pub interval: Duration,
    pub timeout: Duration,
    pub jitter: f64,
    pub resolv_conf: PathBuf,
    pub resolv_conf_port: u16,
    pub hosts_file: PathBuf,
    pub trust_store_file: Option<PathBuf>,
    pub body_limit: u64,
    /// Roots to tell "CA certificates missing" from "TLS intercepted"; `None`: the bundled
    /// Mozilla set.
    pub reference_trust_store_file: Option<PathBuf>,
}

/// The validated, immutable configuration snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub global: GlobalSpec,
    pub probes: Vec<ProbeSpec>,
    pub diagnosis: DiagnosisSpec,
    /// `/probe` modules by name, validated at load and instantiated per request.
    pub modules: BTreeMap<String, RawModule>,
    /// Host patterns `/probe` may target: `host`, `*.domain`, or an IP address.
    pub probe_allowlist: Vec<String>,
}

/// Derives the Frontend API host from a Clerk publishable key.
pub fn fapi_host_from_publishable_key(pk: &str) -> Result<String, String> {
    let rest = pk
        .strip_prefix("pk_test_")
        .or_else(|| pk.strip_prefix("pk_live_"))
        .ok_or("publishable key must start with pk_test_ or pk_live_")?;
    let trimmed = rest.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|_| "publishable key: the part after pk_test_/pk_live_ is not base64")?;
    let decoded =
        String::from_utf8(bytes).map_err(|_| "publishable key does not decode to text")?;
    let host = decoded
        .strip_suffix('$')
        .ok_or("publishable key does not decode to `<host>$`")?;
    if host.contains('$') {
        return Err("publishable key decodes to more than one `$`".into());
    }
    let valid_chars = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !host.contains('.') || !valid_chars || host.starts_with('.') || host.ends_with('.') {
        return Err("publishable key does not decode to a valid host name".into());
    }
    Ok(host.to_ascii_lowercase())
}

struct Ctx<'a> {
    file: &'a str,
    global: &'a GlobalSpec,
    global_body_limit: u64,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError::At {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

fn status_set(
    ctx: &Ctx,
    raw: &Option<Vec<Spanned<Text>>>,
    default: StatusSet,
) -> Result<StatusSet, ConfigError> {
    match raw {
        None => Ok(default),
        Some(list) if list.is_empty() => Ok(default),
        Some(list) => list
            .iter()
            .map(|s| StatusSet::parse_one(&s.value.0).map_err(|e| ctx.err(s.into(), e)))
            .collect::<Result<Vec<_>, _>>()
            .map(StatusSet),
    }
}

fn target(ctx: &Ctx, s: &Spanned<Text>) -> Result<Target, ConfigError> {
    Target::parse(&s.value.0).map_err(|e| ctx.err(s.into(), e))
}

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

fn connection(
    ctx: &Ctx,
    raw: &RawConnection,
    target_host: &str,
    https: bool,
    probe_pos: Pos,
) -> Result<ConnSpec, ConfigError> {
    let resolver = match &raw.resolver {
        None => ResolverSpec::System,
        Some(r) => ResolverSpec::parse(&r.value.0).map_err(|e| ctx.err(r.into(), e))?,
    };
    let ip_family = match &raw.ip_family {
        None => IpFamily::Dual,
        Some(f) => match f.value.0.as_str() {
            "dual" => IpFamily::Dual,
            "ipv4" | "ip4" => IpFamily::Ipv4,
            "ipv6" | "ip6" => IpFamily::Ipv6,
            other => {
                return Err(ctx.err(
                    f.into(),
                    format!("invalid ip_family {other:?}: use dual, ipv4 or ipv6"),
                ));
            }
        },
    };
    let proxy = match &raw.proxy_url {
        Some(p) if !p.value.0.is_empty() => {
            ProxyChoice::Proxy(ProxySpec::parse(&p.value.0).map_err(|e| ctx.err(p.into(), e))?)
        }
        _ if raw.proxy_from_env.unwrap_or(true) => {
            let names: &[&str] = if https {
                &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            } else {
                &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
            };
            let from_env = names
                .iter()
                .find_map(|n| (ctx.env)(n).filter(|v| !v.is_empty()));
            let no_proxy = ["NO_PROXY", "no_proxy"]
                .iter()
                .find_map(|n| (ctx.env)(n))
                .unwrap_or_default();
            match from_env {
                Some(url) if !no_proxy_matches(&no_proxy, target_host) => {
                    let url = if url.contains("://") {
                        url
                    } else {
                        format!("http://{url}")
                    };
                    ProxyChoice::Proxy(ProxySpec::parse(&url).map_err(|e| {
                        ctx.err(probe_pos, format!("proxy from the environment: {e}"))
                    })?)
                }
                _ => ProxyChoice::Direct,
            }
        }
        _ => ProxyChoice::Direct,
    };
    let mut headers = Vec::new();
    for (k, v) in raw.headers.iter().flatten() {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(&v.0).is_err()
        {
            return Err(ctx.err(probe_pos, format!("invalid HTTP header {k:?}")));
        }
        headers.push((k.clone(), v.0.clone()));
    }
    let tls = raw.tls.clone().unwrap_or_default();
    let ca_file = tls
        .ca_file
        .filter(|t| !t.0.is_empty())
        .map(|t| PathBuf::from(t.0));
    if let Some(p) = &ca_file
        && !p.is_file()
    {
        return Err(ctx.err(
            probe_pos,
            format!("tls.ca_file {} does not exist", p.display()),
        ));
    }
    Ok(ConnSpec {
        resolver,
        ip_family,
        proxy,
        body_limit: raw.body_limit_bytes.unwrap_or(ctx.global_body_limit),
        headers,
        ca_file,
        server_name: tls.server_name.map(|t| t.0).filter(|s| !s.is_empty()),
    })
}

const DEFAULT_PUBLIC_RESOLVERS: &[&str] = &["system", "8.8.8.8:53", "1.1.1.1:53"];

fn record_type(s: &str) -> Option<hickory_proto::rr::RecordType> {
    use hickory_proto::rr::RecordType;
    match s.to_ascii_uppercase().as_str() {
        "A" => Some(RecordType::A),
        "AAAA" => Some(RecordType::AAAA),
        "CNAME" => Some(RecordType::CNAME),
        "TXT" => Some(RecordType::TXT),
        "MX" => Some(RecordType::MX),
        "NS" => Some(RecordType::NS),
        _ => None,
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Clerk settings resolved from the `clerk` section.
struct ClerkResolved {
    fapi_host: Option<String>,
    secret: Option<Secret>,
    api_url: Target,
    app_api_url: Option<Target>,
    auto_probes: bool,
    dns_resolvers: Vec<ResolverSpec>,
}

fn clerk(ctx: &Ctx, raw: Option<&RawClerk>) -> Result<ClerkResolved, ConfigError> {
    let default_api =
        Target::parse("https://api.clerk.com").map_err(|e| ctx.err(Pos::default(), e))?;
    let Some(raw) = raw else {
        return Ok(ClerkResolved {
            fapi_host: None,
            secret: None,
            api_url: default_api,
            app_api_url: None,
            auto_probes: false,
            dns_resolvers: vec![],
        });
    };
    let fapi_host = match &raw.publishable_key {
        Some(pk) if !pk.value.0.trim().is_empty() => Some(
            fapi_host_from_publishable_key(pk.value.0.trim()).map_err(|e| ctx.err(pk.into(), e))?,
        ),
        _ => None,
    };
    let inline = raw
        .secret_key
        .as_ref()
        .map(|t| t.0.trim().to_string())
        .filter(|s| !s.is_empty());
    let file = raw
        .secret_key_file
        .as_ref()
        .map(|t| t.0.trim().to_string())
        .filter(|s| !s.is_empty());
    let secret = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Whole {
                file: ctx.file.into(),
                message: "clerk: set secret_key or secret_key_file, not both".into(),
            });
        }
        (Some(s), None) => Some(Secret::new(s)),
        (None, Some(path)) => {
            let content = std::fs::read_to_string(&path).map_err(|e| ConfigError::Whole {
                file: ctx.file.into(),
                message: format!("clerk.secret_key_file {path}: {e}"),
            })?;
            Some(Secret::new(content.trim()))
        }
        (None, None) => None,
    };
    if let Some(s) = &secret
        && !(s.expose().starts_with("sk_test_") || s.expose().starts_with("sk_live_"))
    {
        return Err(ConfigError::Whole {
            file: ctx.file.into(),
            message: "clerk: the secret key must start with sk_test_ or sk_live_".into(),
        });
    }
    let api_url = match &raw.api_url {
        Some(u) if !u.value.0.is_empty() => target(ctx, u)?,
        _ => default_api,
    };
    let app_api_url = match &raw.app_api_url {
        Some(u) if !u.value.0.is_empty() => Some(target(ctx, u)?),
        _ => None,
    };
    let dns_resolvers = match &raw.dns_resolvers {
        Some(list) => list
            .iter()
            .map(|r| ResolverSpec::parse(&r.value.0).map_err(|e| ctx.err(r.into(), e)))
            .collect::<Result<_, _>>()?,
        None => DEFAULT_PUBLIC_RESOLVERS
            .iter()
            .filter_map(|s| ResolverSpec::parse(s).ok())
            .collect(),
    };
    Ok(ClerkResolved {
        fapi_host,
        secret,
        api_url,
        app_api_url,
        auto_probes: raw.auto_probes,
        dns_resolvers,
    })
}

fn join_path(base: &Target, path: &str) -> Target {
    let mut t = base.clone();
    let prefix = t
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    t.path = format!("{prefix}{path}");
    t
}

impl Config {
    /// Loads and validates a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, &|k| {
                std::env::var(k).ok()
            }),
            Some(p) => {
                let file = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?;
                Config::parse(&text, &file, &|k| std::env::var(k).ok())
            }
        }
    }

    /// Parses and validates YAML text. `env` looks up proxy variables; `${VAR}` in values is
    /// expanded from the process environment while parsing.
    pub fn parse(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let rendered = e.without_snippet().to_string();
                // The location is reported in front, as file:line:column.
                let message = match rendered.rfind(" at line ") {
                    Some(i) if rendered[i..].contains(", column ") => rendered[..i].to_string(),
                    _ => rendered,
                };
                match e.location() {
                    Some(loc) => ConfigError::At {
                        file: file.to_string(),
                        line: loc.line(),
                        column: loc.column(),
                        message,
                    },
                    None => ConfigError::Whole {
                        file: file.to_string(),
                        message,
                    },
                }
            })?
        };
        let whole = |message: String| ConfigError::Whole {
            file: file.to_string(),
            message,
        };
        let g = &raw.global;
        let interval = g.interval.unwrap_or(Duration::from_secs(30));
        let timeout = g.timeout.unwrap_or(Duration::from_secs(10));
        let jitter = g.jitter.unwrap_or(0.1);
        if !(0.0..=0.5).contains(&jitter) {
            return Err(whole("global.jitter must be between 0 and 0.5".into()));
        }
        if interval < Duration::from_millis(100) {
            return Err(whole("global.interval must be at least 100ms".into()));
        }
        if timeout.is_zero() {
            return Err(whole("global.timeout must be positive".into()));
        }
        let global = GlobalSpec {
            interval,
            timeout,
            jitter,
            resolv_conf: g
                .resolv_conf
                .as_ref()
                .map(|t| PathBuf::from(&t.0))
                .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf")),
            resolv_conf_port: g.resolv_conf_port.unwrap_or(53),
            hosts_file: g
                .hosts_file
                .as_ref()
                .map(|t| PathBuf::from(&t.0))
                .unwrap_or_else(|| PathBuf::from("/etc/hosts")),
            trust_store_file: g
                .trust_store_file
                .as_ref()
                .filter(|t| !t.0.is_empty())
                .map(|t| PathBuf::from(&t.0)),
            body_limit: g.body_limit_bytes.unwrap_or(1 << 20),
            reference_trust_store_file: g
                .reference_trust_store_file
                .as_ref()
                .filter(|t| !t.0.is_empty())
                .map(|t| PathBuf::from(&t.0)),
        };
        let d = &raw.diagnosis;
        let diagnosis = DiagnosisSpec {
            clock_skew_warning: d.clock_skew_warning.unwrap_or(Duration::from_secs(2)),
            clock_skew_critical: d.clock_skew_critical.unwrap_or(Duration::from_secs(5)),
            jwks_max_age: d.jwks_max_age.unwrap_or(Duration::from_secs(600)),
            cert_expiry_warning: d
                .cert_expiry_warning
                .unwrap_or(Duration::from_secs(14 * 86_400)),
        };
        if diagnosis.clock_skew_warning > diagnosis.clock_skew_critical {
            return Err(whole(
                "diagnosis.clock_skew_warning must not exceed clock_skew_critical".into(),
            ));
        }
        let ctx = Ctx {
            file,
            global: &global,
            global_body_limit: global.body_limit,
            env,
        };
        let clerk = clerk(&ctx, raw.clerk.as_ref())?;

        let mut probes = Vec::new();
        let mut names = HashSet::new();
        for sp in &raw.probes {
            let probe = ctx.build_probe(&sp.value, sp.into(), &clerk)?;
            if !names.insert(probe.name.clone()) {
                return Err(ctx.err(
                    (&sp.value.name).into(),
                    format!("duplicate probe name {:?}", probe.name),
                ));
            }
            probes.push(probe);
        }
        if clerk.auto_probes {
            for probe in ctx.auto_probes(&clerk)? {
                if !names.insert(probe.name.clone()) {
                    return Err(whole(format!(
                        "probe name {:?} is reserved for the probes derived from the clerk section (set clerk.auto_probes: false to define it yourself)",
                        probe.name
                    )));
                }
                probes.push(probe);
            }
        }
        link_auth_probes(&mut probes).map_err(whole)?;
        let mut modules = BTreeMap::new();
        for (name, m) in raw.modules {
            // Instantiating with a placeholder target validates every setting now, not at
            // the first request.
            module_probe(&ctx, &name, &m.value, "placeholder.invalid")
                .map_err(|e| ctx.err((&m).into(), e))?;
            modules.insert(name, m.value);
        }
        let probe_allowlist = raw
            .probe_allowlist
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let v = p.value.0.trim().to_ascii_lowercase();
                let host = v.strip_prefix("*.").unwrap_or(&v);
                if host.parse::<IpAddr>().is_ok() || is_hostname(host) {
                    Ok(v)
                } else {
                    Err(ctx.err(
                        (&p).into(),
                        format!(
                            "probe_allowlist: {v:?} is not a host name, *.domain or IP address"
                        ),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            source: file.to_string(),
            global,
            probes,
            diagnosis,
            modules,
            probe_allowlist,
        })
    }
}

/// Builds the probe a module describes for one target: a URL (or bare host, taken as
/// `https://host/`) for HTTP-based kinds, a name for `dns`.
fn module_probe(ctx: &Ctx, name: &str, m: &RawModule, target: &str) -> Result<ProbeSpec, String> {
    let url_target = || -> Result<Target, String> {
        if target.contains("://") {
            Target::parse(target)
        } else {
            Target::parse(&format!("https://{target}/"))
        }
    };
    let status = |default: StatusSet| -> Result<StatusSet, String> {
        match &m.valid_status_codes {
            None => Ok(default),
            Some(list) => list
                .iter()
                .map(|s| StatusSet::parse_one(&s.value.0))
                .collect::<Result<Vec<_>, _>>()
                .map(StatusSet),
        }
    };
    let kind = m.kind.0.as_str();
    let settings = match kind {
        "dns" => {
            let host = target.trim().trim_end_matches('.').to_ascii_lowercase();
            if !is_hostname(&host) {
                return Err(format!("target {target:?} is not a host name"));
            }
            let record_types = match &m.record_types {
                None => vec![
                    hickory_proto::rr::RecordType::A,
                    hickory_proto::rr::RecordType::AAAA,
                ],
                Some(l) => l
                    .iter()
                    .map(|t| {
                        record_type(&t.0)
                            .ok_or_else(|| format!("unsupported record type {:?}", t.0))
                    })
                    .collect::<Result<_, _>>()?,
            };
            let resolvers = match &m.resolvers {
                None => vec![ResolverSpec::System],
                Some(l) => l
                    .iter()
                    .map(|r| ResolverSpec::parse(&r.value.0))
                    .collect::<Result<_, _>>()?,
            };
            ProbeSettings::Dns(DnsSpec {
                names: vec![host],
                record_types,
                resolvers,
            })
        }
        "https" => ProbeSettings::Https(HttpsSpec {
            target: url_target()?,
            valid: status(StatusSet::range(200, 299))?,
        }),
        "jwks" => ProbeSettings::Jwks(JwksSpec {
            source: JwksSource::Url(url_target()?),
            pinned_file: None,
            group: None,
            max_keys: 16,
        }),
        "api_health" => ProbeSettings::ApiHealth(ApiHealthSpec {
            target: url_target()?,
            valid: status(StatusSet::range(200, 299))?,
            checks_pointer: m
                .checks_pointer
                .as_ref()
                .map(|p| p.0.clone())
                .filter(|p| !p.is_empty()),
            max_checks: m.max_checks.unwrap_or(32).min(256),
        }),
        "clock" => ProbeSettings::Clock(ClockSpec {
            target: url_target()?,
            max_offset: m.max_offset.unwrap_or(Duration::from_secs(5)),
        }),
        other => {
            return Err(format!(
                "module {name}: unknown kind {other:?}: use dns, https, jwks, api_health or clock"
            ));
        }
    };
    let (host, https) = match &settings {
        ProbeSettings::Https(h) => (h.target.host.clone(), h.target.https),
        ProbeSettings::ApiHealth(a) => (a.target.host.clone(), a.target.https),
        ProbeSettings::Clock(c) => (c.target.host.clone(), c.target.https),
        ProbeSettings::Jwks(JwksSpec {
            source: JwksSource::Url(t),
            ..
        }) => (t.host.clone(), t.https),
        _ => (String::new(), false),
    };
    if kind == "dns" && m.connection.is_some() {
        return Err(format!(
            "module {name}: a dns module takes no connection section"
        ));
    }
    let conn = connection(
        ctx,
        &m.connection.clone().unwrap_or_default(),
        &host,
        https,
        Pos::default(),
    )
    .map_err(|e| match e {
        ConfigError::At { message, .. } | ConfigError::Whole { message, .. } => message,
        other => other.to_string(),
    })?;
    Ok(ProbeSpec {
        name: name.to_string(),
        role: Role::Other,
        interval: ctx.global.interval,
        timeout: m.timeout.unwrap_or(ctx.global.timeout),
        settings,
        conn,
    })
}

impl Config {
    /// The probe `module` describes for `target`, as `/probe?module=…&target=…` runs it.
    pub fn module_probe(&self, module: &str, target: &str) -> Result<ProbeSpec, String> {
        let m = self
            .modules
            .get(module)
            .ok_or_else(|| format!("unknown module {module:?}"))?;
        let env = |k: &str| std::env::var(k).ok();
        let ctx = Ctx {
            file: &self.source,
            global: &self.global,
            global_body_limit: self.global.body_limit,
            env: &env,
        };
        module_probe(&ctx, module, m, target)
    }

    /// Whether `/probe` may target `host` under the allowlist.
    pub fn target_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.probe_allowlist
            .iter()
            .any(|p| match p.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => *p == host,
            })
    }
}

/// Points each auth probe at the JWKS probes it checks tokens against: the configured names
/// (which must exist and be jwks probes) or every jwks probe.
fn link_auth_probes(probes: &mut [ProbeSpec]) -> Result<(), String> {
    let jwks: Vec<String> = probes
        .iter()
        .filter(|p| p.kind() == Kind::Jwks)
        .map(|p| p.name.clone())
        .collect();
    for p in probes.iter_mut() {
        if let ProbeSettings::Auth(a) = &mut p.settings {
            if a.jwks_probes.is_empty() {
                a.jwks_probes = jwks.clone();
            } else if let Some(bad) = a.jwks_probes.iter().find(|n| !jwks.contains(n)) {
                return Err(format!(
                    "probe {:?}: jwks_probes names {bad:?}, which is not a jwks probe",
                    p.name
                ));
            }
        }
    }
    Ok(())
}

impl Ctx<'_> {
    fn build_probe(
        &self,
        p: &RawProbe,
        pos: Pos,
        clerk: &ClerkResolved,
    ) -> Result<ProbeSpec, ConfigError> {
        let name = p.name.value.0.trim().to_string();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name {
            return Err(self.err(
                (&p.name).into(),
                "probe name must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        let set = [
            p.dns.is_some(),
            p.https.is_some(),
            p.jwks.is_some(),
            p.api_health.is_some(),
            p.clock.is_some(),
            p.auth.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(self.err(
                pos,
                format!(
                    "probe {name:?} must have exactly one of: dns, https, jwks, api_health, clock, auth"
                ),
            ));
        }
        let raw_conn = p.connection.clone().unwrap_or_default();
        let (settings, host, https) = if let Some(d) = &p.dns {
            if p.connection.is_some() {
                return Err(self.err(pos, "a dns probe takes no connection section"));
            }
            let mut names = Vec::new();
            for n in &d.names {
                let n = n.0.trim().trim_end_matches('.').to_ascii_lowercase();
                if !is_hostname(&n) {
                    return Err(self.err(pos, format!("dns: invalid name {n:?}")));
                }
                names.push(n);
            }
            if names.is_empty() {
                return Err(self.err(pos, "dns: names must not be empty"));
            }
            let record_types = match &d.record_types {
                None => vec![
                    hickory_proto::rr::RecordType::A,
                    hickory_proto::rr::RecordType::AAAA,
                ],
                Some(list) => list
                    .iter()
                    .map(|t| {
                        record_type(&t.0).ok_or_else(|| {
                            self.err(pos, format!("dns: unsupported record type {:?}", t.0))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let resolvers = match &d.resolvers {
                None => vec![ResolverSpec::System],
                Some(list) => list
                    .iter()
                    .map(|r| ResolverSpec::parse(&r.value.0).map_err(|e| self.err(r.into(), e)))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            if resolvers.is_empty() || record_types.is_empty() {
                return Err(self.err(pos, "dns: resolvers and record_types must not be empty"));
            }
            (
                ProbeSettings::Dns(DnsSpec {
                    names,
                    record_types,
                    resolvers,
                }),
                String::new(),
                false,
            )
        } else if let Some(h) = &p.https {
            let t = target(self, &h.url)?;
            let valid = status_set(self, &h.valid_status_codes, StatusSet::range(200, 299))?;
            let (host, https) = (t.host.clone(), t.https);
            (
                ProbeSettings::Https(HttpsSpec { target: t, valid }),
                host,
                https,
            )
        } else if let Some(j) = &p.jwks {
            let source_name = j
                .source
                .as_ref()
                .map(|s| s.value.0.as_str())
                .unwrap_or("url");
            let spos = j.source.as_ref().map(Pos::from).unwrap_or(pos);
            let source = match source_name {
                "url" | "oidc" => {
                    let u = j.url.as_ref().ok_or_else(|| {
                        self.err(pos, format!("jwks: source {source_name} needs url"))
                    })?;
                    let t = target(self, u)?;
                    if source_name == "url" {
                        JwksSource::Url(t)
                    } else {
                        JwksSource::Oidc(t)
                    }
                }
                "frontend" => {
                    let host = clerk.fapi_host.clone().ok_or_else(|| {
                        self.err(spos, "jwks: source frontend needs clerk.publishable_key")
                    })?;
                    JwksSource::Url(Target {
                        https: true,
                        host,
                        port: 443,
                        path: "/.well-known/jwks.json".into(),
                    })
                }
                "backend" => {
                    let secret = clerk.secret.clone().ok_or_else(|| {
                        self.err(
                            spos,
                            "jwks: source backend needs clerk.secret_key or clerk.secret_key_file",
                        )
                    })?;
                    JwksSource::Backend(join_path(&clerk.api_url, "/v1/jwks"), secret)
                }
                other => {
                    return Err(self.err(
                        spos,
                        format!(
                            "jwks: unknown source {other:?}: use url, frontend, backend or oidc"
                        ),
                    ));
                }
            };
            if j.url.is_some() && matches!(source_name, "frontend" | "backend") {
                return Err(self.err(
                    spos,
                    format!("jwks: source {source_name} derives its URL; remove url"),
                ));
            }
            let pinned_file = j
                .pinned_file
                .as_ref()
                .filter(|t| !t.0.is_empty())
                .map(|t| PathBuf::from(&t.0));
            if let Some(pf) = &pinned_file
                && !pf.is_file()
            {
                return Err(self.err(
                    pos,
                    format!("jwks: pinned_file {} does not exist", pf.display()),
                ));
            }
            let t = match &source {
                JwksSource::Url(t) | JwksSource::Oidc(t) | JwksSource::Backend(t, _) => t.clone(),
            };
            (
                ProbeSettings::Jwks(JwksSpec {
                    source,
                    pinned_file,
                    group: j
                        .group
                        .as_ref()
                        .map(|g| g.0.clone())
                        .filter(|g| !g.is_empty()),
                    max_keys: j.max_keys.unwrap_or(16).min(256),
                }),
                t.host,
                t.https,
            )
        } else if let Some(a) = &p.api_health {
            let t = target(self, &a.url)?;
            let valid = status_set(self, &a.valid_status_codes, StatusSet::range(200, 299))?;
            if let Some(ptr) = &a.checks_pointer
                && !(ptr.0.is_empty() || ptr.0.starts_with('/'))
            {
                return Err(self.err(
                    pos,
                    "api_health: checks_pointer must be a JSON pointer starting with /",
                ));
            }
            let (host, https) = (t.host.clone(), t.https);
            (
                ProbeSettings::ApiHealth(ApiHealthSpec {
                    target: t,
                    valid,
                    checks_pointer: a
                        .checks_pointer
                        .as_ref()
                        .map(|p| p.0.clone())
                        .filter(|p| !p.is_empty()),
                    max_checks: a.max_checks.unwrap_or(32).min(256),
                }),
                host,
                https,
            )
        } else if let Some(c) = &p.clock {
            let t = target(self, &c.url)?;
            let (host, https) = (t.host.clone(), t.https);
            (
                ProbeSettings::Clock(ClockSpec {
                    target: t,
                    max_offset: c.max_offset.unwrap_or(Duration::from_secs(5)),
                }),
                host,
                https,
            )
        } else if let Some(a) = &p.auth {
            let t = target(self, &a.url)?;
            let (host, https) = (t.host.clone(), t.https);
            (
                ProbeSettings::Auth(self.auth(a, t, pos, clerk)?),
                host,
                https,
            )
        } else {
            return Err(self.err(pos, "probe has no kind"));
        };
        let interval = p.interval.unwrap_or(self.global.interval);
        let timeout = p.timeout.unwrap_or(self.global.timeout);
        if interval < Duration::from_millis(100) {
            return Err(self.err(
                pos,
                format!("probe {name:?}: interval must be at least 100ms"),
            ));
        }
        if timeout.is_zero() {
            return Err(self.err(pos, format!("probe {name:?}: timeout must be positive")));
        }
        let conn = connection(self, &raw_conn, &host, https, pos)?;
        let role = match &p.role {
            // The auth probe tests the API's behaviour, not a Clerk dependency.
            None if p.auth.is_some() => Role::Api,
            None => Role::Clerk,
            Some(r) => match r.value.0.as_str() {
                "clerk" => Role::Clerk,
                "api" => Role::Api,
                "other" => Role::Other,
                other => {
                    return Err(self.err(
                        r.into(),
                        format!("invalid role {other:?}: use clerk, api or other"),
                    ));
                }
            },
        };
        Ok(ProbeSpec {
            name,
            role,
            interval,
            timeout,
            settings,
            conn,
        })
    }

    fn auth(
        &self,
        a: &RawAuth,
        target: Target,
        pos: Pos,
        clerk: &ClerkResolved,
    ) -> Result<AuthSpec, ConfigError> {
        let source = match a.token_source.value.0.as_str() {
            "backend" => {
                let sid = a
                    .session_id
                    .as_ref()
                    .map(|s| s.0.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| self.err(pos, "auth: token_source backend needs session_id"))?;
                if !sid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(self.err(
                        pos,
                        "auth: session_id must be letters, digits and '_' (sess_...)",
                    ));
                }
                let secret = clerk.secret.clone().ok_or_else(|| {
                    self.err(pos, "auth: token_source backend needs clerk.secret_key or clerk.secret_key_file")
                })?;
                let mint = join_path(&clerk.api_url, &format!("/v1/sessions/{sid}/tokens"));
                let conn = Box::new(self.default_conn(&mint.host)?);
                TokenSource::Backend {
                    target: mint,
                    secret,
                    conn,
                }
            }
            "file" => TokenSource::File(
                a.token_file
                    .as_ref()
                    .map(|t| PathBuf::from(&t.0))
                    .filter(|p| !p.as_os_str().is_empty())
                    .ok_or_else(|| self.err(pos, "auth: token_source file needs token_file"))?,
            ),
            "command" => {
                let cmd: Vec<String> = a
                    .token_command
                    .iter()
                    .flatten()
                    .map(|t| t.0.clone())
                    .collect();
                if cmd.is_empty() {
                    return Err(self.err(pos, "auth: token_source command needs token_command (a list: program and arguments)"));
                }
                TokenSource::Command(cmd)
            }
            other => {
                return Err(self.err(
                    (&a.token_source).into(),
                    format!("auth: unknown token_source {other:?}: use backend, file or command"),
                ));
            }
        };
        let cases = match &a.cases {
            None => AuthCase::ALL.to_vec(),
            Some(list) => list
                .iter()
                .map(|c| {
                    AuthCase::ALL
                        .into_iter()
                        .find(|k| k.as_label() == c.value.0)
                        .ok_or_else(|| {
                            self.err(c.into(), format!("auth: unknown case {:?}", c.value.0))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(AuthSpec {
            target,
            source,
            rejection: status_set(self, &a.rejection_status_codes, StatusSet::range(401, 401))?,
            issuer: a
                .issuer
                .as_ref()
                .map(|i| i.0.clone())
                .filter(|i| !i.is_empty())
                .or_else(|| clerk.fapi_host.as_ref().map(|h| format!("https://{h}"))),
            jwks_probes: a
                .jwks_probes
                .iter()
                .flatten()
                .map(|n| n.value.0.clone())
                .collect(),
            leeway: a.leeway.unwrap_or(Duration::from_secs(5)),
            cases,
        })
    }

    fn default_conn(&self, host: &str) -> Result<ConnSpec, ConfigError> {
        connection(self, &RawConnection::default(), host, true, Pos::default())
    }

    /// The probes the `clerk` section implies: Frontend API DNS, health and JWKS when a
    /// publishable key is set, the Backend API JWKS when a secret key is set, and the API's
    /// own `/health/network` when its base URL is set.
    fn auto_probes(&self, clerk: &ClerkResolved) -> Result<Vec<ProbeSpec>, ConfigError> {
        let mut out = Vec::new();
        let g = self.global;
        let mk = |name: &str, settings: ProbeSettings, conn: ConnSpec| ProbeSpec {
            name: name.to_string(),
            role: Role::Clerk,
            interval: g.interval,
            timeout: g.timeout,
            settings,
            conn,
        };
        if let Some(host) = &clerk.fapi_host {
            out.push(mk(
                "clerk-fapi-dns",
                ProbeSettings::Dns(DnsSpec {
                    names: vec![host.clone()],
                    record_types: vec![
                        hickory_proto::rr::RecordType::A,
                        hickory_proto::rr::RecordType::AAAA,
                    ],
                    resolvers: clerk.dns_resolvers.clone(),
                }),
                self.default_conn(host)?,
            ));
            let fapi = Target {
                https: true,
                host: host.clone(),
                port: 443,
                path: "/".into(),
            };
            out.push(mk(
                "clerk-fapi-health",
                ProbeSettings::ApiHealth(ApiHealthSpec {
                    target: join_path(&fapi, "/v1/health"),
                    valid: StatusSet::range(200, 299),
                    checks_pointer: None,
                    max_checks: 32,
                }),
                self.default_conn(host)?,
            ));
            out.push(mk(
                "clerk-fapi-jwks",
                ProbeSettings::Jwks(JwksSpec {
                    source: JwksSource::Url(join_path(&fapi, "/.well-known/jwks.json")),
                    pinned_file: None,
                    group: Some("clerk".into()),
                    max_keys: 16,
                }),
                self.default_conn(host)?,
            ));
        }
        if let Some(secret) = &clerk.secret {
            out.push(mk(
                "clerk-bapi-jwks",
                ProbeSettings::Jwks(JwksSpec {
                    source: JwksSource::Backend(
                        join_path(&clerk.api_url, "/v1/jwks"),
                        secret.clone(),
                    ),
                    pinned_file: None,
                    group: Some("clerk".into()),
                    max_keys: 16,
                }),
                self.default_conn(&clerk.api_url.host)?,
            ));
        }
        if let Some(app) = &clerk.app_api_url {
            let mut conn = self.default_conn(&app.host)?;
            conn.proxy = ProxyChoice::Direct;
            out.push(ProbeSpec {
                role: Role::Api,
                ..mk(
                    "api-health-network",
                    ProbeSettings::ApiHealth(ApiHealthSpec {
                        target: join_path(app, "/health/network"),
                        valid: StatusSet::range(200, 299),
                        checks_pointer: None,
                        max_checks: 32,
                    }),
                    conn,
                )
            });
        }
        Ok(out)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn publishable_key_decodes_to_fapi_host() {
        let pk = format!(
            "pk_test_{}",
            base64::engine::general_purpose::STANDARD.encode("happy-cat-12.clerk.accounts.dev$")
        );
        assert_eq!(
            fapi_host_from_publishable_key(&pk).unwrap(),
            "happy-cat-12.clerk.accounts.dev"
        );
        assert!(fapi_host_from_publishable_key("pk_test_!!!").is_err());
        assert!(fapi_host_from_publishable_key("sk_test_abc").is_err());
        let no_dollar = format!(
            "pk_live_{}",
            base64::engine::general_purpose::STANDARD.encode("clerk.example.com")
        );
        assert!(fapi_host_from_publishable_key(&no_dollar).is_err());
        let two = format!(
            "pk_live_{}",
            base64::engine::general_purpose::STANDARD.encode("a$b.com$")
        );
        assert!(fapi_host_from_publishable_key(&two).is_err());
    }

    #[test]
    fn env_expansion() {
        let get = |k: &str| (k == "A").then(|| "x".to_string());
        assert_eq!(expand_env("${A}-${B:-d}-$$-$x", &get).unwrap(), "x-d-$-$x");
        let err = expand_env("${B}", &get).unwrap_err();
        assert!(err.contains("B is not set"));
        assert!(expand_env("${A", &get).is_err());
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::parse(DEFAULT_CONFIG, "default", &env_none).unwrap();
        let names: Vec<_> = c.probes.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"clerk-dns"), "{names:?}");
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let y = "global:\n  interval: 10s\nprobes:\n  - name: a\n    bogus: 1\n    https:\n      url: https://x.test/\n";
        let e = Config::parse(y, "f.yaml", &env_none)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.yaml:5:"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn status_sets() {
        assert!(StatusSet::parse_one("2xx").is_ok());
        assert_eq!(StatusSet::parse_one("200-204").unwrap(), (200, 204));
        assert!(StatusSet::parse_one("9xx").is_err());
        assert!(StatusSet::parse_one("abc").is_err());
    }

    #[test]
    fn targets_and_resolvers() {
        let t = Target::parse("https://clerk.test:8443/a?b=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("clerk.test", 8443, "/a?b=1")
        );
        assert_eq!(Target::parse("http://[::1]:80").unwrap().host, "::1");
        assert!(Target::parse("ftp://x").is_err());
        assert_eq!(
            ResolverSpec::parse("tcp://1.1.1.1:53").unwrap().label(),
            "1.1.1.1:53/tcp"
        );
        assert_eq!(
            ResolverSpec::parse("8.8.8.8").unwrap().label(),
            "8.8.8.8:53/udp"
        );
        assert!(ResolverSpec::parse("dns.google").is_err());
    }

    #[test]
    fn no_proxy_rules() {
        assert!(no_proxy_matches("localhost,.clerk.com", "api.clerk.com"));
        assert!(no_proxy_matches("clerk.com", "clerk.com"));
        assert!(!no_proxy_matches("clerk.com", "notclerk.com"));
        assert!(no_proxy_matches("*", "x"));
    }
}
