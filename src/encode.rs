//! A writer for the Prometheus text format 0.0.4 and OpenMetrics 1.0, the two formats a
//! Prometheus server negotiates. Families are described once; the format decides the spelling.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Histogram,
}

/// A metric family. Counter names are given without the `_total` suffix.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub ty: MetricType,
}

pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Encoder {
    out: String,
    openmetrics: bool,
    /// Where full chunks go when streaming; `None` keeps everything in `out`.
    sink: Option<Box<dyn std::io::Write + Send>>,
    /// The sink failed (the scraper went away): the rest is not written.
    dead: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("openmetrics", &self.openmetrics)
            .field("streaming", &self.sink.is_some())
            .finish()
    }
}

/// A streaming encoder hands its text on in chunks of about this size, so a scrape of
/// thousands of probes never holds the whole text in memory.
const CHUNK: usize = 128 * 1024;

/// Formats a sample value the way both parsers accept: the shortest text that reads back as
/// the same f64 (Go's ParseFloat, which Prometheus uses, takes the exponent form too). A scrape
/// writes hundreds of thousands of values; `itoa` and `zmij` (both already in the tree, through
/// `http` and `serde_json`) write them several times faster than `core::fmt` does.
pub fn format_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 {
        // The commonest value by far (one-hot zeros, empty counters).
        out.push('0');
    } else if v == 1.0 {
        out.push('1');
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(zmij::Buffer::new().format_finite(v));
    }
}

fn escape_label(v: &str, out: &mut String) {
    // Almost every value needs no escape: copy it whole (a scrape writes hundreds of
    // thousands of label values).
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Encoder {
    pub fn new(openmetrics: bool) -> Self {
        Encoder {
            out: String::with_capacity(64 * 1024),
            openmetrics,
            sink: None,
            dead: false,
        }
    }

    /// An encoder writing its text to `sink` as it goes; dropping the sink ends the stream.
    pub fn streaming(openmetrics: bool, sink: Box<dyn std::io::Write + Send>) -> Self {
        Encoder {
            out: String::with_capacity(CHUNK + 4096),
            openmetrics,
            sink: Some(sink),
            dead: false,
        }
    }

    fn flush_chunk(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            if !self.dead && sink.write_all(self.out.as_bytes()).is_err() {
                self.dead = true;
            }
            self.out.clear();
        }
    }

    pub fn content_type(&self) -> &'static str {
        if self.openmetrics {
            CONTENT_TYPE_OPENMETRICS
        } else {
            CONTENT_TYPE_TEXT
        }
    }

    /// Writes the HELP and TYPE lines; samples of the family must follow.
    pub fn header(&mut self, f: &Family) {
        let (name, ty) = match (f.ty, self.openmetrics) {
            (MetricType::Counter, false) => (format!("{}_total", f.name), "counter"),
            (MetricType::Counter, true) => (f.name.to_string(), "counter"),
            (MetricType::Gauge, _) => (f.name.to_string(), "gauge"),
            (MetricType::Histogram, _) => (f.name.to_string(), "histogram"),
        };
        let _ = write!(self.out, "# HELP {name} ");
        escape_help(f.help, &mut self.out);
        let _ = writeln!(self.out, "\n# TYPE {name} {ty}");
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        v: f64,
    ) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        let all = labels.iter().copied().chain(extra);
        let mut first = true;
        for (k, val) in all {
            self.out.push(if first { '{' } else { ',' });
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label(val, &mut self.out);
            self.out.push('"');
        }
        if !first {
            self.out.push('}');
        }
        self.out.push(' ');
        format_value(v, &mut self.out);
        self.out.push('\n');
        if self.sink.is_some() && self.out.len() >= CHUNK {
            self.flush_chunk();
        }
    }

    /// One gauge or counter sample of `f`.
    pub fn sample(&mut self, f: &Family, labels: &[(&str, &str)], v: f64) {
        let suffix = if f.ty == MetricType::Counter {
            "_total"
        } else {
            ""
        };
        self.line(f.name, suffix, labels, None, v);
    }

    /// A whole histogram series: cumulative bucket counts for the bounds spelt `le` (see
    /// `le_label`; spelt once, not per line), then sum and count.
    pub fn histogram(
        &mut self,
        f: &Family,
        labels: &[(&str, &str)],
        le: &[&str],
        cumulative: &[u64],
        sum: f64,
        count: u64,
    ) {
        for (b, c) in le.iter().zip(cumulative) {
            self.line(f.name, "_bucket", labels, Some(("le", b)), *c as f64);
        }
        self.line(
            f.name,
            "_bucket",
            labels,
            Some(("le", "+Inf")),
            count as f64,
        );
        self.line(f.name, "_sum", labels, None, sum);
        self.line(f.name, "_count", labels, None, count as f64);
    }

    /// The text, or when streaming what is left written to the sink (and an empty string).
    pub fn finish(mut self) -> String {
        if self.openmetrics {
            self.out.push_str("# EOF\n");
        }
        if self.sink.is_some() {
            self.flush_chunk();
            if let Some(mut sink) = self.sink.take() {
                let _ = sink.flush();
            }
        }
        std::mem::take(&mut self.out)
    }
}

