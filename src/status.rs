//! The status page at `/` (server-rendered HTML, no external assets, refreshing itself) and
//! the same facts as JSON at `/api/v1/status`, both from one typed view of the state.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::config::base::Role;
use crate::diagnosis::{Cause, Diagnosis, Evidence, worst_clock_offset};
use crate::net::trace::Phase;
use crate::probe::kind_status;
use crate::probe::state::ProbeState;

/// How often the page reloads itself, in seconds.
const REFRESH_SECONDS: u32 = 15;

fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The whole status.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub generated_at: String,
    pub version: &'static str,
    pub auth_healthy: bool,
    /// Unhealthy with no known cause.
    pub unexplained: bool,
    pub causes: Vec<CauseView>,
    /// Failures no cause explains.
    pub unexplained_evidence: Vec<EvidenceView>,
    /// Auth-critical probes waiting for a (fresh enough) run.
    pub pending: Vec<String>,
    pub coverage: CoverageView,
    /// The offset furthest from zero any probe measured.
    pub clock_offset_seconds: Option<f64>,
    pub probes: Vec<ProbeRow>,
}

#[derive(Debug, Serialize)]
pub struct CauseView {
    pub cause: &'static str,
    pub title: &'static str,
    pub severity: &'static str,
    pub summary: &'static str,
    pub remediation: &'static str,
    /// When it became active.
    pub since: Option<String>,
    /// What it rests on: `probe: detail`.
    pub evidence: Vec<EvidenceView>,
}

#[derive(Debug, Serialize)]
pub struct EvidenceView {
    pub probe: String,
    pub detail: String,
}

