//! The configuration file: `global`, `clerk` (with the probes it implies), `probes`,
//! `modules`, `probe_allowlist` and `diagnosis`, validated into the immutable snapshot the
//! daemon runs on. Each kind's section is validated by the kind's own file, for probes and
//! modules alike; the toolkit below them is `base` and `connection`.

pub mod base;
pub mod clerk;
pub mod connection;
pub mod global;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::net::allow::{Allowlist, Entry as AllowEntry};
use crate::probe::kind::SectionCx;
use crate::probe::{self, ProbeSpec, RawModule, RawProbe, Spec};
use base::{ConfigError, Cx, Pos, Role, Text, yaml_error};
use clerk::{Clerk, RawClerk};
use connection::{ConnPlan, RawConnection, Sdk};
use global::{DiagnosisSpec, GlobalSpec, RawDiagnosis, RawGlobal};

/// The embedded default configuration: the documented `config.yaml` at the repository root.
pub const DEFAULT_CONFIG: &str = include_str!("../../config.yaml");
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default config.yaml>";

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

/// A `/probe` module, validated at load: the kind section with a placeholder target, and a
/// connection whose proxy is decided per request from the environment as it was at load.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSpec {
    pub name: String,
    pub timeout: Duration,
    settings: Spec,
    conn: ConnPlan,
}

/// The validated, immutable configuration snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub global: GlobalSpec,
    pub probes: Vec<ProbeSpec>,
    pub diagnosis: DiagnosisSpec,
    /// `/probe` modules by name.
    pub modules: BTreeMap<String, ModuleSpec>,
    /// What `/probe` may target: names, `*.domain`, addresses and networks, with ports.
    pub probe_allowlist: std::sync::Arc<Allowlist>,
}

/// What validating the entries of one file shares.
struct Entries<'a> {
    cx: Cx<'a>,
    global: &'a GlobalSpec,
    clerk: &'a Clerk,
}

impl Entries<'_> {
    fn section_cx(&self, pos: Pos, module: bool) -> SectionCx<'_> {
        SectionCx {
            cx: &self.cx,
            pos,
            clerk: self.clerk,
            module,
            global_body_limit: self.global.body_limit,
        }
    }

    /// The connection plan of an entry: only HTTP-based kinds take a `connection` section.
    fn conn_plan(
        &self,
        settings: &Spec,
        raw: &Option<RawConnection>,
        pos: Pos,
    ) -> Result<ConnPlan, ConfigError> {
        let kind = settings.kind();
        if !kind.is_http() && raw.is_some() {
            return Err(self.cx.err(
                pos,
                format!("a {} probe takes no connection section", kind.as_label()),
            ));
        }
        raw.clone()
            .unwrap_or_default()
            .plan(&self.cx, pos, self.global.body_limit)
    }

    fn probe(&self, p: &RawProbe, pos: Pos) -> Result<ProbeSpec, ConfigError> {
        let name = p.name.value.0.trim().to_string();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name {
            return Err(self.cx.at(
                &p.name,
                "probe name must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        let settings = p.settings(&format!("probe {name:?}"), &self.section_cx(pos, false))?;
        let interval = p.interval.unwrap_or(self.global.interval);
        let timeout = p.timeout.unwrap_or(self.global.timeout);
        if interval < Duration::from_millis(100) {
            return Err(self.cx.err(
                pos,
                format!("probe {name:?}: interval must be at least 100ms"),
            ));
        }
        if timeout.is_zero() {
            return Err(self
                .cx
                .err(pos, format!("probe {name:?}: timeout must be positive")));
        }
        let sdk = match &p.sdk {
            None => None,
            Some(s) => Sdk::parse(&s.value.0).map_err(|e| self.cx.at(s, e))?,
        };
        let mut plan = self.conn_plan(&settings, &p.connection, pos)?;
        if let Some(sdk) = sdk {
            plan = plan.with_sdk(sdk, &self.cx);
        }
        let conn = match settings.target() {
            Some(t) => plan.for_target(&t.host, t.https),
            None => plan.for_target("", false),
        }
        .map_err(|e| self.cx.err(pos, e))?;
        let role = match &p.role {
            None => settings.kind().role_by_default(),
            Some(r) => Role::parse(&r.value.0).ok_or_else(|| {
                self.cx.at(
                    r,
                    format!("invalid role {:?}: use clerk, api or other", r.value.0),
                )
            })?,
        };
        Ok(ProbeSpec {
            name,
            role,
            interval,
            timeout,
            settings,
            conn,
            sdk,
        })
    }

    fn module(&self, name: &str, m: &RawModule, pos: Pos) -> Result<ModuleSpec, ConfigError> {
        if let Some(k) = &m.kind {
            return Err(self.cx.at(
                k,
                format!(
                    "module {name}: write the kind as a section, as for a probe: `{}: {{...}}` with its settings inside",
                    k.value.0
                ),
            ));
        }
        let settings = m.settings(&format!("module {name}"), &self.section_cx(pos, true))?;
        if !settings.kind().module_allowed() {
            return Err(self.cx.err(
                pos,
                format!(
                    "module {name}: a {} probe cannot be a /probe module",
                    settings.kind().as_label()
                ),
            ));
        }
        let conn = self.conn_plan(&settings, &m.connection, pos)?;
        let module = ModuleSpec {
            name: name.to_string(),
            timeout: m.timeout.unwrap_or(self.global.timeout),
            settings,
            conn,
        };
        // Proxy settings that cannot work show now, not at the first request.
        module
            .conn
            .for_target("placeholder.invalid", true)
            .map_err(|e| self.cx.err(pos, e))?;
        Ok(module)
    }
}

impl ModuleSpec {
    /// The probe this module describes for `target`, as `/probe?module=…&target=…` runs it.
    pub fn probe_for(&self, target: &str, interval: Duration) -> Result<ProbeSpec, String> {
        let settings = self.settings.retarget(target)?;
        let conn = match settings.target() {
            Some(t) => self.conn.for_target(&t.host, t.https)?,
            None => self.conn.for_target("", false)?,
        };
        Ok(ProbeSpec {
            name: self.name.clone(),
            role: Role::Other,
            interval,
            timeout: self.timeout,
            settings,
            conn,
            sdk: None,
        })
    }
}

fn allowlist(cx: &Cx, raw: Option<Vec<Spanned<Text>>>) -> Result<Allowlist, ConfigError> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|p| {
            AllowEntry::parse(&p.value.0).map_err(|e| cx.at(&p, format!("probe_allowlist: {e}")))
        })
        .collect::<Result<_, _>>()
        .map(Allowlist)
}