/// A bucket bound as the `le` label spells it: OpenMetrics wants a whole number written as a
/// float (`1.0`, not `1`), and both parsers read it.
pub fn le_label(bound: f64) -> String {
    if bound.fract() == 0.0 {
        format!("{bound:.1}")
    } else {
        format!("{bound}")
    }
}

/// 1.0 for true, 0.0 for false: the value of a boolean gauge.
pub fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// Declares a metric family constant: `family!(ID, "name", Gauge, "help");`.
macro_rules! family {
    ($id:ident, $name:literal, $ty:ident, $help:literal) => {
        pub const $id: $crate::encode::Family = $crate::encode::Family {
            name: $name,
            help: $help,
            ty: $crate::encode::MetricType::$ty,
        };
    };
}
pub(crate) use family;

#[cfg(test)]
mod tests {
    use super::*;

    const C: Family = Family {
        name: "x_runs",
        help: "Runs.",
        ty: MetricType::Counter,
    };

    /// Collects what a streaming encoder writes, in the chunks it wrote them.
    #[derive(Clone, Default)]
    struct Chunks(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl std::io::Write for Chunks {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            crate::lock(&self.0).push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn streaming_writes_the_same_text_in_bounded_chunks() {
        let write = |e: &mut Encoder| {
            e.header(&C);
            for i in 0..20_000 {
                e.sample(&C, &[("probe", &format!("p{i}"))], i as f64);
            }
        };
        let mut whole = Encoder::new(true);
        write(&mut whole);
        let whole = whole.finish();
        let chunks = Chunks::default();
        let mut streamed = Encoder::streaming(true, Box::new(chunks.clone()));
        write(&mut streamed);
        assert_eq!(streamed.finish(), "");
        let got = crate::lock(&chunks.0).clone();
        assert!(got.len() > 2, "{} chunks", got.len());
        assert!(got.iter().all(|c| c.len() < CHUNK + 4096));
        assert_eq!(got.concat(), whole.into_bytes());
    }

    #[test]
    fn counters_are_spelt_per_format() {
        let mut e = Encoder::new(false);
        e.header(&C);
        e.sample(&C, &[("probe", "a\"b\\c\nd")], 3.0);
        let t = e.finish();
        assert!(t.contains("# TYPE x_runs_total counter\n"), "{t}");
        assert!(
            t.contains("x_runs_total{probe=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{t}"
        );
        let mut e = Encoder::new(true);
        e.header(&C);
        e.sample(&C, &[], 0.5);
        let t = e.finish();
        assert!(
            t.contains("# TYPE x_runs counter\nx_runs_total 0.5\n# EOF\n"),
            "{t}"
        );
    }
}
