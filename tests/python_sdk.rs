//! authwatch next to an API on the real Clerk Python SDK (`clerk-backend-api`, FastAPI and
//! uvicorn: tests/sdk/python_api.py), both against a fake Clerk Backend API over HTTPS with a
//! test CA: does authwatch's verdict match what the SDK really does?
//!
//! The SDK is installed by scripts/test.sh into target/sdk-venv (AUTHWATCH_SDK_PYTHON names
//! another interpreter). Each case prints the API's status and latency next to authwatch's
//! causes.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::http::{ResponseSpec, TestServer};
use common::jwt::SigningKey;
use common::prom::{expect_value, find, value};
use common::tls::TestPki;

const SECRET: &str = "sk_test_SDKcanary0123456789";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AUTHWATCH_SDK_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python");
    assert!(
        venv.exists(),
        "the Clerk Python SDK is not installed: run scripts/test.sh (it creates target/sdk-venv from tests/sdk/requirements.txt)"
    );
    venv
}

/// The API on the real SDK, killed on drop.
struct SdkApi {
    child: std::process::Child,
    port: u16,
}

impl Drop for SdkApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SdkApi {
    /// `ca`: the bundle httpx trusts instead of certifi's (`SSL_CERT_FILE`); `None` leaves
    /// certifi's, as an image without that variable does.
    fn start(api_url: &str, ca: Option<&std::path::Path>) -> SdkApi {
        SdkApi::start_with(api_url, ca, &[])
    }

