//! The `jwks` probe: fetch a JWKS (Frontend API, Backend API with the secret key, any URL or
//! via OIDC discovery), validate it as a verifier would need it, compare it with a pinned
//! copy, and keep what a verifier would have cached: the last good key set, its freshness
//! and its rotations.

use std::sync::Arc;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, Text, non_empty};
use crate::encode::{Encoder, Family, family, flag};
use crate::failure::{Failure, Reason, bounded, quoted};
use crate::jwk::{self, JwkInfo};
use crate::net::http::{ConnSpec, HttpClient};
use crate::net::target::Target;
use crate::net::trace::Trace;
use crate::probe::kind::{Deps, Kind, KindStatus, Outcome, SectionCx, View, module_url};
use crate::probe::state::ProbeState;
use crate::secret::Secret;

family!(
    JWKS_KEYS,
    "authwatch_jwks_keys",
    Gauge,
    "Keys in the last successfully fetched JWKS."
);
family!(
    JWKS_AGE,
    "authwatch_jwks_age_seconds",
    Gauge,
    "Seconds since the last successful JWKS fetch (or since the probe was configured, if none succeeded yet), computed at scrape time."
);
family!(
    JWKS_LAST_CHANGE,
    "authwatch_jwks_last_change_timestamp_seconds",
    Gauge,
    "Unix time the key set last changed (first seen, then each rotation)."
);
family!(
    JWKS_ROTATIONS,
    "authwatch_jwks_rotations",
    Counter,
    "Changes of the key set seen since authwatch started."
);
family!(
    JWKS_KEY_INFO,
    "authwatch_jwks_key_info",
    Gauge,
    "One series per key of the last good JWKS (capped by max_keys)."
);
family!(
    JWKS_PINNED_MISSING,
    "authwatch_jwks_pinned_missing_kids",
    Gauge,
    "Live keys that the pinned JWKS/PEM copy does not contain."
);
family!(
    JWKS_GROUP_AGREEMENT,
    "authwatch_jwks_group_agreement",
    Gauge,
    "Whether the JWKS probes of a group publish the same kids (1) or not (0)."
);

/// The longest kid, kty, alg or use exported as a label or shown on the status page.
const MAX_LABEL: usize = 64;

/// Keys exported per probe unless `max_keys` says otherwise, and the most it may say.
const DEFAULT_MAX_KEYS: usize = 16;
const MAX_KEYS_CAP: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    source: Option<Spanned<Text>>,
    url: Option<Spanned<Text>>,
    pinned_file: Option<Text>,
    group: Option<Text>,
    max_keys: Option<usize>,
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

