//! `/probe?target=…&module=…`: blackbox_exporter's multi-target pattern with its metric names,
//! so existing dashboards and alerts keep working, behind a target allowlist.

use std::fmt::Write as _;
use std::time::Duration;

use crate::app::App;
use crate::encode::{self, Encoder, Family, family, flag};
use crate::metrics::{CLOCK_OFFSET, PROBE_FAILURE};
use crate::net::trace::{Phase, TraceData};
use crate::probe::{KindId, Probe, RunResult, blackbox_details};
use crate::scheduler;

/// Taken off Prometheus's scrape timeout so the answer arrives before Prometheus gives up,
/// as blackbox_exporter does.
const TIMEOUT_OFFSET: f64 = 0.5;

family!(
    SUCCESS,
    "probe_success",
    Gauge,
    "Displays whether or not the probe was a success"
);
family!(
    DURATION,
    "probe_duration_seconds",
    Gauge,
    "Returns how long the probe took to complete in seconds"
);
family!(
    HTTP_PHASES,
    "probe_http_duration_seconds",
    Gauge,
    "Duration of http request by phase, summed over all redirects"
);
family!(
    HTTP_STATUS,
    "probe_http_status_code",
    Gauge,
    "Response HTTP status code"
);
family!(
    HTTP_LENGTH,
    "probe_http_content_length",
    Gauge,
    "Length of http content response"
);
family!(
    HTTP_SSL,
    "probe_http_ssl",
    Gauge,
    "Indicates if SSL was used for the final redirect"
);
family!(
    IP_PROTOCOL,
    "probe_ip_protocol",
    Gauge,
    "Specifies whether probe ip protocol is IP4 or IP6"
);
family!(
    IP_ADDR_HASH,
    "probe_ip_addr_hash",
    Gauge,
    "Specifies the hash of IP address. It's useful to detect if the IP address changes."
);
family!(
    DNS_LOOKUP,
    "probe_dns_lookup_time_seconds",
    Gauge,
    "Returns the time taken for probe dns lookup in seconds"
);
family!(
    SSL_EARLIEST,
    "probe_ssl_earliest_cert_expiry",
    Gauge,
    "Returns last SSL chain expiry in unixtime"
);
family!(
    SSL_LEAF,
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    Gauge,
    "Returns last SSL chain expiry in timestamp"
);
family!(
    TLS_VERSION,
    "probe_tls_version_info",
    Gauge,
    "Returns the TLS version used or NaN when unknown"
);

family!(
    SSL_CHAIN_INFO,
    "probe_ssl_last_chain_info",
    Gauge,
    "Contains SSL leaf certificate information"
);
family!(
    HTTP_VERSION,
    "probe_http_version",
    Gauge,
    "Returns the version of HTTP of the probe response"
);
family!(
    HTTP_REDIRECTS,
    "probe_http_redirects",
    Gauge,
    "The number of redirects"
);
family!(
    HTTP_BODY_LENGTH,
    "probe_http_uncompressed_body_length",
    Gauge,
    "Length of uncompressed response body"
);
family!(
    HTTP_LAST_MODIFIED,
    "probe_http_last_modified_timestamp_seconds",
    Gauge,
    "Returns the Last-Modified HTTP response header in unixtime"
);
family!(
    FAILED_REGEX,
    "probe_failed_due_to_regex",
    Gauge,
    "Indicates if probe failed due to regex"
);

/// The families of a `/probe` answer (kinds add their own, e.g. `probe_dns_answer_rrs`).
pub const FAMILIES: &[&Family] = &[
    &SSL_CHAIN_INFO,
    &HTTP_VERSION,
    &HTTP_REDIRECTS,
    &HTTP_BODY_LENGTH,
    &HTTP_LAST_MODIFIED,
    &FAILED_REGEX,
    &SUCCESS,
    &DURATION,
    &HTTP_PHASES,
    &HTTP_STATUS,
    &HTTP_LENGTH,
    &HTTP_SSL,
    &IP_PROTOCOL,
    &IP_ADDR_HASH,
    &DNS_LOOKUP,
    &SSL_EARLIEST,
    &SSL_LEAF,
    &TLS_VERSION,
    &PROBE_FAILURE,
    &CLOCK_OFFSET,
];

/// What `/probe` answers: status, content type, body.
pub type Answer = (u16, &'static str, String);

fn text(status: u16, body: impl Into<String>) -> Answer {
    (status, "text/plain; charset=utf-8", body.into())
}

/// Decodes one `application/x-www-form-urlencoded` value.
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// FNV-1a (32 bits) over the address's bytes, 4 for IPv4 and 16 for IPv6: the value
/// blackbox_exporter gives `probe_ip_addr_hash` (prober/utils.go `ipHash`), so a dashboard that
/// watches it for address changes reads the same numbers. Eight lines of arithmetic, not a
/// dependency.
fn addr_hash(ip: std::net::IpAddr) -> u32 {
    let fnv = |bytes: &[u8]| {
        bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        })
    };
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => fnv(&v4.octets()),
        std::net::IpAddr::V6(v6) => fnv(&v6.octets()),
    }
}