    fn start_with(api_url: &str, ca: Option<&std::path::Path>, env: &[(&str, &str)]) -> SdkApi {
        let port = common::free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/python_api.py");
        let mut cmd = std::process::Command::new(python());
        cmd.arg(script)
            .env("PORT", port.to_string())
            .env("CLERK_SECRET_KEY", SECRET)
            .env("CLERK_API_URL", api_url)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(ca) = ca {
            cmd.env("SSL_CERT_FILE", ca);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the SDK-based API");
        let api = SdkApi { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SDK-based API did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        api
    }

    /// What the API answers a bearer token: status and latency.
    async fn call(&self, token: &str) -> (u16, Duration) {
        let started = Instant::now();
        let (status, _, _) = common::http::request(
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            "GET",
            "/me",
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
        .await
        .unwrap_or((0, Vec::new(), String::new()));
        (status, started.elapsed())
    }
}

fn active(text: &str) -> Vec<String> {
    let mut c: Vec<String> = find(text, "authwatch_diagnosis", &[])
        .into_iter()
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.label("cause").map(str::to_string))
        .collect();
    c.sort();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authwatch_agrees_with_the_python_sdk() {
    let pki = TestPki::new();
    let key = Arc::new(SigningKey::new("ins_sdk_e2e", "https://clerk.test"));
    let next = Arc::new(SigningKey::new("ins_sdk_rotated", "https://clerk.test"));
    let rotated = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    // JWKS fetches by the API's SDK (not authwatch's), counted apart.
    let sdk_fetches = Arc::new(AtomicU32::new(0));
    let (k, n, r, o, f) = (
        key.clone(),
        next.clone(),
        rotated.clone(),
        outage.clone(),
        sdk_fetches.clone(),
    );
    let bapi = TestServer::start_tls(&pki.good(&["localhost"]), move |req| {
        if req.header("authorization") != Some(&format!("Bearer {SECRET}")) {
            return ResponseSpec::json(401, "{}");
        }
        match (req.method.as_str(), req.path_only()) {
            ("POST", "/v1/sessions/sess_sdk/tokens") => {
                let signer = if r.load(Ordering::SeqCst) { &n } else { &k };
                ResponseSpec::json(200, format!(r#"{{"jwt":"{}"}}"#, signer.mint(20)))
            }
            ("GET", "/v1/jwks") => {
                if !req
                    .header("user-agent")
                    .unwrap_or("")
                    .starts_with("authwatch/")
                {
                    f.fetch_add(1, Ordering::SeqCst);
                }
                if o.load(Ordering::SeqCst) {
                    ResponseSpec::json(503, r#"{"errors":[{"code":"service_unavailable"}]}"#)
                } else if r.load(Ordering::SeqCst) {
                    ResponseSpec::json(200, common::jwks::jwks([k.jwk(), n.jwk()]).to_string())
                } else {
                    ResponseSpec::json(200, common::jwks::jwks([k.jwk()]).to_string())
                }
            }
            _ => ResponseSpec::json(404, "{}"),
        }
    })
    .await;
    let api_url = format!("https://localhost:{}", bapi.port());
    let api = SdkApi::start(&api_url, Some(pki.ca_pem_path()));
    let yaml = format!(
        r#"
global: {{interval: 500ms, timeout: 2s, trust_store_file: {ca}, reference_trust_store_file: {ca}}}
clerk: {{secret_key: {SECRET}, api_url: "{api_url}", sdk: python}}
probes:
  - name: auth
    auth: {{url: "http://127.0.0.1:{port}/me", token_source: backend, session_id: sess_sdk, issuer: "https://clerk.test"}}
"#,
        ca = pki.ca_pem_path().display(),
        port = api.port,
    );
    let d = Daemon::start(&yaml, &[("SSL_CERT_FILE", ""), ("SSL_CERT_DIR", "")]).await;

    // 1. Healthy: the SDK accepts the real token; authwatch agrees.
    let text = d
        .wait_for(
            |t| value(t, "authwatch_auth_healthy", &[]) == Some(1.0),
            Duration::from_secs(20),
        )
        .await;
    let token = key.mint(600);
    let (status, took) = api.call(&token).await;
    println!(
        "healthy: API {status} in {took:?}; authwatch causes {:?}",
        active(&text)
    );
    assert_eq!(status, 200);
    assert_eq!(active(&text), Vec::<String>::new());
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_case_success",
            &[("case", "valid_token")]
        ),
        1.0
    );

    // 2. Clerk's JWKS goes down. The SDK keeps verifying from its cache; authwatch names the
    //    outage and sends no forged token meanwhile (it would make the SDK drop that cache).
    let before = sdk_fetches.load(Ordering::SeqCst);
    outage.store(true, Ordering::SeqCst);
    let text = d
        .wait_for(
            |t| active(t).contains(&"provider_outage".to_string()),
            Duration::from_secs(15),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, took) = api.call(&token).await;
    println!(
        "JWKS outage: API {status} in {took:?}; authwatch causes {:?}; SDK JWKS fetches during it: {}",
        active(&text),
        sdk_fetches.load(Ordering::SeqCst) - before
    );
    assert_eq!(status, 200, "the SDK answers from its cached keys");
    assert_eq!(
        sdk_fetches.load(Ordering::SeqCst),
        before,
        "nothing authwatch sent made the SDK refetch (and so lose) its keys"
    );
    assert!(
        active(&text).contains(&"provider_outage".to_string()),
        "{:?}",
        active(&text)
    );
    outage.store(false, Ordering::SeqCst);
    d.wait_for(
        |t| value(t, "authwatch_auth_healthy", &[]) == Some(1.0),
        Duration::from_secs(20),
    )
    .await;

    // 3. Clerk rotates its key: new tokens carry a kid the cached sets lack. The SDK refetches
    //    on the unknown kid and answers 200; authwatch must not call it a key mismatch.
    let mints_before = expect_value(
        &d.metrics().await,
        "authwatch_auth_token_mints_total",
        &[("probe", "auth")],
    );
    rotated.store(true, Ordering::SeqCst);
    let fresh = next.mint(600);
    let (status, took) = api.call(&fresh).await;
    let mut seen: Vec<String> = Vec::new();
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let t = d.metrics().await;
        for c in active(&t) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("key rotation: API {status} in {took:?}; authwatch causes seen meanwhile {seen:?}");
    assert_eq!(status, 200, "the SDK refetches on an unknown kid");
    assert!(
        seen.is_empty(),
        "authwatch paged during a rotation: {seen:?}"
    );
    // Tokens live 20 s here and are reused while more than 15 s is left: the probe has minted
    // with the new key within the window, and knows its kid.
    let text = d.metrics().await;
    assert!(
        expect_value(
            &text,
            "authwatch_auth_token_mints_total",
            &[("probe", "auth")]
        ) > mints_before,
        "the probe minted a token with the rotated key"
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_token_kid_known",
            &[("probe", "auth")]
        ),
        1.0
    );
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The network needs a proxy, and the Python SDK ignores it: inside a namespace with only
/// loopback, the fake Clerk is reachable through the CONNECT proxy only (its name points
/// nowhere in the namespace's /etc/hosts). The real SDK's JWKS fetch goes direct and hangs in
/// retries; authwatch, with `clerk.sdk: python`, names `sdk_ignores_proxy`.
#[test]
fn the_real_python_sdk_ignores_the_proxy_the_network_needs() {
    let ns = common::netns::Netns::new("sdkproxy");
    // No route to 10.255.255.1 inside the namespace: a direct connect fails at once.
    ns.etc("hosts", "127.0.0.1 localhost\n10.255.255.1 bapi.test\n");
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::new("ins_netns", "https://clerk.test");
    let leaf = pki.good(&["bapi.test"]);
    let (cert, tls_key) = leaf.write_pem_files(dir.path(), "bapi");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, common::jwks::jwks([key.jwk()]).to_string()).unwrap();
    let token = dir.path().join("token");
    let minted = key.mint(3600);
    std::fs::write(&token, &minted).unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "10.255.255.1 bapi.test\n").unwrap();
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    let (bapi_port, proxy_port, api_port, aw_port) = (8443, 3128, 8020, 19868);

    let _clerk = Child(
        ns.command(python())
            .arg(sdk.join("fake_clerk.py"))
            .env("PORT", bapi_port.to_string())
            .env("SECRET", SECRET)
            .env("CERT", &cert)
            .env("KEY", &tls_key)
            .env("JWKS", &jwks)
            .env("TOKEN", &token)
            .spawn()
            .expect("fake Clerk"),
    );
    let _proxy = Child(
        ns.command(python())
            .arg(sdk.join("connect_proxy.py"))
            .env("PORT", proxy_port.to_string())
            .env("MAP", "bapi.test=127.0.0.1")
            .spawn()
            .expect("proxy"),
    );
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");
    let api_url = format!("https://bapi.test:{bapi_port}");
    let _api = Child(
        ns.command(python())
            .arg(sdk.join("python_api.py"))
            .env("PORT", api_port.to_string())
            .env("CLERK_SECRET_KEY", SECRET)
            .env("CLERK_API_URL", &api_url)
            .env("SSL_CERT_FILE", pki.ca_pem_path())
            .env("HTTPS_PROXY", &proxy_url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("SDK-based API"),
    );
    let cfg = dir.path().join("authwatch.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"
global: {{interval: 500ms, timeout: 2s, hosts_file: {hosts}, trust_store_file: {ca}, reference_trust_store_file: {ca}}}
clerk: {{secret_key: {SECRET}, api_url: "{api_url}", sdk: python, auto_probes: true}}
probes:
  - name: auth
    auth: {{url: "http://127.0.0.1:{api_port}/me", token_source: backend, session_id: sess_netns, issuer: "https://clerk.test"}}
"#,
            hosts = hosts.display(),
            ca = pki.ca_pem_path().display(),
        ),
    )
    .unwrap();
    let _authwatch = Child(
        ns.command(env!("CARGO_BIN_EXE_authwatch"))
            .arg("--config.file")
            .arg(&cfg)
            .args(["--web.listen-address", &format!("127.0.0.1:{aw_port}")])
            .env("HTTPS_PROXY", &proxy_url)
            .env("SSL_CERT_FILE", "")
            .env("SSL_CERT_DIR", "")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("authwatch in the namespace"),
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        text = common::netns::scrape_in(&ns.0, aw_port);
        if active(&text) == ["sdk_ignores_proxy"] {
            break;
        }
    }
    // The API itself is up (its health answers at once)...
    let health = common::netns::get_in(&ns.0, api_port, "/health", "", 5);
    assert!(health.as_deref().unwrap_or("").contains("ok"), "{health:?}");
    // ...but its SDK goes direct for the JWKS and retries: no answer to a token in 8 s.
    let started = Instant::now();
    let auth = format!("Authorization: Bearer {minted}\\r\\n");
    let answer = common::netns::get_in(&ns.0, api_port, "/me", &auth, 8);
    println!(
        "proxy required: API {} after {:?}; authwatch causes {:?}",
        if answer.is_some() {
            "answered"
        } else {
            "no answer"
        },
        started.elapsed(),
        active(&text)
    );
    assert_eq!(active(&text), ["sdk_ignores_proxy"], "{text}");
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "clerk-bapi-jwks")]
        ),
        1.0,
        "through the proxy the Backend API answers"
    );
    assert!(
        answer.is_none(),
        "the SDK should hang in its direct retries: {answer:?}"
    );
}

