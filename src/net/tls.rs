//! TLS: the system trust store (whose emptiness is a failure mode to report), client configs
//! shared by every run with a verifier that records each handshake's chain and verdict into
//! that handshake's own recorder, and the mapping of TLS errors to reasons.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::failure::Reason;

/// The one crypto provider used everywhere, built once. Its key exchange offers X25519 first,
/// then P-256 and P-384, without the post-quantum hybrid rustls now puts first: that one
/// costs an ML-KEM key generation on every ClientHello, and neither the Node nor the Python
/// Clerk SDK on the OpenSSL 3.0 of today's images offers it either.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
            let mut p = default_provider();
            p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
            Arc::new(p)
        })
        .clone()
}

/// A loaded set of trusted roots.
#[derive(Debug)]
pub struct TrustStore {
    pub roots: Arc<RootCertStore>,
    /// How many certificates the store held (0: the image lacks CA certificates).
    pub count: usize,
    /// A hash of the certificates, to tell a re-read of the same store from a change.
    fingerprint: u64,
}

/// The most a trust store or CA file may hold (a full Mozilla bundle is about 220 KB).
const MAX_PEM_FILE: u64 = 16 << 20;

fn load_pem_file(path: &Path) -> Vec<CertificateDer<'static>> {
    match crate::files::read_limited(path, MAX_PEM_FILE) {
        Ok(bytes) => CertificateDer::pem_slice_iter(&bytes)
            .filter_map(Result::ok)
            .map(|c| c.into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn roots_from(certs: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs.iter().cloned());
    roots
}

impl TrustStore {
    /// Loads `file` when given, otherwise the platform store (honouring SSL_CERT_FILE and
    /// SSL_CERT_DIR). Unreadable or empty stores give an empty set, never an error.
    pub fn load(file: Option<&Path>) -> TrustStore {
        let certs = match file {
            Some(p) => load_pem_file(p),
            None => rustls_native_certs::load_native_certs().certs,
        };
        let roots = roots_from(&certs);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for c in &certs {
            c.as_ref().hash(&mut h);
        }
        TrustStore {
            count: roots.len(),
            roots: Arc::new(roots),
            fingerprint: h.finish(),
        }
    }
}

/// The system trust store, re-read once a minute so that installing `ca-certificates`
/// (or losing it) shows without a restart. A configured `trust_store_file` is also re-read as
/// soon as its size or modification time changes (one `stat` per HTTPS run).
#[derive(Debug)]
pub struct TrustCache {
    file: Option<PathBuf>,
    state: Mutex<Cached>,
    /// Verifiers per extra CA file, for the current store: probes with the same `ca_file`
    /// share one, instead of each holding its own copy of every root.
    verifiers: Mutex<VerifierCache>,
    /// Client configs per extra CA file and root choice, for the current store.
    configs: Mutex<ConfigCache>,
    /// The reference roots (the bundled Mozilla set unless configured), for telling "the image
    /// lacks CA certificates" from "someone intercepts TLS".
    pub reference: Arc<TrustStore>,
}

type ConfigCache = (
    Option<Arc<TrustStore>>,
    HashMap<(Option<PathBuf>, bool), Arc<rustls::ClientConfig>>,
);

#[derive(Debug)]
struct Cached {
    loaded_at: Instant,
    stamp: Option<(u64, SystemTime)>,
    store: Arc<TrustStore>,
}

/// The store the cached verifiers were built for, and the verifiers by extra CA file.
type VerifierCache = (Option<Arc<TrustStore>>, HashMap<Option<PathBuf>, Verifiers>);

/// A verifier against the system store and one against the reference roots, each with a
/// probe's extra CA; `None` where no root at all is trusted.
pub type Verifiers = (
    Option<Arc<WebPkiServerVerifier>>,
    Option<Arc<WebPkiServerVerifier>>,
);

const TRUST_REFRESH: Duration = Duration::from_secs(60);

fn stamp(file: Option<&Path>) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(file?).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

impl TrustCache {
    pub fn new(file: Option<PathBuf>, reference_file: Option<PathBuf>) -> TrustCache {
        let store = Arc::new(TrustStore::load(file.as_deref()));
        let reference = match reference_file {
            Some(p) => TrustStore::load(Some(&p)),
            None => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                TrustStore {
                    count: roots.len(),
                    roots: Arc::new(roots),
                    fingerprint: 0,
                }
            }
        };
        TrustCache {
            state: Mutex::new(Cached {
                loaded_at: Instant::now(),
                stamp: stamp(file.as_deref()),
                store,
            }),
            file,
            reference: Arc::new(reference),
            verifiers: Mutex::new((None, HashMap::new())),
            configs: Mutex::new((None, HashMap::new())),
        }
    }

    /// The verifiers for `store` (the current one) plus `extra_ca`, built once per store and
    /// CA file.
    fn verifiers(&self, store: Arc<TrustStore>, extra_ca: Option<&Path>) -> Verifiers {
        let mut cache = crate::lock(&self.verifiers);
        if !cache.0.as_ref().is_some_and(|s| Arc::ptr_eq(s, &store)) {
            *cache = (Some(store.clone()), HashMap::new());
        }
        cache
            .1
            .entry(extra_ca.map(Path::to_path_buf))
            .or_insert_with(|| {
                (
                    build_verifier(&store, extra_ca),
                    build_verifier(&self.reference, extra_ca),
                )
            })
            .clone()
    }

    /// The client config for the current store plus `extra_ca`, verifying against the system
    /// roots or the bundled ones: built once per store, CA file and choice, shared by every
    /// run. Session resumption is off so each run does (and verifies) a full handshake, as
    /// the API's first fetch does.
    pub fn client_config(
        &self,
        extra_ca: Option<&Path>,
        bundled: bool,
    ) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        // One look at the store per run; the verifiers are needed only to build a config.
        let store = self.get();
        let mut cache = crate::lock(&self.configs);
        if !cache.0.as_ref().is_some_and(|s| Arc::ptr_eq(s, &store)) {
            *cache = (Some(store.clone()), HashMap::new());
        }
        let key = (extra_ca.map(Path::to_path_buf), bundled);
        if let Some(c) = cache.1.get(&key) {
            return Ok(c.clone());
        }
        let (system, reference) = self.verifiers(store, extra_ca);
        let primary = if bundled { reference.clone() } else { system };
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RecordingVerifier::new(primary, reference)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        let config = Arc::new(config);
        cache.1.insert(key, config.clone());
        Ok(config)
    }

    pub fn get(&self) -> Arc<TrustStore> {
        let mut guard = crate::lock(&self.state);
        let now_stamp = stamp(self.file.as_deref());
        if guard.loaded_at.elapsed() >= TRUST_REFRESH || now_stamp != guard.stamp {
            let fresh = TrustStore::load(self.file.as_deref());
            // An unchanged store keeps its identity, so verifiers built for it stay valid.
            if fresh.fingerprint != guard.store.fingerprint {
                guard.store = Arc::new(fresh);
            }
            guard.loaded_at = Instant::now();
            guard.stamp = now_stamp;
        }
        guard.store.clone()
    }
}

