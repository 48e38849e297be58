//! Log output as Prometheus components write it: logfmt (`ts=… level=… caller=… msg=…
//! key=value`, the Go exporters' default) or JSON, to stderr.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Writes one event as a logfmt line.
struct Logfmt;

/// A value as logfmt wants it: bare when it is one plain word, otherwise quoted with `"` and
/// `\` escaped and newlines spelt `\n`, so one event is always one line.
fn value(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, v: &str) {
        if field.name() == "message" {
            self.msg = v.to_string();
        } else {
            self.rest.push(' ');
            self.rest.push_str(field.name());
            self.rest.push('=');
            value(&mut self.rest, v);
        }
    }

    fn record_debug(&mut self, field: &Field, v: &dyn fmt::Debug) {
        self.record_str(field, &format!("{v:?}"));
    }
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        // RFC 3339 UTC with milliseconds, as Go's logfmt timestamps are.
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let mut line = format!(
            "ts={ts} level={} caller={}",
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        );
        line.push_str(" msg=");
        value(&mut line, &fields.msg);
        line.push_str(&fields.rest);
        writeln!(w, "{line}")
    }
}

/// Starts logging to stderr at `level` in `format` (`logfmt`, its alias `text`, or `json`).
pub fn init(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,authwatch={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.event_format(Logfmt).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bare_or_quoted_and_stay_on_one_line() {
        let mut s = String::new();
        value(&mut s, "connect_refused");
        s.push(' ');
        value(&mut s, "a b \"c\"\nd");
        s.push(' ');
        value(&mut s, "");
        assert_eq!(s, r#"connect_refused "a b \"c\"\nd" """#);
    }
}
