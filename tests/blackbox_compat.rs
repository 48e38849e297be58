//! Proves authwatch is a drop-in for blackbox_exporter: a blackbox scrape config, unchanged but
//! for the exporter address, gets from authwatch the series names and label names the real
//! `prometheus-blackbox-exporter` returns for the same modules and targets (bar the commented
//! `KNOWN_DIFFERENCES`), the same `probe_success`, and the same values where they must agree.
//!
//! Everything listens on 127.0.0.1: the two exporters, Prometheus, and the targets (HTTP with a
//! `Last-Modified`, HTTPS from a test CA, TCP, DNS). The comparison table is printed, so
//! `cargo test --test blackbox_compat -- --nocapture` shows where the two differ.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::daemon::Daemon;
use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, TestServer, http_get};
use common::prometheus::Prometheus;
use common::tls::{DEFAULT_NAMES, TestPki};
use common::{free_port, markdown_table};

/// Debian's `prometheus-blackbox-exporter` package installs the binary under this name.
const BLACKBOX_BIN: &str = "prometheus-blackbox-exporter";

/// What the HTTP targets send as `Last-Modified`, and that date in Unix seconds.
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LAST_MODIFIED_UNIX: f64 = 1_445_412_480.0;

/// Labels whose values are part of a series' shape (a fixed vocabulary), so they are compared
/// too; other labels' values (fingerprints, subjects) vary per target and only their names are.
const VALUE_LABELS: &[&str] = &["phase", "version"];

/// Series Prometheus itself adds to every scrape; they say nothing about either exporter.
const SCRAPE_SERIES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Series whose values must be the same from both exporters, whenever blackbox has them.
const EXACT_VALUES: &[&str] = &[
    "probe_http_status_code",
    "probe_http_version",
    "probe_http_last_modified_timestamp_seconds",
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_additional_rrs",
    "probe_dns_query_succeeded",
    "probe_ip_addr_hash",
    "probe_ip_protocol",
    "probe_http_content_length",
];

/// How authwatch's answer may differ from blackbox's for one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Diff {
    /// authwatch returns it with this one label more and otherwise the same labels.
    ExtraLabel(&'static str),
}

/// The known differences, each with why. Anything else blackbox returns and authwatch does not
/// (or returns with other labels) fails the test, and so does an entry no case shows any more.
/// Extra series authwatch adds (its own `authwatch_*`, TLS series on a failed handshake) are
/// allowed and printed.
const KNOWN_DIFFERENCES: &[(&str, Diff, &str)] = &[
    // A newer label, not a missing one: the Debian package is 0.23, older than the label.
    (
        "probe_ssl_last_chain_info",
        Diff::ExtraLabel("serialnumber"),
        "blackbox added serialnumber after 0.23 (prometheus/blackbox_exporter#1333); authwatch has the newer label set",
    ),
];

