//! The `clerk` section: the Frontend API host decoded from the publishable key, the secret
//! key (inline or from a file), the Backend API and the API's own base URL, and the probes
//! the section implies, written as ordinary probe entries so they pass the same validators.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;

use crate::config::base::{ConfigError, Cx, Text};
use crate::config::connection::Sdk;
use crate::net::target::Target;
use crate::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClerk {
    publishable_key: Option<Spanned<Text>>,
    secret_key: Option<Text>,
    secret_key_file: Option<Text>,
    api_url: Option<Spanned<Text>>,
    app_api_url: Option<Spanned<Text>>,
    #[serde(default = "yes")]
    auto_probes: bool,
    dns_resolvers: Option<Vec<Spanned<Text>>>,
    /// The Clerk SDK the API verifies tokens with: adds `clerk-sdk-jwks`, fetched its way.
    sdk: Option<Spanned<Text>>,
    /// A session of a dedicated probe user: with `app_api_url` and the secret key, adds the
    /// `api-auth` probe (a real token against `app_protected_path`). Empty means none, so one
    /// shipped file serves with and without it.
    probe_session_id: Option<Text>,
    /// A route of the API that requires a signed-in user (default `/`).
    app_protected_path: Option<Spanned<Text>>,
}

fn yes() -> bool {
    true
}

/// The resolved `clerk` section.
#[derive(Debug, Clone)]
pub struct Clerk {
    pub fapi_host: Option<String>,
    pub secret: Option<Secret>,
    pub api_url: Target,
    pub app_api_url: Option<Target>,
    pub auto_probes: bool,
    /// The validated `dns_resolvers` entries, as written.
    pub dns_resolvers: Vec<String>,
    pub sdk: Option<Sdk>,
    /// The probe user's session and the protected route, for the derived `api-auth` probe.
    pub auth: Option<(String, String)>,
}

const DEFAULT_PUBLIC_RESOLVERS: &[&str] = &["system", "8.8.8.8:53", "1.1.1.1:53"];

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

impl Clerk {
    /// Resolves the section: decodes the publishable key, reads the secret key file.
    pub fn resolve(ctx: &Cx, raw: Option<&RawClerk>) -> Result<Clerk, ConfigError> {
        let default_api = Target::parse("https://api.clerk.com").map_err(|e| ctx.whole(e))?;
        let Some(raw) = raw else {
            return Ok(Clerk {
                fapi_host: None,
                secret: None,
                api_url: default_api,
                app_api_url: None,
                auto_probes: false,
                dns_resolvers: vec![],
                sdk: None,
                auth: None,
            });
        };
        let fapi_host = match &raw.publishable_key {
            Some(pk) if !pk.value.0.trim().is_empty() => {
                Some(fapi_host_from_publishable_key(pk.value.0.trim()).map_err(|e| ctx.at(pk, e))?)
            }
            _ => None,
        };
        let secret = secret_key(ctx, raw)?;
        let api_url = match &raw.api_url {
            Some(u) if !u.value.0.is_empty() => ctx.target(u)?,
            _ => default_api,
        };
        let app_api_url = match &raw.app_api_url {
            Some(u) if !u.value.0.is_empty() => Some(ctx.target(u)?),
            _ => None,
        };
        let dns_resolvers = match &raw.dns_resolvers {
            Some(list) => {
                ctx.resolvers(list)?;
                list.iter().map(|r| r.value.0.trim().to_string()).collect()
            }
            None => DEFAULT_PUBLIC_RESOLVERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let sdk = match &raw.sdk {
            None => None,
            Some(v) => Sdk::parse(&v.value.0).map_err(|e| ctx.at(v, e))?,
        };
        if sdk.is_some() && secret.is_none() {
            return Err(ctx.whole(
                "clerk.sdk: the SDKs fetch the JWKS from the Backend API with the secret key; set clerk.secret_key or secret_key_file",
            ));
        }
        let session = raw
            .probe_session_id
            .as_ref()
            .map(|t| t.0.trim().to_string())
            .filter(|s| !s.is_empty());
        let path = match &raw.app_protected_path {
            Some(p) if !p.value.0.starts_with('/') => {
                return Err(ctx.at(p, "clerk.app_protected_path must start with /"));
            }
            Some(p) => p.value.0.clone(),
            None => "/".to_string(),
        };
        let auth = match (session, &app_api_url, &secret) {
            (None, ..) => None,
            (Some(s), Some(_), Some(_)) => Some((s, path)),
            (Some(_), ..) => {
                return Err(ctx.whole(
                    "clerk.probe_session_id: the derived auth probe needs clerk.app_api_url and the secret key",
                ));
            }
        };
        Ok(Clerk {
            fapi_host,
            secret,
            api_url,
            app_api_url,
            auto_probes: raw.auto_probes,
            dns_resolvers,
            sdk,
            auth,
        })
    }
}

/// The secret key, inline or from its file (one of the two), checked for its prefix. Read
/// once at load; it is held as a secret from here on.
fn secret_key(ctx: &Cx, raw: &RawClerk) -> Result<Option<Secret>, ConfigError> {
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
            return Err(ctx.whole("clerk: set secret_key or secret_key_file, not both"));
        }
        (Some(s), None) => Some(Secret::new(s)),
        (None, Some(path)) => {
            // A secret key is about 50 bytes; anything over 4 KiB is not one.
            let content = crate::files::read_limited(std::path::Path::new(&path), 4096)
                .map_err(|e| ctx.whole(format!("clerk.secret_key_file: {e}")))?;
            Some(Secret::new(String::from_utf8_lossy(&content).trim()))
        }
        (None, None) => None,
    };
    if let Some(s) = &secret
        && !(s.expose().starts_with("sk_test_") || s.expose().starts_with("sk_live_"))
    {
        return Err(ctx.whole("clerk: the secret key must start with sk_test_ or sk_live_"));
    }
    Ok(secret)
}