/// The value of `key` in a query string.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (url_decode(k) == key).then(|| url_decode(v))
    })
}

fn render(
    kind: KindId,
    result: &RunResult,
    trace: &TraceData,
    took: Duration,
    openmetrics: bool,
) -> String {
    let mut e = Encoder::new(openmetrics);
    let one = |e: &mut Encoder, f: &Family, labels: &[(&str, &str)], v: f64| {
        e.header(f);
        e.sample(f, labels, v);
    };
    let failure = result.failure.as_ref().map(|f| f.reason);
    one(&mut e, &DNS_LOOKUP, &[], trace.phase_secs(Phase::Resolve));
    // Every blackbox prober reports the family of the address it chose, connected or not
    // (tests/blackbox_compat.rs), and that address hashed. The address connected to, when one
    // did, is the last one dialled.
    let family = trace
        .dialled
        .map_or(0.0, |ip| if ip.is_ipv4() { 4.0 } else { 6.0 });
    one(&mut e, &IP_PROTOCOL, &[], family);
    if let Some(ip) = trace.dialled {
        one(&mut e, &IP_ADDR_HASH, &[], f64::from(addr_hash(ip)));
    }
    if kind == KindId::Tcp {
        // blackbox's tcp prober has it for its query_response expectations; a tcp module here
        // has none, so it is always 0, but rules written for blackbox find it.
        one(&mut e, &FAILED_REGEX, &[], 0.0);
    }
    if kind.is_http() {
        e.header(&HTTP_PHASES);
        for p in Phase::ALL {
            e.sample(
                &HTTP_PHASES,
                &[("phase", p.as_label())],
                trace.phase_secs(p),
            );
        }
        one(
            &mut e,
            &HTTP_STATUS,
            &[],
            trace.status_code.map(f64::from).unwrap_or(0.0),
        );
        one(
            &mut e,
            &HTTP_LENGTH,
            &[],
            // As blackbox: what the response declared, 0 without a response.
            trace.content_length.map(|n| n as f64).unwrap_or(0.0),
        );
        one(&mut e, &HTTP_SSL, &[], flag(trace.tls.is_some()));
        // The client speaks HTTP/1.1 only, follows no redirect and matches no regex; the
        // series are there so blackbox dashboards and rules find them.
        let version = if trace.status_code.is_some() {
            1.1
        } else {
            0.0
        };
        one(&mut e, &HTTP_VERSION, &[], version);
        one(&mut e, &HTTP_REDIRECTS, &[], 0.0);
        one(
            &mut e,
            &HTTP_BODY_LENGTH,
            &[],
            trace.body_bytes.map(|b| b as f64).unwrap_or(0.0),
        );
        // As blackbox: only when the response had a Last-Modified that parsed.
        if let Some(t) = trace.last_modified {
            one(&mut e, &HTTP_LAST_MODIFIED, &[], t);
        }
        one(&mut e, &FAILED_REGEX, &[], 0.0);
        if let Some(tls) = &trace.tls {
            if let Some(t) = tls.earliest_not_after {
                one(&mut e, &SSL_EARLIEST, &[], t as f64);
            }
            if let Some(t) = tls.leaf_not_after {
                one(&mut e, &SSL_LEAF, &[], t as f64);
            }
            if let Some(v) = &tls.version {
                one(&mut e, &TLS_VERSION, &[("version", v.as_str())], 1.0);
            }
            if let Some(l) = &tls.leaf {
                let labels = [
                    ("fingerprint_sha256", l.fingerprint_sha256.as_str()),
                    ("subject", l.subject.as_str()),
                    ("issuer", l.issuer.as_str()),
                    ("subjectalternative", l.subject_alternative.as_str()),
                    ("serialnumber", l.serial.as_str()),
                ];
                one(&mut e, &SSL_CHAIN_INFO, &labels, 1.0);
            }
        }
        if let Some(o) = trace.clock_offset {
            one(&mut e, &CLOCK_OFFSET, &[], o.estimate);
        }
    }
    if let Some(d) = &result.details {
        blackbox_details(&mut e, d);
    }
    e.header(&PROBE_FAILURE);
    for &r in kind.reasons() {
        e.sample(
            &PROBE_FAILURE,
            &[("reason", r.as_label())],
            flag(failure == Some(r)),
        );
    }
    one(&mut e, &DURATION, &[], took.as_secs_f64());
    one(&mut e, &SUCCESS, &[], flag(failure.is_none()));
    e.finish()
}