impl EvidenceView {
    fn of(e: &Evidence) -> EvidenceView {
        EvidenceView {
            probe: e.probe.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// What of the user's setup is watched.
#[derive(Debug, Serialize)]
pub struct CoverageView {
    pub clerk_instance: bool,
    pub api: bool,
}

/// One probe.
#[derive(Debug, Serialize)]
pub struct ProbeRow {
    pub name: String,
    pub kind: &'static str,
    pub role: &'static str,
    /// What it checks: the URL, `host:port` or the names looked up.
    pub target: String,
    /// The cause whose evidence names this probe, so the row says what the card says.
    pub explained_by: Option<&'static str>,
    /// The latest runs, oldest first.
    pub history: Vec<HistoryPoint>,
    /// `pending`, `ok` or `failing`.
    pub state: &'static str,
    pub reason: Option<&'static str>,
    pub error: Option<String>,
    pub runs: u64,
    pub last_run: Option<String>,
    pub last_success: Option<String>,
    pub duration_seconds: Option<f64>,
    #[serde(flatten)]
    pub latest: Option<LatestRun>,
    /// The kind's own keys (`dns`, `jwks`, `checks`, `auth`, …).
    #[serde(flatten)]
    pub details: Map<String, Value>,
    /// The kind's one-line summary for the page.
    #[serde(skip)]
    pub note: Option<String>,
}

/// One past run, for the history strip.
#[derive(Debug, Serialize)]
pub struct HistoryPoint {
    pub at: u32,
    pub millis: u16,
    pub ok: bool,
}

/// What the latest run's trace showed.
#[derive(Debug, Serialize)]
pub struct LatestRun {
    /// Seconds per phase entered, in phase order.
    #[serde(serialize_with = "as_map")]
    pub phases: Vec<(&'static str, f64)>,
    pub status_code: Option<u16>,
    pub clock_offset_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsView>,
}

#[derive(Debug, Serialize)]
pub struct TlsView {
    pub version: Option<String>,
    pub verified: bool,
    pub leaf_not_after: Option<i64>,
    pub earliest_not_after: Option<i64>,
}

fn as_map<S: Serializer>(pairs: &[(&'static str, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (*k, *v)))
}

/// What a probe checks, for people: its URL, or its host (with the names a DNS probe looks up).
fn target_of(p: &ProbeState) -> String {
    match p.spec.settings.target() {
        Some(t) => t.url(),
        None => match p.spec.settings.port() {
            Some(port) => format!("{}:{port}", p.spec.settings.host()),
            None => p.spec.settings.host(),
        },
    }
}

impl ProbeRow {
    fn of(p: &ProbeState, now: SystemTime, explained_by: Option<&'static str>) -> ProbeRow {
        let last = p.last.as_ref();
        let state = match last {
            None => "pending",
            Some(l) if l.failure.is_none() => "ok",
            Some(_) => "failing",
        };
        let kind = kind_status(p, now);
        ProbeRow {
            name: p.name().to_string(),
            kind: p.kind().as_label(),
            role: p.role().as_label(),
            target: target_of(p),
            explained_by,
            history: p
                .history
                .iter()
                .map(|r| HistoryPoint {
                    at: r.at,
                    millis: r.millis,
                    ok: r.ok,
                })
                .collect(),
            state,
            reason: p.failure().map(|r| r.as_label()),
            error: last
                .filter(|l| l.failure.is_some())
                .map(|l| l.message.clone()),
            runs: p.runs,
            last_run: last.map(|l| ts(l.finished_at)),
            last_success: p.last_success.map(ts),
            duration_seconds: last.map(|l| l.duration.as_secs_f64()),
            latest: last.map(|l| LatestRun {
                phases: Phase::ALL
                    .iter()
                    .filter_map(|ph| l.trace.phase(*ph).map(|d| (ph.as_label(), d.as_secs_f64())))
                    .collect(),
                status_code: l.trace.status_code,
                clock_offset_seconds: l.trace.clock_offset.map(|o| o.estimate),
                tls: l.trace.tls.as_ref().map(|t| TlsView {
                    version: t.version.clone(),
                    verified: t.verified,
                    leaf_not_after: t.leaf_not_after,
                    earliest_not_after: t.earliest_not_after,
                }),
            }),
            details: kind.json,
            note: kind.note,
        }
    }
}

impl CauseView {
    fn of(c: Cause, d: &Diagnosis) -> CauseView {
        CauseView {
            cause: c.as_label(),
            title: c.title(),
            severity: c.severity(),
            summary: c.summary(),
            remediation: c.remediation(),
            since: d.since.get(&c).map(|t| ts(*t)),
            evidence: d
                .evidence
                .get(&c)
                .into_iter()
                .flatten()
                .map(EvidenceView::of)
                .collect(),
        }
    }
}

impl StatusView {
    pub fn new(probes: &[Arc<ProbeState>], diagnosis: &Diagnosis, now: SystemTime) -> StatusView {
        StatusView {
            generated_at: ts(now),
            version: env!("CARGO_PKG_VERSION"),
            auth_healthy: diagnosis.auth_healthy,
            unexplained: diagnosis.unexplained(),
            causes: {
                // The page is read top down: what blocks auth first.
                let mut causes: Vec<Cause> = diagnosis.causes.iter().copied().collect();
                causes.sort_by_key(|c| c.severity() != "critical");
                causes
                    .iter()
                    .map(|c| CauseView::of(*c, diagnosis))
                    .collect()
            },
            unexplained_evidence: diagnosis.residue.iter().map(EvidenceView::of).collect(),
            pending: diagnosis.pending.clone(),
            coverage: CoverageView {
                clerk_instance: diagnosis.coverage.clerk_instance,
                api: diagnosis.coverage.api,
            },
            clock_offset_seconds: worst_clock_offset(probes),
            probes: probes
                .iter()
                .map(|p| {
                    let named = |name: &str| {
                        diagnosis
                            .evidence
                            .iter()
                            .find(|(_, ev)| ev.iter().any(|e| e.probe == name))
                            .map(|(c, _)| c.title())
                    };
                    // A consequence is explained by what explains the failing Clerk probes.
                    let by = named(p.name()).or_else(|| {
                        diagnosis
                            .consequences
                            .iter()
                            .any(|c| c == p.name())
                            .then(|| {
                                probes
                                    .iter()
                                    .filter(|q| q.role() == Role::Clerk && q.failure().is_some())
                                    .find_map(|q| named(q.name()))
                            })
                            .flatten()
                    });
                    ProbeRow::of(p, now, by.filter(|_| p.failure().is_some()))
                })
                .collect(),
        }
    }

    /// The status as JSON.
    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
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
.cause.warning{border-color:#c77700;background:#fff8ec}.cause h3{margin:0 0 4px;font-size:18px}
.cause p{margin:4px 0;font-size:16px}.cause .fix{font-size:16px;background:#fff;border-radius:6px;padding:6px 8px}
.evidence{margin:4px 0;padding-left:18px;font-size:13px}.target{font-size:12px;color:#4b5563;word-break:break-all}
.by{font-size:13px;color:#b3261e}svg.history{display:block}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px 4px;border-bottom:1px solid #e3e5ea;vertical-align:top}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;color:#fff}
.b-ok{background:#1f7a3f}.b-failing{background:#b3261e}.b-pending{background:#6b7280}
.err{color:#6b7280;font-size:13px;word-break:break-word}.note{font-size:13px;word-break:break-word}code{font-size:13px}
@media (max-width:640px){.wide{display:none}td,th{padding:6px 2px}}
";

/// The page; `prefix` is the route prefix the links go under and `telemetry` the metrics path.
pub fn html(status: &StatusView, prefix: &str, telemetry: &str) -> String {
    // The headline names the fault in words: the first critical cause, else the first one.
    let lead = status
        .causes
        .iter()
        .find(|c| c.severity == "critical")
        .or(status.causes.first());
    let (class, title) = match (status.auth_healthy, status.unexplained, lead) {
        (true, _, _) => ("ok", "Auth healthy".to_string()),
        (false, true, _) => ("unexplained", "Auth unhealthy: no known cause".to_string()),
        (false, false, Some(c)) => ("bad", format!("Auth unhealthy: {}", c.title)),
        (false, false, None) => ("bad", "Auth unhealthy".to_string()),
    };
    let since = lead
        .filter(|_| !status.auth_healthy)
        .and_then(|c| c.since.as_deref())
        .map(|t| format!(" · unhealthy since {t}"))
        .unwrap_or_default();
    let title = esc(&title);
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>authwatch: {title}</title><style>{STYLE}</style></head><body>\
<header id=\"auth-status\" class=\"{class}\" data-healthy=\"{healthy}\"><h1>{title}</h1><p>authwatch {} · {}{} · refreshes every {REFRESH_SECONDS} s</p></header><main>",
        esc(status.version),
        esc(&status.generated_at),
        esc(&since),
        healthy = status.auth_healthy,
    );
    causes_html(&mut h, status);
    probes_html(&mut h, &status.probes);
    let _ = writeln!(
        h,
        "<p><small><a href=\"{p}{m}\">{m}</a> · <a href=\"{p}/api/v1/status\">/api/v1/status</a></small></p></main></body></html>",
        p = esc(prefix),
        m = esc(telemetry)
    );
    h
}

fn coverage_html(h: &mut String, c: &CoverageView) {
    let gaps: Vec<&str> = [
        (!c.clerk_instance)
            .then_some("your Clerk instance (no jwks probe: set CLERK_PUBLISHABLE_KEY)"),
        (!c.api).then_some("your API (no probe with role api: set AUTHWATCH_API_URL)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !gaps.is_empty() {
        let _ = write!(
            h,
            "<section id=\"coverage\" class=\"cause warning\"><b>Not watched</b>{}</section>",
            esc(&gaps.join("; "))
        );
    }
}

fn evidence_html(h: &mut String, evidence: &[EvidenceView]) {
    if evidence.is_empty() {
        return;
    }
    h.push_str("<ul class=\"evidence\">");
    for e in evidence {
        let _ = write!(
            h,
            "<li><code>{}</code> {}</li>",
            esc(&e.probe),
            esc(&e.detail)
        );
    }
    h.push_str("</ul>");
}

fn causes_html(h: &mut String, status: &StatusView) {
    coverage_html(h, &status.coverage);
    h.push_str("<section id=\"causes\"><h2>Diagnosis</h2>");
    if status.causes.is_empty() {
        h.push_str(if status.unexplained {
            "<p>Some auth-critical probe fails, but no known cause matches: see the failing probes below.</p>"
        } else {
            "<p>No active cause.</p>"
        });
    }
    for c in &status.causes {
        let _ = write!(
            h,
            "<div class=\"cause {}\" data-cause=\"{}\"><h3>{}</h3><p class=\"summary\">{}</p><p class=\"fix\"><b>Fix:</b> {}</p><small>since {} · <code>{}</code> · {}</small>",
            esc(c.severity),
            esc(c.cause),
            esc(c.title),
            esc(c.summary),
            esc(c.remediation),
            esc(c.since.as_deref().unwrap_or("now")),
            esc(c.cause),
            esc(c.severity),
        );
        evidence_html(h, &c.evidence);
        h.push_str("</div>");
    }
    if !status.unexplained_evidence.is_empty() {
        h.push_str("<div class=\"cause\" data-cause=\"unexplained\"><b>unexplained</b>These failures fit no cause:");
        evidence_html(h, &status.unexplained_evidence);
        h.push_str("</div>");
    }
    if !status.pending.is_empty() {
        let _ = write!(
            h,
            "<p id=\"pending\">Waiting for a fresh run of: {}</p>",
            esc(&status.pending.join(", "))
        );
    }
    if let Some(o) = status.clock_offset_seconds {
        let _ = write!(
            h,
            "<p id=\"clock\">Clock offset: <b>{o:+.2} s</b> (local minus server; negative means this clock is behind)</p>"
        );
    }
    h.push_str("</section>");
}

/// The history strip: one square per recent run (green passed, red failed) and, above it, a
/// sparkline of the run durations scaled to the slowest. Inline SVG: no script, no asset.
fn history_svg(runs: &[HistoryPoint]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let (w, cell) = (crate::probe::state::HISTORY as u32 * 5, 5u32);
    let slowest = runs.iter().map(|r| r.millis).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(
        "<svg class=\"history\" width=\"{w}\" height=\"30\" viewBox=\"0 0 {w} 30\" role=\"img\" aria-label=\"{} of the last {} runs passed; slowest {} ms\">",
        runs.iter().filter(|r| r.ok).count(),
        runs.len(),
        slowest
    );
    let points: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let x = i as u32 * cell + 2;
            let y = 20.0 - 18.0 * f64::from(r.millis) / slowest;
            format!("{x},{y:.1}")
        })
        .collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#4b5563\" stroke-width=\"1\"/>",
        points.join(" ")
    );
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"23\" width=\"4\" height=\"7\" fill=\"{}\"><title>{} ms</title></rect>",
            i as u32 * cell,
            if r.ok { "#1f7a3f" } else { "#b3261e" },
            r.millis
        );
    }
    svg.push_str("</svg>");
    svg
}

fn probes_html(h: &mut String, probes: &[ProbeRow]) {
    h.push_str("<section><h2>Probes</h2><table id=\"probes\"><thead><tr><th>Probe</th><th>State</th><th>Reason</th><th>Recent runs</th><th class=\"wide\">Last success</th><th class=\"wide\">Phases</th></tr></thead><tbody>");
    for p in probes {
        let phases = p
            .latest
            .iter()
            .flat_map(|l| l.phases.iter())
            .map(|(k, v)| format!("{k} {}", fmt_secs(Some(*v))))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            h,
            "<tr data-probe=\"{name}\" data-state=\"{state}\"><td><b>{name}</b><br><small>{kind} · {role}</small><div class=\"target\">{target}</div></td><td><span class=\"badge b-{state}\">{state}</span></td>\
<td><code>{reason}</code>{explained}<div class=\"err\">{error}</div><div class=\"note\">{note}</div></td><td>{history}</td><td class=\"wide\">{last}</td><td class=\"wide\">{phases}</td></tr>",
            name = esc(&p.name),
            kind = esc(p.kind),
            role = esc(p.role),
            target = esc(&p.target),
            explained = p
                .explained_by
                .map(|c| format!("<div class=\"by\">→ {}</div>", esc(c)))
                .unwrap_or_default(),
            history = history_svg(&p.history),
            state = esc(p.state),
            reason = esc(p.reason.unwrap_or("")),
            error = esc(p.error.as_deref().unwrap_or("")),
            note = esc(p.note.as_deref().unwrap_or("")),
            last = esc(p.last_success.as_deref().unwrap_or("never")),
            phases = esc(&phases),
        );
    }
    h.push_str("</tbody></table></section>");
}
