//! The operator surface: live reload (a broken config is refused, unchanged probes keep their
//! state, removed probes vanish), TLS and basic auth from `--web.config.file`, and the
//! blackbox-compatible `/probe` with its allowlist, debug output and scrape timeout.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::daemon::Daemon;
use common::http::{ResponseSpec, TestServer, request};
use common::jwks::{jwks, rsa_key};
use common::prom::{expect_value, find, promtool_check, value};
use common::tls::TestPki;

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_state_refuses_broken_config_and_drops_removed_probes() {
    let doc = jwks([rsa_key(2048).jwk("ins_reload")]).to_string();
    let server = TestServer::start(move |req| match req.path_only() {
        "/jwks" => ResponseSpec::json(200, doc.clone()),
        _ => ResponseSpec::json(200, "{}"),
    })
    .await;
    let base = format!("http://127.0.0.1:{}", server.port());
    let config = |extra: &str| {
        format!(
            "global: {{interval: 300ms, timeout: 1s}}\nprobes:\n  - name: keep\n    https: {{url: \"{base}/a\"}}\n  - name: keys\n    jwks: {{url: \"{base}/jwks\"}}\n{extra}"
        )
    };
    let d = Daemon::start(
        &config(&format!(
            "  - name: drop-me\n    https: {{url: \"{base}/b\"}}\n"
        )),
        &[],
    )
    .await;
    let text = d
        .wait_for(
            |t| {
                value(t, "authwatch_probe_runs_total", &[("probe", "keep")])
                    .is_some_and(|v| v >= 3.0)
                    && value(t, "authwatch_jwks_keys", &[("probe", "keys")]).is_some()
                    && value(t, "authwatch_probe_success", &[("probe", "drop-me")]).is_some()
            },
            Duration::from_secs(10),
        )
        .await;
    let runs_before = expect_value(&text, "authwatch_probe_runs_total", &[("probe", "keep")]);
    let first_seen = expect_value(
        &text,
        "authwatch_jwks_last_change_timestamp_seconds",
        &[("probe", "keys")],
    );

    // A broken config, by SIGHUP: refused, logged with its location, the old config runs on.
    d.rewrite_config("global: {interval: 300ms}\nprobes:\n  - name: keep\n    bogus: true\n");
    d.signal("HUP");
    d.wait_for_log(
        |l| l.contains("configuration reload failed"),
        Duration::from_secs(5),
    )
    .await;
    let text = d
        .wait_for(
            |t| value(t, "authwatch_config_last_reload_successful", &[]) == Some(0.0),
            Duration::from_secs(5),
        )
        .await;
    assert!(value(&text, "authwatch_probe_success", &[("probe", "drop-me")]).is_some());
    // And by POST /-/reload: 500 with the reason.
    let (status, _, body) = request(d.addr(), "POST", "/-/reload", &[], None)
        .await
        .unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("authwatch.yml:4:5: unknown field `bogus`"),
        "{body}"
    );

    // A good config: drop-me removed, a new probe added, the others unchanged.
    d.rewrite_config(&config(&format!(
        "  - name: added\n    https: {{url: \"{base}/c\"}}\n"
    )));
    let (status, _, body) = request(d.addr(), "POST", "/-/reload", &[], None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let text = d
        .wait_for(
            |t| value(t, "authwatch_probe_success", &[("probe", "added")]).is_some(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        expect_value(&text, "authwatch_config_last_reload_successful", &[]),
        1.0
    );
    assert!(
        find(&text, "authwatch_probe_success", &[("probe", "drop-me")]).is_empty(),
        "removed probe still exported"
    );
    assert!(find(&text, "authwatch_probe_runs_total", &[("probe", "drop-me")]).is_empty());
    assert!(
        expect_value(&text, "authwatch_probe_runs_total", &[("probe", "keep")]) >= runs_before,
        "state of an unchanged probe was lost"
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_last_change_timestamp_seconds",
            &[("probe", "keys")]
        ),
        first_seen,
        "JWKS history of an unchanged probe was lost"
    );
    assert!(d.logs().contains("configuration reloaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_config_tls_and_basic_auth() {
    let pki = TestPki::new();
    let leaf = pki.good(&["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf.write_pem_files(dir.path(), "web");
    let hash = bcrypt::hash("scrape-canary-pw", 4).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: {hash}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let d = Daemon::start_with_args(
        "global: {interval: 1s}\nprobes: []\n",
        &[],
        &["--web.config.file", web.to_str().unwrap()],
    )
    .await;
    let tls = || Some((pki.client_config(), "localhost"));
    for path in [
        "/metrics",
        "/",
        "/api/v1/status",
        "/-/healthy",
        "/probe?target=clerk.com",
    ] {
        let (status, headers, _) = request(d.addr(), "GET", path, &[], tls()).await.unwrap();
        assert_eq!(status, 401, "{path} without credentials");
        assert_eq!(
            common::http::header(&headers, "www-authenticate"),
            Some("Basic realm=\"authwatch\"")
        );
    }
    let wrong = basic("prometheus", "nope");
    let (status, _, _) = request(
        d.addr(),
        "GET",
        "/metrics",
        &[("Authorization", &wrong)],
        tls(),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let unknown = basic("mallory", "scrape-canary-pw");
    let (status, _, _) = request(
        d.addr(),
        "GET",
        "/metrics",
        &[("Authorization", &unknown)],
        tls(),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let good = basic("prometheus", "scrape-canary-pw");
    let (status, _, body) = request(
        d.addr(),
        "GET",
        "/metrics",
        &[("Authorization", &good)],
        tls(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("authwatch_build_info"));
    // Plain HTTP to the TLS port gets nothing useful.
    assert!(!matches!(
        request(d.addr(), "GET", "/metrics", &[], None).await,
        Ok((200, _, _))
    ));
    // A bad web config is refused with its location.
    let bad = dir.path().join("bad-web.yml");
    std::fs::write(&bad, "basic_auth_users:\n  u: notahash\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authwatch"))
        .args(["check-config", "--web.config.file", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("bad-web.yml:2:6: basic_auth_users.u: not a bcrypt hash"),
        "{err}"
    );
    assert!(!d.logs().contains("scrape-canary-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_endpoint_is_blackbox_compatible_and_guarded() {
    let pki = TestPki::new();
    let leaf = pki.good(&["localhost"]);
    let server =
        TestServer::start_tls(&leaf, |_| ResponseSpec::text(200, "text/plain", "ok")).await;
    let hang = TestServer::hang().await;
    let yaml = format!(
        r#"
global: {{interval: 10s}}
probe_allowlist: ["localhost:*", "127.0.0.1:{port}"]
modules:
  https_2xx:
    https: {{}}
    timeout: 5s
    connection: {{tls: {{ca_file: {ca}}}}}
  plain:
    https: {{}}
probes: []
"#,
        ca = pki.ca_pem_path().display(),
        port = server.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let target = format!("https://localhost:{}/", server.port());
    let (status, headers, body) = d
        .get(&format!("/probe?module=https_2xx&target={target}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        common::http::header(&headers, "content-type")
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(expect_value(&body, "probe_success", &[]), 1.0, "{body}");
    assert_eq!(expect_value(&body, "probe_http_status_code", &[]), 200.0);
    assert_eq!(
        expect_value(&body, "probe_ssl_earliest_cert_expiry", &[]),
        leaf.not_after as f64
    );
    assert!(expect_value(&body, "probe_http_duration_seconds", &[("phase", "tls")]) > 0.0);
    assert_eq!(
        expect_value(&body, "probe_tls_version_info", &[("version", "TLS 1.3")]),
        1.0
    );
    assert_eq!(expect_value(&body, "probe_ip_protocol", &[]), 4.0);
    // blackbox's chain info names the server certificate the test CA issued.
    let chain = find(
        &body,
        "probe_ssl_last_chain_info",
        &[("subjectalternative", "localhost")],
    );
    assert_eq!(chain.len(), 1, "{body}");
    let want: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.cert_der.as_ref())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    assert_eq!(chain[0].label("fingerprint_sha256"), Some(want.as_str()));
    assert!(!chain[0].label("serialnumber").unwrap_or("").is_empty());
    assert!(!chain[0].label("issuer").unwrap_or("").is_empty(), "{body}");
    let (out, ok) = promtool_check(&body);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    // Outside the allowlist: refused before any connection is made.
    let before = hang.connections();
    let (status, _, body) = d
        .get(&format!(
            "/probe?module=plain&target=http://127.0.0.1:{}/",
            hang.port()
        ))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("probe_allowlist"));
    assert_eq!(hang.connections(), before);
    let (status, _, _) = d.get("/probe?module=nope&target=localhost").await;
    assert_eq!(status, 400);
    let (status, _, _) = d.get("/probe?module=plain").await;
    assert_eq!(status, 400);

    // debug=true returns the probe's log and the metrics as text.
    let (status, _, body) = d
        .get(&format!(
            "/probe?module=https_2xx&target={target}&debug=true"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("Logs for the probe:") && body.contains("Probe succeeded"),
        "{body}"
    );
    assert!(
        body.contains("Metrics that would have been returned:") && body.contains("probe_success 1")
    );

    // The deadline follows Prometheus's scrape timeout minus an offset.
    let d2 = Daemon::start_with_args(&yaml, &[], &["--probe.allow-any-target"]).await;
    let started = Instant::now();
    let path = format!(
        "/probe?module=plain&target=http://127.0.0.1:{}/",
        hang.port()
    );
    let (status, _, body) = request(
        d2.addr(),
        "GET",
        &path,
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")],
        None,
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(expect_value(&body, "probe_success", &[]), 0.0);
    assert_eq!(
        expect_value(&body, "authwatch_probe_failure", &[("reason", "timeout")]),
        1.0,
        "{body}"
    );
    // Without the header the module's 10 s timeout would apply; with it the budget is 1 s.
    assert!(
        took < Duration::from_secs(5),
        "probe ignored the scrape timeout: {took:?}"
    );
    let pd = expect_value(&body, "probe_duration_seconds", &[]);
    assert!((0.9..3.0).contains(&pd), "probe_duration_seconds {pd}");
}

/// One raw GET with the given headers; the head as text and the body as bytes, undecoded.
async fn raw_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .expect("answer in time")
        .expect("read");
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    let mut body = all[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = common::http::decode_chunked(&body).expect("a complete chunked body");
    }
    (head, body)
}

/// `/metrics` is gzipped when the scraper asks (as Prometheus does), never when it refuses
/// with `q=0`, and OpenMetrics refused with `q=0` gets the text format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_gzipped_on_request_and_q0_is_honoured() {
    use std::io::Read as _;
    let server = TestServer::json(200, r#"{"ok":true}"#).await;
    let yaml = format!(
        "global: {{interval: 300ms}}\nprobes:\n  - {{name: h, https: {{url: \"http://127.0.0.1:{}/\"}}}}\n",
        server.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    d.wait_for(
        |t| value(t, "authwatch_probe_success", &[("probe", "h")]) == Some(1.0),
        Duration::from_secs(10),
    )
    .await;
    let prometheus_accept = "Accept: application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\nAccept-Encoding: gzip\r\n";
    let (head, body) = raw_get(d.addr(), "/metrics", prometheus_accept).await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("valid gzip");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "h")]),
        1.0
    );
    assert!(
        body.len() * 2 < text.len(),
        "{} -> {}",
        text.len(),
        body.len()
    );

    for refused in [
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: identity\r\n",
        "",
    ] {
        let (head, body) = raw_get(d.addr(), "/metrics", refused).await;
        assert!(!head.contains("content-encoding"), "{refused}: {head}");
        assert!(String::from_utf8_lossy(&body).contains("authwatch_probe_success"));
    }
    let (head, body) = raw_get(
        d.addr(),
        "/metrics",
        "Accept: application/openmetrics-text;q=0, text/plain\r\n",
    )
    .await;
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!String::from_utf8_lossy(&body).contains("# EOF"));
}

/// `failure_series: active` leaves out the zeros of the one-hot failure gauge: a healthy
/// probe has none of its series, a failing one only the reason it fails with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_series_active_exports_only_the_reason_that_is_one() {
    let server = TestServer::json(200, r#"{"ok":true}"#).await;
    let yaml = format!(
        "global: {{interval: 300ms, failure_series: active}}\nprobes:\n  - {{name: up, https: {{url: \"http://127.0.0.1:{}/\"}}}}\n  - {{name: down, https: {{url: \"http://127.0.0.1:1/\"}}}}\n",
        server.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| {
                value(t, "authwatch_probe_success", &[("probe", "down")]) == Some(0.0)
                    && value(t, "authwatch_probe_success", &[("probe", "up")]) == Some(1.0)
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(
        find(&text, "authwatch_probe_failure", &[("probe", "up")]).is_empty(),
        "{text}"
    );
    let down = find(&text, "authwatch_probe_failure", &[("probe", "down")]);
    assert_eq!(down.len(), 1, "{text}");
    assert_eq!(down[0].label("reason"), Some("connect_refused"));
    assert_eq!(down[0].value, 1.0);
    let (code, _, err) = common::daemon::check_config_yaml("global: {failure_series: some}\n");
    assert_ne!(code, 0);
    assert!(
        err.contains(":1:") && err.contains("all or active"),
        "{err}"
    );
}

/// A blackbox scrape job works unchanged: its default module names exist without being
/// configured (`http_2xx` also when the request names none), `http_post_2xx` posts, and the
/// answer carries the `probe_http_*` series blackbox dashboards read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackbox_module_names_work_without_configuration() {
    let server = TestServer::json(200, r#"{"ok":true}"#).await;
    let yaml = "probe_allowlist: [\"127.0.0.1:*\"]\nprobes: []\n";
    let d = Daemon::start(yaml, &[]).await;
    let target = format!("http://127.0.0.1:{}/x", server.port());
    for (path, method) in [
        (format!("/probe?module=http_2xx&target={target}"), "GET"),
        (format!("/probe?target={target}"), "GET"),
        (
            format!("/probe?module=http_post_2xx&target={target}"),
            "POST",
        ),
    ] {
        let (status, _, body) = d.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(
            expect_value(&body, "probe_success", &[]),
            1.0,
            "{path}: {body}"
        );
        assert_eq!(
            server.last_request().map(|r| r.method),
            Some(method.to_string()),
            "{path}"
        );
        for (family, want) in [
            ("probe_http_version", 1.1),
            ("probe_http_redirects", 0.0),
            ("probe_failed_due_to_regex", 0.0),
            ("probe_http_uncompressed_body_length", 11.0),
        ] {
            assert_eq!(expect_value(&body, family, &[]), want, "{family}: {body}");
        }
    }
    let (status, _, body) = d
        .get(&format!(
            "/probe?module=tcp_connect&target=127.0.0.1:{}",
            server.port()
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(expect_value(&body, "probe_success", &[]), 1.0, "{body}");
}

/// A DNS module in blackbox_exporter's form: `query_name` fixed, each request's target the
/// server to ask, and that server decided by the allowlist like any target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_modules_in_blackbox_form_take_the_server_as_target() {
    use common::dns::{Behavior, DnsServer};
    let dns = DnsServer::with_zone([(
        "clerk.test",
        Behavior::a([std::net::Ipv4Addr::new(192, 0, 2, 7)]),
    )])
    .await;
    let yaml = format!(
        "probe_allowlist: [\"127.0.0.1:{}\"]\nmodules:\n  dns_udp: {{dns: {{query_name: clerk.test, query_type: A}}}}\nprobes: []\n",
        dns.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let (status, _, body) = d
        .get(&format!(
            "/probe?module=dns_udp&target=127.0.0.1:{}",
            dns.port()
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(expect_value(&body, "probe_success", &[]), 1.0, "{body}");
    assert_eq!(
        expect_value(&body, "probe_dns_answer_rrs", &[]),
        1.0,
        "{body}"
    );
    assert_eq!(dns.queries_for("clerk.test"), 1);
    // Another server, not in the allowlist, is refused before any query.
    let (status, _, body) = d.get("/probe?module=dns_udp&target=127.0.0.2:53").await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = d.get("/probe?module=dns_udp&target=clerk.test").await;
    assert_eq!(status, 400, "a name is not a server: {body}");
    // query_name is for modules only.
    let (code, _, err) = common::daemon::check_config_yaml(
        "probes:\n  - {name: d, dns: {query_name: clerk.test}}\n",
    );
    assert_ne!(code, 0);
    assert!(err.contains("query_name is for modules"), "{err}");
}
