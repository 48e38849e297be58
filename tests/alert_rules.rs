//! Checks the Prometheus side in deploy/prometheus: promtool accepts the rules and the config and
//! passes the rule unit tests, and the alerts agree with the diagnosis causes of the daemon.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use authwatch::diagnosis::Cause;
use serde::Deserialize;

#[path = "common/rules.rs"]
mod rules;
use rules::alert_name;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn prometheus_dir() -> PathBuf {
    Path::new(ROOT).join("deploy/prometheus")
}

/// Runs promtool from the crate root and fails the test, with promtool's output, unless it
/// succeeds.
fn promtool<I, S>(args: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    let out = match std::process::Command::new("promtool")
        .args(&args)
        .current_dir(ROOT)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool is not installed: install the Debian `prometheus` package \
             (apt-get install prometheus), which provides /usr/bin/promtool"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "`promtool {}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        shown.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// The unit test files in deploy/prometheus/tests, sorted.
fn test_files() -> Vec<PathBuf> {
    let dir = prometheus_dir().join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule tests in {}", dir.display());
    files
}

#[derive(Debug, Deserialize)]
struct TestFile {
    #[serde(default)]
    group_eval_order: Vec<String>,
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
struct TestCase {
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Debug, Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<serde::de::IgnoredAny>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn promtool_check_rules() {
    promtool([
        "check",
        "rules",
        "--lint-fatal",
        "deploy/prometheus/alerts.yml",
    ]);
}

#[test]
fn promtool_check_config() {
    promtool(["check", "config", "deploy/prometheus/prometheus.yml"]);
}

#[test]
fn promtool_test_rules() {
    for file in test_files() {
        promtool([OsStr::new("test"), OsStr::new("rules"), file.as_os_str()]);
    }
}

#[test]
fn one_alert_per_cause_with_the_daemons_texts() {
    let file = rules::load();
    let alerts = file.alerts();
    for cause in Cause::ALL {
        let label = cause.as_label();
        let matching: Vec<_> = alerts
            .iter()
            .filter(|(_, r)| r.labels.get("cause").map(String::as_str) == Some(label))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "cause {label}: expected exactly one alert with labels.cause, found {:?}",
            matching.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        let (name, rule) = matching[0];
        assert_eq!(*name, alert_name(cause), "alert name for cause {label}");
        // Cause::severity(), or a template that escalates from it (clock skew turns critical
        // once tokens are rejected) and otherwise falls back to it.
        let severity = rule
            .labels
            .get("severity")
            .map(String::as_str)
            .unwrap_or("");
        let escalates = severity.starts_with("{{")
            && severity.contains("}}critical{{")
            && severity.ends_with(&format!("{{{{ else }}}}{}{{{{ end }}}}", cause.severity()));
        assert!(
            severity == cause.severity() || escalates,
            "{name}: severity must be Cause::severity() ({}), got {severity:?}",
            cause.severity()
        );
        assert_eq!(
            rule.annotations.get("remediation").map(String::as_str),
            Some(cause.remediation()),
            "{name}: remediation must be Cause::remediation() byte for byte"
        );
        assert_eq!(
            rule.annotations.get("summary").map(String::as_str),
            Some(cause.summary()),
            "{name}: summary must be Cause::summary()"
        );
        assert!(
            rule.expr.contains(&format!("cause=\"{label}\"")),
            "{name}: expr must select authwatch_diagnosis{{cause=\"{label}\"}}: {}",
            rule.expr
        );
    }
    let known: BTreeSet<&str> = Cause::ALL.iter().map(|c| c.as_label()).collect();
    for (name, rule) in &alerts {
        if let Some(cause) = rule.labels.get("cause") {
            assert!(
                known.contains(cause.as_str()),
                "{name}: cause {cause} is not in Cause::ALL"
            );
        }
    }
}

#[test]
fn every_alert_is_documented_and_unique() {
    let file = rules::load();
    assert!(
        file.groups.iter().any(|g| g.name == "authwatch.rules"),
        "the recording rules live in group authwatch.rules"
    );
    let mut names = BTreeSet::new();
    for (name, rule) in file.alerts() {
        assert!(names.insert(name), "alert {name} is defined twice");
        let severity = rule.labels.get("severity").map(String::as_str);
        // An alert aggregating cause alerts (AuthCauseSeenEverywhere) keeps their severity, one of
        // the two (its promtool tests check the value).
        let aggregated = severity == Some("{{ $labels.severity }}")
            && rule.expr.contains("severity)")
            && rule.expr.contains("ALERTS{");
        // An escalating template yields one of the two (its promtool tests check both).
        let escalating = severity.is_some_and(|s| {
            s.starts_with("{{ with ") && s.ends_with("}}critical{{ else }}warning{{ end }}")
        });
        assert!(
            matches!(severity, Some("critical" | "warning")) || aggregated || escalating,
            "{name}: severity must be critical or warning, got {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                rule.annotations
                    .get(key)
                    .is_some_and(|v| !v.trim().is_empty()),
                "{name}: annotation {key} is missing or empty"
            );
        }
    }
    for group in &file.groups {
        for rule in &group.rules {
            assert!(
                rule.alert.is_some() != rule.record.is_some(),
                "a rule of group {} must be either an alert or a recording rule",
                group.name
            );
            if let Some(record) = &rule.record {
                assert!(
                    record.split(':').count() >= 2,
                    "recording rule {record} does not follow level:metric:operations"
                );
            }
        }
    }
}

#[test]
fn every_alert_has_unit_tests_that_fire_and_stay_silent() {
    let file = rules::load();
    let (mut fired, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for path in test_files() {
        let tests: TestFile = serde_saphyr::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        // promtool evaluates groups in random order unless told; alerts that read a recorded
        // series would then flake by one evaluation.
        assert_eq!(
            tests.group_eval_order.first().map(String::as_str),
            Some("authwatch.rules"),
            "{}: group_eval_order must start with authwatch.rules",
            path.display()
        );
        for test in tests.tests.iter().flat_map(|t| &t.alert_rule_test) {
            if test.exp_alerts.is_empty() {
                silent.insert(test.alertname.clone());
            } else {
                fired.insert(test.alertname.clone());
            }
        }
    }
    for (name, _) in file.alerts() {
        assert!(fired.contains(name), "no unit test expects {name} to fire");
        assert!(
            silent.contains(name),
            "no unit test expects {name} to stay silent"
        );
    }
}