/// The system store has the root (a corporate CA installed in the image), certifi's bundle
/// does not: the real SDK cannot verify Clerk's certificate and hangs in retries, while a
/// generic client is fine. authwatch with `clerk.sdk: python` (certifi-like bundled roots)
/// names `sdk_trust_mismatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_python_sdk_lacking_the_root_the_system_has_is_named() {
    let pki = TestPki::new();
    let key = Arc::new(SigningKey::new("ins_ca", "https://clerk.test"));
    let k = key.clone();
    let bapi = TestServer::start_tls(&pki.good(&["localhost"]), move |req| {
        match (req.method.as_str(), req.path_only()) {
            ("POST", _) => ResponseSpec::json(200, format!(r#"{{"jwt":"{}"}}"#, k.mint(60))),
            _ => ResponseSpec::json(200, common::jwks::jwks([k.jwk()]).to_string()),
        }
    })
    .await;
    let api_url = format!("https://localhost:{}", bapi.port());
    // No SSL_CERT_FILE: httpx verifies against certifi, which lacks the test CA.
    let api = SdkApi::start(&api_url, None);
    let yaml = format!(
        r#"
global: {{interval: 500ms, timeout: 2s, trust_store_file: {ca}}}
clerk: {{secret_key: {SECRET}, api_url: "{api_url}", sdk: python}}
probes:
  - name: auth
    auth: {{url: "http://127.0.0.1:{port}/me", token_source: backend, session_id: sess_ca, issuer: "https://clerk.test"}}
"#,
        ca = pki.ca_pem_path().display(),
        port = api.port,
    );
    // The bundled roots stand for certifi's: the real Mozilla set, without the test CA.
    let d = Daemon::start(&yaml, &[("SSL_CERT_FILE", ""), ("SSL_CERT_DIR", "")]).await;
    let text = d
        .wait_for(
            |t| active(t) == ["sdk_trust_mismatch"],
            Duration::from_secs(20),
        )
        .await;
    let token = key.mint(600);
    let call = tokio::time::timeout(Duration::from_secs(8), api.call(&token)).await;
    println!(
        "CA bundle: API {} ; authwatch causes {:?}",
        match &call {
            Ok((status, took)) => format!("{status} in {took:?}"),
            Err(_) => "no answer in 8 s".to_string(),
        },
        active(&text)
    );
    assert!(
        call.is_err(),
        "the SDK should be stuck retrying its TLS failure: {call:?}"
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "clerk-bapi-jwks")]
        ),
        1.0
    );
}

