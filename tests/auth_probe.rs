//! The `auth` probe end to end on loopback: a fake Backend API mints short-lived RS256 tokens
//! signed by a key published in a fake JWKS; fake protected APIs verify correctly, accept
//! everything (fail-open), reject everything, stall, or trust a different key.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::Daemon;
use common::http::{ResponseSpec, TestServer};
use common::jwks::jwks;
use common::jwt::SigningKey;
use common::prom::{expect_value, find, promtool_check, reason_of, value};

const SECRET: &str = "sk_test_AUTHcanary1234567890";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_cases_fail_open_and_rejections() {
    let clerk = Arc::new(SigningKey::new("ins_live", "https://clerk.test"));
    let other = SigningKey::new("ins_other_instance", "https://clerk.test");
    let minted: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));

    // The fake Backend API: tokens for the probe user's session, JWKS with the live key.
    let (c, m) = (clerk.clone(), minted.clone());
    let bapi = TestServer::start(move |req| {
        let authorized = req.header("authorization") == Some(&format!("Bearer {SECRET}"));
        match (req.method.as_str(), req.path_only()) {
            (_, _) if !authorized => {
                ResponseSpec::json(401, r#"{"errors":[{"code":"clerk_key_invalid"}]}"#)
            }
            ("POST", "/v1/sessions/sess_probe/tokens") => {
                // Short-lived so the expired_token case gets a token within the test.
                let t = c.mint(2);
                m.lock().unwrap().push(t.clone());
                ResponseSpec::json(200, format!(r#"{{"object":"token","jwt":"{t}"}}"#))
            }
            ("GET", "/v1/jwks") => ResponseSpec::json(200, jwks([c.jwk()]).to_string()),
            _ => ResponseSpec::json(404, r#"{"errors":[{"code":"resource_not_found"}]}"#),
        }
    })
    .await;

    // The protected routes of four fake APIs.
    let c = clerk.clone();
    let api = TestServer::start(move |req| match req.path_only() {
        "/good/camera/status" if c.accepts(req.header("authorization")) => {
            ResponseSpec::json(200, r#"{"camera":"ok"}"#)
        }
        "/good/camera/status" => ResponseSpec::json(401, r#"{"detail":"Not authenticated"}"#),
        "/open/camera/status" => ResponseSpec::json(200, r#"{"camera":"ok"}"#),
        "/closed/camera/status" => ResponseSpec::json(401, r#"{"detail":"Invalid token"}"#),
        "/stall/camera/status" => ResponseSpec::json(200, "{}").delay(Duration::from_secs(5)),
        _ => ResponseSpec::json(404, "{}"),
    })
    .await;

    // A token from another Clerk instance, as a mixed-up publishable/secret key pair gives.
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.jwt");
    let foreign_token = other.mint(600);
    std::fs::write(&foreign, &foreign_token).unwrap();
    // A token handed over by a command, as a CI secret helper would.
    let own = dir.path().join("own.jwt");
    let own_token = clerk.mint(600);
    std::fs::write(&own, &own_token).unwrap();

    let b = format!("http://127.0.0.1:{}", bapi.port());
    let a = format!("http://127.0.0.1:{}", api.port());
    let auth = |name: &str, path: &str, extra: &str| {
        format!(
            "  - name: {name}\n    auth: {{url: \"{a}{path}\", token_source: backend, session_id: sess_probe, issuer: \"https://clerk.test\", leeway: 0s, negative_every: 1s{extra}}}\n"
        )
    };
    let mut yaml = format!(
        "global: {{interval: 400ms, timeout: 1s}}\nclerk: {{secret_key: {SECRET}, api_url: \"{b}\", auto_probes: false}}\nprobes:\n  - name: bapi-jwks\n    jwks: {{source: backend}}\n"
    );
    for p in [
        auth("auth-good", "/good/camera/status", ""),
        auth("auth-open", "/open/camera/status", ""),
        auth("auth-closed", "/closed/camera/status", ""),
        auth("auth-stall", "/stall/camera/status", ""),
    ] {
        yaml.push_str(&p);
    }
    yaml.push_str(&format!(
        "  - name: auth-foreign\n    auth: {{url: \"{a}/good/camera/status\", token_source: file, token_file: {}, negative_every: 1s}}\n  - name: auth-command\n    auth: {{url: \"{a}/good/camera/status\", token_source: command, token_command: [cat, {}], cases: [valid_token, no_token, forged_token], negative_every: 1s}}\n  - name: auth-no-session\n    auth: {{url: \"{a}/good/camera/status\", token_source: backend, session_id: sess_gone, cases: [valid_token, no_token]}}\n",
        foreign.display(),
        own.display()
    ));
    let d = Daemon::start(&yaml, &[]).await;

    let text = d
        .wait_for(
            |t| {
                value(
                    t,
                    "authwatch_auth_case_success",
                    &[("probe", "auth-good"), ("case", "expired_token")],
                )
                .is_some()
                    && value(
                        t,
                        "authwatch_auth_case_success",
                        &[("probe", "auth-open"), ("case", "expired_token")],
                    )
                    .is_some()
                    && [
                        "auth_fail_open",
                        "auth_rejects_valid_tokens",
                        "jwks_key_mismatch",
                    ]
                    .iter()
                    .all(|c| value(t, "authwatch_diagnosis", &[("cause", c)]) == Some(1.0))
                    && [
                        "auth-closed",
                        "auth-stall",
                        "auth-foreign",
                        "auth-no-session",
                        "auth-command",
                    ]
                    .iter()
                    .all(|p| value(t, "authwatch_probe_success", &[("probe", p)]).is_some())
            },
            Duration::from_secs(20),
        )
        .await;

    // A correct API: every case as it must be, the token checked locally.
    let good = |case| {
        expect_value(
            &text,
            "authwatch_auth_case_success",
            &[("probe", "auth-good"), ("case", case)],
        )
    };
    for case in ["valid_token", "no_token", "forged_token", "expired_token"] {
        assert_eq!(good(case), 1.0, "auth-good {case}:\n{text}");
    }
    let g = [("probe", "auth-good")];
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &g),
        1.0,
        "{text}"
    );
    assert_eq!(expect_value(&text, "authwatch_auth_fail_open", &g), 0.0);
    assert_eq!(
        expect_value(&text, "authwatch_auth_token_verified", &g),
        1.0
    );
    assert_eq!(
        expect_value(&text, "authwatch_auth_token_kid_known", &g),
        1.0
    );
    assert_eq!(
        expect_value(&text, "authwatch_auth_token_mint_success", &g),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_case_status_code",
            &[("probe", "auth-good"), ("case", "forged_token")]
        ),
        401.0
    );

    // Fail-open: the rejection cases were answered 200.
    let o = [("probe", "auth-open")];
    assert_eq!(expect_value(&text, "authwatch_auth_fail_open", &o), 1.0);
    assert_eq!(
        reason_of(&text, "auth-open").as_deref(),
        Some("auth_accepts_invalid_token")
    );
    for case in ["no_token", "forged_token", "expired_token"] {
        assert_eq!(
            expect_value(
                &text,
                "authwatch_auth_case_success",
                &[("probe", "auth-open"), ("case", case)]
            ),
            0.0,
            "{case}"
        );
    }
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_case_success",
            &[("probe", "auth-open"), ("case", "valid_token")]
        ),
        1.0
    );

    // Rejects everything: the valid token is refused.
    assert_eq!(
        reason_of(&text, "auth-closed").as_deref(),
        Some("auth_valid_token_rejected")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_case_success",
            &[("probe", "auth-closed"), ("case", "valid_token")]
        ),
        0.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_case_success",
            &[("probe", "auth-closed"), ("case", "no_token")]
        ),
        1.0
    );

    // A stalling API is an outage too, and its latency shows it.
    assert_eq!(reason_of(&text, "auth-stall").as_deref(), Some("timeout"));
    let stall = expect_value(
        &text,
        "authwatch_auth_case_duration_seconds",
        &[("probe", "auth-stall"), ("case", "valid_token")],
    );
    assert!(stall >= 0.8, "stall duration {stall}");

    // A token whose kid is in no fetched JWKS: keys from different instances.
    assert_eq!(
        reason_of(&text, "auth-foreign").as_deref(),
        Some("token_kid_unknown")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_token_kid_known",
            &[("probe", "auth-foreign")]
        ),
        0.0
    );
    assert_eq!(
        reason_of(&text, "auth-no-session").as_deref(),
        Some("token_mint_failed")
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "auth-command")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_token_verified",
            &[("probe", "auth-command")]
        ),
        1.0
    );

    for cause in [
        "auth_fail_open",
        "auth_rejects_valid_tokens",
        "jwks_key_mismatch",
    ] {
        assert_eq!(
            expect_value(&text, "authwatch_diagnosis", &[("cause", cause)]),
            1.0,
            "{cause}"
        );
    }
    assert_eq!(expect_value(&text, "authwatch_auth_healthy", &[]), 0.0);

    let (out, ok) = promtool_check(&text);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    // Neither the secret key nor any token (nor its signature) shows anywhere.
    let logs = d.logs();
    let mut tokens = minted.lock().unwrap().clone();
    tokens.push(foreign_token.clone());
    tokens.push(own_token.clone());
    assert!(tokens.len() > 3);
    for t in tokens.iter().chain([&SECRET.to_string()]) {
        let sig = t.rsplit('.').next().unwrap();
        assert!(
            !text.contains(sig) && !logs.contains(sig),
            "a secret leaked"
        );
    }
    assert!(!find(&text, "authwatch_probe_failure", &[]).is_empty());
    eprintln!(
        "fail-open lines:\n{}",
        text.lines()
            .filter(|l| l.contains("auth-open")
                && (l.starts_with("authwatch_auth_") || l.contains("success{")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The probe must not change what the API does: one token per lifetime (not per run), and the
/// forged case, which makes the Python SDK drop its cached key, only every `negative_every`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_reused_and_negative_cases_are_rare() {
    let clerk = Arc::new(SigningKey::new("ins_reuse", "https://clerk.test"));
    let mints = Arc::new(Mutex::new(0u32));
    let (c, m) = (clerk.clone(), mints.clone());
    let bapi = TestServer::start(move |req| match (req.method.as_str(), req.path_only()) {
        ("POST", "/v1/sessions/sess_probe/tokens") => {
            *m.lock().unwrap() += 1;
            let t = c.mint(60);
            ResponseSpec::json(200, format!(r#"{{"object":"token","jwt":"{t}"}}"#))
        }
        ("GET", "/v1/jwks") => ResponseSpec::json(200, jwks([c.jwk()]).to_string()),
        _ => ResponseSpec::json(404, "{}"),
    })
    .await;
    let rejected = Arc::new(Mutex::new(0u32));
    let (c, r) = (clerk.clone(), rejected.clone());
    let api = TestServer::start(move |req| {
        let bearer = req.header("authorization").is_some();
        if c.accepts(req.header("authorization")) {
            ResponseSpec::json(200, "{}")
        } else {
            if bearer {
                // A token that does not verify: what makes an SDK refetch its keys.
                *r.lock().unwrap() += 1;
            }
            ResponseSpec::json(401, "{}")
        }
    })
    .await;
    let yaml = format!(
        "global: {{interval: 300ms, timeout: 1s}}\nclerk: {{secret_key: {SECRET}, api_url: \"http://127.0.0.1:{b}\", auto_probes: false}}\nprobes:\n  - name: bapi-jwks\n    jwks: {{source: backend}}\n  - name: auth\n    auth: {{url: \"http://127.0.0.1:{a}/me\", token_source: backend, session_id: sess_probe, issuer: \"https://clerk.test\"}}\n",
        b = bapi.port(),
        a = api.port(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| {
                value(t, "authwatch_auth_token_reused", &[("probe", "auth")]) == Some(1.0)
                    && value(t, "authwatch_probe_runs_total", &[("probe", "auth")])
                        .is_some_and(|n| n >= 8.0)
            },
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(
        *mints.lock().unwrap(),
        1,
        "one Backend API request for the token's lifetime"
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_token_mints_total",
            &[("probe", "auth")]
        ),
        1.0
    );
    assert_eq!(
        *rejected.lock().unwrap(),
        1,
        "the forged case ran once, not once per run"
    );
    assert!(
        value(
            &text,
            "authwatch_auth_negative_cases_last_run_timestamp_seconds",
            &[("probe", "auth")]
        )
        .is_some()
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_auth_case_success",
            &[("probe", "auth"), ("case", "forged_token")]
        ),
        1.0,
        "the last forged result stays exported between its runs"
    );
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "auth")]),
        1.0
    );
}
