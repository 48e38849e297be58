//! The shipped alert rules (deploy/prometheus/alerts.yml) as the rule, runbook and Alertmanager
//! tests read them, and the naming that ties a cause to its alert. Included by path
//! (`#[path = "common/rules.rs"] mod rules;`) so those tests need none of the fixtures; each
//! reads a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use authwatch::diagnosis::Cause;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct RuleFile {
    pub groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
pub struct Group {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
pub struct Rule {
    pub alert: Option<String>,
    pub record: Option<String>,
    #[serde(default)]
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// deploy/prometheus/alerts.yml, parsed.
pub fn load() -> RuleFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

impl RuleFile {
    /// The alerting rules in file order, by name.
    pub fn alerts(&self) -> Vec<(&str, &Rule)> {
        self.groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter_map(|r| r.alert.as_deref().map(|name| (name, r)))
            .collect()
    }

    /// The alerting rules, owned, by name.
    pub fn into_alerts(self) -> BTreeMap<String, Rule> {
        self.groups
            .into_iter()
            .flat_map(|g| g.rules)
            .filter_map(|r| r.alert.clone().map(|name| (name, r)))
            .collect()
    }
}

/// `dns_resolver_broken` → `AuthDnsResolverBroken`; a leading `auth` is not repeated:
/// `auth_fail_open` → `AuthFailOpen`.
pub fn alert_name(cause: Cause) -> String {
    let label = cause.as_label();
    let mut name = String::from("Auth");
    for word in label.strip_prefix("auth_").unwrap_or(label).split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}