/// The image lacks CA certificates, but the SDK verifies against its own bundle (certifi;
/// here the test CA stands for it on both sides): the real SDK answers 200, and authwatch does
/// not page (`system_trust_unused`, auth healthy). And a slow `/health/network` from uvicorn,
/// which stamps `Date` on arrival, reads as an offset interval that includes zero: no skew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_sdk_needs_no_system_bundle_and_a_slow_answer_is_no_skew() {
    let pki = TestPki::new();
    let key = Arc::new(SigningKey::new("ins_bundle", "https://clerk.test"));
    let k = key.clone();
    let bapi = TestServer::start_tls(&pki.good(&["localhost"]), move |req| {
        match (req.method.as_str(), req.path_only()) {
            ("POST", _) => ResponseSpec::json(200, format!(r#"{{"jwt":"{}"}}"#, k.mint(60))),
            _ => ResponseSpec::json(200, common::jwks::jwks([k.jwk()]).to_string()),
        }
    })
    .await;
    let api_url = format!("https://localhost:{}", bapi.port());
    let api = SdkApi::start_with(&api_url, Some(pki.ca_pem_path()), &[("SLOW_SECONDS", "3")]);
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let yaml = format!(
        r#"
global: {{interval: 500ms, timeout: 5s, trust_store_file: {empty}, reference_trust_store_file: {ca}}}
clerk: {{secret_key: {SECRET}, api_url: "{api_url}", sdk: python}}
probes:
  - name: auth
    auth: {{url: "http://127.0.0.1:{port}/me", token_source: backend, session_id: sess_b, issuer: "https://clerk.test"}}
  - name: slow-health
    api_health: {{url: "http://127.0.0.1:{port}/health/network"}}
"#,
        empty = empty.display(),
        ca = pki.ca_pem_path().display(),
        port = api.port,
    );
    let d = Daemon::start(&yaml, &[("SSL_CERT_FILE", ""), ("SSL_CERT_DIR", "")]).await;
    let text = d
        .wait_for(
            |t| {
                active(t) == ["system_trust_unused"]
                    && value(t, "authwatch_auth_healthy", &[]) == Some(1.0)
                    && value(
                        t,
                        "authwatch_clock_offset_seconds",
                        &[("probe", "slow-health")],
                    )
                    .is_some()
            },
            Duration::from_secs(30),
        )
        .await;
    let token = key.mint(600);
    let (status, took) = api.call(&token).await;
    let (lo, hi) = (
        expect_value(
            &text,
            "authwatch_clock_offset_lower_seconds",
            &[("probe", "slow-health")],
        ),
        expect_value(
            &text,
            "authwatch_clock_offset_upper_seconds",
            &[("probe", "slow-health")],
        ),
    );
    println!(
        "no system bundle: API {status} in {took:?}; authwatch causes {:?}; slow answer's offset between {lo:.2} and {hi:.2} s",
        active(&text)
    );
    assert_eq!(status, 200, "the SDK verifies with its own bundle");
    assert!(
        hi - lo > 2.5,
        "a 3 s answer gives a wide interval: [{lo}, {hi}]"
    );
    // uvicorn refreshes its cached Date once per tick, so under load it can lag the true
    // second a little more: the interval need not hold 0 exactly, but it must not lie wholly
    // beyond the 2 s warning, which is what a midpoint estimate of a slow answer used to do.
    assert!(
        lo < 2.0 && hi > -2.0,
        "a slow answer must not read as skew: [{lo}, {hi}]"
    );
    assert!(!active(&text).contains(&"clock_skew".to_string()));
}
