//! The status page at `/` (server-rendered HTML, no external assets, refreshing itself) and
//! the same facts as JSON at `/api/v1/status`.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::diagnosis::{Cause, Diagnosis};
use crate::outcome::{Details, Phase};
use crate::store::ProbeState;

/// How often the page reloads itself, in seconds.
const REFRESH_SECONDS: u32 = 15;

fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn secs_between(later: SystemTime, earlier: SystemTime) -> f64 {
    later
        .duration_since(earlier)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn probe_json(p: &ProbeState, now: SystemTime) -> Value {
    let last = p.last.as_ref();
    let state = match last {
        None => "pending",
        Some(l) if l.failure.is_none() => "ok",
        Some(_) => "failing",
    };
    let mut v = json!({
        "name": p.name,
        "kind": p.kind.as_label(),
        "role": p.role.as_label(),
        "state": state,
        "reason": last.and_then(|l| l.failure).map(|r| r.as_label()),
        "error": last.filter(|l| l.failure.is_some()).map(|l| l.message.clone()),
        "runs": p.runs,
        "last_run": last.map(|l| ts(l.finished_at)),
        "last_success": p.last_success.map(ts),
        "duration_seconds": last.map(|l| l.duration.as_secs_f64()),
    });
    let Some(l) = last else {
        return v;
    };
    let phases: serde_json::Map<String, Value> = Phase::ALL
        .iter()
        .filter_map(|ph| {
            l.trace
                .phase(*ph)
                .map(|d| (ph.as_label().to_string(), json!(d.as_secs_f64())))
        })
        .collect();
    v["phases"] = Value::Object(phases);
    v["status_code"] = json!(l.trace.status_code);
    v["clock_offset_seconds"] = json!(l.trace.clock_offset);
    if let Some(tls) = &l.trace.tls {
        v["tls"] = json!({
            "version": tls.version,
            "verified": tls.verified,
            "leaf_not_after": tls.leaf_not_after,
            "earliest_not_after": tls.earliest_not_after,
        });
    }
    if p.jwks.last_success.is_some() || p.kind == crate::failure::Kind::Jwks {
        let since = p.jwks.last_success.unwrap_or(p.created_at);
        v["jwks"] = json!({
            "kids": p.jwks.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
            "age_seconds": secs_between(now, since),
            "last_success": p.jwks.last_success.map(ts),
            "rotations": p.jwks.rotations,
            "pinned_missing": p.jwks.pinned_missing,
        });
    }
    match &l.details {
        Details::Dns(lookups) => {
            v["dns"] = lookups
                .iter()
                .map(|d| {
                    json!({"resolver": d.resolver, "name": d.name, "type": d.rtype, "rcode": d.rcode,
                           "answers": d.answers, "ok": d.failure.is_none()})
                })
                .collect();
        }
        Details::ApiHealth { checks, truncated } => {
            v["checks"] = checks
                .iter()
                .map(|(n, ok)| json!({"name": n, "ok": ok}))
                .collect();
            v["checks_truncated"] = json!(truncated);
        }
        Details::Auth(a) => {
            v["auth"] = json!({
                "fail_open": a.fail_open,
                "token_verified": a.token_verified,
                "kid_known": a.kid_known,
                "cases": a.cases.iter().map(|c| json!({"case": c.case.as_label(), "passed": c.passed,
                    "status": c.status, "duration_seconds": c.duration.as_secs_f64()})).collect::<Vec<_>>(),
            });
        }
        Details::Jwks(_) | Details::None => {}
    }
    v
}

/// The status as JSON.
pub fn json(probes: &[ProbeState], diagnosis: &Diagnosis, now: SystemTime) -> Value {
    let offsets: Vec<f64> = probes
        .iter()
        .filter_map(|p| p.last.as_ref().and_then(|l| l.trace.clock_offset))
        .collect();
    let clock = offsets
        .iter()
        .copied()
        .fold(None, |acc: Option<f64>, o| match acc {
            Some(a) if a.abs() >= o.abs() => Some(a),
            _ => Some(o),
        });
    json!({
        "generated_at": ts(now),
        "version": env!("CARGO_PKG_VERSION"),
        "auth_healthy": diagnosis.auth_healthy,
        "unexplained": !diagnosis.auth_healthy && diagnosis.causes.is_empty() && probes.iter().any(|p| p.last.is_some()),
        "causes": diagnosis.causes.iter().map(|c| cause_json(*c)).collect::<Vec<_>>(),
        "clock_offset_seconds": clock,
        "probes": probes.iter().map(|p| probe_json(p, now)).collect::<Vec<_>>(),
    })
}

fn cause_json(c: Cause) -> Value {
    json!({"cause": c.as_label(), "severity": c.severity(), "summary": c.summary(), "remediation": c.remediation()})
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn fmt_secs(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.abs() < 1.0 => format!("{:.0} ms", x * 1000.0),
        Some(x) => format!("{x:.1} s"),
    }
}

const STYLE: &str = "
*{box-sizing:border-box}body{font:15px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{padding:14px 16px;color:#fff}header h1{margin:0;font-size:20px}header p{margin:4px 0 0}
.ok{background:#1f7a3f}.bad{background:#b3261e}.unexplained{background:#8a5a00}
main{padding:12px;max-width:1100px;margin:auto}
section{background:#fff;border-radius:8px;padding:12px;margin-bottom:12px;box-shadow:0 1px 2px #0002}
h2{font-size:16px;margin:0 0 8px}.cause{border-left:4px solid #b3261e;padding:6px 10px;margin:8px 0;background:#fdf3f2}
.cause.warning{border-color:#c77700;background:#fff8ec}.cause b{display:block}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px 4px;border-bottom:1px solid #e3e5ea;vertical-align:top}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;color:#fff}
.b-ok{background:#1f7a3f}.b-failing{background:#b3261e}.b-pending{background:#6b7280}
.err{color:#6b7280;font-size:13px;word-break:break-word}code{font-size:13px}
@media (max-width:640px){.wide{display:none}td,th{padding:6px 2px}}
";

/// The status page.
pub fn html(status: &Value) -> String {
    let healthy = status["auth_healthy"].as_bool().unwrap_or(false);
    let unexplained = status["unexplained"].as_bool().unwrap_or(false);
    let (class, title) = match (healthy, unexplained) {
        (true, _) => ("ok", "Auth healthy"),
        (false, true) => ("unexplained", "Auth unhealthy: unexplained"),
        (false, false) => ("bad", "Auth unhealthy"),
    };
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>authwatch: {title}</title><style>{STYLE}</style></head><body>\
<header id=\"auth-status\" class=\"{class}\" data-healthy=\"{healthy}\"><h1>{title}</h1><p>authwatch {} · {} · refreshes every {REFRESH_SECONDS} s</p></header><main>",
        esc(s(status, "version")),
        esc(s(status, "generated_at")),
    );
    let causes = status["causes"].as_array().cloned().unwrap_or_default();
    h.push_str("<section id=\"causes\"><h2>Diagnosis</h2>");
    if causes.is_empty() {
        h.push_str(if unexplained {
            "<p>Some auth-critical probe fails, but no known cause matches: see the failing probes below.</p>"
        } else {
            "<p>No active cause.</p>"
        });
    }
    for c in &causes {
        let _ = write!(
            h,
            "<div class=\"cause {}\" data-cause=\"{}\"><b>{}</b>{}<br><small>Fix: {}</small></div>",
            esc(s(c, "severity")),
            esc(s(c, "cause")),
            esc(s(c, "cause")),
            esc(s(c, "summary")),
            esc(s(c, "remediation")),
        );
    }
    if let Some(o) = status["clock_offset_seconds"].as_f64() {
        let _ = write!(
            h,
            "<p id=\"clock\">Clock offset: <b>{o:+.2} s</b> (local minus server; negative means this clock is behind)</p>"
        );
    }
    h.push_str("</section><section><h2>Probes</h2><table id=\"probes\"><thead><tr><th>Probe</th><th>State</th><th>Reason</th><th class=\"wide\">Last success</th><th class=\"wide\">Phases</th></tr></thead><tbody>");
    let probes = status["probes"].as_array().cloned().unwrap_or_default();
    for p in &probes {
        let state = s(p, "state");
        let phases = p["phases"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", fmt_secs(v.as_f64())))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr data-probe=\"{name}\" data-state=\"{state}\"><td><b>{name}</b><br><small>{kind}</small></td><td><span class=\"badge b-{state}\">{state}</span></td>\
<td><code>{reason}</code><div class=\"err\">{error}</div></td><td class=\"wide\">{last}</td><td class=\"wide\">{phases}</td></tr>",
            name = esc(s(p, "name")),
            kind = esc(s(p, "kind")),
            state = esc(state),
            reason = esc(s(p, "reason")),
            error = esc(s(p, "error")),
            last = esc(p["last_success"].as_str().unwrap_or("never")),
            phases = esc(&phases),
        );
    }
    h.push_str("</tbody></table></section>");
    let jwks: Vec<&Value> = probes.iter().filter(|p| p.get("jwks").is_some()).collect();
    if !jwks.is_empty() {
        h.push_str("<section id=\"jwks\"><h2>JWKS</h2><table><thead><tr><th>Probe</th><th>Kids</th><th>Age</th><th class=\"wide\">Rotations</th></tr></thead><tbody>");
        for p in jwks {
            let j = &p["jwks"];
            let kids: Vec<String> = j["kids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(esc).collect())
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr data-jwks=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"wide\">{}</td></tr>",
                esc(s(p, "name")),
                esc(s(p, "name")),
                kids.join("<br>"),
                fmt_secs(j["age_seconds"].as_f64()),
                j["rotations"].as_u64().unwrap_or(0),
            );
        }
        h.push_str("</tbody></table></section>");
    }
    h.push_str("<p><small><a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/status\">/api/v1/status</a></small></p></main></body></html>\n");
    h
}