/// Builds the verifier for a probe: the system roots plus the probe's extra CA file.
/// `None` when no root at all is trusted: every chain is then an unknown issuer.
pub fn build_verifier(
    store: &TrustStore,
    extra_ca: Option<&Path>,
) -> Option<Arc<WebPkiServerVerifier>> {
    let roots = match extra_ca {
        None => store.roots.clone(),
        Some(p) => {
            let mut r = (*store.roots).clone();
            r.add_parsable_certificates(load_pem_file(p));
            Arc::new(r)
        }
    };
    if roots.is_empty() {
        return None;
    }
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .ok()
}

/// What the handshake showed, kept even when verification fails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsInfo {
    pub version: Option<String>,
    pub leaf_not_after: Option<i64>,
    pub earliest_not_after: Option<i64>,
    pub verified: bool,
    /// When the chain failed as an unknown issuer: whether it verifies against the reference
    /// roots (yes: the local store lacks CA certificates; no: something intercepts TLS).
    pub reference_verified: Option<bool>,
    pub chain_len: usize,
    /// Who the server certificate names, for blackbox's `probe_ssl_last_chain_info`; only
    /// `/probe` runs ask for it (a scheduled probe would keep the strings for nothing).
    pub leaf: Option<Box<LeafDetails>>,
}

/// The server certificate's identity, as blackbox_exporter labels it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeafDetails {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint_sha256: String,
    pub subject: String,
    pub issuer: String,
    /// The DNS names and addresses, comma-separated.
    pub subject_alternative: String,
    /// Lowercase hex.
    pub serial: String,
}

