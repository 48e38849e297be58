//! Hostile input through the running daemon: scrape headers that used to panic `/probe`,
//! a JWKS with huge remote strings that must stay bounded in `/metrics`, the status page and
//! messages, a health endpoint whose failing check sits past `max_checks`, and a CA
//! certificate served as a leaf, and `/probe` requests whose allowed name leads to an address
//! or port the allowlist does not cover.

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, TestServer, request};
use common::prom::{expect_value, find, reason_of};
use common::tls::TestPki;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_timeout_headers_of_any_size_do_not_panic() {
    let server = TestServer::json(200, r#"{"status":"ok"}"#).await;
    let yaml = "probe_allowlist: [\"127.0.0.1:*\"]\nmodules:\n  plain: {https: {}}\nprobes: []\n";
    let d = Daemon::start(yaml, &[]).await;
    let path = format!(
        "/probe?module=plain&target=http://127.0.0.1:{}/",
        server.port()
    );
    for header in [
        "inf", "Infinity", "-inf", "NaN", "1e20", "1e300", "0", "-5", "junk",
    ] {
        let (status, _, body) = request(
            d.addr(),
            "GET",
            &path,
            &[("X-Prometheus-Scrape-Timeout-Seconds", header)],
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{header}: no answer ({e})"));
        assert_eq!(status, 200, "{header}: {body}");
        assert_eq!(expect_value(&body, "probe_success", &[]), 1.0, "{header}");
    }
    assert!(!d.logs().contains("panicked"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_remote_strings_stay_bounded() {
    let n = base64_n();
    let kid = "k".repeat(200_000);
    let good = format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"{kid}","use":"sig","alg":"RS256","n":"{n}","e":"AQAB"}}]}}"#
    );
    let alg = "A".repeat(200_000);
    let bad = format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"x","use":"sig","alg":"{alg}","n":"{n}","e":"AQAB"}}]}}"#
    );
    let server = TestServer::start(move |req| match req.path_only() {
        "/good" => ResponseSpec::json(200, good.clone()),
        _ => ResponseSpec::json(200, bad.clone()),
    })
    .await;
    let yaml = format!(
        "global: {{interval: 300ms, timeout: 2s, body_limit_bytes: 4000000}}\nprobes:\n  - {{name: big-kid, jwks: {{url: \"http://127.0.0.1:{p}/good\"}}}}\n  - {{name: big-alg, jwks: {{url: \"http://127.0.0.1:{p}/bad\"}}}}\n",
        p = server.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d.wait_for_runs(2, Duration::from_secs(10)).await;
    println!(
        "with a 200 KB kid and a 200 KB alg: /metrics {} bytes",
        text.len()
    );
    assert!(text.len() < 100_000, "/metrics is {} bytes", text.len());
    let info = find(&text, "authwatch_jwks_key_info", &[("probe", "big-kid")]);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].label("kid").map(str::len), Some(64));
    assert_eq!(
        reason_of(&text, "big-alg").as_deref(),
        Some("jwks_invalid_key")
    );
    let (_, _, status) = d.get("/api/v1/status").await;
    assert!(
        status.len() < 100_000,
        "/api/v1/status is {} bytes",
        status.len()
    );
    let (_, _, page) = d.get("/").await;
    assert!(
        page.len() < 100_000,
        "the status page is {} bytes",
        page.len()
    );
    assert!(
        d.logs().len() < 100_000,
        "logs are {} bytes",
        d.logs().len()
    );
}

