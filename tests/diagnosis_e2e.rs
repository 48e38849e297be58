//! The diagnosis end to end: the real daemon against DNS, HTTPS and API servers on loopback,
//! faults injected one after another, and each time `authwatch_diagnosis` must name exactly the
//! expected causes (no other) with their evidence, within an interval plus the timeout.
//! The no-route case runs the daemon in a network namespace with only loopback.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, Ordering};
use std::time::Duration;

use common::daemon::{Daemon, check_config_yaml};
use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, TestServer};
use common::jwks::{jwks, rsa_key};
use common::netns::{Netns, scrape_in};
use common::prom::{expect_value, find, promtool_check};
use common::tls::TestPki;

/// The causes set to 1, sorted.
fn active(text: &str) -> Vec<String> {
    let mut c: Vec<String> = find(text, "authwatch_diagnosis", &[])
        .into_iter()
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.label("cause").map(str::to_string))
        .collect();
    c.sort();
    c
}

/// Waits until exactly `want` is active; one interval (300 ms) plus the timeout (1 s) plus the
/// diagnosis tick (1 s), with room for a loaded machine.
async fn expect_causes(d: &Daemon, want: &[&str]) -> String {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    d.wait_for(|t| active(t) == want, Duration::from_secs(8))
        .await
}

fn evidence(text: &str, cause: &str) -> Vec<String> {
    find(text, "authwatch_diagnosis_evidence", &[("cause", cause)])
        .iter()
        .map(|s| {
            format!(
                "{}: {}",
                s.label("probe").unwrap_or(""),
                s.label("detail").unwrap_or("")
            )
        })
        .collect()
}

