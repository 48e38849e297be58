//! `--web.config.file` in the Prometheus exporter-toolkit format: TLS for every endpoint and
//! basic-auth users with bcrypt hashes, checked without timing leaks.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::base::{ConfigError, Text, yaml_error};
use crate::lock;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    basic_auth_users: Option<BTreeMap<String, Spanned<Text>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Spanned<Text>,
    key_file: Spanned<Text>,
    min_version: Option<Spanned<Text>>,
}

/// The validated web configuration.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub users: BTreeMap<String, String>,
}

fn err_at<T>(file: &str, s: &Spanned<T>, message: String) -> ConfigError {
    ConfigError::At {
        file: file.to_string(),
        line: s.referenced.line(),
        column: s.referenced.column(),
        message,
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

/// Named statics because a slice literal of statics is not promoted to `'static`, and
/// `protocol_versions` returns one.
static TLS12_AND_UP: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

impl WebConfig {
    /// Loads and validates the file; relative paths are relative to the file's directory.
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let file = path.display().to_string();
        let raw = read_raw(path, &file)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => Some(load_tls(&file, base, &t)?),
        };
        let users = load_users(&file, raw.basic_auth_users.unwrap_or_default())?;
        Ok(WebConfig { tls, users })
    }
}

/// An empty file is a valid configuration with neither TLS nor users.
fn read_raw(path: &Path, file: &str) -> Result<RawWebConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.to_string(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(RawWebConfig {
            tls_server_config: None,
            basic_auth_users: None,
        });
    }
    serde_saphyr::from_str(&text).map_err(|e| yaml_error(&e, file))
}

fn load_tls(file: &str, base: &Path, t: &RawTls) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let cert_path = resolve(base, &t.cert_file.value.0);
    let key_path = resolve(base, &t.key_file.value.0);
    let certs = load_certs(file, &t.cert_file, &cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        err_at(
            file,
            &t.key_file,
            format!("key_file {}: {e}", key_path.display()),
        )
    })?;
    let versions = protocol_versions(file, t.min_version.as_ref())?;
    let config = rustls::ServerConfig::builder_with_provider(crate::net::tls::provider())
        .with_protocol_versions(versions)
        .map_err(|e| err_at(file, &t.cert_file, format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            err_at(
                file,
                &t.key_file,
                format!("certificate and key do not fit: {e}"),
            )
        })?;
    Ok(Arc::new(config))
}

fn load_certs(
    file: &str,
    spanned: &Spanned<Text>,
    cert_path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bad = |e: rustls::pki_types::pem::Error| {
        err_at(
            file,
            spanned,
            format!("cert_file {}: {e}", cert_path.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(bad)?
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    if certs.is_empty() {
        return Err(err_at(
            file,
            spanned,
            format!("cert_file {} holds no certificate", cert_path.display()),
        ));
    }
    Ok(certs)
}

fn protocol_versions(
    file: &str,
    min_version: Option<&Spanned<Text>>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], ConfigError> {
    let Some(v) = min_version else {
        return Ok(TLS12_AND_UP);
    };
    match v.value.0.as_str() {
        "TLS12" => Ok(TLS12_AND_UP),
        "TLS13" => Ok(TLS13_ONLY),
        other => Err(err_at(
            file,
            v,
            format!("unsupported min_version {other:?}: use TLS12 or TLS13"),
        )),
    }
}

fn load_users(
    file: &str,
    raw: BTreeMap<String, Spanned<Text>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut users = BTreeMap::new();
    for (user, hash) in raw {
        let h = hash.value.0.trim().to_string();
        if h.parse::<bcrypt::HashParts>().is_err() {
            return Err(err_at(
                file,
                &hash,
                format!("basic_auth_users.{user}: not a bcrypt hash"),
            ));
        }
        users.insert(user, h);
    }
    Ok(users)
}

/// Checks `Authorization: Basic` headers. Verified credentials are remembered as a SHA-256
/// of user, password and hash, so a scraper does not pay bcrypt's cost on every scrape.
#[derive(Debug)]
pub struct Authenticator {
    users: BTreeMap<String, String>,
    /// A hash of a password nobody knows, at the users' cost: unknown users are checked
    /// against it so that a wrong user name takes as long as a wrong password.
    dummy: String,
    verified: Mutex<HashSet<Vec<u8>>>,
    /// bcrypt runs on the blocking pool, at most this many at once: a flood of wrong
    /// passwords can neither occupy the async workers (the probes' and scrapes') nor grow
    /// the pool; beyond it a request is refused rather than queued.
    slots: tokio::sync::Semaphore,
}

impl Default for Authenticator {
    /// No users: every request is allowed.
    fn default() -> Self {
        Authenticator {
            users: BTreeMap::new(),
            dummy: String::new(),
            verified: Mutex::new(HashSet::new()),
            slots: tokio::sync::Semaphore::new(BCRYPT_SLOTS),
        }
    }
}

/// Concurrent bcrypt verifications (each takes tens to hundreds of milliseconds of CPU).
const BCRYPT_SLOTS: usize = 2;

impl Authenticator {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let nonce: String = (0..24).map(|_| fastrand::alphanumeric()).collect();
        let dummy = if users.is_empty() {
            String::new()
        } else {
            bcrypt::hash(nonce, cost).unwrap_or_default()
        };
        Authenticator {
            users,
            dummy,
            verified: Mutex::new(HashSet::new()),
            slots: tokio::sync::Semaphore::new(BCRYPT_SLOTS),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether the header value grants access.
    pub async fn allows(&self, header: Option<&str>) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(pair) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return false;
        };
        let (known, hash) = match self.users.get(user) {
            Some(h) => (true, h.as_str()),
            None => (false, self.dummy.as_str()),
        };
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [
            user.as_bytes(),
            b"\0",
            password.as_bytes(),
            b"\0",
            hash.as_bytes(),
        ] {
            ctx.update(part);
        }
        let key = ctx.finish().as_ref().to_vec();
        if known && lock(&self.verified).contains(&key) {
            return true;
        }
        // bcrypt runs for unknown users too, so the time taken does not reveal user names.
        let Ok(_slot) = self.slots.try_acquire() else {
            return false;
        };
        let (password, hash) = (password.to_string(), hash.to_string());
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        let ok = verified && known;
        if ok {
            let mut cache = lock(&self.verified);
            if cache.len() > 1024 {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn basic_auth() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let a = Authenticator::new(BTreeMap::from([("prom".to_string(), hash)]));
        let h = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(a.allows(Some(&h("prom", "s3cret"))).await);
        assert!(a.allows(Some(&h("prom", "s3cret"))).await, "cached");
        assert!(!a.allows(Some(&h("prom", "wrong"))).await);
        assert!(!a.allows(Some(&h("nobody", "s3cret"))).await);
        assert!(!a.allows(None).await);
        assert!(!a.allows(Some("Bearer x")).await);
    }
}
