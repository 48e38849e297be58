//! End to end with a real Prometheus: authwatch probes fake Clerk services on loopback,
//! Prometheus scrapes it with the shipped alert rules, every dashboard expression returns data,
//! and each injected fault makes the matching alert go pending with `authwatch_diagnosis`
//! naming that cause and no other.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::daemon::Daemon;
use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, TestServer};
use common::jwks::jwks;
use common::jwt::SigningKey;
use common::prometheus::Prometheus;
use common::tls::TestPki;

const SECRET: &str = "sk_test_E2Ecanary000000000000";
const CLERK_NAMES: [&str; 2] = ["clerk.test", "api.clerk.test"];

/// Knobs the test turns on the fake Clerk.
#[derive(Default)]
struct Faults {
    date_offset: AtomicI64,
    jwks_portal: AtomicBool,
}

fn clerk_handler(
    faults: Arc<Faults>,
    key: Arc<SigningKey>,
) -> impl Fn(&common::http::RequestInfo) -> ResponseSpec + Send + Sync + 'static {
    let doc = jwks([key.jwk()]).to_string();
    move |req| {
        let authorized = req.header("authorization") == Some(&format!("Bearer {SECRET}"));
        let offset = faults.date_offset.load(Ordering::SeqCst);
        let portal = faults.jwks_portal.load(Ordering::SeqCst);
        let resp = match req.path_only() {
            "/v1/health" => ResponseSpec::json(200, r#"{"status":"healthy"}"#),
            "/.well-known/jwks.json" | "/v1/jwks" if portal => ResponseSpec::text(
                200,
                "text/html",
                "<html><body>Sign in to the guest Wi-Fi</body></html>",
            ),
            "/.well-known/jwks.json" => ResponseSpec::json(200, doc.clone()),
            "/v1/jwks" if authorized => ResponseSpec::json(200, doc.clone()),
            "/v1/sessions/sess_e2e/tokens" if authorized => ResponseSpec::json(
                200,
                format!(r#"{{"object":"token","jwt":"{}"}}"#, key.mint(60)),
            ),
            "/v1/jwks" => ResponseSpec::json(401, r#"{"errors":[{"code":"clerk_key_invalid"}]}"#),
            _ => ResponseSpec::json(404, r#"{"errors":[]}"#),
        };
        resp.date_offset(offset)
    }
}

fn active_causes(result: &[Value]) -> Vec<String> {
    let mut causes: Vec<String> = result
        .iter()
        .filter(|s| s["value"][1] == "1")
        .filter_map(|s| s["metric"]["cause"].as_str().map(str::to_string))
        .collect();
    causes.sort();
    causes
}

/// Every `expr` in the dashboard, panels inside rows included.
fn dashboard_exprs(v: &Value, out: &mut Vec<(String, String)>) {
    if let Some(panels) = v.get("panels").and_then(Value::as_array) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(e) = t.get("expr").and_then(Value::as_str) {
                    out.push((title.clone(), e.to_string()));
                }
            }
            dashboard_exprs(p, out);
        }
    }
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("${job}", ".*")
        .replace("${instance}", ".*")
        .replace("${probe}", ".*")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$probe", ".*")
}