/// Keeps a generated value literal through `${ENV}` expansion.
fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

impl Clerk {
    /// The probes this section implies, as a YAML (JSON) list of probe entries: Frontend API
    /// DNS, health and JWKS with a publishable key, the Backend API JWKS with a secret key,
    /// and the API's own `/health/network` (never through a proxy) with its base URL.
    pub fn auto_probes_yaml(&self) -> String {
        let mut out = Vec::new();
        if let Some(host) = &self.fapi_host {
            let host = literal(host);
            let resolvers: Vec<String> = self.dns_resolvers.iter().map(|r| literal(r)).collect();
            out.push(json!({"name": "clerk-fapi-dns",
                "dns": {"names": [host], "record_types": ["A", "AAAA"], "resolvers": resolvers}}));
            out.push(json!({"name": "clerk-fapi-health",
                "api_health": {"url": format!("https://{host}/v1/health")}}));
            out.push(json!({"name": "clerk-fapi-jwks",
                "jwks": {"source": "frontend", "group": "clerk"}}));
        }
        if self.secret.is_some() {
            out.push(json!({"name": "clerk-bapi-jwks",
                "jwks": {"source": "backend", "group": "clerk"}}));
            // The SDKs fetch GET {api_url}/v1/jwks with the secret key (DESIGN.md §10): this
            // one does it through the SDK's own proxy and trust-store behaviour.
            if let Some(sdk) = self.sdk {
                out.push(json!({"name": "clerk-sdk-jwks", "sdk": sdk.as_label(),
                    "jwks": {"source": "backend", "group": "clerk"}}));
            }
        }
        if let Some(app) = &self.app_api_url {
            out.push(json!({"name": "api-health-network", "role": "api",
                "api_health": {"url": literal(&app.join("/health/network").url())},
                "connection": {"proxy_from_env": false}}));
            // The API as a signed-in user meets it; validated by the auth kind like any probe.
            if let Some((session, path)) = &self.auth {
                out.push(json!({"name": "api-auth",
                    "auth": {"url": literal(&app.join(path).url()), "token_source": "backend",
                        "session_id": literal(session)},
                    "connection": {"proxy_from_env": false}}));
            }
        }
        serde_json::Value::Array(out).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