impl LeafDetails {
    fn of(cert: &CertificateDer<'_>) -> Option<LeafDetails> {
        use x509_parser::extensions::GeneralName;
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let sans = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some(d.to_string()),
                        GeneralName::IPAddress(ip) => match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip)
                                .ok()
                                .map(|a| std::net::Ipv4Addr::from(a).to_string()),
                            16 => <[u8; 16]>::try_from(*ip)
                                .ok()
                                .map(|a| std::net::Ipv6Addr::from(a).to_string()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        // Remote text becomes labels: bounded like every other label.
        let cut = |s: String| crate::failure::bounded(&s, 256).to_string();
        Some(LeafDetails {
            fingerprint_sha256: hex(digest.as_ref()),
            subject: cut(parsed.subject().to_string()),
            issuer: cut(parsed.issuer().to_string()),
            subject_alternative: cut(sans),
            serial: cut(hex(parsed.raw_serial())),
        })
    }
}

#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    verdict: Option<Result<(), rustls::Error>>,
    reference_verified: Option<bool>,
}

/// Wraps the WebPKI verifier to record the chain the server presented and the verdict into
/// the recorder of the handshake being verified. One verifier (and one client config) serves
/// every run: rustls calls it while the handshake future is polled, inside that run's
/// [`recorded`] scope.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    reference: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

/// What one handshake's certificate verification saw.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Seen>,
    /// Whether `info` names the server certificate (`/probe` runs).
    leaf_details: bool,
}

tokio::task_local! {
    static RECORDER: Arc<Recorder>;
}

/// Runs a handshake with `recorder` receiving what its verification sees.
pub async fn recorded<F: std::future::Future>(recorder: Arc<Recorder>, handshake: F) -> F::Output {
    RECORDER.scope(recorder, handshake).await
}

impl RecordingVerifier {
    pub fn new(
        inner: Option<Arc<WebPkiServerVerifier>>,
        reference: Option<Arc<WebPkiServerVerifier>>,
    ) -> Self {
        RecordingVerifier {
            inner,
            reference,
            provider: provider(),
        }
    }
}

impl Recorder {
    /// A recorder for one handshake; `leaf_details` asks for the server certificate's names.
    pub fn new(leaf_details: bool) -> Recorder {
        Recorder {
            leaf_details,
            ..Recorder::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        crate::lock(&self.seen)
    }

    /// The chain's expiries and whether it verified; `None` before the server sent one.
    pub fn info(&self) -> Option<TlsInfo> {
        let seen = self.lock();
        if seen.chain.is_empty() {
            return None;
        }
        let not_afters: Vec<i64> = seen.chain.iter().filter_map(|c| not_after(c)).collect();
        Some(TlsInfo {
            version: None,
            leaf_not_after: seen.chain.first().and_then(|c| not_after(c)),
            earliest_not_after: not_afters.iter().copied().min(),
            verified: matches!(seen.verdict, Some(Ok(()))),
            reference_verified: seen.reference_verified,
            chain_len: seen.chain.len(),
            leaf: seen
                .chain
                .first()
                .filter(|_| self.leaf_details)
                .and_then(LeafDetails::of)
                .map(Box::new),
        })
    }

    /// The verification error, if the chain was rejected.
    pub fn rejection(&self) -> Option<rustls::Error> {
        match &self.lock().verdict {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ()),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        let unknown_issuer = matches!(
            verdict,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        );
        let reference_verified = unknown_issuer.then(|| {
            self.reference.as_ref().is_some_and(|r| {
                r.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    .is_ok()
            })
        });
        // Outside a `recorded` scope nothing is kept; the verdict stands either way.
        let _ = RECORDER.try_with(|r| {
            let mut seen = r.lock();
            seen.reference_verified = reference_verified;
            seen.chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            seen.verdict = Some(verdict.clone());
        });
        verdict.map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate's notAfter as Unix seconds.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// The failure reason for a certificate rejection.
pub fn reason_for(err: &rustls::Error) -> Reason {
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Reason::TlsUnknownIssuer,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Reason::TlsExpired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Reason::TlsNotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Reason::TlsHostnameMismatch
            }
            // A CA certificate served as the leaf (`openssl req -x509`'s default) is a question
            // of whom to trust, like an unknown issuer, not a broken handshake.
            CertificateError::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => {
                Reason::TlsUnknownIssuer
            }
            _ => Reason::TlsHandshake,
        },
        _ => Reason::TlsHandshake,
    }
}

/// A short human name for a negotiated protocol version.
pub fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        other => format!("{other:?}"),
    }
}
