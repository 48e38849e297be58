//! The `https` probe against rustls servers on loopback with a CA made at test time: phases,
//! TLS details, every TLS and transport failure, status codes, body caps, hung and resetting
//! servers, and an HTTP CONNECT proxy.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::daemon::Daemon;
use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, TestServer};
use common::prom::{expect_value, promtool_check, reason_of, value};
use common::proxy::ConnectProxy;
use common::tls::TestPki;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_failures_are_classified() {
    let pki = TestPki::new();
    let good_leaf = pki.good(&["clerk.test", "localhost"]);
    let good = TestServer::start_tls(&good_leaf, |_| {
        ResponseSpec::text(200, "text/html", "<html>ok</html>")
    })
    .await;
    let unknown_leaf = pki.unknown_ca(&["clerk.test"]);
    let unknown = TestServer::start_tls(&unknown_leaf, |_| ResponseSpec::new(200)).await;
    let expired_leaf = pki.expired(&["clerk.test"]);
    let expired = TestServer::start_tls(&expired_leaf, |_| ResponseSpec::new(200)).await;
    let wrong = TestServer::start_tls(&pki.good(&["other.test"]), |_| ResponseSpec::new(200)).await;
    let five = TestServer::start_tls(&good_leaf, |_| {
        ResponseSpec::json(503, r#"{"error":"down"}"#)
    })
    .await;
    let big = TestServer::start_tls(&good_leaf, |_| {
        ResponseSpec::text(200, "text/plain", "x".repeat(4096))
    })
    .await;
    let slow = TestServer::start_tls(&good_leaf, |_| {
        ResponseSpec::new(200).slow_body(vec![b'y'; 16], Duration::from_millis(400), 10)
    })
    .await;
    let hang = TestServer::hang().await;
    let reset = TestServer::reset().await;
    let proxy = ConnectProxy::with_auth("probe", "proxy-canary-pass").await;

    let dns = DnsServer::with_zone([
        (
            "clerk.test",
            Behavior::Answer {
                a: vec![Ipv4Addr::LOCALHOST],
                aaaa: vec!["::1".parse().unwrap()],
            },
        ),
        ("wrong.test", Behavior::a([Ipv4Addr::LOCALHOST])),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, pki.other_ca_pem()).unwrap();

    let conn = format!(r#"connection: {{resolver: "{}"}}"#, dns.addr());
    let probe = |name: &str, url: String, extra: &str| {
        format!("  - name: {name}\n    https: {{url: \"{url}\"}}\n    {conn}\n{extra}")
    };
    let mut yaml = format!(
        "global:\n  interval: 400ms\n  timeout: 1500ms\n  trust_store_file: {}\nprobes:\n",
        pki.ca_pem_path().display()
    );
    for p in [
        probe("good", format!("https://clerk.test:{}/", good.port()), ""),
        probe(
            "unknown-ca",
            format!("https://clerk.test:{}/", unknown.port()),
            "",
        ),
        probe(
            "expired",
            format!("https://clerk.test:{}/", expired.port()),
            "",
        ),
        probe(
            "wrong-host",
            format!("https://wrong.test:{}/", wrong.port()),
            "",
        ),
        probe(
            "status-5xx",
            format!("https://clerk.test:{}/", five.port()),
            "",
        ),
        probe("too-big", format!("https://clerk.test:{}/", big.port()), ""),
        probe(
            "slow-body",
            format!("https://clerk.test:{}/", slow.port()),
            "",
        ),
        probe("hung", format!("https://clerk.test:{}/", hang.port()), ""),
        probe("reset", format!("https://clerk.test:{}/", reset.port()), ""),
        probe("nxdomain", "https://missing.test/".into(), ""),
        probe("refused", "https://127.0.0.1:1/".into(), ""),
    ] {
        yaml.push_str(&p);
    }
    yaml.push_str(&format!(
        r#"  - name: extra-ca
    https: {{url: "https://clerk.test:{unknown}/"}}
    connection: {{resolver: "{dns}", tls: {{ca_file: {other_ca}}}}}
  - name: too-big
    https: {{url: "https://clerk.test:{big}/"}}
    connection: {{resolver: "{dns}", body_limit_bytes: 1024}}
  - name: via-proxy
    https: {{url: "https://localhost:{good}/"}}
    connection: {{proxy_url: "{proxy_ok}"}}
  - name: proxy-no-auth
    https: {{url: "https://localhost:{good}/"}}
    connection: {{proxy_url: "{proxy_bare}"}}
"#,
        unknown = unknown.port(),
        dns = dns.addr(),
        other_ca = other_ca.display(),
        big = big.port(),
        good = good.port(),
        proxy_ok = proxy.url_with_auth("probe", "proxy-canary-pass"),
        proxy_bare = proxy.url(),
    ));
    // The first too-big (without a limit) was a placeholder: rename it so names stay unique.
    let yaml = yaml.replacen("name: too-big\n", "name: big-unlimited\n", 1);

    let d = Daemon::start(&yaml, &[]).await;
    let names = [
        "good",
        "unknown-ca",
        "expired",
        "wrong-host",
        "status-5xx",
        "big-unlimited",
        "too-big",
        "slow-body",
        "hung",
        "reset",
        "nxdomain",
        "refused",
        "extra-ca",
        "via-proxy",
        "proxy-no-auth",
    ];
    let text = d
        .wait_for(
            |t| {
                names
                    .iter()
                    .all(|p| value(t, "authwatch_probe_success", &[("probe", p)]).is_some())
            },
            Duration::from_secs(20),
        )
        .await;

    // The good server: every phase timed, TLS details, IPv4 after ::1 refused.
    let good_l = [("probe", "good")];
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &good_l),
        1.0,
        "{text}"
    );
    for phase in ["resolve", "connect", "tls", "processing"] {
        let v = expect_value(
            &text,
            "authwatch_probe_phase_duration_seconds",
            &[("probe", "good"), ("phase", phase)],
        );
        assert!(v > 0.0, "phase {phase} = {v}");
    }
    assert_eq!(
        expect_value(&text, "authwatch_http_status_code", &good_l),
        200.0
    );
    assert_eq!(
        expect_value(&text, "authwatch_http_ip_protocol", &good_l),
        4.0
    );
    assert_eq!(expect_value(&text, "authwatch_tls_verified", &good_l), 1.0);
    assert_eq!(
        expect_value(
            &text,
            "authwatch_tls_version_info",
            &[("probe", "good"), ("version", "TLS 1.3")]
        ),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_tls_cert_not_after_timestamp_seconds",
            &[("probe", "good"), ("cert", "leaf")]
        ),
        good_leaf.not_after as f64
    );
    assert_eq!(
        expect_value(&text, "authwatch_tls_trust_store_certificates", &[]),
        1.0
    );

    let expect = [
        ("unknown-ca", "tls_unknown_issuer"),
        ("expired", "tls_expired"),
        ("wrong-host", "tls_hostname_mismatch"),
        ("status-5xx", "http_status"),
        ("too-big", "body_too_large"),
        ("slow-body", "timeout"),
        ("hung", "timeout"),
        ("reset", "connection_reset"),
        ("nxdomain", "dns_nxdomain"),
        ("refused", "connect_refused"),
        ("proxy-no-auth", "proxy_auth_required"),
    ];
    for (probe, reason) in expect {
        assert_eq!(
            reason_of(&text, probe).as_deref(),
            Some(reason),
            "probe {probe}:\n{text}"
        );
        assert_eq!(
            expect_value(&text, "authwatch_probe_success", &[("probe", probe)]),
            0.0
        );
    }
    for probe in ["big-unlimited", "extra-ca", "via-proxy"] {
        assert_eq!(
            expect_value(&text, "authwatch_probe_success", &[("probe", probe)]),
            1.0,
            "{probe}:\n{text}"
        );
    }
    assert!(proxy.tunnels() > 0);
    assert_eq!(
        expect_value(
            &text,
            "authwatch_http_status_code",
            &[("probe", "status-5xx")]
        ),
        503.0
    );
    // Expiry is exported even when verification fails.
    assert_eq!(
        expect_value(
            &text,
            "authwatch_tls_cert_not_after_timestamp_seconds",
            &[("probe", "expired"), ("cert", "leaf")]
        ),
        expired_leaf.not_after as f64
    );
    assert_eq!(
        expect_value(&text, "authwatch_tls_verified", &[("probe", "expired")]),
        0.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_tls_cert_not_after_timestamp_seconds",
            &[("probe", "unknown-ca"), ("cert", "leaf")]
        ),
        unknown_leaf.not_after as f64
    );
    // A hung server costs its own probe its deadline and nothing else.
    let hung_runs = expect_value(
        &text,
        "authwatch_probe_duration_seconds_count",
        &[("probe", "hung")],
    );
    let good_runs = expect_value(
        &text,
        "authwatch_probe_duration_seconds_count",
        &[("probe", "good")],
    );
    assert!(good_runs >= hung_runs, "good {good_runs} hung {hung_runs}");
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_failures_total",
            &[("probe", "hung"), ("reason", "timeout")]
        ),
        hung_runs
    );

    let (out, ok) = promtool_check(&text);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");
    // The proxy password never shows.
    assert!(!text.contains("proxy-canary-pass"));
    assert!(!d.logs().contains("proxy-canary-pass"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_trust_store_is_reported() {
    let pki = TestPki::new();
    let leaf = pki.good(&["localhost"]);
    let server = TestServer::start_tls(&leaf, |_| ResponseSpec::new(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let yaml = format!(
        "global:\n  interval: 300ms\n  timeout: 1s\n  trust_store_file: {}\nprobes:\n  - name: no-ca\n    https: {{url: \"https://localhost:{}/\"}}\n",
        empty.display(),
        server.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| value(t, "authwatch_probe_success", &[("probe", "no-ca")]).is_some(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        expect_value(&text, "authwatch_tls_trust_store_certificates", &[]),
        0.0
    );
    assert_eq!(
        reason_of(&text, "no-ca").as_deref(),
        Some("tls_unknown_issuer")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_tls_cert_not_after_timestamp_seconds",
            &[("probe", "no-ca"), ("cert", "leaf")]
        ),
        leaf.not_after as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_from_environment_honours_no_proxy() {
    let pki = TestPki::new();
    let leaf = pki.good(&["localhost", "127.0.0.1"]);
    let server = TestServer::start_tls(&leaf, |_| ResponseSpec::new(200)).await;
    let proxy = ConnectProxy::start().await;
    let yaml = format!(
        "global:\n  interval: 300ms\n  timeout: 1s\n  trust_store_file: {ca}\nprobes:\n  - name: proxied\n    https: {{url: \"https://localhost:{p}/\"}}\n  - name: direct\n    https: {{url: \"https://127.0.0.1:{p}/\"}}\n",
        ca = pki.ca_pem_path().display(),
        p = server.port()
    );
    let proxy_url = proxy.url();
    let d = Daemon::start(
        &yaml,
        &[
            ("HTTPS_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    )
    .await;
    let text = d
        .wait_for(
            |t| {
                ["proxied", "direct"]
                    .iter()
                    .all(|p| value(t, "authwatch_probe_success", &[("probe", p)]).is_some())
            },
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "proxied")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "direct")]),
        1.0,
        "{text}"
    );
    let targets = proxy.targets();
    assert!(
        targets.iter().any(|t| t.starts_with("localhost:")),
        "{targets:?}"
    );
    assert!(
        !targets.iter().any(|t| t.starts_with("127.0.0.1:")),
        "NO_PROXY ignored: {targets:?}"
    );
}

/// Every run shares one TLS client config, yet each records the chain its own server sent:
/// eight probes of the same CA at once, each server with a leaf of its own expiry, and one
/// with an unknown issuer among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_sharing_a_tls_config_each_record_their_own_chain() {
    let pki = TestPki::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut servers = Vec::new();
    for i in 0..8i64 {
        let leaf = pki.issue(&["localhost"], now - 3600, now + (10 + i) * 86_400);
        let server =
            TestServer::start_tls(&leaf, |_| ResponseSpec::text(200, "text/plain", "ok")).await;
        servers.push((leaf, server));
    }
    let stranger = TestServer::start_tls(&pki.unknown_ca(&["localhost"]), |_| {
        ResponseSpec::text(200, "text/plain", "ok")
    })
    .await;
    let mut yaml = format!(
        "global: {{interval: 200ms, trust_store_file: {}}}\nprobes:\n  - {{name: stranger, https: {{url: \"https://localhost:{}/\"}}}}\n",
        pki.ca_pem_path().display(),
        stranger.port()
    );
    for (i, (_, s)) in servers.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{name: p{i}, https: {{url: \"https://localhost:{}/\"}}}}\n",
            s.port()
        ));
    }
    let d = Daemon::start(&yaml, &[]).await;
    // Several rounds, so runs overlap in every order.
    let text = d
        .wait_for(
            |t| {
                (0..8).all(|i| {
                    value(
                        t,
                        "authwatch_probe_runs_total",
                        &[("probe", &format!("p{i}"))],
                    )
                    .is_some_and(|n| n >= 5.0)
                })
            },
            Duration::from_secs(15),
        )
        .await;
    for (i, (leaf, _)) in servers.iter().enumerate() {
        let p = format!("p{i}");
        assert_eq!(
            expect_value(&text, "authwatch_probe_success", &[("probe", &p)]),
            1.0,
            "{p}: {text}"
        );
        assert_eq!(
            expect_value(
                &text,
                "authwatch_tls_cert_not_after_timestamp_seconds",
                &[("probe", &p), ("cert", "leaf")]
            ),
            leaf.not_after as f64,
            "{p} shows another run's certificate"
        );
    }
    assert_eq!(
        reason_of(&text, "stranger").as_deref(),
        Some("tls_unknown_issuer")
    );
}