impl JwksSource {
    pub fn target(&self) -> &Target {
        match self {
            JwksSource::Url(t) | JwksSource::Oidc(t) | JwksSource::Backend(t, _) => t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwksSpec {
    pub source: JwksSource,
    pub pinned_file: Option<PathBuf>,
    pub group: Option<String>,
    pub max_keys: usize,
}

/// A successfully fetched and validated key set.
#[derive(Debug, Clone, PartialEq)]
pub struct JwksFetch {
    pub keys: Vec<JwkInfo>,
    /// Live kids missing from the pinned copy, when one is configured.
    pub pinned_missing: Option<usize>,
}

/// JWKS freshness, kept across runs and across failures.
#[derive(Debug, Clone, Default)]
pub struct JwksState {
    /// The key set of the last successful fetch: what a verifier would have cached.
    pub keys: Vec<JwkInfo>,
    pub last_success: Option<SystemTime>,
    pub last_change: Option<SystemTime>,
    pub rotations: u64,
    pub pinned_missing: Option<usize>,
}

impl JwksState {
    /// Seconds since the last good fetch, or since the probe was configured when none
    /// succeeded yet: a JWKS never fetched is as stale as the probe is old.
    pub fn age(&self, created_at: SystemTime, now: SystemTime) -> f64 {
        now.duration_since(self.last_success.unwrap_or(created_at))
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// A read handle to the key sets the JWKS probes last fetched (what the auth probe checks
/// tokens against). The results store implements it.
pub trait KeySource: std::fmt::Debug + Send + Sync {
    /// The keys of the last good fetch of each named JWKS probe.
    fn keys(&self, probes: &[String]) -> Vec<JwkInfo>;
    /// When the oldest of those last good fetches happened (`None`: some never succeeded).
    fn fetched_at(&self, probes: &[String]) -> Option<SystemTime>;
    /// Whether every named JWKS probe's latest run passed: the API's verifier can refetch
    /// its keys now, so a case that makes an SDK drop its cache cannot cost it its keys.
    fn passing(&self, probes: &[String]) -> bool;
}

#[derive(Debug)]
pub struct Jwks {
    spec: JwksSpec,
    client: HttpClient,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether the JWKS probes of each group (with at least two members that have fetched keys)
/// publish the same kids.
pub fn group_agreement(probes: &[Arc<ProbeState>]) -> BTreeMap<String, bool> {
    agreement(
        probes
            .iter()
            .filter_map(|p| p.view::<Jwks>())
            .map(|v| (v.spec, v.kept)),
    )
}

fn agreement<'a>(
    probes: impl Iterator<Item = (&'a JwksSpec, &'a JwksState)>,
) -> BTreeMap<String, bool> {
    let mut groups: BTreeMap<&str, Vec<Vec<&str>>> = BTreeMap::new();
    for (spec, kept) in probes {
        if let (Some(g), Some(_)) = (&spec.group, kept.last_success) {
            let mut kids: Vec<&str> = kept.keys.iter().map(|k| k.kid.as_str()).collect();
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

fn source(raw: &RawJwks, cx: &SectionCx<'_>) -> Result<JwksSource, ConfigError> {
    let name = raw
        .source
        .as_ref()
        .map(|s| s.value.0.as_str())
        .unwrap_or("url");
    let at = |m: String| match &raw.source {
        Some(s) => cx.cx.at(s, m),
        None => cx.err(m),
    };
    if raw.url.is_some() && matches!(name, "frontend" | "backend") {
        return Err(at(format!(
            "jwks: source {name} derives its URL; remove url"
        )));
    }
    // A module sends its request to whatever target the caller names: it must never carry
    // the secret key, and has no Clerk host to derive a URL from.
    if cx.module && matches!(name, "frontend" | "backend") {
        return Err(at(format!(
            "jwks: a module cannot use source {name}; use url or oidc"
        )));
    }
    match name {
        "url" => Ok(JwksSource::Url(cx.url("jwks", "url", &raw.url)?)),
        "oidc" => Ok(JwksSource::Oidc(cx.url(
            "jwks (source oidc)",
            "url",
            &raw.url,
        )?)),
        "frontend" => {
            let host =
                cx.clerk.fapi_host.clone().ok_or_else(|| {
                    at("jwks: source frontend needs clerk.publishable_key".into())
                })?;
            Ok(JwksSource::Url(Target {
                https: true,
                host,
                port: 443,
                path: "/.well-known/jwks.json".into(),
            }))
        }
        "backend" => {
            let secret = cx.clerk.secret.clone().ok_or_else(|| {
                at("jwks: source backend needs clerk.secret_key or clerk.secret_key_file".into())
            })?;
            Ok(JwksSource::Backend(
                cx.clerk.api_url.join("/v1/jwks"),
                secret,
            ))
        }
        other => Err(at(format!(
            "jwks: unknown source {other:?}: use url, frontend, backend or oidc"
        ))),
    }
}

impl Jwks {
    async fn fetch(
        &self,
        target: &Target,
        headers: &[(HeaderName, HeaderValue)],
        trace: &Trace,
        deadline: Instant,
    ) -> Result<Vec<u8>, Failure> {
        let resp = self.client.get(target, headers, trace, deadline).await?;
        if !headers.is_empty() && matches!(resp.status, 401 | 403) {
            return Err(Failure::new(
                Reason::AuthSecretKeyInvalid,
                format!(
                    "{target} answered {}: the secret key was rejected",
                    resp.status
                ),
            ));
        }
        if !(200..=299).contains(&resp.status) {
            return Err(Failure::new(
                Reason::HttpStatus,
                format!("{target} answered {}", resp.status),
            ));
        }
        Ok(resp.body.to_vec())
    }

    async fn run_inner(&self, trace: &Trace, deadline: Instant) -> Result<JwksFetch, Failure> {
        let body = match &self.spec.source {
            JwksSource::Url(t) => self.fetch(t, &[], trace, deadline).await?,
            JwksSource::Backend(t, secret) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                    .map_err(|_| {
                        Failure::new(
                            Reason::AuthSecretKeyInvalid,
                            "secret key is not a valid header value",
                        )
                    })?;
                value.set_sensitive(true);
                self.fetch(t, &[(http::header::AUTHORIZATION, value)], trace, deadline)
                    .await?
            }
            JwksSource::Oidc(t) => {
                let doc = self.fetch(t, &[], trace, deadline).await?;
                let v: Value = serde_json::from_slice(&doc).map_err(|e| {
                    Failure::new(
                        Reason::BodyInvalid,
                        format!("OIDC discovery document is not JSON: {e}"),
                    )
                })?;
                let uri = v.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| {
                    Failure::new(Reason::BodyInvalid, "OIDC discovery has no jwks_uri")
                })?;
                let jwks_target = Target::parse(uri).map_err(|_| {
                    // Target's error would quote the whole remote URL; quote it bounded.
                    Failure::new(
                        Reason::BodyInvalid,
                        format!("OIDC jwks_uri {} is not a usable URL", quoted(uri)),
                    )
                })?;
                self.fetch(&jwks_target, &[], trace, deadline).await?
            }
        };
        let keys = jwk::parse_jwks(&body)?;
        let pinned_missing = match &self.spec.pinned_file {
            None => None,
            Some(path) => {
                let text = crate::files::read_limited_async(path, 1 << 20)
                    .await
                    .map_err(|e| Failure::new(Reason::BodyInvalid, format!("pinned file {e}")))?;
                let pinned =
                    jwk::load_pinned(&text).map_err(|e| Failure::new(Reason::BodyInvalid, e))?;
                Some(jwk::missing_from_pin(&keys, &pinned))
            }
        };
        Ok(JwksFetch {
            keys,
            pinned_missing,
        })
    }
}

impl Kind for Jwks {
    const NAME: &'static str = "jwks";
    const HTTP: bool = true;
    const REASONS: &'static [&'static [Reason]] = &[&[
        Reason::BodyInvalid,
        Reason::JwksNoKeys,
        Reason::JwksInvalidKey,
        Reason::JwksDuplicateKid,
        Reason::AuthSecretKeyInvalid,
    ]];
    const FAMILIES: &'static [&'static Family] = &[
        &JWKS_KEYS,
        &JWKS_AGE,
        &JWKS_LAST_CHANGE,
        &JWKS_ROTATIONS,
        &JWKS_KEY_INFO,
        &JWKS_PINNED_MISSING,
        &JWKS_GROUP_AGREEMENT,
    ];
    type Raw = RawJwks;
    type Spec = JwksSpec;
    type Details = JwksFetch;
    type State = JwksState;

    fn validate(raw: &RawJwks, cx: &SectionCx<'_>) -> Result<JwksSpec, ConfigError> {
        let source = source(raw, cx)?;
        let pinned_file = non_empty(&raw.pinned_file).map(PathBuf::from);
        if let Some(pf) = &pinned_file
            && !pf.is_file()
        {
            return Err(cx.err(format!("jwks: pinned_file {} does not exist", pf.display())));
        }
        Ok(JwksSpec {
            source,
            pinned_file,
            group: non_empty(&raw.group),
            max_keys: raw.max_keys.unwrap_or(DEFAULT_MAX_KEYS).min(MAX_KEYS_CAP),
        })
    }

    fn target(spec: &JwksSpec) -> Option<&Target> {
        Some(spec.source.target())
    }

    fn retarget(spec: &JwksSpec, target: &str) -> Result<JwksSpec, String> {
        let t = module_url(target)?;
        let source = match &spec.source {
            JwksSource::Oidc(_) => JwksSource::Oidc(t),
            JwksSource::Url(_) => JwksSource::Url(t),
            JwksSource::Backend(..) => return Err("a backend JWKS cannot be retargeted".into()),
        };
        Ok(JwksSpec {
            source,
            ..spec.clone()
        })
    }

    fn new(spec: &JwksSpec, conn: &ConnSpec, deps: &Deps) -> Self {
        Jwks {
            spec: spec.clone(),
            client: deps.http(conn),
        }
    }

    async fn run(&self, trace: &Trace, deadline: Instant) -> Outcome<JwksFetch> {
        match self.run_inner(trace, deadline).await {
            Ok(fetch) => Outcome::ok(fetch),
            Err(f) => f.into(),
        }
    }

    fn record(kept: &mut JwksState, fetch: Option<&JwksFetch>, ok: bool, now: SystemTime) {
        let Some(fetch) = fetch.filter(|_| ok) else {
            return;
        };
        if kept.last_success.is_none() {
            kept.last_change = Some(now);
        } else if kept.keys != fetch.keys {
            kept.last_change = Some(now);
            kept.rotations += 1;
        }
        kept.keys = fetch.keys.clone();
        kept.last_success = Some(now);
        kept.pinned_missing = fetch.pinned_missing;
    }

    fn render(e: &mut Encoder, views: &[View<'_, Self>], now: SystemTime) {
        let fetched: Vec<&View<'_, Self>> = views
            .iter()
            .filter(|v| v.kept.last_success.is_some())
            .collect();
        type Get = fn(&JwksState) -> f64;
        // No last-success timestamp beside the age: it would be `time() - age`, one more
        // series per probe saying the same thing.
        e.header(&JWKS_KEYS);
        for v in &fetched {
            e.sample(&JWKS_KEYS, &v.labels(), v.kept.keys.len() as f64);
        }
        e.header(&JWKS_AGE);
        for v in views.iter().filter(|v| v.probe.ran()) {
            e.sample(&JWKS_AGE, &v.labels(), v.kept.age(v.probe.created_at, now));
        }
        let changes: [(&Family, Get); 2] = [
            (&JWKS_LAST_CHANGE, |k| {
                k.last_change.map(unix).unwrap_or(0.0)
            }),
            (&JWKS_ROTATIONS, |k| k.rotations as f64),
        ];
        for (f, get) in changes {
            e.header(f);
            for v in &fetched {
                e.sample(f, &v.labels(), get(v.kept));
            }
        }
        e.header(&JWKS_KEY_INFO);
        for v in &fetched {
            let [a, b] = v.labels();
            for k in v.kept.keys.iter().take(v.spec.max_keys) {
                let bits = k.bits.to_string();
                // Remote strings: bounded like check names, so a huge kid cannot bloat scrapes.
                let labels = [
                    a,
                    b,
                    ("kid", bounded(&k.kid, MAX_LABEL)),
                    ("kty", bounded(&k.kty, MAX_LABEL)),
                    ("alg", bounded(&k.alg, MAX_LABEL)),
                    ("use", bounded(&k.use_, MAX_LABEL)),
                    ("bits", bits.as_str()),
                ];
                e.sample(&JWKS_KEY_INFO, &labels, 1.0);
            }
        }
        e.header(&JWKS_PINNED_MISSING);
        for v in &fetched {
            if let Some(n) = v.kept.pinned_missing {
                e.sample(&JWKS_PINNED_MISSING, &v.labels(), n as f64);
            }
        }
        e.header(&JWKS_GROUP_AGREEMENT);
        for (group, agree) in agreement(views.iter().map(|v| (v.spec, v.kept))) {
            e.sample(
                &JWKS_GROUP_AGREEMENT,
                &[("group", group.as_str())],
                flag(agree),
            );
        }
    }

    fn status(view: &View<'_, Self>, now: SystemTime) -> KindStatus {
        let k = view.kept;
        let kids: Vec<String> = k
            .keys
            .iter()
            .take(view.spec.max_keys)
            .map(|k| bounded(&k.kid, MAX_LABEL).to_string())
            .collect();
        let age = k.age(view.probe.created_at, now);
        let mut s = KindStatus::default();
        s.json.insert(
            "jwks".into(),
            json!({
                "kids": kids,
                "age_seconds": age,
                "last_success": k.last_success.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                "rotations": k.rotations,
                "pinned_missing": k.pinned_missing,
            }),
        );
        s.note = Some(format!(
            "kids {} · age {age:.0} s · {} rotations",
            if kids.is_empty() {
                "none".to_string()
            } else {
                kids.join(", ")
            },
            k.rotations
        ));
        s
    }

    fn blackbox(e: &mut Encoder, fetch: &JwksFetch) {
        e.header(&JWKS_KEYS);
        e.sample(&JWKS_KEYS, &[], fetch.keys.len() as f64);
    }
}
