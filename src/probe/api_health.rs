//! The `api_health` probe: the API's own `/health/network`, one success series per check it
//! reports, so the API's view from inside its container sits next to authwatch's own.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, StatusSet, Text, non_empty};
use crate::encode::{Encoder, Family, family, flag};
use crate::failure::{Failure, Reason};
use crate::net::http::{ConnSpec, HttpClient};
use crate::net::target::Target;
use crate::net::trace::Trace;
use crate::probe::kind::{Deps, Kind, KindStatus, Outcome, SectionCx, View, with_url};

/// Checks exported per probe unless `max_checks` says otherwise, and the most it may say.
const DEFAULT_MAX_CHECKS: usize = 32;
const MAX_CHECKS_CAP: usize = 256;

family!(
    API_CHECK,
    "authwatch_api_health_check_success",
    Gauge,
    "Per-check result reported by the API's health endpoint."
);
family!(
    API_TRUNCATED,
    "authwatch_api_health_checks_truncated",
    Gauge,
    "Whether the API reported more checks than max_checks (the rest are not exported)."
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiHealth {
    url: Option<Spanned<Text>>,
    valid_status_codes: Option<Vec<Spanned<Text>>>,
    checks_pointer: Option<Text>,
    max_checks: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiHealthSpec {
    pub target: Target,
    pub valid: StatusSet,
    pub checks_pointer: Option<String>,
    pub max_checks: usize,
}

/// The checks the endpoint reported, capped at `max_checks`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiHealthDetails {
    pub checks: Vec<(String, bool)>,
    pub truncated: bool,
}

#[derive(Debug)]
pub struct ApiHealth {
    spec: ApiHealthSpec,
    client: HttpClient,
}

const CONTAINER_KEYS: &[&str] = &[
    "checks",
    "results",
    "services",
    "dependencies",
    "components",
];
const OK_WORDS: &[&str] = &[
    "ok",
    "healthy",
    "pass",
    "passed",
    "up",
    "success",
    "succeeded",
    "true",
    "green",
    "available",
    "connected",
    "reachable",
];
const VERDICT_KEYS: &[&str] = &[
    "status",
    "ok",
    "healthy",
    "success",
    "passed",
    "up",
    "reachable",
    "connected",
];
const MAX_LABEL: usize = 64;

/// Whether a check's value says it passed; `None` when its shape says nothing.
fn verdict(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(OK_WORDS.contains(&s.to_ascii_lowercase().as_str())),
        Value::Object(map) => VERDICT_KEYS
            .iter()
            .find_map(|k| map.get(*k))
            .and_then(|v| match v {
                Value::Object(_) => None,
                other => verdict(other),
            }),
        _ => None,
    }
}

/// A bounded, label-safe check name.
fn label(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LABEL)
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// Extracts `(name, passed)` per check, capped at `max`; the bool says whether more existed.
pub fn extract_checks(
    doc: &Value,
    pointer: Option<&str>,
    max: usize,
) -> Result<(Vec<(String, bool)>, bool), String> {
    let container = match pointer {
        Some(p) => Some(
            doc.pointer(p)
                .ok_or_else(|| format!("nothing at JSON pointer {p}"))?,
        ),
        None => CONTAINER_KEYS.iter().find_map(|k| doc.get(*k)),
    };
    let checks: Vec<(String, bool)> = match container {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (label(k), verdict(v).unwrap_or(false)))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = ["name", "check", "id", "service", "target"]
                    .iter()
                    .find_map(|k| item.get(*k).and_then(Value::as_str))
                    .map(label)
                    .unwrap_or_else(|| format!("check_{i}"));
                (name, verdict(item).unwrap_or(false))
            })
            .collect(),
        Some(_) => return Err("the checks are neither an object nor an array".into()),
        None => match verdict(doc) {
            Some(ok) => vec![("overall".to_string(), ok)],
            None => return Err("no checks and no overall status found in the JSON body".into()),
        },
    };
    // Pass or fail is decided on every check the API reported; only what is exported is
    // capped. Sanitising can make two names equal: a failing one must not hide behind a
    // passing twin, so of equal names the exported one is failing if any of them fails.
    let mut merged: Vec<(String, bool)> = Vec::with_capacity(checks.len());
    for (name, ok) in checks {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 &= ok,
            None => merged.push((name, ok)),
        }
    }
    let truncated = merged.len() > max;
    if truncated {
        // Failing checks first, so the cap never drops the ones that say what is wrong.
        merged.sort_by_key(|(_, ok)| *ok);
        merged.truncate(max);
    }
    Ok((merged, truncated))
}

