//! One fault, one page: the alerts each fault of deploy/prometheus/tests/one_fault.yml fires
//! (promtool proves that set there, complete) are replayed into a real Alertmanager on
//! 127.0.0.1 running deploy/compose/alertmanager.yml, and what its inhibit rules leave active is
//! compared with the one alert per fault that must page. Also: the label every alert carries for
//! those rules (`authwatch_alert`), the order of the `for` durations that inhibition relies on,
//! and `amtool config routes test` for every alert that fires.
//!
//! Needs the Debian package `prometheus-alertmanager` (/usr/bin/prometheus-alertmanager and
//! amtool; `scripts/test.sh` installs it). `ALERTMANAGER` overrides the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

mod common;
#[path = "common/rules.rs"]
mod rules;
use rules::Rule;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ALERTMANAGER_CONFIG: &str = "deploy/compose/alertmanager.yml";
/// What deploy/compose/prometheus.yml puts on every alert it sends (`external_labels`).
const EXTERNAL_LABELS: [(&str, &str); 1] = [("site", "compose")];
/// Every value of the `authwatch_alert` label (the header of deploy/prometheus/alerts.yml).
const CLASSES: [&str; 6] = [
    "cause",
    "advisory",
    "unexplained",
    "symptom",
    "global",
    "daemon",
];
/// Causes that explain no failure: their alerts hold nothing back.
const ADVISORY: [&str; 2] = ["cert_expiring", "coverage_missing"];

/// Labels that single out one alert.
type Selector = &'static [(&'static str, &'static str)];

/// What must be left active, not inhibited, after each fault of one_fault.yml: one alert per
/// fault, each given by labels that single it out.
const EXPECTED: &[(&str, &[Selector])] = &[
    (
        "dns-dead",
        &[&[
            ("alertname", "AuthDnsResolverBroken"),
            ("instance", "homecam-api:19868"),
        ]],
    ),
    (
        "provider-outage-everywhere",
        &[&[
            ("alertname", "AuthCauseSeenEverywhere"),
            ("cause", "provider_outage"),
            ("scope", "global"),
        ]],
    ),
    (
        "dns-local-outage-global",
        &[
            &[
                ("alertname", "AuthDnsResolverBroken"),
                ("instance", "homecam-api:19868"),
                ("scope", "local"),
            ],
            &[
                ("alertname", "AuthCauseSeenEverywhere"),
                ("cause", "provider_outage"),
                ("scope", "global"),
            ],
        ],
    ),
    (
        "unexplained",
        &[&[
            ("alertname", "AuthUnhealthyUnexplained"),
            ("instance", "homecam-api:19868"),
        ]],
    ),
    (
        "advisory-holds-nothing-back",
        &[
            &[("alertname", "AuthCertExpiring")],
            &[
                ("alertname", "AuthwatchProbeFailing"),
                ("probe", "example-https"),
            ],
        ],
    ),
];

// ------------------------------------------------------------------------------ files

#[derive(Debug, Deserialize)]
struct TestFile {
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
struct TestGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Debug, Deserialize)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct AlertmanagerFile {
    #[serde(default)]
    inhibit_rules: Vec<InhibitRule>,
}

#[derive(Debug, Deserialize)]
struct InhibitRule {
    #[serde(default)]
    source_matchers: Vec<String>,
    #[serde(default)]
    target_matchers: Vec<String>,
}

fn read(rel: &str) -> String {
    let path = Path::new(ROOT).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn parse<T: for<'de> Deserialize<'de>>(rel: &str) -> T {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("parsing {rel}: {e}"))
}

/// A Prometheus duration of one unit ("90s", "5m", "1h"), in seconds.
fn seconds(d: &str) -> u64 {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("duration {d}: one number and one unit expected"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => panic!("duration {d}: unknown unit"),
    }
}

