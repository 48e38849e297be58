//! Proves the shipped rules tell a local fault from a shared one on live data: three authwatch
//! vantages in three network namespaces (one with a resolver that refuses), one Prometheus
//! scraping them with `vantage` target labels and deploy/prometheus/alerts.yml. The refusing
//! resolver is seen by 1 of 3 vantages and stays `scope="local"` (no AuthCauseSeenEverywhere,
//! even once its alert fires); Clerk rejecting the key is seen by all 3, the broken one too
//! through its detour, and fires AuthCauseSeenEverywhere (`scope="global"`).
//!
//! No namespace has a link to the host's: a hub (fake Clerk, resolvers, Prometheus) is joined
//! to each vantage by a veth pair created inside the test's own namespaces.

mod common;
#[path = "common/rules.rs"]
mod rules;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authwatch::diagnosis::Cause;
use serde_json::Value;

use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, ServerMode, TestServer};
use common::jwks::jwks;
use common::jwt::SigningKey;
use common::netns::Netns;
use common::prometheus::Prometheus;
use common::tls::TestPki;

const SECRET: &str = "sk_test_VantagesE2e00000000000";
const CLERK_NAMES: [&str; 2] = ["clerk.test", "api.clerk.test"];
const PORT: u16 = 19868;

/// Addresses on the hub's loopback, reached from every vantage through its veth: one Clerk and
/// one public resolver for all, as on the Internet.
const CLERK: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SITE_RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const REFUSING_RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const PUBLIC_RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 53);

/// The `vantage` labels; the first one's resolver refuses every query.
const VANTAGES: [&str; 3] = ["api-container", "compose-network", "region-eu-west"];
const BROKEN: &str = VANTAGES[0];

/// The hub and the three vantages, each vantage `i` on 10.77.i.0/30 (hub .1, vantage .2).
struct Net {
    hub: Netns,
    vantages: Vec<Netns>,
}

fn vantage_addr(i: usize) -> String {
    format!("10.77.{}.2", i + 1)
}

impl Net {
    fn new() -> Net {
        let hub = Netns::new("vhub");
        for ip in [CLERK, SITE_RESOLVER, REFUSING_RESOLVER, PUBLIC_RESOLVER] {
            hub.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        }
        let mut vantages = Vec::new();
        for (i, name) in VANTAGES.iter().enumerate() {
            let n = i + 1;
            let ns = Netns::new(&format!("v{n}"));
            hub.veth(
                &ns,
                (&format!("awh{n}"), &format!("10.77.{n}.1/30")),
                (&format!("awv{n}"), &format!("{}/30", vantage_addr(i))),
            );
            // Only the hub's service addresses: anything else is unreachable at once.
            ns.ip(&[
                "route",
                "add",
                "10.77.0.0/24",
                "via",
                &format!("10.77.{n}.1"),
            ]);
            let resolver = if *name == BROKEN {
                REFUSING_RESOLVER
            } else {
                SITE_RESOLVER
            };
            ns.etc("resolv.conf", &format!("nameserver {resolver}\n"));
            ns.etc("hosts", "127.0.0.1 localhost\n");
            vantages.push(ns);
        }
        Net { hub, vantages }
    }
}

/// One authwatch inside a vantage namespace, killed on drop; its log is printed if the test
/// fails, since the daemon cannot be asked anything once the namespaces are gone.
struct Vantage {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for Vantage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- authwatch at {} (last lines) ---", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn config(addr: &str, ca: &Path) -> String {
    format!(
        r#"
global:
  interval: 500ms
  timeout: 1s
  jitter: 0
  trust_store_file: {ca}
  reference_trust_store_file: {ca}
clerk:
  secret_key: {SECRET}
  api_url: "https://api.clerk.test"
  auto_probes: false
probes:
  - name: clerk-dns
    dns: {{names: [clerk.test, api.clerk.test], resolvers: [system, "{PUBLIC_RESOLVER}:53"]}}
  - name: clerk-fapi-health
    api_health: {{url: "https://clerk.test/v1/health"}}
  - name: clerk-fapi-jwks
    jwks: {{source: url, url: "https://clerk.test/.well-known/jwks.json"}}
  - name: clerk-bapi-jwks
    jwks: {{source: backend}}
  - name: api-port
    role: api
    tcp: {{address: "{addr}:{PORT}"}}
"#,
        ca = ca.display()
    )
}