/// A 2048-bit RSA modulus (any bytes with the top bit set will do for parsing).
fn base64_n() -> String {
    use base64::Engine as _;
    let mut n = vec![0x5au8; 256];
    n[0] = 0xc1;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_past_max_checks_still_fails() {
    let mut checks: Vec<String> = (0..39).map(|i| format!(r#""c{i:02}":true"#)).collect();
    checks.push(r#""c39":false"#.to_string());
    let body = format!(r#"{{"checks":{{{}}}}}"#, checks.join(","));
    let server = TestServer::json(200, body).await;
    let yaml = format!(
        "global: {{interval: 300ms, timeout: 1s}}\nprobes:\n  - {{name: api, api_health: {{url: \"http://127.0.0.1:{}/\", max_checks: 32}}}}\n",
        server.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d.wait_for_runs(1, Duration::from_secs(10)).await;
    assert_eq!(
        reason_of(&text, "api").as_deref(),
        Some("health_check_failed")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_api_health_check_success",
            &[("check", "c39")]
        ),
        0.0
    );
    assert_eq!(
        find(&text, "authwatch_api_health_check_success", &[]).len(),
        32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_served_as_the_leaf_is_an_issuer_question() {
    let pki = TestPki::new();
    let server = TestServer::start_tls(&pki.ca_as_leaf(&["localhost"]), |_| {
        ResponseSpec::json(200, "{}")
    })
    .await;
    let yaml = format!(
        "global: {{interval: 300ms, timeout: 1s}}\nprobes:\n  - {{name: x509-default, https: {{url: \"https://localhost:{}/\"}}}}\n",
        server.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d.wait_for_runs(1, Duration::from_secs(10)).await;
    assert_eq!(
        reason_of(&text, "x509-default").as_deref(),
        Some("tls_unknown_issuer")
    );
}

#[test]
fn configured_files_are_read_bounded_and_only_when_regular() {
    use common::daemon::check_config_yaml;
    // A secret key file that never ends: refused at once, not read until memory runs out.
    let (code, _, err) = check_config_yaml("clerk: {secret_key_file: /dev/zero}\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    // A trust store that is a device: check-config finds what start would fail on.
    let (code, _, err) = check_config_yaml("global: {trust_store_file: /dev/zero}\n");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("trust_store_file") && err.contains("not a regular file"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_that_is_a_device_fails_fast_and_small() {
    let api = TestServer::json(401, "{}").await;
    let yaml = format!(
        "global: {{interval: 300ms, timeout: 1s}}\nprobes:\n  - {{name: auth, auth: {{url: \"http://127.0.0.1:{}/me\", token_source: file, token_file: /dev/zero}}}}\n",
        api.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| {
                common::prom::value(t, "authwatch_probe_runs_total", &[("probe", "auth")])
                    .is_some_and(|n| n >= 3.0)
            },
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        reason_of(&text, "auth").as_deref(),
        Some("token_mint_failed")
    );
    let rss = expect_value(&text, "process_resident_memory_bytes", &[]);
    println!("token_file /dev/zero: RSS {:.1} MB after 3 runs", rss / 1e6);
    assert!(rss < 200e6, "RSS {rss}");
}

#[test]
fn a_secret_in_the_wrong_place_is_not_echoed() {
    use common::daemon::check_config_yaml;
    let canary = "CANARYpassw0rd";
    for yaml in [
        format!(
            "probes:\n  - name: a\n    https: {{url: \"https://x.test/\"}}\n    connection:\n      \"http://user:{canary}@proxy:3128\": 1\n"
        ),
        format!("global: {{interval: \"sk_live_{canary}\"}}\n"),
        format!("clerk:\n  sk_test_{canary}: 1\n"),
    ] {
        let (code, out, err) = check_config_yaml(&yaml);
        assert_eq!(code, 1, "{err}");
        assert!(!err.contains(canary) && !out.contains(canary), "{err}");
        assert!(err.contains("<redacted>"), "{err}");
    }
}

/// Wrong passwords in a flood cannot slow authorised scrapes or the probes: bcrypt runs on
/// the blocking pool, two at a time, and a request beyond that is refused, not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_does_not_stall_scrapes() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("right-pw", 12).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prom: {hash}\n")).unwrap();
    let d = Daemon::start_with_args(
        "global: {interval: 1s}\nprobes: []\n",
        &[],
        &["--web.config.file", web.to_str().unwrap()],
    )
    .await;
    let basic = |p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("prom:{p}"))
        )
    };
    let good = basic("right-pw");
    // The first authorised scrape pays bcrypt once; later ones hit the verified cache.
    let (status, _, _) = request(
        d.addr(),
        "GET",
        "/metrics",
        &[("Authorization", &good)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for _ in 0..8 {
        let (addr, stop, bad) = (d.addr(), stop.clone(), basic("wrong"));
        flood.push(tokio::spawn(async move {
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = request(addr, "GET", "/metrics", &[("Authorization", &bad)], None).await;
                assert_eq!(r.map(|(s, _, _)| s).ok(), Some(401));
                answered += 1;
            }
            answered
        }));
    }
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let (status, _, _) = request(
            d.addr(),
            "GET",
            "/metrics",
            &[("Authorization", &good)],
            None,
        )
        .await
        .unwrap();
        worst = worst.max(started.elapsed());
        assert_eq!(status, 200, "an authorised scrape during the flood");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answered = 0;
    for f in flood {
        answered += f.await.unwrap();
    }
    println!(
        "8 clients with a wrong password (cost 12): {answered} answered 401; slowest authorised scrape {worst:?}"
    );
    assert!(answered > 0);
}

/// An allowed name that resolves to loopback (here standing for 169.254.169.254 and every
/// other address no name may lead to), a port nobody listed, or an OIDC `jwks_uri` pointing
/// elsewhere: each refused with 403 before a connection is made, while listed addresses work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_names_cannot_lead_to_unlisted_addresses_or_ports() {
    use std::net::Ipv4Addr;
    let inner = TestServer::json(200, r#"{"ok":true}"#).await;
    let unlisted = TestServer::json(200, r#"{"ok":true}"#).await;
    let jwks_port = TestServer::json(200, r#"{"keys":[]}"#).await;
    let discovery_body = format!(
        r#"{{"issuer":"x","jwks_uri":"http://127.0.0.1:{}/jwks"}}"#,
        jwks_port.port()
    );
    let discovery = TestServer::json(200, discovery_body).await;
    let dns = DnsServer::with_zone([
        ("metadata.corp.test", Behavior::a([Ipv4Addr::LOCALHOST])),
        ("db.internal.test", Behavior::a([Ipv4Addr::LOCALHOST])),
    ])
    .await;
    let yaml = format!(
        r#"
probe_allowlist: ["*.corp.test:*", "db.internal.test", "127.0.0.1:{inner}", "127.0.0.1:{disc}"]
modules:
  web: {{https: {{}}, connection: {{resolver: "{dns}"}}}}
  port: {{tcp: {{resolver: "{dns}"}}}}
  oidc: {{jwks: {{source: oidc}}}}
probes: []
"#,
        inner = inner.port(),
        disc = discovery.port(),
        dns = dns.addr(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let probe = |module: &str, target: String| format!("/probe?module={module}&target={target}");

    // The wildcard allows the name on any port, but not the loopback address it resolves to.
    let (status, _, body) = d
        .get(&probe(
            "web",
            format!("http://metadata.corp.test:{}/", unlisted.port()),
        ))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("127.0.0.1"), "{body}");
    let (status, _, body) = d
        .get(&probe(
            "port",
            format!("metadata.corp.test:{}", unlisted.port()),
        ))
        .await;
    assert_eq!(status, 403, "tcp: {body}");
    assert_eq!(unlisted.connections(), 0, "a refused address was dialled");

    // An exact name without a port allows 80 and 443 only.
    let (status, _, body) = d
        .get(&probe(
            "web",
            format!("http://db.internal.test:{}/", unlisted.port()),
        ))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("port"), "{body}");
    assert_eq!(unlisted.connections(), 0);

    // The address and port listed together are allowed, by address.
    let (status, _, body) = d
        .get(&probe("web", format!("http://127.0.0.1:{}/", inner.port())))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(expect_value(&body, "probe_success", &[]), 1.0, "{body}");
    assert_eq!(inner.connections(), 1);

    // Discovery is allowed; the jwks_uri it names (same address, unlisted port) is not.
    let (status, _, body) = d
        .get(&probe(
            "oidc",
            format!(
                "http://127.0.0.1:{}/.well-known/openid-configuration",
                discovery.port()
            ),
        ))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(discovery.connections(), 1);
    assert_eq!(jwks_port.connections(), 0, "the jwks_uri was fetched");
}

/// Through a proxy the proxy resolves names, so the addresses a `/probe` run reaches cannot be
/// checked here; the name and port of every request it makes, an OIDC `jwks_uri` included,
/// still are, before the proxy is asked for a tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_probe_run_is_held_to_the_allowlist_too() {
    let pki = TestPki::new();
    let leaf = pki.good(&["localhost"]);
    let jwks = TestServer::start_tls(&leaf, |_| ResponseSpec::json(200, r#"{"keys":[]}"#)).await;
    let body = format!(
        r#"{{"issuer":"x","jwks_uri":"https://localhost:{}/jwks"}}"#,
        jwks.port()
    );
    let discovery =
        TestServer::start_tls(&leaf, move |_| ResponseSpec::json(200, body.clone())).await;
    let proxy = common::proxy::ConnectProxy::start().await;
    let yaml = format!(
        r#"
probe_allowlist: ["localhost:{disc}"]
modules:
  oidc: {{jwks: {{source: oidc}}, connection: {{proxy_url: "{proxy}", tls: {{ca_file: "{ca}"}}}}}}
probes: []
"#,
        disc = discovery.port(),
        proxy = proxy.url(),
        ca = pki.ca_pem_path().display(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let (status, _, body) = d
        .get(&format!(
            "/probe?module=oidc&target=https://localhost:{}/.well-known/openid-configuration",
            discovery.port()
        ))
        .await;
    assert_eq!(discovery.requests(), 1, "discovery went through: {body}");
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        jwks.connections(),
        0,
        "the jwks_uri was fetched through the proxy"
    );
    let port = format!(":{}", jwks.port());
    assert!(
        proxy.targets().iter().all(|t| !t.ends_with(&port)),
        "the proxy was asked for the jwks_uri: {:?}",
        proxy.targets()
    );
}

fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Runs of every scheduled probe, once all have passed their latest run.
fn passing_runs(text: &str, probes: &[&str]) -> Option<Vec<f64>> {
    probes
        .iter()
        .map(|p| {
            let ok = common::prom::value(text, "authwatch_probe_success", &[("probe", p)])?;
            let runs = common::prom::value(text, "authwatch_probe_runs_total", &[("probe", p)])?;
            (ok == 1.0).then_some(runs)
        })
        .collect()
}

/// Under `LimitNOFILE=256`, a client holding twice that many idle connections, then a flood
/// of `/probe` requests for a hung target: the scheduled probes keep passing and no network
/// cause is named, `/metrics` is still served, and descriptors, threads and outbound
/// connections stay within the limits the daemon logged at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_of_connections_and_probes_leave_the_scheduled_probes_alone() {
    // The client side needs more descriptors than the daemon gets.
    let mut own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    own.current = own.maximum;
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, own);

    let api = TestServer::json(200, r#"{"status":"ok"}"#).await;
    let hang = TestServer::hang().await;
    let yaml = format!(
        r#"
global: {{interval: 400ms, timeout: 2s}}
probe_allowlist: ["127.0.0.1:{hang}"]
modules:
  plain: {{https: {{}}, timeout: 4s}}
probes:
  - {{name: a, https: {{url: "http://127.0.0.1:{api}/a"}}}}
  - {{name: b, https: {{url: "http://127.0.0.1:{api}/b"}}}}
  - {{name: c, https: {{url: "http://127.0.0.1:{api}/c"}}}}
"#,
        hang = hang.port(),
        api = api.port()
    );
    let probes = ["a", "b", "c"];
    let d = Daemon::start_with_fd_limit(&yaml, &[], 256).await;
    let pid = d.pid();
    let limits = d
        .log_records()
        .into_iter()
        .find(|r| r["fields"]["message"] == "limits")
        .unwrap_or_else(|| panic!("no limits record: {}", d.logs()));
    let max_runs = limits["fields"]["max_probe_runs"]
        .as_u64()
        .expect("max_probe_runs");
    let max_conns = limits["fields"]["max_connections"]
        .as_u64()
        .expect("max_connections");
    assert_eq!(limits["fields"]["fd_limit"].as_u64(), Some(256));
    assert!(max_conns * 2 + max_runs * 3 <= 96, "{limits}");
    let before = d
        .wait_for(
            |t| passing_runs(t, &probes).is_some(),
            Duration::from_secs(10),
        )
        .await;
    let runs_before = passing_runs(&before, &probes).expect("passing");

    // 1. Twice the descriptor limit in idle connections, held.
    let mut idle = Vec::new();
    for _ in 0..512 {
        if let Ok(s) = tokio::net::TcpStream::connect(d.addr()).await {
            idle.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fds_under_idle = open_fds(pid);
    let text = d.metrics().await;
    let runs = passing_runs(&text, &probes)
        .unwrap_or_else(|| panic!("a scheduled probe failed under idle connections:\n{text}"));
    assert!(
        runs.iter().zip(&runs_before).all(|(n, b)| n >= &(b + 2.0)),
        "probes stalled: {runs_before:?} -> {runs:?}"
    );
    assert!(
        expect_value(&text, "authwatch_web_evicted_connections_total", &[]) > 0.0,
        "{text}"
    );

    // 2. Many concurrent /probe requests for a target that never answers.
    let path = format!(
        "/probe?module=plain&target=http://127.0.0.1:{}/",
        hang.port()
    );
    let flood: Vec<_> = (0..300)
        .map(|_| {
            let (addr, path) = (d.addr(), path.clone());
            tokio::spawn(async move {
                request(addr, "GET", &path, &[], None)
                    .await
                    .map(|r| r.0)
                    .unwrap_or(0)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let threads = proc_status_field(pid, "Threads");
    let fds_under_flood = open_fds(pid);
    let during = d.metrics().await;
    let mut statuses = std::collections::BTreeMap::new();
    for t in flood {
        *statuses.entry(t.await.unwrap_or(0)).or_insert(0u32) += 1;
    }
    let after = d.metrics().await;
    eprintln!(
        "limits {limits}; fds idle {fds_under_idle}, flood {fds_under_flood}; threads {threads}; outbound to the hung target {}; statuses {statuses:?}",
        hang.connections()
    );
    assert!(
        hang.connections() <= max_runs,
        "{} outbound connections for a limit of {max_runs}",
        hang.connections()
    );
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(
        statuses.get(&200).copied().unwrap_or(0) as u64 <= max_runs,
        "{statuses:?}"
    );
    assert!(threads < 48, "{threads} threads");
    assert!(fds_under_idle <= 256 && fds_under_flood <= 256);
    assert!(
        expect_value(
            &after,
            "authwatch_web_refused_total",
            &[("limit", "probe_runs")]
        ) > 0.0
    );
    for text in [&during, &after] {
        let runs_now = passing_runs(text, &probes)
            .unwrap_or_else(|| panic!("a scheduled probe failed under the flood:\n{text}"));
        assert!(
            runs_now.iter().zip(&runs).all(|(n, b)| n > b),
            "probes stalled"
        );
        for cause in [
            "egress_blocked",
            "network_down",
            "local_resources_exhausted",
        ] {
            let named = common::prom::value(text, "authwatch_diagnosis", &[("cause", cause)]);
            assert_ne!(named, Some(1.0), "{cause} named under a flood:\n{text}");
        }
    }
    drop(idle);
    assert!(!d.logs().contains("panicked"));
}