/// One fault of one_fault.yml: its name and the alerts firing at its last eval_time, each with
/// its full label set (alertname included) and annotations.
struct Fault {
    name: String,
    alerts: Vec<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

fn faults(rules: &BTreeMap<String, Rule>) -> Vec<Fault> {
    let file: TestFile = parse("deploy/prometheus/tests/one_fault.yml");
    let mut out = Vec::new();
    for test in file.tests {
        let last = test
            .alert_rule_test
            .iter()
            .map(|t| seconds(&t.eval_time))
            .max()
            .unwrap_or_else(|| panic!("one_fault.yml {}: no alert_rule_test", test.name));
        let at_last: Vec<&AlertTest> = test
            .alert_rule_test
            .iter()
            .filter(|t| seconds(&t.eval_time) == last)
            .collect();
        let covered: BTreeSet<&str> = at_last.iter().map(|t| t.alertname.as_str()).collect();
        let missing: Vec<&String> = rules
            .keys()
            .filter(|n| !covered.contains(n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "one_fault.yml {}: at its last eval_time every alert of alerts.yml must be listed \
             (as exp_alerts: [] when it does not fire), so that the set is complete; missing: \
             {missing:?}",
            test.name
        );
        let mut alerts = Vec::new();
        for t in at_last {
            for e in &t.exp_alerts {
                let mut labels = e.exp_labels.clone();
                labels.insert("alertname".into(), t.alertname.clone());
                alerts.push((labels, e.exp_annotations.clone()));
            }
        }
        out.push(Fault {
            name: test.name,
            alerts,
        });
    }
    out
}

// ------------------------------------------------------------------------------ static checks

#[test]
fn every_alert_is_classified_for_the_inhibit_rules() {
    let rules = rules::load().into_alerts();
    for (name, rule) in &rules {
        let class = rule
            .labels
            .get("authwatch_alert")
            .unwrap_or_else(|| panic!("{name}: no authwatch_alert label"));
        assert!(
            CLASSES.contains(&class.as_str()),
            "{name}: authwatch_alert {class} is none of {CLASSES:?}"
        );
        match rule.labels.get("cause") {
            Some(cause) => {
                let want = if ADVISORY.contains(&cause.as_str()) {
                    "advisory"
                } else {
                    "cause"
                };
                assert_eq!(class, want, "{name}: cause {cause} must be {want}");
                assert_eq!(
                    rule.labels.get("scope").map(String::as_str),
                    Some("local"),
                    "{name}: a per-vantage cause alert has scope local"
                );
            }
            None => assert!(
                !matches!(class.as_str(), "cause" | "advisory"),
                "{name}: authwatch_alert {class} without a cause label"
            ),
        }
        if class == "global" {
            assert_eq!(
                rule.labels.get("scope").map(String::as_str),
                Some("global"),
                "{name}: the global alert has scope global"
            );
        }
    }
    let used: BTreeSet<&str> = rules
        .values()
        .filter_map(|r| r.labels.get("authwatch_alert").map(String::as_str))
        .collect();
    let am: AlertmanagerFile = parse(ALERTMANAGER_CONFIG);
    assert!(
        !am.inhibit_rules.is_empty(),
        "{ALERTMANAGER_CONFIG} has no inhibit_rules"
    );
    for rule in &am.inhibit_rules {
        for m in rule.source_matchers.iter().chain(&rule.target_matchers) {
            let Some(values) = m.strip_prefix("authwatch_alert") else {
                continue;
            };
            let values = values
                .trim_start_matches(['=', '~'])
                .trim_matches(['"', '\'']);
            for v in values.split('|') {
                assert!(
                    used.contains(v),
                    "{ALERTMANAGER_CONFIG}: matcher {m} names authwatch_alert {v}, which no alert has"
                );
            }
        }
    }
}

/// Only a firing alert inhibits (a pending one is not sent to Alertmanager): each cause alert
/// must fire no later than the symptoms it holds back, and the unexplained alert no later than
/// the probe failures. Started by the same fault, the cause then reaches Alertmanager first or
/// in the same evaluation, well inside `group_wait`.
#[test]
fn causes_fire_no_later_than_the_symptoms_they_hold_back() {
    let rules = rules::load().into_alerts();
    let of_class = |class: &str| -> Vec<(&String, u64)> {
        rules
            .iter()
            .filter(|(_, r)| r.labels.get("authwatch_alert").map(String::as_str) == Some(class))
            .map(|(n, r)| (n, r.for_.as_deref().map_or(0, seconds)))
            .collect()
    };
    let symptoms = of_class("symptom");
    assert!(!symptoms.is_empty(), "no symptom alert");
    let shortest_symptom = symptoms.iter().map(|(_, s)| *s).min().unwrap();
    for (name, f) in of_class("cause").into_iter().chain(of_class("unexplained")) {
        assert!(
            f <= shortest_symptom,
            "{name}: `for` {f}s is longer than the {shortest_symptom}s of the symptoms it holds \
             back ({symptoms:?}): they would page first"
        );
    }
    for (name, f) in of_class("global") {
        assert_eq!(
            f, 0,
            "{name}: counts firing alerts, so it needs no `for` of its own"
        );
    }
}

#[test]
fn amtool_routes_every_firing_alert_to_a_receiver() {
    let rules = rules::load().into_alerts();
    let mut seen = BTreeSet::new();
    for fault in faults(&rules) {
        for (labels, _) in &fault.alerts {
            if !seen.insert(labels["alertname"].clone()) {
                continue;
            }
            let mut cmd = Command::new("amtool");
            cmd.current_dir(ROOT).args([
                "config",
                "routes",
                "test",
                &format!("--config.file={ALERTMANAGER_CONFIG}"),
                "--verify.receivers=default",
            ]);
            for (k, v) in labels.iter().map(|(k, v)| (k.as_str(), v.as_str())) {
                cmd.arg(format!("{k}={v}"));
            }
            let out = match cmd.output() {
                Ok(out) => out,
                Err(e) if e.kind() == ErrorKind::NotFound => panic!("{}", missing_binary("amtool")),
                Err(e) => panic!("cannot run amtool: {e}"),
            };
            assert!(
                out.status.success(),
                "amtool config routes test for {labels:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(!seen.is_empty(), "no firing alert in one_fault.yml");
}

// ------------------------------------------------------------------------------ live

fn missing_binary(what: &str) -> String {
    format!(
        "{what} is not installed: install the Debian package prometheus-alertmanager \
         (apt-get install prometheus-alertmanager; scripts/test.sh does), which provides \
         /usr/bin/prometheus-alertmanager and /usr/bin/amtool, or set ALERTMANAGER to an \
         alertmanager binary"
    )
}

fn alertmanager_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ALERTMANAGER") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("{}", missing_binary("Alertmanager"));
}

/// A live Alertmanager on 127.0.0.1 with its own storage and no clustering; killed on drop.
struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let bin = alertmanager_binary();
        let config = Path::new(ROOT).join(ALERTMANAGER_CONFIG);
        let mut last = String::new();
        // The port is picked free and released before Alertmanager binds it: retry on a race.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let port = common::free_port();
            let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
            let child = Command::new(&bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut am = Alertmanager {
                child,
                port,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = am.child.try_wait() {
                    break;
                }
                if matches!(am.request("GET", "/-/ready", None), Ok((200, _))) {
                    return am;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last = std::fs::read_to_string(am._dir.path().join("alertmanager.log"))
                .unwrap_or_default();
        }
        panic!("Alertmanager did not become ready on 127.0.0.1; its log:\n{last}");
    }

    /// One HTTP/1.0 exchange (so the answer is never chunked): status and body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_string()))
    }

    fn post_alerts(&self, alerts: &Value) {
        let (status, body) = self
            .request("POST", "/api/v2/alerts", Some(&alerts.to_string()))
            .expect("POST /api/v2/alerts");
        assert_eq!(status, 200, "POST /api/v2/alerts: {body}");
    }

    fn alerts(&self, query: &str) -> Vec<Value> {
        let (status, body) = self
            .request("GET", &format!("/api/v2/alerts?{query}"), None)
            .expect("GET /api/v2/alerts");
        assert_eq!(status, 200, "GET /api/v2/alerts?{query}: {body}");
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_else(|| panic!("GET /api/v2/alerts?{query}: not a JSON array: {body}"))
    }
}

fn label_map(alert: &Value) -> BTreeMap<String, String> {
    alert["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn matches(labels: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}

fn show(alerts: &[BTreeMap<String, String>]) -> String {
    alerts
        .iter()
        .map(|l| format!("  {l:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Posts the alerts, with the external labels Prometheus adds (unless an alert has its own), to
/// a fresh Alertmanager and returns, once the inhibitor has seen every
/// alert, the label sets of the active alerts that nothing inhibits, and of all active alerts.
fn replay(alerts: &[BTreeMap<String, String>], annotations: &[BTreeMap<String, String>]) -> Replay {
    let am = Alertmanager::start();
    let body: Vec<Value> = alerts
        .iter()
        .zip(annotations)
        .map(|(labels, ann)| {
            let mut labels = labels.clone();
            for (k, v) in EXTERNAL_LABELS {
                labels.entry(k.into()).or_insert_with(|| v.into());
            }
            json!({"labels": labels, "annotations": ann, "generatorURL": "http://prometheus:9090/graph"})
        })
        .collect();
    am.post_alerts(&Value::Array(body));
    // The inhibitor learns of alerts asynchronously: wait until every alert is active or
    // inhibited, and the uninhibited set has stayed the same for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut previous: Option<Vec<BTreeMap<String, String>>> = None;
    let mut stable_since = Instant::now();
    loop {
        let all = am.alerts("active=true&inhibited=true&silenced=true&unprocessed=true");
        let open: Vec<BTreeMap<String, String>> = am
            .alerts("active=true&inhibited=false&silenced=false&unprocessed=false")
            .iter()
            .map(label_map)
            .collect();
        if previous.as_ref() != Some(&open) {
            previous = Some(open.clone());
            stable_since = Instant::now();
        }
        if (all.len() == alerts.len() && stable_since.elapsed() > Duration::from_millis(800))
            || Instant::now() > deadline
        {
            let inhibited = all
                .iter()
                .filter(|a| {
                    a["status"]["inhibitedBy"]
                        .as_array()
                        .is_some_and(|v| !v.is_empty())
                })
                .map(label_map)
                .collect();
            return Replay {
                open,
                inhibited,
                total: all.len(),
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Replay {
    open: Vec<BTreeMap<String, String>>,
    inhibited: Vec<BTreeMap<String, String>>,
    total: usize,
}

fn check(name: &str, posted: usize, want: &[Selector], got: &Replay) -> Result<(), String> {
    let mut problems = Vec::new();
    if got.total != posted {
        problems.push(format!(
            "Alertmanager holds {} alerts, {posted} were posted",
            got.total
        ));
    }
    for w in want {
        let n = got.open.iter().filter(|l| matches(l, w)).count();
        if n != 1 {
            problems.push(format!(
                "expected exactly one uninhibited alert with {w:?}, found {n}"
            ));
        }
    }
    if got.open.len() != want.len() {
        problems.push(format!(
            "expected {} uninhibited alert(s), found {}",
            want.len(),
            got.open.len()
        ));
    }
    if got.open.len() + got.inhibited.len() != got.total {
        problems.push("some alerts are neither active nor inhibited".to_string());
    }
    if problems.is_empty() {
        eprintln!(
            "{name}: {posted} alerts posted, {} inhibited, paging: {:?}",
            got.inhibited.len(),
            got.open
                .iter()
                .map(|l| l["alertname"].clone())
                .collect::<Vec<_>>()
        );
        Ok(())
    } else {
        Err(format!(
            "{name}: {}\nuninhibited:\n{}\ninhibited:\n{}",
            problems.join("; "),
            show(&got.open),
            show(&got.inhibited)
        ))
    }
}

#[test]
fn one_fault_pages_once_through_a_live_alertmanager() {
    let rules = rules::load().into_alerts();
    let faults = faults(&rules);
    let names: BTreeSet<&str> = faults.iter().map(|f| f.name.as_str()).collect();
    let expected: BTreeSet<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, expected,
        "the tests of one_fault.yml (left) and the expectations here (right) differ"
    );
    let mut failures = Vec::new();
    for fault in &faults {
        let want = EXPECTED.iter().find(|(n, _)| *n == fault.name).unwrap().1;
        assert!(
            fault.alerts.len() >= want.len(),
            "{}: the fault fires {} alert(s), fewer than the {} that must page",
            fault.name,
            fault.alerts.len(),
            want.len()
        );
        let (labels, annotations): (Vec<_>, Vec<_>) = fault.alerts.iter().cloned().unzip();
        let got = replay(&labels, &annotations);
        if let Err(e) = check(&fault.name, labels.len(), want, &got) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Inhibition stays within one vantage: a cause at the sidecar does not hold back a failure at
/// the other vantage, nor one at a vantage of another Prometheus (`site`) with the same instance.
#[test]
fn inhibition_stays_within_its_vantage() {
    let rules = rules::load().into_alerts();
    let faults = faults(&rules);
    let dns = faults
        .iter()
        .find(|f| f.name == "dns-dead")
        .expect("one_fault.yml has the dns-dead test");
    let failing = dns
        .alerts
        .iter()
        .find(|(l, _)| l["alertname"] == "AuthwatchProbeFailing")
        .cloned()
        .expect("dns-dead fires AuthwatchProbeFailing");
    let (mut labels, mut annotations): (Vec<_>, Vec<_>) = dns.alerts.iter().cloned().unzip();
    let mut elsewhere = failing.0.clone();
    elsewhere.insert("instance".into(), "authwatch-host:19868".into());
    elsewhere.insert("vantage".into(), "compose-network".into());
    labels.push(elsewhere);
    annotations.push(failing.1.clone());
    let mut other_site = failing.0.clone();
    other_site.insert("site".into(), "eu-west".into());
    other_site.insert("probe".into(), "clerk-fapi-health-eu".into());
    labels.push(other_site);
    annotations.push(failing.1);
    let got = replay(&labels, &annotations);
    let want: &[Selector] = &[
        &[
            ("alertname", "AuthDnsResolverBroken"),
            ("instance", "homecam-api:19868"),
        ],
        &[
            ("alertname", "AuthwatchProbeFailing"),
            ("instance", "authwatch-host:19868"),
        ],
        &[
            ("alertname", "AuthwatchProbeFailing"),
            ("probe", "clerk-fapi-health-eu"),
            ("site", "eu-west"),
        ],
    ];
    if let Err(e) = check(
        "dns-dead, plus failures elsewhere",
        labels.len(),
        want,
        &got,
    ) {
        panic!("{e}");
    }
}