struct Blackbox {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Blackbox {
    /// Starts the real exporter on 127.0.0.1 with `config` as its blackbox.yml.
    async fn start(config: &str) -> Blackbox {
        let dir = tempfile::tempdir().expect("temp dir for blackbox");
        let config_path = dir.path().join("blackbox.yml");
        std::fs::write(&config_path, config).expect("write blackbox.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = dir.path().join("blackbox.log");
        let log_file = std::fs::File::create(&log).expect("blackbox log");
        let mut cmd = Command::new(BLACKBOX_BIN);
        // A developer's proxy must not sit between blackbox and the loopback targets.
        for var in [
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        let child = cmd
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {BLACKBOX_BIN} ({e}); install the Debian `prometheus-blackbox-exporter` package (scripts/test.sh does)")
            });
        let b = Blackbox {
            child,
            addr,
            log,
            _dir: dir,
        };
        for _ in 0..300 {
            if let Ok((200, _, _)) = http_get(addr, "/metrics", None).await {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("blackbox not ready in 30 s:\n{}", b.logs());
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One target of one module, and whether the probe should pass.
struct Case {
    module: &'static str,
    /// A short name for the table.
    what: &'static str,
    target: String,
    success: bool,
}

/// The standard blackbox scrape job, as its README writes it; the two exporters' jobs are
/// this text with nothing but the job name and the exporter's address changed.
fn job(job_name: &str, module: &str, targets: &[&str], exporter: SocketAddr) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "  - job_name: {job_name}
    metrics_path: /probe
    params:
      module: [{module}]
    static_configs:
      - targets: [{targets}]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {exporter}
",
        targets = targets.join(", ")
    )
}

/// One exporter's answer for one target: series name → its samples' labels (without `job`,
/// `instance`, `__name__`) and values.
type Answer = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Every series of `job` by instance, as Prometheus stored them.
async fn series_of(prom: &Prometheus, job: &str) -> BTreeMap<String, Answer> {
    let mut out: BTreeMap<String, Answer> = BTreeMap::new();
    for s in prom.query(&format!("{{job=\"{job}\"}}")).await {
        let Value::Object(metric) = &s["metric"] else {
            panic!("no metric in {s}");
        };
        let mut labels: BTreeMap<String, String> = metric
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let name = labels.remove("__name__").unwrap_or_default();
        let instance = labels.remove("instance").unwrap_or_default();
        labels.remove("job");
        let value: f64 = s["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        out.entry(instance)
            .or_default()
            .entry(name)
            .or_default()
            .push((labels, value));
    }
    out
}

/// The shape of one series: its label names, each with its values if it is a `VALUE_LABELS`
/// label (else none).
type Shape = BTreeMap<String, BTreeSet<String>>;

fn shape(samples: &[(BTreeMap<String, String>, f64)]) -> Shape {
    let mut names = Shape::new();
    for (labels, _) in samples {
        for (k, v) in labels {
            let values = names.entry(k.clone()).or_default();
            if VALUE_LABELS.contains(&k.as_str()) {
                values.insert(v.clone());
            }
        }
    }
    names
}

fn show(shape: Option<&Shape>) -> String {
    let Some(shape) = shape else {
        return "(absent)".into();
    };
    if shape.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = shape
        .iter()
        .map(|(k, vs)| {
            if vs.is_empty() {
                k.clone()
            } else {
                let vs: Vec<&str> = vs.iter().map(String::as_str).collect();
                format!("{k}={{{}}}", vs.join(","))
            }
        })
        .collect();
    parts.join(" ")
}

fn only_value(a: &Answer, name: &str) -> Option<f64> {
    a.get(name).and_then(|s| s.first()).map(|(_, v)| *v)
}

fn label_values(a: &Answer, name: &str, label: &str) -> BTreeSet<String> {
    a.get(name)
        .into_iter()
        .flatten()
        .filter_map(|(l, _)| l.get(label).cloned())
        .collect()
}

/// The known difference that explains authwatch's `aw` where blackbox has `bb`, if one does.
fn explained(name: &str, bb: &Shape, aw: Option<&Shape>) -> Option<Diff> {
    KNOWN_DIFFERENCES
        .iter()
        .filter(|(n, ..)| *n == name)
        .map(|(_, d, _)| *d)
        .find(|d| match (d, aw) {
            (Diff::ExtraLabel(l), Some(aw)) => {
                let mut without = aw.clone();
                without.remove(*l).is_some() && without == *bb
            }
            _ => false,
        })
}

fn why(name: &str, diff: Diff) -> &'static str {
    KNOWN_DIFFERENCES
        .iter()
        .find(|(n, d, _)| *n == name && *d == diff)
        .map_or("", |(.., why)| *why)
}

/// Column `col` of one module's per-target rows `[target, blackbox, authwatch, verdict]`: the
/// one value, or each distinct value with the targets that gave it.
fn summary(per: &[[String; 4]], col: usize) -> String {
    let distinct: BTreeSet<&String> = per.iter().map(|t| &t[col]).collect();
    if distinct.len() == 1 {
        return distinct.into_iter().next().cloned().unwrap_or_default();
    }
    let parts: Vec<String> = distinct
        .iter()
        .map(|v| {
            let whats: Vec<&str> = per
                .iter()
                .filter(|t| &t[col] == *v)
                .map(|t| t[0].as_str())
                .collect();
            format!("{v} ({})", whats.join("; "))
        })
        .collect();
    parts.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackbox_scrape_config_gets_the_same_series_from_authwatch() {
    let pki = TestPki::new();
    let leaf = pki.good_default();
    let untrusted = pki.unknown_ca(DEFAULT_NAMES);
    let page = |req: &common::http::RequestInfo| {
        let date = if req.path_only() == "/bad-date" {
            "yesterday, about noon"
        } else {
            LAST_MODIFIED
        };
        ResponseSpec::text(200, "text/plain", "ok\n").header("Last-Modified", date)
    };
    let http = TestServer::start(page).await;
    let https = TestServer::start_tls(&leaf, page).await;
    let https_untrusted = TestServer::start_tls(&untrusted, page).await;
    // A port nothing listens on any more: connecting is refused.
    let refused = free_port();
    let dns = DnsServer::with_zone([(
        "clerk.test",
        Behavior::a([Ipv4Addr::new(192, 0, 2, 7), Ipv4Addr::new(192, 0, 2, 8)]),
    )])
    .await;
    let ca = pki.ca_pem_path().display().to_string();

    // http_2xx, http_post_2xx and tcp_connect are blackbox's defaults (Debian's blackbox.yml)
    // and authwatch's built-ins, so authwatch's config does not name them. https_2xx (trusting
    // the test CA) and the DNS modules are written in each exporter's own form, alike.
    let blackbox_yml = format!(
        "modules:
  http_2xx:
    prober: http
  http_post_2xx:
    prober: http
    http:
      method: POST
  tcp_connect:
    prober: tcp
  https_2xx:
    prober: http
    http:
      tls_config:
        ca_file: {ca}
  dns_udp:
    prober: dns
    dns:
      query_name: clerk.test
      query_type: A
  dns_missing:
    prober: dns
    dns:
      query_name: missing.test
      query_type: A
"
    );
    let authwatch_yml = format!(
        "probe_allowlist: [\"127.0.0.1:*\"]
modules:
  https_2xx:
    https: {{}}
    connection: {{tls: {{ca_file: {ca}}}}}
  dns_udp: {{dns: {{query_name: clerk.test, query_type: A}}}}
  dns_missing: {{dns: {{query_name: missing.test, query_type: A}}}}
probes: []
"
    );
    let cases = vec![
        Case {
            module: "http_2xx",
            what: "http",
            target: http.url("/"),
            success: true,
        },
        Case {
            module: "http_2xx",
            what: "http, bad Last-Modified",
            target: http.url("/bad-date"),
            success: true,
        },
        Case {
            module: "http_2xx",
            what: "https, CA not given",
            target: https.url("/"),
            success: false,
        },
        Case {
            module: "http_post_2xx",
            what: "http",
            target: http.url("/"),
            success: true,
        },
        Case {
            module: "https_2xx",
            what: "https",
            target: https.url("/"),
            success: true,
        },
        Case {
            module: "https_2xx",
            what: "https, untrusted CA",
            target: https_untrusted.url("/"),
            success: false,
        },
        Case {
            module: "tcp_connect",
            what: "tcp",
            target: format!("127.0.0.1:{}", http.port()),
            success: true,
        },
        Case {
            module: "tcp_connect",
            what: "tcp, refused",
            target: format!("127.0.0.1:{refused}"),
            success: false,
        },
        Case {
            module: "dns_udp",
            what: "dns, 2 A records",
            target: dns.addr().to_string(),
            success: true,
        },
        Case {
            module: "dns_missing",
            what: "dns, NXDOMAIN",
            target: dns.addr().to_string(),
            success: false,
        },
    ];

    let blackbox = Blackbox::start(&blackbox_yml).await;
    let authwatch = Daemon::start(&authwatch_yml, &[]).await;
    let modules: BTreeSet<&str> = cases.iter().map(|c| c.module).collect();
    let mut scrape_configs = String::new();
    for m in &modules {
        let targets: Vec<&str> = cases
            .iter()
            .filter(|c| c.module == *m)
            .map(|c| c.target.as_str())
            .collect();
        scrape_configs.push_str(&job(&format!("blackbox_{m}"), m, &targets, blackbox.addr));
        scrape_configs.push_str(&job(
            &format!("authwatch_{m}"),
            m,
            &targets,
            authwatch.addr(),
        ));
    }
    // A 2 s timeout leaves each exporter 1.5 s (both take 0.5 s off Prometheus's header).
    let prom = Prometheus::start_with_config(&format!(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n{scrape_configs}"
    ))
    .await;
    // Every target scraped through both exporters (`up` is there after a scrape even when it
    // failed, so a failure is reported with both exporters' logs rather than as a timeout).
    let up = prom
        .wait_query(
            "up",
            |r| r.len() == 2 * cases.len(),
            Duration::from_secs(30),
        )
        .await;
    for u in &up {
        assert_eq!(
            u["value"][1],
            "1",
            "a scrape failed: {u}\nblackbox:\n{}\nauthwatch:\n{}",
            blackbox.logs(),
            authwatch.logs()
        );
    }
    // A scrape is stored whole, so with every target's first scrape in, all series are there.
    let success = prom.query("probe_success").await;
    assert_eq!(success.len(), 2 * cases.len(), "{success:#?}");

    let mut by_job: BTreeMap<String, BTreeMap<String, Answer>> = BTreeMap::new();
    for m in &modules {
        for exporter in ["blackbox", "authwatch"] {
            let j = format!("{exporter}_{m}");
            by_job.insert(j.clone(), series_of(&prom, &j).await);
        }
    }
    let empty = Answer::new();
    // (module, series) → per target: [target, blackbox's shape, authwatch's, verdict]; keyed
    // by the module's first case first, so the table keeps the cases' order.
    let order = |m: &str| cases.iter().position(|c| c.module == m).unwrap_or(0);
    let mut seen: BTreeMap<(usize, &str, String), Vec<[String; 4]>> = BTreeMap::new();
    let mut extras = Vec::new();
    let mut failures = Vec::new();
    let mut allowed = BTreeSet::new();
    for c in &cases {
        let bb = by_job[&format!("blackbox_{}", c.module)]
            .get(&c.target)
            .unwrap_or(&empty);
        let aw = by_job[&format!("authwatch_{}", c.module)]
            .get(&c.target)
            .unwrap_or(&empty);
        let names: BTreeSet<&String> = bb
            .keys()
            .chain(aw.keys())
            .filter(|n| !SCRAPE_SERIES.contains(&n.as_str()))
            .collect();
        for name in names {
            let (b, a) = (
                bb.get(name).map(|s| shape(s)),
                aw.get(name).map(|s| shape(s)),
            );
            let verdict = match (&b, &a) {
                (Some(b), Some(a)) if b == a => "yes".to_string(),
                (None, _) => {
                    extras.push(format!("{} / {}: {name}", c.module, c.what));
                    "authwatch only".into()
                }
                (Some(b), a) => match explained(name, b, a.as_ref()) {
                    Some(d) => {
                        allowed.insert((name.clone(), d));
                        "no (known)".into()
                    }
                    None => {
                        failures.push(format!(
                            "{} / {}: {name}: blackbox {}, authwatch {}",
                            c.module,
                            c.what,
                            show(Some(b)),
                            show(a.as_ref())
                        ));
                        "NO".into()
                    }
                },
            };
            seen.entry((order(c.module), c.module, name.clone()))
                .or_default()
                .push([
                    c.what.to_string(),
                    show(b.as_ref()),
                    show(a.as_ref()),
                    verdict,
                ]);
        }
    }
    // One row per module and series; where targets of a module differ, each is named.
    let rows: Vec<Vec<String>> = seen
        .iter()
        .map(|((_, module, name), per)| {
            // A series not on every target of its module names the targets it was on.
            let of_module: Vec<&str> = cases
                .iter()
                .filter(|c| c.module == *module)
                .map(|c| c.what)
                .collect();
            let mut verdict = summary(per, 3);
            if per.len() < of_module.len() && !verdict.contains('(') {
                let on: Vec<&str> = per.iter().map(|t| t[0].as_str()).collect();
                verdict = format!("{verdict} ({})", on.join("; "));
            }
            vec![
                module.to_string(),
                name.clone(),
                summary(per, 1),
                summary(per, 2),
                verdict,
            ]
        })
        .collect();
    let targets: Vec<Vec<String>> = cases
        .iter()
        .map(|c| {
            vec![
                c.module.to_string(),
                c.what.to_string(),
                if c.success { "pass" } else { "fail" }.to_string(),
            ]
        })
        .collect();
    println!(
        "\n{}",
        markdown_table(&["module", "target", "expected"], &targets, false)
    );
    println!(
        "{}",
        markdown_table(
            &[
                "module",
                "series",
                "blackbox labels",
                "authwatch labels",
                "same?"
            ],
            &rows,
            false
        )
    );
    println!(
        "authwatch-only series (allowed):\n  {}",
        extras.join("\n  ")
    );
    println!("known differences seen:");
    for (name, diff) in &allowed {
        println!("  {name} ({diff:?}): {}", why(name, *diff));
    }

    // probe_success agrees, and is what each case should give.
    let mut values = Vec::new();
    for c in &cases {
        let bb = &by_job[&format!("blackbox_{}", c.module)][&c.target];
        let aw = &by_job[&format!("authwatch_{}", c.module)][&c.target];
        let want = if c.success { 1.0 } else { 0.0 };
        for (who, a) in [("blackbox", bb), ("authwatch", aw)] {
            if only_value(a, "probe_success") != Some(want) {
                failures.push(format!(
                    "{} {}: {who} probe_success {:?}, want {want}",
                    c.module,
                    c.what,
                    only_value(a, "probe_success")
                ));
            }
        }
        for name in EXACT_VALUES {
            let (b, a) = (only_value(bb, name), only_value(aw, name));
            if b.is_some() || a.is_some() {
                values.push(vec![
                    c.module.to_string(),
                    c.what.to_string(),
                    name.to_string(),
                    format!("{b:?}"),
                    format!("{a:?}"),
                    if b == a { "yes" } else { "no" }.to_string(),
                ]);
            }
            // authwatch may add a series blackbox leaves out, but never a different value.
            if b.is_some() && b != a {
                failures.push(format!(
                    "{} {}: {name} blackbox {b:?}, authwatch {a:?}",
                    c.module, c.what
                ));
            }
        }
        let (b, a) = (
            label_values(bb, "probe_ssl_last_chain_info", "fingerprint_sha256"),
            label_values(aw, "probe_ssl_last_chain_info", "fingerprint_sha256"),
        );
        if !b.is_empty() || !a.is_empty() {
            values.push(vec![
                c.module.to_string(),
                c.what.to_string(),
                "probe_ssl_last_chain_info{fingerprint_sha256}".into(),
                format!("{b:?}"),
                format!("{a:?}"),
                "yes".to_string(),
            ]);
        }
        if !b.is_empty() && b != a {
            failures.push(format!(
                "{} {}: fingerprint blackbox {b:?}, authwatch {a:?}",
                c.module, c.what
            ));
        }
    }
    println!(
        "\n{}",
        markdown_table(
            &[
                "module",
                "target",
                "series",
                "blackbox",
                "authwatch",
                "same?"
            ],
            &values,
            false
        )
    );

    // The values themselves, so agreement is not two exporters being wrong alike.
    let leaf_fingerprint: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.cert_der.as_ref())
            .as_ref()
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
    let pick = |module: &str, target: &str, exporter: &str| -> &Answer {
        &by_job[&format!("{exporter}_{module}")][target]
    };
    for exporter in ["blackbox", "authwatch"] {
        let ok = pick("http_2xx", &http.url("/"), exporter);
        assert_eq!(
            only_value(ok, "probe_http_last_modified_timestamp_seconds"),
            Some(LAST_MODIFIED_UNIX),
            "{exporter}"
        );
        let bad = pick("http_2xx", &http.url("/bad-date"), exporter);
        assert_eq!(
            only_value(bad, "probe_http_last_modified_timestamp_seconds"),
            None,
            "{exporter}: a Last-Modified that is not a date gives no series"
        );
        let tls = pick("https_2xx", &https.url("/"), exporter);
        assert_eq!(
            label_values(tls, "probe_ssl_last_chain_info", "fingerprint_sha256"),
            BTreeSet::from([leaf_fingerprint.clone()]),
            "{exporter}"
        );
        let dns_ok = pick("dns_udp", &dns.addr().to_string(), exporter);
        assert_eq!(
            only_value(dns_ok, "probe_dns_answer_rrs"),
            Some(2.0),
            "{exporter}"
        );
    }

    // Every known difference must still be one; a stale entry would hide nothing but mislead.
    for (name, diff, _) in KNOWN_DIFFERENCES {
        if !allowed.contains(&(name.to_string(), *diff)) {
            failures.push(format!(
                "KNOWN_DIFFERENCES lists {name} ({diff:?}), which no case showed"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "authwatch differs from blackbox_exporter:\n  {}",
        failures.join("\n  ")
    );
}