impl Config {
    /// Loads and validates a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        match path {
            None => Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, &env),
            Some(p) => {
                let file = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?;
                Config::parse(&text, &file, &env)
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
            serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, file))?
        };
        let cx = Cx { file, env };
        let global = raw.global.validate(&cx)?;
        let diagnosis = raw.diagnosis.validate(&cx)?;
        let clerk = Clerk::resolve(&cx, raw.clerk.as_ref())?;
        let entries = Entries {
            cx,
            global: &global,
            clerk: &clerk,
        };
        let mut probes = Vec::new();
        let mut names = HashSet::new();
        for sp in &raw.probes {
            let probe = entries.probe(&sp.value, sp.into())?;
            if !names.insert(probe.name.clone()) {
                return Err(cx.at(
                    &sp.value.name,
                    format!("duplicate probe name {:?}", probe.name),
                ));
            }
            probes.push(probe);
        }
        if clerk.auto_probes {
            for probe in auto_probes(&entries)? {
                if !names.insert(probe.name.clone()) {
                    return Err(cx.whole(format!(
                        "probe name {:?} is reserved for the probes derived from the clerk section (set clerk.auto_probes: false to define it yourself)",
                        probe.name
                    )));
                }
                probes.push(probe);
            }
        }
        probe::link(&mut probes).map_err(|e| cx.whole(e))?;
        let mut modules = BTreeMap::new();
        for (name, m) in &raw.modules {
            modules.insert(name.clone(), entries.module(name, &m.value, m.into())?);
        }
        for (name, m) in builtin_modules(&cx)? {
            if !modules.contains_key(&name) {
                modules.insert(name.clone(), entries.module(&name, &m, Pos::default())?);
            }
        }
        Ok(Config {
            source: file.to_string(),
            probe_allowlist: std::sync::Arc::new(allowlist(&cx, raw.probe_allowlist)?),
            global,
            probes,
            diagnosis,
            modules,
        })
    }

    /// The probe `module` describes for `target`, as `/probe?module=…&target=…` runs it.
    pub fn module_probe(&self, module: &str, target: &str) -> Result<ProbeSpec, String> {
        self.modules
            .get(module)
            .ok_or_else(|| format!("unknown module {module:?}"))?
            .probe_for(target, self.global.interval)
    }
}

