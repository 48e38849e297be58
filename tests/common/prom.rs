//! Minimal Prometheus text-format parser for asserting on /metrics output, plus a `promtool`
//! wrapper so tests can hold the daemon to the official linter.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Parses every sample line; panics with the offending line on malformed input, since a
/// malformed exposition is itself a test failure.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}")))
        .collect()
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = line[..name_end].to_string();
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    // An optional timestamp may follow; nothing else may.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns the labels and what follows the closing brace.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
        {
            chars.next();
        }
        let (start, c) = chars.next().ok_or("unterminated label set")?;
        if c == '}' {
            return Ok((labels, &s[start + 1..]));
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let key = s[start..end].to_string();
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err(format!("expected '=' after label {key:?}"));
        }
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("expected '\"' for label {key:?}"));
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next().ok_or("unterminated label value")?;
            match c {
                '"' => break,
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    other => return Err(format!("bad escape \\{other:?} in label {key:?}")),
                },
                c => value.push(c),
            }
        }
        if labels.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate label {key:?}"));
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Samples named `name` whose labels include every pair in `labels`.
pub fn find(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
    parse(text)
        .into_iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .collect()
}

/// Value of the single matching sample, `None` if there is none; panics if several match,
/// because then the assertion is ambiguous and needs more labels.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = find(text, name, labels);
    match found.len() {
        0 => None,
        1 => Some(found[0].value),
        n => panic!("{n} samples of {name} match {labels:?}; add labels to pick one:\n{found:#?}"),
    }
}

/// Like `value` but panics with the whole exposition when the sample is missing.
pub fn expect_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels)
        .unwrap_or_else(|| panic!("no sample {name} with {labels:?} in:\n{text}"))
}

/// Runs `promtool check metrics` on `text`; returns (combined stdout+stderr, success).
pub fn promtool_check(text: &str) -> (String, bool) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool not found on PATH; install the Debian `prometheus` package \
             (apt-get install -y prometheus), as the README's test command does"
        ),
        Err(e) => panic!("failed to run promtool: {e}"),
    };
    // Feed stdin from another thread so a chatty promtool cannot deadlock against us.
    let mut stdin = child.stdin.take().unwrap();
    let input = text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("wait for promtool");
    writer
        .join()
        .expect("promtool writer thread")
        .expect("write to promtool");
    let mut combined = String::from_utf8_lossy(&out.stdout).into_owned();
    combined.push_str(&String::from_utf8_lossy(&out.stderr));
    (combined, out.status.success())
}

/// The reason label of the probe's `authwatch_probe_failure` sample that is 1, if any;
/// panics when more than one is set (the family is one-hot).
pub fn reason_of(text: &str, probe: &str) -> Option<String> {
    let ones: Vec<Sample> = find(text, "authwatch_probe_failure", &[("probe", probe)])
        .into_iter()
        .filter(|s| s.value == 1.0)
        .collect();
    assert!(
        ones.len() <= 1,
        "more than one reason set for {probe}: {ones:?}"
    );
    ones.first()
        .and_then(|s| s.label("reason").map(str::to_string))
}
