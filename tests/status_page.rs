//! The status page and `/api/v1/status`: rendered for a healthy, a one-fault and a two-fault
//! fixture, checked in headless Chromium (DOM, and phone- and desktop-sized screenshots kept
//! under target/test-artifacts), with no secret anywhere in it.

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

/// The window sizes screenshots are taken at: a common phone, and a laptop screen.
const SHOTS: [(&str, &str); 2] = [("phone", "412,915"), ("desktop", "1280,900")];

/// Runs headless Chromium against `url`; returns the serialised DOM, and writes one screenshot
/// per size in `SHOTS`, as `<name>-<size>.png` in `dir`.
fn browse(url: &str, dir: &Path, name: &str) -> String {
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
    for (size, window) in SHOTS {
        let screenshot = dir.join(format!("{name}-{size}.png"));
        let shot = Command::new(chromium())
            .args(common_args)
            .arg(&user_data)
            .args([
                "--hide-scrollbars",
                &format!("--window-size={window}"),
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
        let bytes = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
        assert!(
            bytes > 1000,
            "screenshot {} is {bytes} bytes",
            screenshot.display()
        );
    }
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_healthy_and_failing_states() {
    // One fake Clerk-and-API per clock: `skew` seconds added to every Date header.
    let serve = |skew: i64| {
        let doc = jwks([rsa_key(2048).jwk("ins_status")]).to_string();
        TestServer::start(move |req| {
            let answer = match req.path_only() {
                "/v1/jwks" if req.header("authorization") == Some(&format!("Bearer {SECRET}")) => {
                    ResponseSpec::json(200, doc.clone())
                }
                "/v1/jwks" => ResponseSpec::json(401, "{}"),
                "/health/network" => ResponseSpec::json(
                    503,
                    r#"{"status":"degraded","checks":{"dns":{"status":"ok"},"clerk_jwks":{"status":"error"}}}"#,
                ),
                _ => ResponseSpec::json(200, r#"{"status":"ok"}"#),
            };
            answer.date_offset(skew)
        })
    };
    let (server, skewed) = (serve(0).await, serve(-120).await);
    let config = |port: u16, secret: &str, network_check: bool| {
        let base = format!("http://127.0.0.1:{port}");
        let mut y = format!(
            "global: {{interval: 300ms, timeout: 1s}}\nclerk: {{secret_key: {secret}, api_url: \"{base}\"}}\nprobes:\n  - name: clerk-api\n    https: {{url: \"{base}/\"}}\n  - name: api-status\n    role: api\n    api_health: {{url: \"{base}/status\"}}\n"
        );
        if network_check {
            y.push_str(&format!(
                "  - name: api-health-network\n    role: api\n    api_health: {{url: \"{base}/health/network\"}}\n"
            ));
        }
        y
    };
    let healthy = config(server.port(), SECRET, false);
    // The API's own health check fails while Clerk is fine: the seed's case.
    let failing = config(server.port(), SECRET, true);
    // Two independent faults: this host's clock is two minutes off Clerk's, and the API's own
    // check fails.
    let two = config(skewed.port(), SECRET, true);
    // One fault with a consequence: Clerk rejects the secret key, so the API (holding the same
    // key) fails too, and its row must point at the key, not at the API's network.
    let consequence = config(server.port(), "sk_test_STATUScanaryWRONG00000000", true);

    let ok = Daemon::start(&healthy, &[]).await;
    let bad = Daemon::start(&failing, &[]).await;
    let both = Daemon::start(&two, &[]).await;
    let key = Daemon::start(&consequence, &[]).await;
    let states = [
        (&ok, Some(1.0)),
        (&bad, Some(0.0)),
        (&both, Some(0.0)),
        (&key, Some(0.0)),
    ];
    for (d, want) in states {
        d.wait_for(
            |t| {
                value(t, "authwatch_auth_healthy", &[]) == want
                    && (value(t, "authwatch_jwks_keys", &[]).is_some()
                        || value(
                            t,
                            "authwatch_probe_runs_total",
                            &[("probe", "clerk-bapi-jwks")],
                        )
                        .is_some_and(|r| r >= 2.0))
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
    let dom_ok = browse(&format!("http://{}/", ok.addr()), &dir, "status-healthy");
    assert!(
        dom_ok.contains(r#"id="auth-status" class="ok" data-healthy="true""#),
        "{dom_ok}"
    );
    assert!(dom_ok.contains(r#"data-probe="clerk-api" data-state="ok""#));
    assert!(dom_ok.contains("No active cause."));
    assert!(dom_ok.contains("ins_status"), "JWKS kids on the page");

    let dom_bad = browse(&format!("http://{}/", bad.addr()), &dir, "status-failing");
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

    // Two causes: both cards, each with its own fix, and the failing row pointing at the card
    // that explains it.
    let dom_both = browse(
        &format!("http://{}/", both.addr()),
        &dir,
        "status-two-faults",
    );
    assert!(
        dom_both.contains(r#"data-cause="clock_skew""#)
            && dom_both.contains(r#"data-cause="api_network_unhealthy""#),
        "{dom_both}"
    );
    assert_eq!(
        dom_both.matches(r#"<p class="fix"><b>Fix:</b>"#).count(),
        2,
        "{dom_both}"
    );
    assert!(dom_both.contains("→ API network unhealthy"));
    assert!(dom_both.contains("<h1>Auth unhealthy: "));

    let dom_key = browse(
        &format!("http://{}/", key.addr()),
        &dir,
        "status-consequence",
    );
    assert!(dom_key.contains(r#"data-cause="secret_key_invalid""#));
    assert!(
        !dom_key.contains(r#"data-cause="api_network_unhealthy""#),
        "the API fails because of the key: {dom_key}"
    );
    let row = |dom: &str, probe: &str| -> String {
        let start = dom
            .find(&format!(r#"data-probe="{probe}""#))
            .unwrap_or_else(|| panic!("no row for {probe}"));
        dom[start..].split("</tr>").next().unwrap_or("").to_string()
    };
    for probe in ["clerk-bapi-jwks", "api-health-network"] {
        let r = row(&dom_key, probe);
        assert!(r.contains("→ Secret key rejected"), "{probe}: {r}");
    }

    let pages = [
        (&dom_ok, &ok),
        (&dom_bad, &bad),
        (&dom_both, &both),
        (&dom_key, &key),
    ];
    for (dom, d) in pages {
        assert!(!dom.contains("STATUScanary"), "secret on the status page");
        assert!(!d.logs().contains("STATUScanary"), "secret in the logs");
    }
    assert!(!body.contains("STATUScanary"), "secret in /api/v1/status");
    eprintln!("screenshots: {}", dir.display());
}
