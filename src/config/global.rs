//! The `global` and `diagnosis` sections: schedule, system files, trust stores, body limit,
//! and the diagnosis thresholds, each with its default defined here once.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use serde_saphyr::Spanned;

use crate::config::base::{ConfigError, Cx, Dur, Text, de_duration};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDiagnosis {
    clock_skew_warning: Option<Spanned<Dur>>,
    clock_skew_critical: Option<Spanned<Dur>>,
    #[serde(default, deserialize_with = "de_duration")]
    jwks_max_age: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    cert_expiry_warning: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    interval: Option<Spanned<Dur>>,
    timeout: Option<Spanned<Dur>>,
    jitter: Option<Spanned<f64>>,
    resolv_conf: Option<Text>,
    resolv_conf_port: Option<u16>,
    hosts_file: Option<Text>,
    trust_store_file: Option<Spanned<Text>>,
    reference_trust_store_file: Option<Spanned<Text>>,
    body_limit_bytes: Option<u64>,
    failure_series: Option<Spanned<Text>>,
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
    /// `failure_series: all` (the default): the one-hot `authwatch_probe_failure` carries a
    /// zero for every other reason of the kind; `active`: only the reason that is 1.
    pub failure_zeros: bool,
}

impl RawGlobal {
    pub fn validate(&self, cx: &Cx) -> Result<GlobalSpec, ConfigError> {
        let g = self;
        let interval = g
            .interval
            .as_ref()
            .map_or(Duration::from_secs(30), |s| s.value.0);
        let timeout = g
            .timeout
            .as_ref()
            .map_or(Duration::from_secs(10), |s| s.value.0);
        let jitter = g.jitter.as_ref().map_or(0.1, |s| s.value);
        // Each check points at the value the operator wrote; defaults always pass.
        if let Some(s) = g.jitter.as_ref().filter(|_| !(0.0..=0.5).contains(&jitter)) {
            return Err(cx.at(s, "global.jitter must be between 0 and 0.5"));
        }
        if let Some(s) = g
            .interval
            .as_ref()
            .filter(|_| interval < Duration::from_millis(100))
        {
            return Err(cx.at(s, "global.interval must be at least 100ms"));
        }
        if let Some(s) = g.timeout.as_ref().filter(|_| timeout.is_zero()) {
            return Err(cx.at(s, "global.timeout must be positive"));
        }
        let failure_zeros = match g.failure_series.as_ref().map(|s| s.value.0.as_str()) {
            None | Some("all") => true,
            Some("active") => false,
            Some(_) => {
                let at = g
                    .failure_series
                    .as_ref()
                    .map(|s| cx.at(s, "global.failure_series must be all or active"));
                return Err(
                    at.unwrap_or_else(|| cx.whole("global.failure_series must be all or active"))
                );
            }
        };
        let global = GlobalSpec {
            failure_zeros,
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
            trust_store_file: path_of(&g.trust_store_file),
            body_limit: g.body_limit_bytes.unwrap_or(1 << 20),
            reference_trust_store_file: path_of(&g.reference_trust_store_file),
        };
        for (key, raw) in [
            ("global.trust_store_file", &g.trust_store_file),
            (
                "global.reference_trust_store_file",
                &g.reference_trust_store_file,
            ),
        ] {
            if let (Some(s), Some(f)) = (raw, path_of(raw).filter(|f| !f.is_file())) {
                return Err(cx.at(s, format!("{key}: {} is not a regular file", f.display())));
            }
        }
        Ok(global)
    }
}

impl RawDiagnosis {
    pub fn validate(&self, cx: &Cx) -> Result<DiagnosisSpec, ConfigError> {
        let d = self;
        let diagnosis = DiagnosisSpec {
            clock_skew_warning: d
                .clock_skew_warning
                .as_ref()
                .map_or(Duration::from_secs(2), |s| s.value.0),
            clock_skew_critical: d
                .clock_skew_critical
                .as_ref()
                .map_or(Duration::from_secs(5), |s| s.value.0),
            jwks_max_age: d.jwks_max_age.unwrap_or(Duration::from_secs(600)),
            cert_expiry_warning: d
                .cert_expiry_warning
                .unwrap_or(Duration::from_secs(14 * 86_400)),
        };
        if diagnosis.clock_skew_warning > diagnosis.clock_skew_critical {
            let message = "diagnosis.clock_skew_warning must not exceed clock_skew_critical";
            // At least one of the two was written, or the defaults would agree.
            let written = d
                .clock_skew_warning
                .as_ref()
                .or(d.clock_skew_critical.as_ref());
            return Err(match written {
                Some(s) => cx.at(s, message),
                None => cx.whole(message),
            });
        }
        Ok(diagnosis)
    }
}

/// An optional path field; empty means unset.
fn path_of(raw: &Option<Spanned<Text>>) -> Option<PathBuf> {
    raw.as_ref()
        .map(|s| &s.value.0)
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
}