fn start_vantage(ns: &Netns, i: usize, dir: &Path, ca: &Path) -> Vantage {
    let name = VANTAGES[i];
    let addr = vantage_addr(i);
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg, config(&addr, ca)).unwrap();
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = ns
        .command(env!("CARGO_BIN_EXE_authwatch"))
        .arg("--config.file")
        .arg(&cfg)
        .args(["--web.listen-address", &format!("{addr}:{PORT}")])
        // Nothing of the developer's environment (proxy variables above all).
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start authwatch in its namespace");
    Vantage { name, child, log }
}

async fn dns_at(ip: Ipv4Addr) -> DnsServer {
    let addr = (ip, 53);
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .expect("bind DNS udp");
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind DNS tcp");
    DnsServer::start_on_sockets(udp, tcp).expect("DNS server")
}

/// The fake Clerk, FAPI and Backend API on one address; `revoked` makes the Backend API
/// reject the secret key, as after the key is rolled in Clerk's dashboard.
async fn clerk(pki: &TestPki, revoked: Arc<AtomicBool>) -> TestServer {
    let key = SigningKey::new("ins_vantages", "https://clerk.test");
    let doc = jwks([key.jwk()]).to_string();
    let bearer = format!("Bearer {SECRET}");
    let listener = tokio::net::TcpListener::bind((CLERK, 443))
        .await
        .expect("bind the fake Clerk");
    TestServer::start_on_listener(
        listener,
        Some(pki.good(&CLERK_NAMES).server_config()),
        ServerMode::Normal,
        Arc::new(move |req| {
            let accepted =
                req.header("authorization") == Some(&bearer) && !revoked.load(Ordering::SeqCst);
            match req.path_only() {
                "/v1/health" => ResponseSpec::json(200, r#"{"status":"healthy"}"#),
                "/.well-known/jwks.json" => ResponseSpec::json(200, doc.clone()),
                "/v1/jwks" if accepted => ResponseSpec::json(200, doc.clone()),
                "/v1/jwks" => {
                    ResponseSpec::json(401, r#"{"errors":[{"code":"clerk_key_invalid"}]}"#)
                }
                _ => ResponseSpec::json(404, r#"{"errors":[]}"#),
            }
        }),
    )
}

/// 1 s, an interval that divides authwatch's 120 s connection lifetime (src/server.rs,
/// `serve_connection`): Prometheus keeps one connection per target and scrapes at
/// accept + k·interval, so the recycling meets a scrape. It must end the connection after the
/// answer, not cut the scrape: a cut marks the vantage's series stale and restarts every
/// pending alert's `for` (this test caught that, and asserts that no scrape failed).
const SCRAPE_INTERVAL: &str = "1s";

fn prometheus_config() -> String {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let targets: String = VANTAGES
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "      - targets: ['{}:{PORT}']\n        labels: {{vantage: {v}}}\n",
                vantage_addr(i)
            )
        })
        .collect();
    format!(
        "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: 1s\n  scrape_timeout: 900ms\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: authwatch\n    static_configs:\n{targets}",
        rules.display()
    )
}

fn label<'a>(v: &'a Value, name: &str) -> &'a str {
    v["labels"][name]
        .as_str()
        .or_else(|| v["metric"][name].as_str())
        .unwrap_or("")
}

