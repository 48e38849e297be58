//! The command line and the daemon's own endpoints: check-config with located errors, refusal
//! to start on a bad config, the embedded default and its env-derived probes, format
//! negotiation, readiness, and secrets kept out of every output.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::daemon::{Daemon, check_config_yaml};
use common::http::TestServer;
use common::prom::{promtool_check, value};

const BIN: &str = env!("CARGO_BIN_EXE_authwatch");
const CANARY: &str = "sk_live_CANARYcliSecret987654321";

fn no_panic(s: &str) {
    assert!(!s.contains("panicked"), "panic in output:\n{s}");
}

#[test]
fn check_config_reports_file_line_and_column() {
    let cases: [(&str, &str); 6] = [
        (
            "global:\n  interval: 10s\nprobes:\n  - name: a\n    bogus: 1\n    https: {url: \"https://x.test/\"}\n",
            ":5:5: unknown field `bogus`",
        ),
        ("global:\n  interval: soon\n", ":2:13: invalid duration"),
        ("probes: [\n", ":1:"),
        (
            "clerk:\n  publishable_key: pk_test_%%%\n",
            ":2:20: publishable key",
        ),
        (
            "probes:\n  - name: a\n    https: {url: \"ftp://x\"}\n",
            ":3:18: URL",
        ),
        (
            "probes:\n  - name: a\n    dns: {names: [x.test], resolvers: [\"${AUTHWATCH_TEST_UNSET_VAR}\"]}\n",
            "AUTHWATCH_TEST_UNSET_VAR is not set",
        ),
    ];
    for (yaml, want) in cases {
        let (code, out, err) = check_config_yaml(yaml);
        assert_ne!(code, 0, "accepted:\n{yaml}");
        assert!(
            err.contains("authwatch.yml") && err.contains(want),
            "want {want:?} in {err:?} (stdout {out:?})"
        );
        no_panic(&err);
    }
}

#[test]
fn check_config_accepts_the_reference_and_the_default() {
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");
    let (code, out, err) = common::daemon::run_check_config(std::path::Path::new(reference));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("clerk-dns") && out.contains("clerk-clock"),
        "{out}"
    );

    // Without a file the embedded default is used; the documented env vars add the Clerk probes.
    let pk = format!(
        "pk_test_{}",
        base64::engine::general_purpose::STANDARD.encode("happy-otter-1.clerk.accounts.dev$")
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .env("CLERK_PUBLISHABLE_KEY", &pk)
        .env("CLERK_SECRET_KEY", CANARY)
        .env("AUTHWATCH_API_URL", "http://127.0.0.1:8020")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in [
        "clerk-com",
        "clerk-api",
        "clerk-fapi-dns",
        "clerk-fapi-health",
        "clerk-fapi-jwks",
        "clerk-bapi-jwks",
        "api-health-network",
    ] {
        assert!(stdout.contains(p), "{p} missing from {stdout}");
    }
    assert!(!stdout.contains("CANARY"));
}

