//! The `global` and `diagnosis` sections: schedule, system files, trust stores, body limit,
//! and the diagnosis thresholds, each with its default defined here once.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::base::{ConfigError, Cx, Text, de_duration};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDiagnosis {
    #[serde(default, deserialize_with = "de_duration")]
    clock_skew_warning: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    clock_skew_critical: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    jwks_max_age: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    cert_expiry_warning: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    #[serde(default, deserialize_with = "de_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    timeout: Option<Duration>,
    jitter: Option<f64>,
    resolv_conf: Option<Text>,
    resolv_conf_port: Option<u16>,
    hosts_file: Option<Text>,
    trust_store_file: Option<Text>,
    reference_trust_store_file: Option<Text>,
    body_limit_bytes: Option<u64>,
}

/// Thresholds of the diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosisSpec {
    pub clock_skew_warning: Duration,
    pub clock_skew_critical: Duration,
    pub jwks_max_age: Duration,
    pub cert_expiry_warning: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalSpec {
    pub interval: Duration,
    pub timeout: Duration,
    pub jitter: f64,
    pub resolv_conf: PathBuf,
    pub resolv_conf_port: u16,
    pub hosts_file: PathBuf,
    pub trust_store_file: Option<PathBuf>,
    pub body_limit: u64,
    /// Roots to tell "CA certificates missing" from "TLS intercepted"; `None`: the bundled
    /// Mozilla set.
    pub reference_trust_store_file: Option<PathBuf>,
}

impl RawGlobal {
    pub fn validate(&self, cx: &Cx) -> Result<GlobalSpec, ConfigError> {
        let g = self;
        let interval = g.interval.unwrap_or(Duration::from_secs(30));
        let timeout = g.timeout.unwrap_or(Duration::from_secs(10));
        let jitter = g.jitter.unwrap_or(0.1);
        if !(0.0..=0.5).contains(&jitter) {
            return Err(cx.whole("global.jitter must be between 0 and 0.5"));
        }
        if interval < Duration::from_millis(100) {
            return Err(cx.whole("global.interval must be at least 100ms"));
        }
        if timeout.is_zero() {
            return Err(cx.whole("global.timeout must be positive"));
        }
        let global = GlobalSpec {
            interval,
            timeout,
            jitter,
            resolv_conf: g
                .resolv_conf
                .as_ref()
                .map(|t| PathBuf::from(&t.0))
                .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf")),
            resolv_conf_port: g.resolv_conf_port.unwrap_or(53),
            hosts_file: g
                .hosts_file
                .as_ref()
                .map(|t| PathBuf::from(&t.0))
                .unwrap_or_else(|| PathBuf::from("/etc/hosts")),
            trust_store_file: g
                .trust_store_file
                .as_ref()
                .filter(|t| !t.0.is_empty())
                .map(|t| PathBuf::from(&t.0)),
            body_limit: g.body_limit_bytes.unwrap_or(1 << 20),
            reference_trust_store_file: g
                .reference_trust_store_file
                .as_ref()
                .filter(|t| !t.0.is_empty())
                .map(|t| PathBuf::from(&t.0)),
        };
        for (key, file) in [
            ("global.trust_store_file", &global.trust_store_file),
            (
                "global.reference_trust_store_file",
                &global.reference_trust_store_file,
            ),
        ] {
            if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
                return Err(cx.whole(format!("{key}: {} is not a regular file", f.display())));
            }
        }
        Ok(global)
    }
}

impl RawDiagnosis {
    pub fn validate(&self, cx: &Cx) -> Result<DiagnosisSpec, ConfigError> {
        let d = self;
        let diagnosis = DiagnosisSpec {
            clock_skew_warning: d.clock_skew_warning.unwrap_or(Duration::from_secs(2)),
            clock_skew_critical: d.clock_skew_critical.unwrap_or(Duration::from_secs(5)),
            jwks_max_age: d.jwks_max_age.unwrap_or(Duration::from_secs(600)),
            cert_expiry_warning: d
                .cert_expiry_warning
                .unwrap_or(Duration::from_secs(14 * 86_400)),
        };
        if diagnosis.clock_skew_warning > diagnosis.clock_skew_critical {
            return Err(
                cx.whole("diagnosis.clock_skew_warning must not exceed clock_skew_critical")
            );
        }
        Ok(diagnosis)
    }
}
