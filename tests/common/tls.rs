//! Throwaway PKI built with rcgen at test time: a trusted CA, an unrelated CA, and leaf
//! certificates that are valid, expired, not yet valid or from the wrong CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::{install_crypto_provider, unix_now};

/// Names a leaf gets from `good_default`: what tests use to reach fixtures over loopback.
pub const DEFAULT_NAMES: &[&str] = &["localhost", "127.0.0.1", "clerk.test"];

const DAY: i64 = 86_400;

/// A leaf certificate with its key; validity bounds are exact Unix seconds as encoded in the
/// certificate, so they can be compared with exported metrics to the second.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub names: Vec<String>,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
}

impl Leaf {
    /// A rustls server config presenting this leaf. No ALPN is configured so clients that offer
    /// h2 and http/1.1 both fall back to HTTP/1.1, which is all the test server speaks.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        install_crypto_provider();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let cfg = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("leaf usable as server cert");
        Arc::new(cfg)
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir`.
    pub fn write_pem_files(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write leaf cert");
        std::fs::write(&key, &self.key_pem).expect("write leaf key");
        (cert, key)
    }
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: Certificate,
}

impl Ca {
    fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = unix_now();
        set_validity(&mut params, now - 365 * DAY, now + 3650 * DAY);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca {
            issuer: Issuer::new(params, key),
            cert,
        }
    }
}

/// The PKI and a temp dir holding the CA PEM; both live as long as this value.
pub struct TestPki {
    ca: Ca,
    other_ca: Ca,
    dir: tempfile::TempDir,
    ca_pem_path: PathBuf,
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    pub fn new() -> Self {
        install_crypto_provider();
        let ca = Ca::new("authwatch test CA");
        let other_ca = Ca::new("authwatch unrelated CA");
        let dir = tempfile::tempdir().expect("temp dir for PKI");
        let ca_pem_path = dir.path().join("ca.pem");
        std::fs::write(&ca_pem_path, ca.cert.pem()).expect("write CA PEM");
        TestPki {
            ca,
            other_ca,
            dir,
            ca_pem_path,
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.cert.pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.cert.der().clone()
    }

    /// PEM file of the trusted CA, for the daemon's CA-file setting.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    pub fn other_ca_pem(&self) -> String {
        self.other_ca.cert.pem()
    }

    /// Scratch directory removed with the PKI, for leaf PEM files and the like.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Valid from an hour ago for 30 days, signed by the trusted CA.
    pub fn good(&self, names: &[&str]) -> Leaf {
        let now = unix_now();
        self.issue(names, now - 3600, now + 30 * DAY)
    }

    pub fn good_default(&self) -> Leaf {
        self.good(DEFAULT_NAMES)
    }

    /// Expired yesterday.
    pub fn expired(&self, names: &[&str]) -> Leaf {
        let now = unix_now();
        self.issue(names, now - 30 * DAY, now - DAY)
    }

    /// Becomes valid tomorrow.
    pub fn not_yet_valid(&self, names: &[&str]) -> Leaf {
        let now = unix_now();
        self.issue(names, now + DAY, now + 30 * DAY)
    }

    /// Valid dates, but issued by a CA the daemon is not told about.
    pub fn unknown_ca(&self, names: &[&str]) -> Leaf {
        let now = unix_now();
        make_leaf(&self.other_ca.issuer, names, now - 3600, now + 30 * DAY)
    }

    /// Leaf signed by the trusted CA with explicit validity in Unix seconds.
    pub fn issue(&self, names: &[&str], not_before: i64, not_after: i64) -> Leaf {
        make_leaf(&self.ca.issuer, names, not_before, not_after)
    }

    /// Self-signed certificate, trusted by nobody.
    pub fn self_signed(&self, names: &[&str]) -> Leaf {
        let now = unix_now();
        let (params, key) = leaf_params(names, now - 3600, now + 30 * DAY);
        let cert = params.self_signed(&key).expect("self-sign leaf");
        finish_leaf(names, cert, key, now - 3600, now + 30 * DAY)
    }

    /// A self-signed CA certificate served as the leaf, as `openssl req -x509` makes by
    /// default (basicConstraints CA:TRUE).
    pub fn ca_as_leaf(&self, names: &[&str]) -> Leaf {
        let now = unix_now();
        let (mut params, key) = leaf_params(names, now - 3600, now + 30 * DAY);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-sign CA leaf");
        finish_leaf(names, cert, key, now - 3600, now + 30 * DAY)
    }

    /// Client config trusting only the test CA, for tests that talk TLS to fixtures directly.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        install_crypto_provider();
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der()).expect("add test CA");
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn leaf_params(names: &[&str], not_before: i64, not_after: i64) -> (CertificateParams, KeyPair) {
    let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf SANs");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("authwatch test leaf"),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, not_before, not_after);
    (params, KeyPair::generate().expect("leaf key"))
}

fn make_leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    not_before: i64,
    not_after: i64,
) -> Leaf {
    let (params, key) = leaf_params(names, not_before, not_after);
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    finish_leaf(names, cert, key, not_before, not_after)
}

fn finish_leaf(
    names: &[&str],
    cert: Certificate,
    key: KeyPair,
    not_before: i64,
    not_after: i64,
) -> Leaf {
    Leaf {
        names: names.iter().map(|s| s.to_string()).collect(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
        not_before,
        not_after,
    }
}

// Goes through rcgen's own date helper so the `time` crate need not be a direct dependency.
fn set_validity(params: &mut CertificateParams, not_before: i64, not_after: i64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let secs = |t: i64| Duration::from_secs(u64::try_from(t).expect("validity after 1970"));
    params.not_before = epoch + secs(not_before);
    params.not_after = epoch + secs(not_after);
}
