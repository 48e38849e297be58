//! The validation toolkit below the probe kinds: errors located by file, line and column,
//! `${ENV}` expansion, durations, status-code sets, probe roles and the small parsers every
//! section shares. Defaults live with the section that owns them.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_saphyr::Spanned;

use crate::net::resolve::ResolverSpec;
use crate::net::target::Target;

/// A configuration problem, located in its file where the location is known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{file}: {message}")]
    Whole { file: String, message: String },
}

/// Where in the file a value came from, for semantic errors found after parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Self {
        Pos {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// Maps a YAML parse error to a located `ConfigError`. The message is rendered without the
/// source snippet so that an inline secret on a bad line is never echoed, and the location
/// goes in front as file:line:column.
pub fn yaml_error(e: &serde_saphyr::Error, file: &str) -> ConfigError {
    let rendered = redact(&e.without_snippet().to_string());
    let message = match rendered.rfind(" at line ") {
        Some(i) if rendered[i..].contains(", column ") => rendered[..i].to_string(),
        _ => rendered,
    };
    match e.location() {
        Some(loc) => ConfigError::At {
            file: file.to_string(),
            line: loc.line(),
            column: loc.column(),
            message,
        },
        None => ConfigError::Whole {
            file: file.to_string(),
            message,
        },
    }
}

/// Stops a parse error from quoting a secret that landed in the wrong place (a key, another
/// field): Clerk keys (`sk_…`, `pk_…`), JWTs (`eyJ…`) and URL credentials become `<redacted>`.
pub fn redact(message: &str) -> String {
    let end = |s: &str| {
        s.find(|c: char| c.is_whitespace() || "`'\",".contains(c))
            .unwrap_or(s.len())
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = ["sk_live_", "sk_test_", "pk_live_", "pk_test_", "eyJ", "://"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min();
        let Some((i, pattern)) = next else {
            out.push_str(rest);
            return out;
        };
        let after = &rest[i..];
        let word = end(after);
        if pattern == "://" {
            // Only the userinfo of a URL is secret: scheme://user:pass@host keeps its host.
            let authority = &after[3..word];
            let cut = authority.find('/').unwrap_or(authority.len());
            match authority[..cut].rfind('@') {
                Some(at) => {
                    out.push_str(&rest[..i + 3]);
                    out.push_str("<redacted>");
                    rest = &after[3 + at..];
                }
                None => {
                    out.push_str(&rest[..i + 3]);
                    rest = &after[3..];
                }
            }
        } else {
            out.push_str(&rest[..i]);
            out.push_str("<redacted>");
            rest = &after[word..];
        }
    }
}

/// The file being validated and the environment proxies are read from.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    pub file: &'a str,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Cx<'_> {
    pub fn err(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError::At {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    pub fn at<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.err(s.into(), message)
    }

    pub fn whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Whole {
            file: self.file.to_string(),
            message: message.into(),
        }
    }

    /// A URL value.
    pub fn target(&self, s: &Spanned<Text>) -> Result<Target, ConfigError> {
        Target::parse(&s.value.0).map_err(|e| self.at(s, e))
    }

    /// A list of status codes; absent or empty means `default`.
    pub fn status_set(
        &self,
        raw: &Option<Vec<Spanned<Text>>>,
        default: StatusSet,
    ) -> Result<StatusSet, ConfigError> {
        match raw {
            None => Ok(default),
            Some(list) if list.is_empty() => Ok(default),
            Some(list) => list
                .iter()
                .map(|s| StatusSet::parse_one(&s.value.0).map_err(|e| self.at(s, e)))
                .collect::<Result<Vec<_>, _>>()
                .map(StatusSet),
        }
    }

    /// A list of resolvers.
    pub fn resolvers(&self, list: &[Spanned<Text>]) -> Result<Vec<ResolverSpec>, ConfigError> {
        list.iter()
            .map(|r| ResolverSpec::parse(&r.value.0).map_err(|e| self.at(r, e)))
            .collect()
    }
}

/// A string that is set and not blank, trimmed.
pub fn non_empty(t: &Option<Text>) -> Option<String> {
    t.as_ref()
        .map(|t| t.0.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A string scalar with `${VAR}` and `${VAR:-default}` expanded from the environment.
#[derive(Debug, Clone, Default)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw, &|k| std::env::var(k).ok())
            .map(Text)
            .map_err(de::Error::custom)
    }
}

/// Expands `${VAR}` (an error when unset) and `${VAR:-default}`; `$$` is a literal `$`.
/// The error names the variable, never its value.
pub fn expand_env(raw: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${ in string".to_string())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            match (get(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (use ${{{name}:-}} to make it optional)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A duration scalar such as `30s` or `1m`, for fields that need their own location.
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(s) = Text::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Dur)
            .map_err(|e| de::Error::custom(format!("invalid duration {s:?}: {e} (e.g. 30s, 1m)")))
    }
}

pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<Dur>::deserialize(d)?.map(|d| d.0))
}

/// A set of accepted HTTP status codes: single codes and inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    pub fn range(lo: u16, hi: u16) -> Self {
        StatusSet(vec![(lo, hi)])
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }

    pub fn parse_one(s: &str) -> Result<(u16, u16), String> {
        let s = s.trim();
        let bad = || format!("invalid status code {s:?}: use 200, \"2xx\" or \"200-299\"");
        if let Some(d) = s.strip_suffix("xx") {
            let d: u16 = d.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&d) {
                return Err(bad());
            }
            return Ok((d * 100, d * 100 + 99));
        }
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let c: u16 = s.parse().map_err(|_| bad())?;
                (c, c)
            }
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad());
        }
        Ok((lo, hi))
    }
}

/// What a probe stands for in the diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A dependency on Clerk (DNS, Frontend/Backend API, JWKS, clock): auth-critical.
    Clerk,
    /// The API's own view of its dependencies (its `/health/network`): auth-critical.
    Api,
    /// Informational: never makes auth unhealthy.
    Other,
}

impl Role {
    pub fn as_label(self) -> &'static str {
        match self {
            Role::Clerk => "clerk",
            Role::Api => "api",
            Role::Other => "other",
        }
    }
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "clerk" => Some(Role::Clerk),
            "api" => Some(Role::Api),
            "other" => Some(Role::Other),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let get = |k: &str| (k == "A").then(|| "x".to_string());
        assert_eq!(expand_env("${A}-${B:-d}-$$-$x", &get).unwrap(), "x-d-$-$x");
        let err = expand_env("${B}", &get).unwrap_err();
        assert!(err.contains("B is not set"));
        assert!(expand_env("${A", &get).is_err());
    }

    #[test]
    fn secrets_in_errors_are_redacted() {
        assert_eq!(
            redact("unknown field `http://user:PASSWORD@proxy:3128`, expected one of"),
            "unknown field `http://<redacted>@proxy:3128`, expected one of"
        );
        assert_eq!(
            redact("invalid duration \"sk_live_abc123\": nope"),
            "invalid duration \"<redacted>\": nope"
        );
        assert_eq!(
            redact("unknown field `eyJhbGciOi.x.y`"),
            "unknown field `<redacted>`"
        );
        assert_eq!(
            redact("url https://clerk.com/v1 ok"),
            "url https://clerk.com/v1 ok"
        );
    }

    #[test]
    fn status_sets() {
        assert!(StatusSet::parse_one("2xx").is_ok());
        assert_eq!(StatusSet::parse_one("200-204").unwrap(), (200, 204));
        assert!(StatusSet::parse_one("9xx").is_err());
        assert!(StatusSet::parse_one("abc").is_err());
    }
}