/// An instant vector as `key label → value`.
fn by(result: &[Value], key: &str) -> BTreeMap<String, String> {
    result
        .iter()
        .map(|s| {
            (
                label(s, key).to_string(),
                s["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The active alerts named `name`, as `vantage → state` (the global one has no vantage).
fn states(alerts: &[Value], name: &str) -> BTreeMap<String, String> {
    alerts
        .iter()
        .filter(|a| label(a, "alertname") == name)
        .map(|a| {
            let state = a["state"].as_str().unwrap_or("");
            (label(a, "vantage").to_string(), state.to_string())
        })
        .collect()
}

fn everywhere<'a>(alerts: &'a [Value], cause: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| label(a, "alertname") == "AuthCauseSeenEverywhere" && label(a, "cause") == cause)
}

async fn scenario(net: &Net) {
    let started = Instant::now();
    let at = || format!("{:.0}s", started.elapsed().as_secs_f64());
    let pki = TestPki::new();
    let revoked = Arc::new(AtomicBool::new(false));
    let _clerk = clerk(&pki, revoked.clone()).await;
    let answering = [dns_at(SITE_RESOLVER).await, dns_at(PUBLIC_RESOLVER).await];
    for dns in &answering {
        for n in CLERK_NAMES {
            dns.set(n, Behavior::a([CLERK]));
        }
    }
    let refusing = dns_at(REFUSING_RESOLVER).await;
    refusing.set_default(Behavior::Refused);

    let dir = tempfile::tempdir().unwrap();
    let _vantages: Vec<Vantage> = net
        .vantages
        .iter()
        .enumerate()
        .map(|(i, ns)| start_vantage(ns, i, dir.path(), pki.ca_pem_path()))
        .collect();
    let prom = Prometheus::start_with_config(&prometheus_config()).await;
    let everywhere_expr = rules::load().into_alerts()["AuthCauseSeenEverywhere"]
        .expr
        .clone();
    let dns_alert = rules::alert_name(Cause::DnsResolverBroken);
    let key_alert = rules::alert_name(Cause::SecretKeyInvalid);
    let dns_cause = Cause::DnsResolverBroken.as_label();
    let key_cause = Cause::SecretKeyInvalid.as_label();
    let secs = Duration::from_secs;

    // Phase 1: only the vantage whose resolver refuses sees a cause.
    prom.wait_query(
        "authwatch:vantages:count",
        |r| by(r, "job") == map(&[("authwatch", "3")]),
        secs(30),
    )
    .await;
    let counts = prom
        .wait_query(
            "authwatch:cause_vantages:count > 0",
            |r| by(r, "cause") == map(&[(dns_cause, "1")]),
            secs(30),
        )
        .await;
    let seen = prom
        .wait_query(
            "authwatch_diagnosis == 1",
            |r| by(r, "vantage") == map(&[(BROKEN, "1")]),
            secs(10),
        )
        .await;
    assert_eq!(label(&seen[0], "cause"), dns_cause);
    let healthy = prom
        .wait_query(
            "authwatch_auth_healthy",
            |r| {
                by(r, "vantage")
                    == map(&[(VANTAGES[0], "0"), (VANTAGES[1], "1"), (VANTAGES[2], "1")])
            },
            secs(10),
        )
        .await;
    let alerts = prom
        .wait_alerts(|a| !states(a, &dns_alert).is_empty(), secs(20))
        .await;
    assert_eq!(states(&alerts, &dns_alert), map(&[(BROKEN, "pending")]));
    let local = alerts
        .iter()
        .find(|a| label(a, "alertname") == dns_alert)
        .unwrap();
    assert_eq!(label(local, "scope"), "local");
    assert_eq!(
        label(local, "instance"),
        format!("{}:{PORT}", vantage_addr(0))
    );
    assert!(everywhere(&alerts, dns_cause).is_none(), "{alerts:#?}");
    eprintln!(
        "[{}] phase 1: vantages:count 3; cause_vantages:count {:?}; auth_healthy {:?}; {dns_alert} {:?} (scope local)",
        at(),
        by(&counts, "cause"),
        by(&healthy, "vantage"),
        states(&alerts, &dns_alert),
    );

    // Phase 2: Clerk rejects the key every vantage uses, while the resolver stays broken.
    revoked.store(true, Ordering::SeqCst);
    let injected = Instant::now();
    let counts = prom
        .wait_query(
            "authwatch:cause_vantages:count > 0",
            |r| by(r, "cause") == map(&[(dns_cause, "1"), (key_cause, "3")]),
            secs(30),
        )
        .await;
    let seen = prom
        .wait_query(
            &format!("authwatch_diagnosis{{cause={key_cause:?}}} == 1"),
            |r| r.len() == 3,
            secs(5),
        )
        .await;
    eprintln!(
        "[{}] phase 2: cause_vantages:count {:?} at vantages {:?}",
        at(),
        by(&counts, "cause"),
        by(&seen, "vantage").keys().collect::<Vec<_>>(),
    );
    let alerts = prom
        .wait_alerts(
            |a| everywhere(a, key_cause).is_some_and(|g| g["state"] == "firing"),
            secs(90),
        )
        .await;
    let global = everywhere(&alerts, key_cause).unwrap();
    assert_eq!(label(global, "scope"), "global");
    assert_eq!(label(global, "authwatch_alert"), "global");
    assert_eq!(label(global, "severity"), "critical");
    let description = global["annotations"]["description"].as_str().unwrap_or("");
    for (i, v) in VANTAGES.iter().enumerate() {
        let named = format!("{}:{PORT} ({v})", vantage_addr(i));
        assert!(description.contains(&named), "{named}: {description}");
    }
    let firing = VANTAGES.map(|v| (v, "firing"));
    assert_eq!(states(&alerts, &key_alert), map(&firing));
    eprintln!(
        "[{}] phase 2: AuthCauseSeenEverywhere{{cause={key_cause}, scope=global}} firing {:.0}s after the fault; {key_alert} {:?}",
        at(),
        injected.elapsed().as_secs_f64(),
        states(&alerts, &key_alert),
    );

    // Back to phase 1's fault: once its alert fires, the only state the global rule counts, a
    // cause at one vantage of three must still be local.
    let alerts = prom
        .wait_alerts(
            |a| states(a, &dns_alert).values().any(|s| s == "firing"),
            secs(150).saturating_sub(started.elapsed()),
        )
        .await;
    let fired = Instant::now();
    assert_eq!(states(&alerts, &dns_alert), map(&[(BROKEN, "firing")]));
    // Two evaluations of the vantages group, each of which sees the new firing ALERTS series.
    tokio::time::sleep(secs(2)).await;
    let alerts = prom.alerts().await;
    let mut firing_now: Vec<(String, String, String)> = alerts
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            let l = |n| label(a, n).to_string();
            (l("alertname"), l("cause"), l("vantage"))
        })
        .collect();
    let mut expected = vec![
        (
            "AuthCauseSeenEverywhere".to_string(),
            key_cause.to_string(),
            String::new(),
        ),
        (dns_alert.clone(), dns_cause.to_string(), BROKEN.to_string()),
    ];
    for v in VANTAGES {
        expected.push((key_alert.clone(), key_cause.to_string(), v.to_string()));
    }
    firing_now.sort();
    expected.sort();
    assert_eq!(firing_now, expected, "firing alerts: {alerts:#?}");
    let ever = prom
        .query(&format!(
            "count_over_time(ALERTS{{alertname=\"AuthCauseSeenEverywhere\",cause={dns_cause:?}}}[10m])"
        ))
        .await;
    assert!(
        ever.is_empty(),
        "{dns_cause} was global at some point: {ever:#?}"
    );
    let rule_now = prom.query(&everywhere_expr).await;
    assert_eq!(
        by(&rule_now, "cause"),
        map(&[(key_cause, "3")]),
        "AuthCauseSeenEverywhere's expression"
    );
    let counts = prom.query("authwatch:cause_vantages:count > 0").await;
    assert_eq!(
        by(&counts, "cause"),
        map(&[(dns_cause, "1"), (key_cause, "3")])
    );
    // A failed scrape would have restarted the `for` of every alert asserted above.
    let up = prom.query("min_over_time(up[2m])").await;
    let all_up = VANTAGES.map(|v| (v, "1"));
    assert_eq!(by(&up, "vantage"), map(&all_up), "a scrape failed");
    eprintln!(
        "[{}] end: {dns_alert} firing at {BROKEN} only ({:.0}s after it fired) and never global; AuthCauseSeenEverywhere's expression gives {:?}; cause_vantages:count {:?}",
        at(),
        fired.elapsed().as_secs_f64(),
        by(&rule_now, "cause"),
        by(&counts, "cause"),
    );
}

#[test]
fn a_fault_at_one_vantage_stays_local_and_one_at_clerk_is_seen_everywhere() {
    let net = Net::new();
    // The fixtures and Prometheus must listen inside the hub, so everything async runs on a
    // thread that entered it before building its runtime; this thread stays in the host's
    // namespace to delete the namespaces afterwards, whatever happened.
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            net.hub.enter();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(scenario(&net));
        })
        .join()
    });
    drop(net);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