/// Faults the Clerk and API fakes can be switched into.
#[derive(Default)]
struct Faults {
    jwks_status: AtomicU16,
    api_date_offset: AtomicI64,
    api_down: AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_one_after_another_name_exactly_their_causes() {
    let pki = TestPki::new();
    let leaf = pki.good(&["clerk.test"]);
    let faults = Arc::new(Faults::default());
    let doc = jwks([rsa_key(2048).jwk("ins_e2e")]).to_string();
    let f = faults.clone();
    let clerk = TestServer::start_tls(&leaf, move |req| {
        let status = f.jwks_status.load(Ordering::SeqCst);
        match req.path_only() {
            "/.well-known/jwks.json" if status != 0 => ResponseSpec::json(status, "{}"),
            "/.well-known/jwks.json" => ResponseSpec::json(200, doc.clone()),
            _ => ResponseSpec::json(200, r#"{"status":"ok"}"#),
        }
    })
    .await;
    let f = faults.clone();
    let api = TestServer::start(move |_| {
        let body = if f.api_down.load(Ordering::SeqCst) {
            ResponseSpec::json(503, r#"{"checks":{"clerk_jwks":{"status":"error"}}}"#)
        } else {
            ResponseSpec::json(200, r#"{"checks":{"clerk_jwks":{"status":"ok"}}}"#)
        };
        body.date_offset(f.api_date_offset.load(Ordering::SeqCst))
    })
    .await;
    let up = Behavior::a([Ipv4Addr::LOCALHOST]);
    let system = DnsServer::with_zone([("clerk.test", up.clone())]).await;
    let public = DnsServer::with_zone([("clerk.test", up.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let ca = pki.ca_pem_path().display().to_string();
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s, resolv_conf: {resolv}, resolv_conf_port: {sys}, hosts_file: /dev/null}}
probes:
  - name: clerk-dns
    dns: {{names: [clerk.test], record_types: [A], resolvers: [system, "{public}"]}}
  - name: clerk-jwks
    jwks: {{url: "https://clerk.test:{port}/.well-known/jwks.json"}}
    connection: {{tls: {{ca_file: {ca}}}}}
  - name: clerk-health
    api_health: {{url: "https://clerk.test:{port}/v1/health"}}
    connection: {{tls: {{ca_file: {ca}}}}}
  - name: api-health
    role: api
    api_health: {{url: "http://127.0.0.1:{api}/health/network"}}
"#,
        resolv = resolv.display(),
        sys = system.port(),
        public = public.addr(),
        port = clerk.port(),
        api = api.port(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| value_is(t, "authwatch_auth_healthy", 1.0),
            Duration::from_secs(8),
        )
        .await;
    assert_eq!(active(&text), Vec::<String>::new());
    assert_eq!(
        expect_value(&text, "authwatch_coverage", &[("scope", "clerk_instance")]),
        1.0
    );

    // 1. Every resolver silent: DNS egress is blocked (before: no cause at all).
    system.set("clerk.test", Behavior::Silent);
    public.set("clerk.test", Behavior::Silent);
    let text = expect_causes(&d, &["dns_egress_blocked"]).await;
    let ev = evidence(&text, "dns_egress_blocked");
    assert!(
        ev.iter()
            .any(|e| e.contains("no reply from system") && e.contains(&public.addr().to_string())),
        "{ev:?}"
    );
    println!(
        "dns egress blocked:\n{}",
        lines(&text, "dns_egress_blocked")
    );
    system.set("clerk.test", up.clone());
    public.set("clerk.test", up.clone());
    expect_causes(&d, &[]).await;

    // 2. Clerk rate-limits the JWKS (before: no cause; only 5xx counted).
    faults.jwks_status.store(429, Ordering::SeqCst);
    let text = expect_causes(&d, &["rate_limited"]).await;
    assert!(evidence(&text, "rate_limited")[0].contains("status 429"));
    faults.jwks_status.store(0, Ordering::SeqCst);
    expect_causes(&d, &[]).await;

    // 3. The API's own health fails while Clerk passes: the seed's case, from aligned runs.
    faults.api_down.store(true, Ordering::SeqCst);
    expect_causes(&d, &["api_network_unhealthy"]).await;
    faults.api_down.store(false, Ordering::SeqCst);
    expect_causes(&d, &[]).await;

    // 3b. The API's own server sends a Date 30 s off: not a reference clock, so no skew (only
    //     Clerk's clocks count, and only when the whole Date interval is beyond the warning).
    faults.api_date_offset.store(30, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let text = d.metrics().await;
    assert_eq!(active(&text), Vec::<String>::new(), "{text}");
    assert!(
        find(
            &text,
            "authwatch_clock_offset_seconds",
            &[("probe", "api-health")]
        )
        .is_empty()
    );
    faults.api_date_offset.store(0, Ordering::SeqCst);

    // 4. Two independent faults one after the other: the container resolver breaks, then
    //    Clerk rate-limits behind it; both are named, neither hides the other.
    system.set("clerk.test", Behavior::ServFail);
    let text = expect_causes(&d, &["dns_resolver_broken"]).await;
    let ev = evidence(&text, "dns_resolver_broken");
    assert!(
        ev.iter().any(
            |e| e.contains("system clerk.test A: SERVFAIL with 0 answers")
                && e.contains(&format!("{}/udp answered", public.addr()))
        ),
        "{ev:?}"
    );
    let since = expect_value(
        &text,
        "authwatch_diagnosis_since_timestamp_seconds",
        &[("cause", "dns_resolver_broken")],
    );
    // Through the fault: while the container's resolver fails, the JWKS probe keeps running
    // through the resolver that answers, so a rate limit behind the first fault is named too.
    faults.jwks_status.store(429, Ordering::SeqCst);
    let text = expect_causes(&d, &["dns_resolver_broken", "rate_limited"]).await;
    let via = format!("via {}/udp", public.addr());
    assert!(
        evidence(&text, "rate_limited")
            .iter()
            .any(|e| e.contains(&via) && e.contains("status 429")),
        "{:?}",
        evidence(&text, "rate_limited")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_detour_success",
            &[
                ("probe", "clerk-jwks"),
                ("resolver", &format!("{}/udp", public.addr()))
            ]
        ),
        0.0
    );
    println!(
        "through the fault:\n{}",
        lines(&text, "dns_resolver_broken|rate_limited")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_diagnosis_since_timestamp_seconds",
            &[("cause", "dns_resolver_broken")],
        ),
        since,
        "the first cause keeps its since-time while the second joins"
    );
    faults.jwks_status.store(0, Ordering::SeqCst);
    let text = expect_causes(&d, &["dns_resolver_broken"]).await;
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_detour_success",
            &[
                ("probe", "clerk-jwks"),
                ("resolver", &format!("{}/udp", public.addr()))
            ]
        ),
        1.0
    );
    let (out, ok) = promtool_check(&text);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    // The status JSON carries each cause's evidence and since-time.
    let (status, _, body) = d.get("/api/v1/status").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let broken = v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cause"] == "dns_resolver_broken")
        .expect("cause in the JSON");
    assert!(broken["since"].is_string());
    assert_eq!(broken["evidence"][0]["probe"], "clerk-dns");
}

fn value_is(text: &str, name: &str, want: f64) -> bool {
    common::prom::value(text, name, &[]) == Some(want)
}

/// The diagnosis lines of `/metrics` about the causes matching `pattern` (for the log).
fn lines(text: &str, pattern: &str) -> String {
    let words: Vec<&str> = pattern.split('|').collect();
    text.lines()
        .filter(|l| l.starts_with("authwatch_diagnosis") || l.starts_with("authwatch_auth_healthy"))
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("authwatch_auth_healthy") || words.iter().any(|w| l.contains(w)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_token_trouble_and_blindness_are_named() {
    let pki = TestPki::new();
    let doc = jwks([rsa_key(2048).jwk("ins_cert")]).to_string();
    let good = TestServer::json_tls(&pki.good(&["localhost"]), 200, doc.clone()).await;
    let expired = TestServer::json_tls(&pki.expired(&["localhost"]), 200, doc.clone()).await;
    let other = TestServer::json_tls(&pki.good(&["other.test"]), 200, doc.clone()).await;
    // The API: healthy, and its protected route rejects what carries no valid token.
    let api = TestServer::start(|req| match req.path_only() {
        "/me" => ResponseSpec::json(401, r#"{"error":"unauthorized"}"#),
        _ => ResponseSpec::json(200, r#"{"status":"ok"}"#),
    })
    .await;
    let ca = pki.ca_pem_path().display().to_string();
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s}}
probes:
  - name: jwks-good
    jwks: {{url: "https://localhost:{good}/jwks"}}
    connection: {{tls: {{ca_file: {ca}}}}}
  - name: jwks-expired
    jwks: {{url: "https://localhost:{expired}/jwks"}}
    connection: {{tls: {{ca_file: {ca}}}}}
  - name: jwks-other-name
    jwks: {{url: "https://localhost:{other}/jwks"}}
    connection: {{tls: {{ca_file: {ca}}}}}
  - name: api
    role: api
    api_health: {{url: "http://127.0.0.1:{api}/"}}
  - name: auth
    auth: {{url: "http://127.0.0.1:{api}/me", token_source: command, token_command: ["false"]}}
"#,
        good = good.port(),
        expired = expired.port(),
        other = other.port(),
        api = api.port(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = expect_causes(&d, &["cert_invalid", "probe_token_unavailable"]).await;
    let mut ev = evidence(&text, "cert_invalid");
    ev.sort();
    assert_eq!(
        ev,
        [
            "jwks-expired: localhost: tls_expired",
            "jwks-other-name: localhost: tls_hostname_mismatch"
        ]
    );
    assert_eq!(
        expect_value(&text, "authwatch_diagnosis", &[("cause", "cert_expiring")]),
        0.0,
        "an expired certificate is invalid, not expiring"
    );
    assert_eq!(
        evidence(&text, "probe_token_unavailable"),
        ["auth: 127.0.0.1: token_mint_failed"]
    );
    drop(d);

    // Blind but green no more: nothing of the user's Clerk instance or API is watched.
    let blind = "global: {interval: 300ms, timeout: 1s}\nprobes:\n  - name: clerk-com\n    https: {url: \"https://localhost:1/\"}\n    role: other\n";
    let (code, out, err) = check_config_yaml(blind);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"), "{out}");
    assert!(
        err.contains("warning: not watched: no jwks probe of your Clerk instance"),
        "{err}"
    );
    let d = Daemon::start(blind, &[]).await;
    let text = expect_causes(&d, &["coverage_missing"]).await;
    assert_eq!(expect_value(&text, "authwatch_auth_healthy", &[]), 0.0);
    assert_eq!(
        expect_value(&text, "authwatch_coverage", &[("scope", "clerk_instance")]),
        0.0
    );
    assert!(d.logs().contains("not watched"), "start-up warning");
    let (_, _, page) = d.get("/").await;
    assert!(page.contains("id=\"coverage\""), "status banner");
}

#[test]
fn no_route_at_all_is_network_down() {
    let ns = Netns::new("noroute");
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    // Addresses with no route from inside the namespace: no packet is ever sent.
    std::fs::write(&resolv, "nameserver 10.255.255.53\n").unwrap();
    let port = 19868;
    let cfg = dir.path().join("authwatch.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"
global: {{interval: 300ms, timeout: 1s, resolv_conf: {resolv}, hosts_file: /dev/null}}
probes:
  - name: clerk-dns
    dns: {{names: [clerk.example.com], resolvers: [system, "192.0.2.53:53"]}}
  - name: clerk-jwks
    jwks: {{url: "https://clerk.example.com/.well-known/jwks.json"}}
  - name: clerk-api
    https: {{url: "https://api.clerk.com/v1/health"}}
  - name: api-port
    role: api
    tcp: {{address: "127.0.0.1:{port}"}}
"#,
            resolv = resolv.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_authwatch")])
        .arg("--config.file")
        .arg(&cfg)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start authwatch in the namespace");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        text = scrape_in(&ns.0, port);
        if active(&text) == ["network_down"] {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(active(&text), ["network_down"], "{text}");
    println!("no route:\n{}", lines(&text, "network_down"));
    for probe in ["clerk-dns", "clerk-jwks", "clerk-api"] {
        let reason = find(&text, "authwatch_probe_failure", &[("probe", probe)])
            .into_iter()
            .find(|s| s.value == 1.0)
            .and_then(|s| s.label("reason").map(str::to_string));
        assert_eq!(reason.as_deref(), Some("dns_unreachable"), "{probe}");
    }
    assert_eq!(expect_value(&text, "authwatch_auth_healthy", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_verifier_is_named_while_clerk_answers() {
    let key = common::jwt::SigningKey::new("ins_stall", "https://clerk.test");
    let doc = jwks([key.jwk()]).to_string();
    let clerk = TestServer::json(200, doc).await;
    // The API: its health endpoint answers, its protected route hangs as a verifier stuck in
    // JWKS retries does.
    let api = TestServer::start(|req| match req.path_only() {
        "/me" => ResponseSpec::json(200, "{}").delay(Duration::from_secs(30)),
        _ => ResponseSpec::json(200, r#"{"status":"ok"}"#),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, key.mint(3600)).unwrap();
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s}}
probes:
  - name: clerk-jwks
    jwks: {{url: "http://127.0.0.1:{clerk}/jwks"}}
  - name: api-health
    role: api
    api_health: {{url: "http://127.0.0.1:{api}/health"}}
  - name: auth
    auth: {{url: "http://127.0.0.1:{api}/me", token_source: file, token_file: {token}, issuer: "https://clerk.test", cases: [valid_token]}}
"#,
        clerk = clerk.port(),
        api = api.port(),
        token = token.display(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = expect_causes(&d, &["verifier_stalling"]).await;
    assert_eq!(
        evidence(&text, "verifier_stalling"),
        ["auth: 127.0.0.1: timeout"]
    );
    // The local check needs the fetched keys; a first auth run may come before the first
    // JWKS fetch, so wait for a run that had them.
    let text = d
        .wait_for(
            |t| {
                common::prom::value(t, "authwatch_auth_token_verified", &[("probe", "auth")])
                    == Some(1.0)
            },
            Duration::from_secs(8),
        )
        .await;
    assert_eq!(
        expect_value(&text, "authwatch_auth_token_verified", &[("probe", "auth")]),
        1.0,
        "the token itself is fine: the stall is the API's"
    );
}

/// `/metrics` over a plain TCP request (the daemon may refuse it while out of descriptors).
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(str::to_string)
}

#[test]
fn running_out_of_descriptors_is_not_a_network_cause() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authwatch.yml");
    // 72 lookups at once against closed loopback ports: each needs a socket.
    std::fs::write(
        &cfg,
        r#"
global: {interval: 500ms, timeout: 1s, hosts_file: /dev/null}
probes:
  - name: clerk-dns
    dns: {names: [a.test, b.test, c.test, d.test, e.test, f.test, g.test, h.test], record_types: [A, AAAA, TXT], resolvers: ["127.0.0.1:9", "127.0.0.1:10", "127.0.0.1:11"]}
"#,
    )
    .unwrap();
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authwatch"))
        .arg("--config.file")
        .arg(&cfg)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start authwatch");
    let started = std::time::Instant::now();
    while scrape(port).is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Between runs the daemon holds its base descriptors; leave room for a scrape only, so
    // the probe's lookups run out (the limit is measured, not guessed, on any machine).
    // The fewest seen over a second: a sample taken during a run, or while the scrape's
    // connection is still closing, would count descriptors that come and go.
    let base = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_dir(format!("/proc/{}/fd", child.id()))
                .map(|d| d.count())
                .unwrap_or(usize::MAX)
        })
        .min()
        .unwrap_or(0);
    let limit = format!("--nofile={}:{}", base + 2, base + 2);
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &child.id().to_string(), &limit])
        .status()
        .is_ok_and(|s| s.success());
    assert!(lowered, "prlimit (util-linux) could not lower the limit");
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(t) = scrape(port) {
            text = t;
            if active(&text).contains(&"local_resources_exhausted".to_string()) {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        active(&text),
        ["coverage_missing", "local_resources_exhausted"],
        "{text}"
    );
    // Runs that found descriptors free fail as refused (the ports are closed); the ones that
    // did not are counted as what they were.
    let exhausted = expect_value(
        &text,
        "authwatch_probe_failures_total",
        &[
            ("probe", "clerk-dns"),
            ("reason", "local_resources_exhausted"),
        ],
    );
    assert!(exhausted >= 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apis_own_clerk_reason_names_the_cause() {
    let key = common::jwt::SigningKey::new("ins_reason", "https://clerk.test");
    let clerk = TestServer::json(200, jwks([key.jwk()]).to_string()).await;
    // The API's Clerk middleware cannot load the JWKS from inside its container, and says so.
    let api = TestServer::start(|req| match req.path_only() {
        "/me" => ResponseSpec::json(401, r#"{"detail":"Unauthorized"}"#)
            .header("x-clerk-auth-status", "signed-out")
            .header("x-clerk-auth-reason", "jwk-remote-failed-to-load"),
        _ => ResponseSpec::json(200, r#"{"status":"ok"}"#),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, key.mint(3600)).unwrap();
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s}}
probes:
  - name: clerk-jwks
    jwks: {{url: "http://127.0.0.1:{clerk}/jwks"}}
  - name: auth
    auth: {{url: "http://127.0.0.1:{api}/me", token_source: file, token_file: {token}, issuer: "https://clerk.test"}}
"#,
        clerk = clerk.port(),
        api = api.port(),
        token = token.display(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = expect_causes(&d, &["api_network_unhealthy"]).await;
    assert_eq!(
        evidence(&text, "api_network_unhealthy"),
        [
            "auth: 127.0.0.1: auth_valid_token_rejected (status 401); x-clerk-auth-reason: jwk-remote-failed-to-load"
        ]
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_case_clerk_reason",
            &[
                ("case", "valid_token"),
                ("reason", "jwk-remote-failed-to-load")
            ]
        ),
        1.0
    );
}

/// A Backend API fake on 127.0.0.1 (TLS with the test CA for `localhost`) serving the JWKS
/// to the secret key, and a passing API: what the SDK-profile cases share.
async fn sdk_world(pki: &TestPki) -> (TestServer, TestServer) {
    let doc = jwks([rsa_key(2048).jwk("ins_sdk")]).to_string();
    let bapi = TestServer::start_tls(&pki.good(&["localhost"]), move |req| {
        match req.header("authorization") {
            Some("Bearer sk_test_sdkcanary") => ResponseSpec::json(200, doc.clone()),
            _ => ResponseSpec::json(401, "{}"),
        }
    })
    .await;
    let api = TestServer::json(200, r#"{"status":"ok"}"#).await;
    (bapi, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_system_bundle_the_python_sdk_never_reads_does_not_page() {
    let pki = TestPki::new();
    let (bapi, api) = sdk_world(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    // The image has no CA certificates; certifi's bundle (here the reference roots) has the
    // root, as it has Clerk's.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s, trust_store_file: {empty}, reference_trust_store_file: {ca}}}
clerk: {{secret_key: sk_test_sdkcanary, api_url: "https://localhost:{bapi}", sdk: python}}
probes:
  - name: api
    role: api
    api_health: {{url: "http://127.0.0.1:{api}/"}}
"#,
        empty = empty.display(),
        ca = pki.ca_pem_path().display(),
        bapi = bapi.port(),
        api = api.port(),
    );
    // With SSL_CERT_FILE or SSL_CERT_DIR set, httpx (and so the SDK) would read them instead
    // of certifi: leave them unset, as in the image.
    let unset = [("SSL_CERT_FILE", ""), ("SSL_CERT_DIR", "")];
    let d = Daemon::start(&yaml, &unset).await;
    let text = expect_causes(&d, &["system_trust_unused"]).await;
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "clerk-sdk-jwks")]
        ),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "clerk-bapi-jwks")]
        ),
        0.0
    );
    let text = d
        .wait_for(
            |t| value_is(t, "authwatch_auth_healthy", 1.0),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(active(&text), ["system_trust_unused"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_ignoring_a_needed_proxy_is_named() {
    let pki = TestPki::new();
    let (bapi, api) = sdk_world(&pki).await;
    let proxy = common::proxy::ConnectProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Direct, `localhost` leads nowhere (nothing listens on 127.0.0.2): only the proxy, which
    // resolves it itself, reaches the Backend API, as in a network whose egress is the proxy.
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 localhost\n").unwrap();
    let trust = dir.path().join("ca.pem");
    std::fs::write(&trust, pki.ca_pem()).unwrap();
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s, hosts_file: {hosts}, trust_store_file: {trust}, reference_trust_store_file: {trust}}}
clerk: {{secret_key: sk_test_sdkcanary, api_url: "https://localhost:{bapi}", sdk: python}}
probes:
  - name: api
    role: api
    api_health: {{url: "http://127.0.0.1:{api}/"}}
"#,
        hosts = hosts.display(),
        trust = trust.display(),
        bapi = bapi.port(),
        api = api.port(),
    );
    let proxy_url = format!("http://{}", proxy.addr());
    let env = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("SSL_CERT_FILE", ""),
        ("SSL_CERT_DIR", ""),
    ];
    let d = Daemon::start(&yaml, &env).await;
    let text = expect_causes(&d, &["sdk_ignores_proxy"]).await;
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "clerk-bapi-jwks")]
        ),
        1.0
    );
    let ev = evidence(&text, "sdk_ignores_proxy");
    assert!(
        ev.iter().any(|e| e.starts_with("clerk-sdk-jwks:")
            && e.contains("the python SDK ignores HTTPS_PROXY")),
        "{ev:?}"
    );
    assert!(
        proxy.connects() >= 1,
        "the generic probe went through the proxy"
    );
}
