//! The `jwks` probe: validation of every bad shape, freshness that keeps ageing while fetches
//! fail, rotation history, pinned copies (JWKS and PEM), the Backend API with the secret key,
//! OIDC discovery, and agreement between grouped sources.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::daemon::Daemon;
use common::http::{ResponseSpec, TestServer};
use common::jwks::{jwks, rsa_jwk, rsa_key};
use common::prom::{expect_value, find, promtool_check, reason_of, value};

const CANARY: &str = "sk_test_CANARYsecret0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_validation_freshness_rotation_and_pins() {
    let live = rsa_key(2048);
    let other = rsa_key(2048);
    let valid_doc = jwks([live.jwk("ins_live")]).to_string();
    let valid_doc2 = valid_doc.clone();
    let html = "<!doctype html><html><body>Please log in to the Wi-Fi</body></html>";
    let dup = jwks([rsa_jwk("ins_dup", 2048), rsa_jwk("ins_dup", 2048)]).to_string();
    let weak = jwks([rsa_jwk("ins_weak", 1024)]).to_string();
    let rotated_doc = jwks([other.jwk("ins_new")]).to_string();

    // One server, many routes; /flaky serves keys until told to fail, /rotating changes keys.
    let fail_flaky = Arc::new(AtomicUsize::new(0));
    let rotate = Arc::new(AtomicUsize::new(0));
    let (ff, rot) = (fail_flaky.clone(), rotate.clone());
    let port_cell = Arc::new(AtomicUsize::new(0));
    let pc = port_cell.clone();
    let server = TestServer::start(move |req| {
        let path = req.path_only();
        match path {
            "/valid" | "/group-a" | "/group-b" => ResponseSpec::json(200, valid_doc2.clone()),
            "/group-c" => ResponseSpec::json(200, jwks([rsa_jwk("ins_other", 2048)]).to_string()),
            "/empty" => ResponseSpec::json(200, r#"{"keys":[]}"#),
            "/html" => ResponseSpec::text(200, "text/html", html),
            "/notjson" => ResponseSpec::text(200, "text/plain", "keys=none"),
            "/weak" => ResponseSpec::json(200, weak.clone()),
            "/dup" => ResponseSpec::json(200, dup.clone()),
            "/flaky" if ff.load(Ordering::SeqCst) == 0 => {
                ResponseSpec::json(200, valid_doc2.clone())
            }
            "/flaky" => ResponseSpec::json(500, r#"{"error":"boom"}"#),
            "/rotating" if rot.load(Ordering::SeqCst) == 0 => {
                ResponseSpec::json(200, valid_doc2.clone())
            }
            "/rotating" => ResponseSpec::json(200, rotated_doc.clone()),
            "/v1/jwks" => match req.header("authorization") {
                Some(h) if h == format!("Bearer {CANARY}") => {
                    ResponseSpec::json(200, valid_doc2.clone())
                }
                _ => ResponseSpec::json(401, r#"{"errors":[{"code":"clerk_key_invalid"}]}"#),
            },
            "/.well-known/openid-configuration" => {
                let port = pc.load(Ordering::SeqCst);
                ResponseSpec::json(
                    200,
                    format!(r#"{{"issuer":"x","jwks_uri":"http://127.0.0.1:{port}/valid"}}"#),
                )
            }
            _ => ResponseSpec::json(404, "{}"),
        }
    })
    .await;
    port_cell.store(usize::from(server.port()), Ordering::SeqCst);

    let dir = tempfile::tempdir().unwrap();
    let pin_missing = dir.path().join("pinned-old.json");
    std::fs::write(&pin_missing, jwks([other.jwk("ins_old")]).to_string()).unwrap();
    let pin_ok = dir.path().join("pinned.json");
    std::fs::write(&pin_ok, &valid_doc).unwrap();
    let pin_pem = dir.path().join("pinned.pem");
    std::fs::write(&pin_pem, live.spki_pem()).unwrap();

    let base = format!("http://127.0.0.1:{}", server.port());
    let url_probe = |name: &str, path: &str, extra: &str| {
        format!("  - name: {name}\n    jwks: {{source: url, url: \"{base}{path}\"{extra}}}\n")
    };
    let mut yaml = format!(
        "global:\n  interval: 300ms\n  timeout: 1s\nclerk:\n  secret_key: {CANARY}\n  api_url: {base}\n  auto_probes: false\nprobes:\n"
    );
    for p in [
        url_probe("valid", "/valid", ", pinned_file: PIN_OK"),
        url_probe("empty", "/empty", ""),
        url_probe("html", "/html", ""),
        url_probe("notjson", "/notjson", ""),
        url_probe("weak", "/weak", ""),
        url_probe("dup", "/dup", ""),
        url_probe("flaky", "/flaky", ""),
        url_probe("rotating", "/rotating", ""),
        url_probe("pin-missing", "/valid", ", pinned_file: PIN_MISSING"),
        url_probe("pin-pem", "/valid", ", pinned_file: PIN_PEM"),
        url_probe("group-a", "/group-a", ", group: same"),
        url_probe("group-b", "/group-b", ", group: same"),
        url_probe("group-c", "/group-c", ", group: differ"),
        url_probe("group-d", "/valid", ", group: differ"),
    ] {
        yaml.push_str(&p);
    }
    yaml.push_str("  - name: backend\n    jwks: {source: backend}\n");
    yaml.push_str(&format!(
        "  - name: oidc\n    jwks: {{source: oidc, url: \"{base}/.well-known/openid-configuration\"}}\n"
    ));
    let yaml = yaml
        .replace("PIN_OK", &pin_ok.display().to_string())
        .replace("PIN_MISSING", &pin_missing.display().to_string())
        .replace("PIN_PEM", &pin_pem.display().to_string());
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| {
                find(t, "authwatch_probe_success", &[]).len() == 16
                    && value(t, "authwatch_jwks_group_agreement", &[("group", "differ")]).is_some()
            },
            Duration::from_secs(15),
        )
        .await;

    for p in [
        "valid",
        "flaky",
        "rotating",
        "pin-missing",
        "pin-pem",
        "backend",
        "oidc",
        "group-a",
    ] {
        assert_eq!(
            expect_value(&text, "authwatch_probe_success", &[("probe", p)]),
            1.0,
            "{p}:\n{text}"
        );
    }
    for (p, r) in [
        ("empty", "jwks_no_keys"),
        ("html", "body_invalid"),
        ("notjson", "body_invalid"),
        ("weak", "jwks_invalid_key"),
        ("dup", "jwks_duplicate_kid"),
    ] {
        assert_eq!(reason_of(&text, p).as_deref(), Some(r), "{p}:\n{text}");
    }
    let v = [("probe", "valid")];
    assert_eq!(expect_value(&text, "authwatch_jwks_keys", &v), 1.0);
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_key_info",
            &[
                ("probe", "valid"),
                ("kid", "ins_live"),
                ("alg", "RS256"),
                ("bits", "2048")
            ]
        ),
        1.0
    );
    assert_eq!(
        expect_value(&text, "authwatch_jwks_pinned_missing_kids", &v),
        0.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_pinned_missing_kids",
            &[("probe", "pin-missing")]
        ),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_pinned_missing_kids",
            &[("probe", "pin-pem")]
        ),
        0.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_group_agreement",
            &[("group", "same")]
        ),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_group_agreement",
            &[("group", "differ")]
        ),
        0.0
    );
    // The secret key went to the Backend API as a bearer token, and nowhere else.
    assert!(
        server
            .request_log()
            .iter()
            .any(|r| r.path_only() == "/v1/jwks"
                && r.header("authorization") == Some(&format!("Bearer {CANARY}")))
    );
    // A key set seen once has no rotation yet.
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_rotations_total",
            &[("probe", "rotating")]
        ),
        0.0
    );
    let first_change = expect_value(
        &text,
        "authwatch_jwks_last_change_timestamp_seconds",
        &[("probe", "rotating")],
    );

    // Rotation: the counter and the change time move.
    rotate.store(1, Ordering::SeqCst);
    // Freshness: once fetches fail, the age keeps growing.
    fail_flaky.store(1, Ordering::SeqCst);
    let text = d
        .wait_for(
            |t| {
                value(
                    t,
                    "authwatch_jwks_rotations_total",
                    &[("probe", "rotating")],
                ) == Some(1.0)
                    && reason_of(t, "flaky").as_deref() == Some("http_status")
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(
        expect_value(
            &text,
            "authwatch_jwks_last_change_timestamp_seconds",
            &[("probe", "rotating")]
        ) > first_change
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_jwks_key_info",
            &[("probe", "rotating"), ("kid", "ins_new")]
        ),
        1.0
    );
    let age1 = expect_value(&text, "authwatch_jwks_age_seconds", &[("probe", "flaky")]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = d.metrics().await;
    let age2 = expect_value(&text, "authwatch_jwks_age_seconds", &[("probe", "flaky")]);
    assert!(
        age2 >= age1 + 1.0,
        "age must grow while fetches fail: {age1} -> {age2}"
    );
    // The last good key set is still exported: it is what a verifier has cached.
    assert_eq!(
        expect_value(&text, "authwatch_jwks_keys", &[("probe", "flaky")]),
        1.0
    );

    let (out, ok) = promtool_check(&text);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");
    assert!(!text.contains("CANARY"), "secret in metrics");
    assert!(
        !d.logs().contains("CANARY"),
        "secret in logs:\n{}",
        d.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_rejecting_the_secret_key_is_its_own_reason() {
    let server = TestServer::json(401, r#"{"errors":[{"code":"clerk_key_invalid"}]}"#).await;
    let yaml = format!(
        "global:\n  interval: 300ms\n  timeout: 1s\nclerk:\n  secret_key_file: SECRET_FILE\n  api_url: http://127.0.0.1:{}\nprobes: []\n",
        server.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{CANARY}\n")).unwrap();
    let yaml = yaml.replace("SECRET_FILE", &secret_file.display().to_string());
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| reason_of(t, "clerk-bapi-jwks").is_some(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        reason_of(&text, "clerk-bapi-jwks").as_deref(),
        Some("auth_secret_key_invalid")
    );
    assert!(!text.contains("CANARY"));
    assert!(!d.logs().contains("CANARY"));
}