#[test]
fn secrets_stay_out_of_config_errors() {
    // A malformed secret key is rejected without echoing it.
    let (code, _, err) = check_config_yaml(&format!("clerk:\n  secret_key: not-a-key-{CANARY}\n"));
    assert_ne!(code, 0);
    assert!(err.contains("secret key must start with"), "{err}");
    assert!(!err.contains("CANARY"), "{err}");
    // A type error on a line holding a secret does not quote the line.
    let (code, _, err) = check_config_yaml(&format!("clerk:\n  secret_key: [{CANARY}]\n"));
    assert_ne!(code, 0);
    assert!(!err.contains("CANARY"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_a_bad_config() {
    let err = match Daemon::try_start("global:\n  timeout: 0s\n  nope: 1\n", &[], &[]).await {
        Ok(_) => panic!("daemon started on a bad config"),
        Err(e) => e,
    };
    assert!(err.contains(":3:3: unknown field `nope`"), "{err}");
    no_panic(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_formats_and_readiness() {
    let hang = TestServer::hang().await;
    let yaml = format!(
        "global: {{interval: 500ms, timeout: 3s}}\nclerk: {{secret_key: {CANARY}, api_url: \"http://127.0.0.1:{}\"}}\nprobes: []\n",
        hang.port()
    );
    let d = Daemon::start(&yaml, &[]).await;
    // The only probe hangs for its 3 s deadline: not ready until it has run once.
    let (status, _, _) = d.get("/-/ready").await;
    assert_eq!(status, 503);
    let (status, _, body) = d.get("/-/healthy").await;
    assert_eq!((status, body.trim()), (200, "Healthy."));
    let (status, _, _) = d.get("/nope").await;
    assert_eq!(status, 404);
    let text = d
        .wait_for(
            |t| {
                value(
                    t,
                    "authwatch_probe_success",
                    &[("probe", "clerk-bapi-jwks")],
                )
                .is_some()
            },
            Duration::from_secs(10),
        )
        .await;
    let (status, _, _) = d.get("/-/ready").await;
    assert_eq!(status, 200);
    assert_eq!(
        value(
            &text,
            "authwatch_probe_failure",
            &[("probe", "clerk-bapi-jwks"), ("reason", "timeout")]
        ),
        Some(1.0)
    );

    let (status, headers, body) = d.get("/metrics").await;
    assert_eq!(status, 200);
    let ct = common::http::header(&headers, "content-type")
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(body.contains("# TYPE authwatch_probe_runs_total counter"));
    assert!(body.contains("authwatch_build_info{version=\""));
    assert!(body.contains("process_resident_memory_bytes "));
    let (out, ok) = promtool_check(&body);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    let (status, headers, body) = d
        .get_with_accept(
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        )
        .await;
    assert_eq!(status, 200);
    let ct = common::http::header(&headers, "content-type")
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE authwatch_probe_runs counter\n"));
    assert!(body.contains("authwatch_probe_runs_total{probe=\"clerk-bapi-jwks\",kind=\"jwks\"}"));

    assert!(!body.contains("CANARY") && !text.contains("CANARY"));
    assert!(!d.logs().contains("CANARY"), "{}", d.logs());
}

/// The exporter conventions: a Prometheus-style `--version` block, logfmt logs with the
/// version in the start-up line, a fatal error said once, and endpoints under a route
/// prefix (from `--web.external-url`) with the metrics at `--web.telemetry-path`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_cli_conventions() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authwatch"))
        .arg("--version")
        .output()
        .expect("run --version");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for field in [
        "authwatch, version ",
        "(branch: ",
        "revision: ",
        "build user:",
        "build date:",
        "rustc version:",
        "platform:",
    ] {
        assert!(v.contains(field), "{field} missing from:\n{v}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        "probes:\n  - {name: h, https: {url: \"http://127.0.0.1:9/\"}}\n",
    )
    .expect("config");
    // A fatal error (an address that cannot be bound) is logged once, as logfmt.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authwatch"))
        .arg("--config.file")
        .arg(&cfg)
        .args([
            "--web.listen-address",
            "256.0.0.1:1",
            "--log.format",
            "logfmt",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let fatal: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cannot listen"))
        .collect();
    assert_eq!(fatal.len(), 1, "{err}");
    assert!(
        fatal[0].starts_with("ts=") && fatal[0].contains(" level=error "),
        "{err}"
    );

    let yaml = "probes:\n  - {name: h, https: {url: \"http://127.0.0.1:9/\"}}\n";
    let d = Daemon::start_with_args(
        yaml,
        &[],
        &[
            "--web.external-url",
            "https://proxy.example/aw/",
            "--web.telemetry-path",
            "/m",
        ],
    )
    .await;
    let starting = d
        .log_records()
        .into_iter()
        .find(|r| r["fields"]["message"] == "starting authwatch")
        .unwrap_or_else(|| panic!("{}", d.logs()));
    assert_eq!(starting["fields"]["version"], env!("CARGO_PKG_VERSION"));
    let (status, _, body) = d.get("/aw/m").await;
    assert_eq!(status, 200);
    assert!(body.contains("authwatch_build_info"), "{body}");
    for gone in ["/metrics", "/aw/metrics", "/-/healthy"] {
        assert_eq!(d.get(gone).await.0, 404, "{gone}");
    }
    assert_eq!(d.get("/aw/-/healthy").await.0, 200);
    let (status, _, page) = d.get("/aw/").await;
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/aw/m\""), "{page}");
}