/// blackbox_exporter's module names, so a scrape job written for it works unchanged; a
/// module of the same name in the file wins.
const BUILTIN_MODULES: &str =
    "http_2xx: {https: {}}\nhttp_post_2xx: {https: {method: POST}}\ntcp_connect: {tcp: {}}\n";

fn builtin_modules(cx: &Cx) -> Result<BTreeMap<String, RawModule>, ConfigError> {
    serde_saphyr::from_str(BUILTIN_MODULES).map_err(|e| cx.whole(format!("built-in modules: {e}")))
}

/// The probes the `clerk` section implies, through the same validation as written probes.
fn auto_probes(entries: &Entries<'_>) -> Result<Vec<ProbeSpec>, ConfigError> {
    let text = entries.clerk.auto_probes_yaml();
    let raw: Vec<Spanned<RawProbe>> = serde_saphyr::from_str(&text)
        .map_err(|e| entries.cx.whole(format!("clerk: derived probes: {e}")))?;
    raw.iter()
        .map(|p| {
            entries
                .probe(&p.value, Pos::default())
                .map_err(|e| entries.cx.whole(format!("clerk: derived probe: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::KindId;

    fn env_none(_: &str) -> Option<String> {
        None
    }

    fn parse(y: &str) -> Result<Config, String> {
        Config::parse(y, "f.yaml", &env_none).map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::parse(DEFAULT_CONFIG, "default", &env_none).unwrap();
        let names: Vec<_> = c.probes.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"clerk-dns"), "{names:?}");
        assert!(c.modules.contains_key("https_2xx"));
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let y = "global:\n  interval: 10s\nprobes:\n  - name: a\n    bogus: 1\n    https:\n      url: https://x.test/\n";
        let e = parse(y).unwrap_err();
        assert!(e.starts_with("f.yaml:5:"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn global_and_diagnosis_errors_point_at_the_value() {
        // These used to name only the file; an operator with a long config had to hunt.
        let cases = [
            (
                "global:\n  interval: 10s\n  jitter: 0.9\n",
                "f.yaml:3:11:",
                "jitter",
            ),
            ("global:\n  interval: 10ms\n", "f.yaml:2:13:", "interval"),
            ("global:\n  timeout: 0s\n", "f.yaml:2:12:", "timeout"),
            (
                "global:\n  trust_store_file: /nonexistent/ca.pem\n",
                "f.yaml:2:21:",
                "not a regular file",
            ),
            (
                "diagnosis:\n  jwks_max_age: 1m\n  clock_skew_critical: 1s\n",
                "f.yaml:3:24:",
                "clock_skew_warning",
            ),
        ];
        for (y, at, what) in cases {
            let e = parse(y).unwrap_err();
            assert!(e.starts_with(at) && e.contains(what), "{y:?} gave {e}");
        }
    }

    #[test]
    fn module_lists_are_validated_as_on_probes() {
        // An empty list on a probe is an error; it used to give a module zero lookups that
        // "succeeded".
        for key in ["record_types", "resolvers"] {
            let probe = format!("probes: [{{name: a, dns: {{names: [x.test], {key}: []}}}}]");
            let module = format!("modules: {{m: {{dns: {{{key}: []}}}}}}");
            let p = parse(&probe).unwrap_err();
            let m = parse(&module).unwrap_err();
            assert!(p.contains("must not be empty"), "{p}");
            assert!(m.contains("must not be empty"), "{m}");
        }
    }

    #[test]
    fn empty_status_list_means_2xx_on_modules_as_on_probes() {
        let c = parse(
            "probes: [{name: a, https: {url: \"https://x.test/\", valid_status_codes: []}}]\nmodules: {m: {https: {valid_status_codes: []}}}\n",
        )
        .unwrap();
        let module = c.module_probe("m", "x.test").unwrap();
        assert_eq!(module.settings, c.probes[0].settings);
        let crate::probe::Spec::Https(h) = &module.settings else {
            panic!("not https: {:?}", module.settings);
        };
        assert!(h.valid.contains(204) && !h.valid.contains(301));
    }

    #[test]
    fn modules_are_ready_specs_and_refuse_what_a_target_must_not_get() {
        let old = parse("modules: {m: {kind: https}}").unwrap_err();
        assert!(
            old.starts_with("f.yaml:1:") && old.contains("https: {...}"),
            "{old}"
        );
        let url = parse("modules: {m: {https: {url: \"https://x.test/\"}}}").unwrap_err();
        assert!(url.contains("remove url"), "{url}");
        let secret = "clerk: {secret_key: sk_test_canary}\nmodules: {m: {jwks: {source: backend}}}";
        let e = parse(secret).unwrap_err();
        assert!(e.contains("cannot use source backend"), "{e}");
        assert!(!e.contains("canary"), "{e}");
        let auth = "modules: {m: {auth: {token_source: file, token_file: /dev/null}}}";
        assert!(
            parse(auth)
                .unwrap_err()
                .contains("cannot be a /probe module")
        );
        let c = parse("modules: {d: {dns: {}}, j: {jwks: {source: oidc}}}").unwrap();
        let d = c.module_probe("d", "Clerk.Test.").unwrap();
        assert_eq!(d.settings.host(), "clerk.test");
        assert!(c.module_probe("d", "not a name").is_err());
        let j = c.module_probe("j", "https://idp.test/.well-known/openid-configuration");
        assert_eq!(j.unwrap().settings.target().unwrap().host, "idp.test");
    }

    #[test]
    fn derived_probes_equal_the_same_probes_written_out() {
        use base64::Engine as _;
        let pk = format!(
            "pk_test_{}",
            base64::engine::general_purpose::STANDARD.encode("happy-cat-12.clerk.accounts.dev$")
        );
        let derived = parse(&format!(
            "clerk: {{publishable_key: {pk}, secret_key: sk_test_x, app_api_url: \"http://api:8020/base\"}}"
        ))
        .unwrap();
        let written = parse(&format!(
            r#"clerk: {{publishable_key: {pk}, secret_key: sk_test_x, auto_probes: false}}
probes:
  - {{name: clerk-fapi-dns, dns: {{names: [happy-cat-12.clerk.accounts.dev], resolvers: [system, "8.8.8.8:53", "1.1.1.1:53"]}}}}
  - {{name: clerk-fapi-health, api_health: {{url: "https://happy-cat-12.clerk.accounts.dev/v1/health"}}}}
  - {{name: clerk-fapi-jwks, jwks: {{url: "https://happy-cat-12.clerk.accounts.dev/.well-known/jwks.json", group: clerk}}}}
  - {{name: clerk-bapi-jwks, jwks: {{source: backend, group: clerk}}}}
  - {{name: api-health-network, role: api, api_health: {{url: "http://api:8020/base/health/network"}}, connection: {{proxy_from_env: false}}}}
"#
        ))
        .unwrap();
        assert_eq!(derived.probes, written.probes);
        let kinds: Vec<KindId> = derived.probes.iter().map(ProbeSpec::kind).collect();
        assert_eq!(
            kinds,
            [
                KindId::Dns,
                KindId::ApiHealth,
                KindId::Jwks,
                KindId::Jwks,
                KindId::ApiHealth
            ]
        );
    }

    #[test]
    fn a_probe_session_adds_the_auth_probe_and_an_empty_one_does_not() {
        use base64::Engine as _;
        let pk = format!(
            "pk_test_{}",
            base64::engine::general_purpose::STANDARD.encode("happy-cat-12.clerk.accounts.dev$")
        );
        let clerk = format!(
            "clerk: {{publishable_key: {pk}, secret_key: sk_test_x, app_api_url: \"http://api:8020\", app_protected_path: /camera/status"
        );
        let with = parse(&format!("{clerk}, probe_session_id: sess_probe1}}")).unwrap();
        let auth = with
            .probes
            .iter()
            .find(|p| p.name == "api-auth")
            .expect("api-auth");
        assert_eq!(auth.kind(), KindId::Auth);
        assert_eq!(
            auth.settings.target().unwrap().url(),
            "http://api:8020/camera/status"
        );
        let without = parse(&format!("{clerk}, probe_session_id: \"\"}}")).unwrap();
        assert!(without.probes.iter().all(|p| p.name != "api-auth"));
        let no_api = parse(&format!(
            "clerk: {{publishable_key: {pk}, secret_key: sk_test_x, probe_session_id: sess_probe1}}"
        ));
        assert!(no_api.unwrap_err().contains("app_api_url"));
    }
}