impl Kind for ApiHealth {
    const NAME: &'static str = "api_health";
    const HTTP: bool = true;
    const REASONS: &'static [&'static [Reason]] =
        &[&[Reason::BodyInvalid, Reason::HealthCheckFailed]];
    const FAMILIES: &'static [&'static Family] = &[&API_CHECK, &API_TRUNCATED];
    type Raw = RawApiHealth;
    type Spec = ApiHealthSpec;
    type Details = ApiHealthDetails;
    type State = ();

    fn validate(raw: &RawApiHealth, cx: &SectionCx<'_>) -> Result<ApiHealthSpec, ConfigError> {
        let target = cx.url(Self::NAME, "url", &raw.url)?;
        let valid = cx
            .cx
            .status_set(&raw.valid_status_codes, StatusSet::range(200, 299))?;
        let checks_pointer = non_empty(&raw.checks_pointer);
        if checks_pointer.as_ref().is_some_and(|p| !p.starts_with('/')) {
            return Err(cx.err("api_health: checks_pointer must be a JSON pointer starting with /"));
        }
        Ok(ApiHealthSpec {
            target,
            valid,
            checks_pointer,
            max_checks: raw
                .max_checks
                .unwrap_or(DEFAULT_MAX_CHECKS)
                .min(MAX_CHECKS_CAP),
        })
    }

    fn target(spec: &ApiHealthSpec) -> Option<&Target> {
        Some(&spec.target)
    }

    fn retarget(spec: &ApiHealthSpec, target: &str) -> Result<ApiHealthSpec, String> {
        with_url(spec, target, |s| &mut s.target)
    }

    fn new(spec: &ApiHealthSpec, conn: &ConnSpec, deps: &Deps) -> Self {
        ApiHealth {
            spec: spec.clone(),
            client: deps.http(conn),
        }
    }

    async fn run(&self, trace: &Trace, deadline: Instant) -> Outcome<ApiHealthDetails> {
        let resp = match self
            .client
            .get(&self.spec.target, &[], trace, deadline)
            .await
        {
            Ok(r) => r,
            Err(f) => return f.into(),
        };
        let status_ok = self.spec.valid.contains(resp.status);
        let status_failure = || {
            Failure::new(
                Reason::HttpStatus,
                format!("{} answered {}", self.spec.target, resp.status),
            )
        };
        let parsed = serde_json::from_slice::<Value>(&resp.body)
            .map_err(|e| format!("body is not JSON: {e}"))
            .and_then(|doc| {
                extract_checks(
                    &doc,
                    self.spec.checks_pointer.as_deref(),
                    self.spec.max_checks,
                )
            });
        match parsed {
            // A 503 with a JSON body still says which checks failed: keep them.
            Ok((checks, truncated)) => {
                let failed: Vec<&str> = checks
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(n, _)| n.as_str())
                    .collect();
                let failure = if !status_ok {
                    Some(status_failure())
                } else if !failed.is_empty() {
                    Some(Failure::new(
                        Reason::HealthCheckFailed,
                        format!("failing checks: {}", failed.join(", ")),
                    ))
                } else {
                    None
                };
                Outcome {
                    details: Some(ApiHealthDetails { checks, truncated }),
                    failure,
                }
            }
            Err(_) if !status_ok => status_failure().into(),
            Err(e) => {
                Failure::new(Reason::BodyInvalid, format!("{}: {e}", self.spec.target)).into()
            }
        }
    }

    fn render(e: &mut Encoder, views: &[View<'_, Self>], _now: SystemTime) {
        e.header(&API_CHECK);
        for v in views {
            let [a, b] = v.labels();
            for (name, ok) in v.details.iter().flat_map(|d| d.checks.iter()) {
                e.sample(&API_CHECK, &[a, b, ("check", name.as_str())], flag(*ok));
            }
        }
        e.header(&API_TRUNCATED);
        for v in views {
            if let Some(d) = v.details {
                e.sample(&API_TRUNCATED, &v.labels(), flag(d.truncated));
            }
        }
    }

    fn status(view: &View<'_, Self>, _now: SystemTime) -> KindStatus {
        let mut s = KindStatus::default();
        if let Some(d) = view.details {
            s.json.insert(
                "checks".into(),
                d.checks
                    .iter()
                    .map(|(n, ok)| json!({"name": n, "ok": ok}))
                    .collect(),
            );
            s.json.insert("checks_truncated".into(), json!(d.truncated));
            let failing: Vec<&str> = d
                .checks
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(n, _)| n.as_str())
                .collect();
            s.note = Some(match failing.as_slice() {
                [] => format!("{} checks pass", d.checks.len()),
                f => format!("failing: {}", f.join(", ")),
            });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        let (c, _) = extract_checks(
            &json!({"checks":{"dns":{"status":"ok"},"jwks":{"ok":false}}}),
            None,
            10,
        )
        .unwrap();
        assert_eq!(c, vec![("dns".into(), true), ("jwks".into(), false)]);
        let (c, _) = extract_checks(
            &json!({"results":[{"name":"clerk api","healthy":true}]}),
            None,
            10,
        )
        .unwrap();
        assert_eq!(c, vec![("clerk_api".into(), true)]);
        let (c, _) = extract_checks(&json!({"status":"healthy"}), None, 10).unwrap();
        assert_eq!(c, vec![("overall".into(), true)]);
        let (c, t) =
            extract_checks(&json!({"x":{"a":true,"b":true,"c":false}}), Some("/x"), 2).unwrap();
        assert_eq!((c.len(), t), (2, true));
        assert!(extract_checks(&json!({"foo":1}), None, 10).is_err());
    }

    #[test]
    fn every_check_counts_before_the_cap() {
        // The 40th of 40 checks is down and only 32 are exported: still a failure, exported.
        let mut many = serde_json::Map::new();
        for i in 0..40 {
            many.insert(format!("c{i:02}"), json!(i != 39));
        }
        let (c, t) = extract_checks(&json!({ "checks": many }), None, 32).unwrap();
        assert!(t && c.len() == 32);
        assert!(c.contains(&("c39".into(), false)), "{c:?}");
        // Two names equal after sanitising and truncation to 64: the failing one wins.
        let long = "x".repeat(70);
        let doc = json!({"checks": {format!("{long}a"): true, format!("{long}b"): false}});
        let (c, _) = extract_checks(&doc, None, 10).unwrap();
        assert_eq!(c, vec![("x".repeat(64), false)]);
    }
}
