//! The `api_health` probe against fake `/health/network` endpoints, and the clock offset from
//! `Date` headers (a server 30 s ahead gives about -30 s: local minus server).

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::http::{ResponseSpec, TestServer};
use common::prom::{expect_value, find, promtool_check, reason_of, value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_health_variants() {
    let server = TestServer::start(|req| match req.path_only() {
        "/pass/health/network" => ResponseSpec::json(
            200,
            r#"{"status":"ok","checks":{"dns_clerk":{"status":"ok"},"https_clerk":{"ok":true},"jwks":"healthy"}}"#,
        ),
        "/one-fails/health/network" => ResponseSpec::json(
            200,
            r#"{"checks":[{"name":"dns clerk.com","status":"ok"},{"name":"jwks","healthy":false,"error":"timeout"}]}"#,
        ),
        "/malformed/health/network" => ResponseSpec::json(200, r#"{"checks": {"dns": "#),
        "/down/health/network" => ResponseSpec::json(503, r#"{"checks":{"dns":{"status":"ok"},"jwks":{"status":"error"}}}"#),
        "/custom/health/network" => ResponseSpec::json(200, r#"{"data":{"probes":{"a":true,"b":true}}}"#),
        "/many/health/network" => {
            let checks: Vec<String> = (0..50).map(|i| format!(r#""c{i}":true"#)).collect();
            ResponseSpec::json(200, format!(r#"{{"checks":{{{}}}}}"#, checks.join(",")))
        }
        _ => ResponseSpec::json(404, "{}"),
    })
    .await;
    let base = format!("http://127.0.0.1:{}", server.port());
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s}}
probes:
  - name: pass
    api_health: {{url: "{base}/pass/health/network"}}
  - name: one-fails
    api_health: {{url: "{base}/one-fails/health/network"}}
  - name: malformed
    api_health: {{url: "{base}/malformed/health/network"}}
  - name: down
    api_health: {{url: "{base}/down/health/network"}}
  - name: custom
    api_health: {{url: "{base}/custom/health/network", checks_pointer: /data/probes}}
  - name: many
    api_health: {{url: "{base}/many/health/network", max_checks: 8}}
"#
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d.wait_for_runs(6, Duration::from_secs(10)).await;
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "pass")]),
        1.0,
        "{text}"
    );
    for check in ["dns_clerk", "https_clerk", "jwks"] {
        assert_eq!(
            expect_value(
                &text,
                "authwatch_api_health_check_success",
                &[("probe", "pass"), ("check", check)]
            ),
            1.0
        );
    }
    assert_eq!(
        reason_of(&text, "one-fails").as_deref(),
        Some("health_check_failed")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_api_health_check_success",
            &[("probe", "one-fails"), ("check", "dns_clerk.com")]
        ),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_api_health_check_success",
            &[("probe", "one-fails"), ("check", "jwks")]
        ),
        0.0
    );
    assert_eq!(
        reason_of(&text, "malformed").as_deref(),
        Some("body_invalid")
    );
    assert!(
        find(
            &text,
            "authwatch_api_health_check_success",
            &[("probe", "malformed")]
        )
        .is_empty()
    );
    // A 503 fails on its status, and still says which check failed.
    assert_eq!(reason_of(&text, "down").as_deref(), Some("http_status"));
    assert_eq!(
        expect_value(
            &text,
            "authwatch_api_health_check_success",
            &[("probe", "down"), ("check", "jwks")]
        ),
        0.0
    );
    assert_eq!(
        expect_value(&text, "authwatch_http_status_code", &[("probe", "down")]),
        503.0
    );
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "custom")]),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_api_health_check_success",
            &[("probe", "custom"), ("check", "b")]
        ),
        1.0
    );
    // The label set stays bounded.
    assert_eq!(
        find(
            &text,
            "authwatch_api_health_check_success",
            &[("probe", "many")]
        )
        .len(),
        8
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_api_health_checks_truncated",
            &[("probe", "many")]
        ),
        1.0
    );
    let (out, ok) = promtool_check(&text);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_offset_from_date_header() {
    let ahead = TestServer::start(|_| ResponseSpec::new(200).date_offset(30)).await;
    let exact = TestServer::start(|_| ResponseSpec::new(200)).await;
    let no_date = TestServer::start(|_| ResponseSpec::new(200).without_date()).await;
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s}}
probes:
  - name: ahead
    clock: {{url: "http://127.0.0.1:{}/", max_offset: 5s}}
  - name: exact
    clock: {{url: "http://127.0.0.1:{}/"}}
  - name: no-date
    clock: {{url: "http://127.0.0.1:{}/"}}
  - name: https-ahead
    https: {{url: "http://127.0.0.1:{}/"}}
"#,
        ahead.port(),
        exact.port(),
        no_date.port(),
        ahead.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d.wait_for_runs(4, Duration::from_secs(10)).await;
    let off = expect_value(
        &text,
        "authwatch_clock_offset_seconds",
        &[("probe", "ahead")],
    );
    assert!((-31.5..=-28.5).contains(&off), "offset {off}");
    assert_eq!(reason_of(&text, "ahead").as_deref(), Some("clock_skew"));
    let off = expect_value(
        &text,
        "authwatch_clock_offset_seconds",
        &[("probe", "exact")],
    );
    assert!(off.abs() <= 1.5, "offset {off}");
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "exact")]),
        1.0
    );
    assert_eq!(
        reason_of(&text, "no-date").as_deref(),
        Some("http_protocol")
    );
    assert!(
        value(
            &text,
            "authwatch_clock_offset_seconds",
            &[("probe", "no-date")]
        )
        .is_none()
    );
    // Any HTTP probe feeds the offset.
    let off = expect_value(
        &text,
        "authwatch_clock_offset_seconds",
        &[("probe", "https-ahead")],
    );
    assert!((-31.5..=-28.5).contains(&off), "offset {off}");
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "https-ahead")]
        ),
        1.0
    );
}
