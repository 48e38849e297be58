//! The status page and `/api/v1/status`: rendered for a healthy and a failing fixture, checked
//! in headless Chromium (DOM and a phone-sized screenshot kept under target/), with no secret
//! anywhere in it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::Daemon;
use common::http::{ResponseSpec, TestServer};
use common::jwks::{jwks, rsa_key};
use common::prom::value;

const SECRET: &str = "sk_test_STATUScanary0000000000";

fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "chromium not found; install the Debian `chromium` package (the README's test command does)"
    );
}

/// Runs headless Chromium against `url`; returns the serialised DOM, and writes a screenshot.
fn browse(url: &str, screenshot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common_args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ];
    let user_data = format!("--user-data-dir={}", profile.path().display());
    let dom = Command::new(chromium())
        .args(common_args)
        .arg(&user_data)
        .args(["--virtual-time-budget=2000", "--dump-dom", url])
        .output()
        .expect("run chromium");
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = Command::new(chromium())
        .args(common_args)
        .arg(&user_data)
        .args([
            "--hide-scrollbars",
            "--window-size=412,915",
            &format!("--screenshot={}", screenshot.display()),
            url,
        ])
        .output()
        .expect("run chromium for a screenshot");
    assert!(
        shot.status.success(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let size = std::fs::metadata(screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 1000,
        "screenshot {} is {size} bytes",
        screenshot.display()
    );
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_healthy_and_failing_states() {
    let doc = jwks([rsa_key(2048).jwk("ins_status")]).to_string();
    let server = TestServer::start(move |req| match req.path_only() {
        "/v1/jwks" if req.header("authorization") == Some(&format!("Bearer {SECRET}")) => {
            ResponseSpec::json(200, doc.clone())
        }
        "/v1/jwks" => ResponseSpec::json(401, "{}"),
        "/health/network" => ResponseSpec::json(
            503,
            r#"{"status":"degraded","checks":{"dns":{"status":"ok"},"clerk_jwks":{"status":"error"}}}"#,
        ),
        _ => ResponseSpec::json(200, r#"{"status":"ok"}"#),
    })
    .await;
    let base = format!("http://127.0.0.1:{}", server.port());
    let healthy = format!(
        "global: {{interval: 300ms, timeout: 1s}}\nclerk: {{secret_key: {SECRET}, api_url: \"{base}\"}}\nprobes:\n  - name: clerk-api\n    https: {{url: \"{base}/\"}}\n  - name: api-status\n    role: api\n    api_health: {{url: \"{base}/status\"}}\n"
    );
    // The API's own health check fails while Clerk is fine: the seed's case.
    let failing = format!(
        "{healthy}  - name: api-health-network\n    role: api\n    api_health: {{url: \"{base}/health/network\"}}\n"
    );

    let ok = Daemon::start(&healthy, &[]).await;
    let bad = Daemon::start(&failing, &[]).await;
    for (d, want) in [(&ok, Some(1.0)), (&bad, Some(0.0))] {
        d.wait_for(
            |t| {
                value(t, "authwatch_auth_healthy", &[]) == want
                    && value(t, "authwatch_jwks_keys", &[]).is_some()
            },
            Duration::from_secs(10),
        )
        .await;
    }
    // The diagnosis loop runs once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // The JSON carries the same facts.
    let (status, headers, body) = bad.get("/api/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(
        common::http::header(&headers, "content-type"),
        Some("application/json")
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["auth_healthy"], false);
    assert_eq!(v["causes"][0]["cause"], "api_network_unhealthy");
    assert!(
        v["causes"][0]["remediation"]
            .as_str()
            .unwrap()
            .contains("sidecar")
    );
    let api = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "api-health-network")
        .unwrap();
    assert_eq!(api["state"], "failing");
    assert_eq!(api["reason"], "http_status");
    assert_eq!(api["checks"][0]["name"], "clerk_jwks");
    assert_eq!(api["checks"][0]["ok"], false);
    let jw = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "clerk-bapi-jwks")
        .unwrap();
    assert_eq!(jw["jwks"]["kids"][0], "ins_status");

    let dir = artifacts();
    let dom_ok = browse(
        &format!("http://{}/", ok.addr()),
        &dir.join("status-healthy.png"),
    );
    assert!(
        dom_ok.contains(r#"id="auth-status" class="ok" data-healthy="true""#),
        "{dom_ok}"
    );
    assert!(dom_ok.contains(r#"data-probe="clerk-api" data-state="ok""#));
    assert!(dom_ok.contains("No active cause."));
    assert!(dom_ok.contains("ins_status"), "JWKS kids on the page");

    let dom_bad = browse(
        &format!("http://{}/", bad.addr()),
        &dir.join("status-failing.png"),
    );
    assert!(
        dom_bad.contains(r#"class="bad" data-healthy="false""#),
        "{dom_bad}"
    );
    assert!(dom_bad.contains(r#"data-cause="api_network_unhealthy""#));
    assert!(dom_bad.contains("The fault is inside the API"));
    assert!(dom_bad.contains(r#"data-probe="api-health-network" data-state="failing""#));
    assert!(dom_bad.contains("http_status"));
    // The headline names the fault in words with its start, the fix is shown as prominently as
    // the summary, the failing row says what the card says, and each row shows its target and
    // a strip of recent runs.
    assert!(
        dom_bad.contains("<h1>Auth unhealthy: API network unhealthy</h1>"),
        "{dom_bad}"
    );
    assert!(dom_bad.contains("unhealthy since "));
    assert!(dom_bad.contains(r#"<p class="fix"><b>Fix:</b> The fault is inside the API"#));
    assert!(dom_bad.contains("→ API network unhealthy"));
    assert!(dom_bad.contains("/health/network</div>"), "target shown");
    assert!(dom_bad.contains(r#"<svg class="history""#) && dom_bad.contains("#b3261e"));
    assert_eq!(
        v["probes"]
            .as_array()
            .map(|a| a.iter().all(|p| p["target"].is_string())),
        Some(true)
    );

    for (dom, d) in [(&dom_ok, &ok), (&dom_bad, &bad)] {
        assert!(!dom.contains("STATUScanary"), "secret on the status page");
        assert!(!d.logs().contains("STATUScanary"), "secret in the logs");
    }
    assert!(!body.contains("STATUScanary"), "secret in /api/v1/status");
    eprintln!("screenshots: {}", dir.display());
}
