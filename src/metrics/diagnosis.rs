//! The diagnosis families of `/metrics`: active causes with their since-times and evidence,
//! coverage, auth health, the static cause descriptions and the configured thresholds.

use crate::diagnosis::{Cause, MAX_EVIDENCE};
use crate::encode::{Encoder, Family, family, flag};
use crate::metrics::{Globals, unix};

family!(
    DIAGNOSIS,
    "authwatch_diagnosis",
    Gauge,
    "1 for each active cause of an auth outage (consequences of an active connectivity cause are not repeated), 0 for the others."
);

family!(
    DIAGNOSIS_SINCE,
    "authwatch_diagnosis_since_timestamp_seconds",
    Gauge,
    "Unix time each active cause became active (absent for inactive causes)."
);

family!(
    DIAGNOSIS_EVIDENCE,
    "authwatch_diagnosis_evidence",
    Gauge,
    "1 for each fact behind an active cause (at most 5 per cause): the probe and what it showed; cause=\"unexplained\" lists failures no cause explains."
);

family!(
    COVERAGE,
    "authwatch_coverage",
    Gauge,
    "Whether any probe watches the scope: clerk_instance (a jwks probe of your instance), api (a probe with role api)."
);

family!(
    AUTH_HEALTHY,
    "authwatch_auth_healthy",
    Gauge,
    "1 when every auth-critical probe succeeds and no cause other than an expiry warning is active."
);

family!(
    CAUSE_INFO,
    "authwatch_cause_info",
    Gauge,
    "Static description of every diagnosis cause: severity, summary and remediation (for dashboards)."
);

family!(
    THRESHOLD,
    "authwatch_diagnosis_threshold_seconds",
    Gauge,
    "Configured diagnosis thresholds, so alert rules can compare against the daemon's settings."
);

pub const FAMILIES: &[&Family] = &[
    &DIAGNOSIS,
    &DIAGNOSIS_SINCE,
    &DIAGNOSIS_EVIDENCE,
    &COVERAGE,
    &AUTH_HEALTHY,
    &CAUSE_INFO,
    &THRESHOLD,
];

pub fn render(e: &mut Encoder, g: &Globals) {
    e.header(&DIAGNOSIS);
    for c in Cause::ALL {
        let v = flag(g.diagnosis.causes.contains(&c));
        e.sample(&DIAGNOSIS, &[("cause", c.as_label())], v);
    }
    e.header(&DIAGNOSIS_SINCE);
    for (c, t) in &g.diagnosis.since {
        e.sample(&DIAGNOSIS_SINCE, &[("cause", c.as_label())], unix(*t));
    }
    e.header(&DIAGNOSIS_EVIDENCE);
    let residue = ("unexplained", &g.diagnosis.residue);
    let facts = g
        .diagnosis
        .evidence
        .iter()
        .map(|(c, ev)| (c.as_label(), ev));
    for (cause, ev) in facts.chain([residue]) {
        for f in ev.iter().take(MAX_EVIDENCE) {
            let labels = [
                ("cause", cause),
                ("probe", f.probe.as_str()),
                ("detail", f.detail.as_str()),
            ];
            e.sample(&DIAGNOSIS_EVIDENCE, &labels, 1.0);
        }
    }
    e.header(&COVERAGE);
    let cov = g.diagnosis.coverage;
    for (scope, on) in [("clerk_instance", cov.clerk_instance), ("api", cov.api)] {
        e.sample(&COVERAGE, &[("scope", scope)], flag(on));
    }
    e.header(&AUTH_HEALTHY);
    e.sample(&AUTH_HEALTHY, &[], flag(g.diagnosis.auth_healthy));
    e.header(&CAUSE_INFO);
    for c in Cause::ALL {
        let labels = [
            ("cause", c.as_label()),
            ("severity", c.severity()),
            ("summary", c.summary()),
            ("remediation", c.remediation()),
        ];
        e.sample(&CAUSE_INFO, &labels, 1.0);
    }
    e.header(&THRESHOLD);
    let s = g.diagnosis_spec;
    for (name, d) in [
        ("clock_skew_warning", s.clock_skew_warning),
        ("clock_skew_critical", s.clock_skew_critical),
        ("jwks_max_age", s.jwks_max_age),
        ("cert_expiry_warning", s.cert_expiry_warning),
    ] {
        e.sample(&THRESHOLD, &[("threshold", name)], d.as_secs_f64());
    }
}