fn debug_log(
    target: &str,
    module: &str,
    timeout: Duration,
    result: &RunResult,
    trace: &TraceData,
    took: Duration,
) -> String {
    let mut log = String::new();
    let _ = writeln!(
        log,
        "level=info msg=\"Beginning probe\" target={target:?} module={module:?} timeout_seconds={}",
        timeout.as_secs_f64()
    );
    for p in Phase::ALL {
        if let Some(d) = trace.phase(p) {
            let _ = writeln!(
                log,
                "level=info msg=\"Phase finished\" phase={} duration_seconds={}",
                p.as_label(),
                d.as_secs_f64()
            );
        }
    }
    if let Some(ip) = trace.ip_protocol {
        let _ = writeln!(log, "level=info msg=\"Connected\" ip_protocol={ip}");
    }
    if let Some(tls) = &trace.tls {
        let _ = writeln!(
            log,
            "level=info msg=\"TLS\" version={:?} verified={} chain_length={}",
            tls.version.as_deref().unwrap_or("?"),
            tls.verified,
            tls.chain_len
        );
    }
    if let Some(s) = trace.status_code {
        let _ = writeln!(
            log,
            "level=info msg=\"Received HTTP response\" status_code={s}"
        );
    }
    match &result.failure {
        Some(f) => {
            let _ = writeln!(
                log,
                "level=error msg={:?} reason={}",
                f.message,
                f.reason.as_label()
            );
            let _ = writeln!(
                log,
                "level=error msg=\"Probe failed\" duration_seconds={}",
                took.as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(
                log,
                "level=info msg=\"Probe succeeded\" duration_seconds={}",
                took.as_secs_f64()
            );
        }
    }
    log
}

/// Serves one `/probe` request. `allow_any` lifts the target allowlist.
pub async fn probe(
    app: &App,
    query: &str,
    scrape_timeout: Option<&str>,
    allow_any: bool,
    openmetrics: bool,
) -> Answer {
    let Some(config) = app.config() else {
        return text(503, "no configuration loaded\n");
    };
    let Some(target) = query_param(query, "target").filter(|t| !t.is_empty()) else {
        return text(400, "Target parameter is missing\n");
    };
    // blackbox_exporter's default module.
    let module = query_param(query, "module").unwrap_or_else(|| "http_2xx".into());
    let debug = query_param(query, "debug").is_some_and(|v| v == "true");
    let mut spec = match config.module_probe(&module, &target) {
        Ok(s) => s,
        Err(e) => return text(400, format!("{e}\n")),
    };
    spec.conn.leaf_details = true;
    if !allow_any {
        let (host, port) = (spec.settings.host(), spec.settings.port());
        match config.probe_allowlist.decide(&host, port) {
            // Every connection of the run is decided again, addresses included.
            Some(_) => spec.conn.guard = Some(config.probe_allowlist.clone()),
            None => {
                let port = port.map(|p| format!(" port {p}")).unwrap_or_default();
                return text(
                    403,
                    format!(
                        "target host {}{port} is not in probe_allowlist (an open prober is an SSRF hole; see --probe.allow-any-target)\n",
                        crate::failure::quoted(&host)
                    ),
                );
            }
        }
    }
    let mut timeout = spec.timeout;
    // Any number a client sends (inf, 1e300, NaN) must not panic: only a finite positive
    // budget can shorten the module's own timeout, never lengthen it.
    if let Some(secs) = scrape_timeout
        .and_then(|h| h.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
    {
        let budget = if secs > TIMEOUT_OFFSET {
            secs - TIMEOUT_OFFSET
        } else {
            secs
        };
        if let Ok(b) = Duration::try_from_secs_f64(budget) {
            timeout = timeout.min(b);
        }
    }
    let kind = spec.kind();
    let Some(deps) = app.deps() else {
        return text(503, "no configuration loaded\n");
    };
    let probe = Probe::new(spec, &deps);
    let (result, trace, took) = scheduler::execute(&probe, timeout).await;
    if let (Some(_), Some(what)) = (&result.failure, &trace.refused) {
        // The name was allowed but the run was led somewhere the allowlist does not cover.
        return text(
            403,
            format!(
                "target {} led to {what}, which probe_allowlist does not allow (loopback, link-local and private addresses must be listed; see README)\n",
                crate::failure::quoted(&target)
            ),
        );
    }
    let metrics = render(kind, &result, &trace, took, openmetrics && !debug);
    if debug {
        let log = debug_log(&target, &module, timeout, &result, &trace, took);
        return text(
            200,
            format!(
                "Logs for the probe:\n{log}\n\n\nMetrics that would have been returned:\n{metrics}"
            ),
        );
    }
    let ct = if openmetrics {
        encode::CONTENT_TYPE_OPENMETRICS
    } else {
        encode::CONTENT_TYPE_TEXT
    };
    (200, ct, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = "target=https%3A%2F%2Fclerk.com%2Fv1%3Fa%3Db&module=https_2xx&debug=true";
        assert_eq!(
            query_param(q, "target").as_deref(),
            Some("https://clerk.com/v1?a=b")
        );
        assert_eq!(query_param(q, "module").as_deref(), Some("https_2xx"));
        assert_eq!(query_param(q, "nope"), None);
        assert_eq!(url_decode("a+b%2"), "a b%2");
        assert_eq!(url_decode("%zz"), "%zz");
    }
}