struct Stack {
    pki: TestPki,
    system_dns: DnsServer,
    public_dns: DnsServer,
    faults: Arc<Faults>,
    trust_file: std::path::PathBuf,
    daemon: Daemon,
    prom: Prometheus,
    _servers: Vec<TestServer>,
    _dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let pki = TestPki::new();
    let leaf = pki.good(&["clerk.test", "api.clerk.test"]);
    let faults = Arc::new(Faults::default());
    let key = Arc::new(SigningKey::new("ins_e2e", "https://clerk.test"));
    let fapi = TestServer::start_tls(&leaf, clerk_handler(faults.clone(), key.clone())).await;
    let bapi = TestServer::start_tls(&leaf, clerk_handler(faults.clone(), key.clone())).await;
    let k = key.clone();
    let api = TestServer::start(move |req| match req.path_only() {
        "/camera/status" if k.accepts(req.header("authorization")) => {
            ResponseSpec::json(200, r#"{"camera":"ok"}"#)
        }
        "/camera/status" => ResponseSpec::json(401, r#"{"detail":"Not authenticated"}"#),
        _ => ResponseSpec::json(
            200,
            r#"{"status":"ok","checks":{"dns":{"status":"ok"},"clerk_jwks":{"status":"ok"}}}"#,
        ),
    })
    .await;
    let zone = || CLERK_NAMES.map(|n| (n, Behavior::a([Ipv4Addr::LOCALHOST])));
    let system_dns = DnsServer::with_zone(zone()).await;
    let public_dns = DnsServer::with_zone(zone()).await;

    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let trust_file = dir.path().join("ca-certificates.crt");
    std::fs::write(&trust_file, pki.ca_pem()).unwrap();
    let reference = dir.path().join("reference.pem");
    std::fs::write(&reference, pki.ca_pem()).unwrap();

    let yaml = format!(
        r#"
global:
  interval: 500ms
  timeout: 1s
  jitter: 0
  resolv_conf: {resolv}
  resolv_conf_port: {sys_port}
  hosts_file: {hosts}
  trust_store_file: {trust}
  reference_trust_store_file: {reference}
diagnosis:
  jwks_max_age: 3s
clerk:
  secret_key: {SECRET}
  api_url: "https://api.clerk.test:{bapi}"
  auto_probes: false
probes:
  - name: clerk-dns
    dns: {{names: [clerk.test, api.clerk.test], resolvers: [system, "{public}"]}}
  - name: clerk-fapi-health
    api_health: {{url: "https://clerk.test:{fapi}/v1/health"}}
  - name: clerk-fapi-jwks
    jwks: {{source: url, url: "https://clerk.test:{fapi}/.well-known/jwks.json", group: clerk}}
  - name: clerk-bapi-jwks
    jwks: {{source: backend, group: clerk}}
  - name: clerk-api
    https: {{url: "https://api.clerk.test:{bapi}/", valid_status_codes: ["2xx", "4xx"]}}
  - name: clerk-clock
    clock: {{url: "https://api.clerk.test:{bapi}/"}}
  - name: api-health-network
    role: api
    api_health: {{url: "http://127.0.0.1:{api}/health/network"}}
  - name: api-auth
    auth: {{url: "http://127.0.0.1:{api}/camera/status", token_source: backend, session_id: sess_e2e, issuer: "https://clerk.test"}}
"#,
        resolv = resolv.display(),
        sys_port = system_dns.port(),
        hosts = hosts.display(),
        trust = trust_file.display(),
        reference = reference.display(),
        bapi = bapi.port(),
        fapi = fapi.port(),
        api = api.port(),
        public = public_dns.addr(),
    );
    let daemon = Daemon::start(&yaml, &[]).await;
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let prom = Prometheus::start(daemon.addr(), &[&rules]).await;
    Stack {
        pki,
        system_dns,
        public_dns,
        faults,
        trust_file,
        daemon,
        prom,
        _servers: vec![fapi, bapi, api],
        _dir: dir,
    }
}

impl Stack {
    async fn wait_healthy(&self) {
        self.prom
            .wait_query(
                "authwatch_auth_healthy",
                |r| r.first().is_some_and(|s| s["value"][1] == "1"),
                Duration::from_secs(30),
            )
            .await;
        self.prom
            .wait_query(
                "authwatch_diagnosis == 1",
                |r| r.is_empty(),
                Duration::from_secs(30),
            )
            .await;
    }

    /// Injects a fault and waits for `alert` to be pending or firing; returns how long it took
    /// and checks the diagnosis names `cause` and nothing else.
    async fn expect(&self, alert: &str, cause: &str, inject: impl FnOnce(&Stack)) -> Duration {
        let start = Instant::now();
        inject(self);
        let alerts = self
            .prom
            .wait_alerts(
                |a| a.iter().any(|x| x["labels"]["alertname"] == alert),
                Duration::from_secs(40),
            )
            .await;
        let took = start.elapsed();
        let state = alerts
            .iter()
            .find(|x| x["labels"]["alertname"] == alert)
            .and_then(|x| x["state"].as_str())
            .unwrap_or("?")
            .to_string();
        assert!(state == "pending" || state == "firing", "{alert}: {state}");
        let r = self
            .prom
            .wait_query(
                "authwatch_diagnosis",
                |r| active_causes(r) == vec![cause.to_string()],
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(active_causes(&r), vec![cause.to_string()]);
        let auth = self.prom.query("authwatch_auth_healthy").await;
        assert_eq!(
            auth[0]["value"][1], "0",
            "auth must be unhealthy during {cause}"
        );
        eprintln!(
            "fault {cause}: alert {alert} {state} after {:.1}s",
            took.as_secs_f64()
        );
        took
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_against_real_prometheus() {
    let s = stack().await;
    s.wait_healthy().await;

    // Every panel expression of the dashboard returns data from the healthy stack.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/authwatch.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, &mut exprs);
    assert!(
        exprs.len() >= 15,
        "only {} expressions in the dashboard",
        exprs.len()
    );
    // Rates need two scrapes inside their window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut empty = Vec::new();
    for (title, expr) in &exprs {
        let e = substitute(expr);
        if s.prom.query(&e).await.is_empty() {
            empty.push(format!("{title}: {e}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard expressions without data:\n{}",
        empty.join("\n")
    );
    let healthy_alerts: Vec<Value> = s.prom.alerts().await;
    assert!(
        healthy_alerts.is_empty(),
        "alerts on a healthy stack: {healthy_alerts:#?}"
    );

    let mut report = Vec::new();

    // 1. The container's resolver breaks; the public resolver still answers.
    let t = s
        .expect("AuthDnsResolverBroken", "dns_resolver_broken", |s| {
            for n in CLERK_NAMES {
                s.system_dns.set(n, Behavior::ServFail);
            }
        })
        .await;
    report.push(("dns_resolver_broken", t));
    for n in CLERK_NAMES {
        s.system_dns.set(n, Behavior::a([Ipv4Addr::LOCALHOST]));
    }
    s.wait_healthy().await;

    // 2. The trust store loses its CA certificates.
    let t = s
        .expect(
            "AuthCaCertificatesMissing",
            "ca_certificates_missing",
            |s| {
                std::fs::write(&s.trust_file, "").unwrap();
            },
        )
        .await;
    report.push(("ca_certificates_missing", t));
    std::fs::write(&s.trust_file, s.pki.ca_pem()).unwrap();
    s.wait_healthy().await;

    // 3. Egress blocked: names resolve, but nothing accepts on the addresses they resolve to.
    let t = s
        .expect("AuthEgressBlocked", "egress_blocked", |s| {
            for dns in [&s.system_dns, &s.public_dns] {
                for n in CLERK_NAMES {
                    dns.set(n, Behavior::a([Ipv4Addr::new(127, 0, 0, 2)]));
                }
            }
        })
        .await;
    report.push(("egress_blocked", t));
    for dns in [&s.system_dns, &s.public_dns] {
        for n in CLERK_NAMES {
            dns.set(n, Behavior::a([Ipv4Addr::LOCALHOST]));
        }
    }
    s.wait_healthy().await;

    // 4. Clock skew: Clerk's Date is 30 s ahead of ours.
    let t = s
        .expect("AuthClockSkew", "clock_skew", |s| {
            s.faults.date_offset.store(30, Ordering::SeqCst)
        })
        .await;
    report.push(("clock_skew", t));
    let offset = s
        .prom
        .query("authwatch_clock_offset_seconds{probe=\"clerk-clock\"}")
        .await;
    let v: f64 = offset[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((-31.5..=-28.5).contains(&v), "offset {v}");
    s.faults.date_offset.store(0, Ordering::SeqCst);
    s.wait_healthy().await;

    // 5. A captive portal answers instead of the JWKS: named as what it is (an answer Clerk
    //    does not send), and the JWKS going stale meanwhile is its consequence, not a second
    //    cause.
    let t = s
        .expect("AuthResponseInvalid", "response_invalid", |s| {
            s.faults.jwks_portal.store(true, Ordering::SeqCst)
        })
        .await;
    report.push(("response_invalid", t));
    s.faults.jwks_portal.store(false, Ordering::SeqCst);
    s.wait_healthy().await;

    for (cause, t) in &report {
        eprintln!("{cause}: pending after {:.1}s", t.as_secs_f64());
    }
    assert!(!s.daemon.logs().contains("E2Ecanary"), "secret in logs");
}
