//! Absolute http(s) URLs as the probes use them, and `host:port` splitting.

use std::fmt;

/// A parsed absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("URL {s:?} must start with https:// or http://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported; use connection.headers".into());
        }
        let (host, port) = split_host_port(authority, if https { 443 } else { 80 })
            .ok_or_else(|| format!("URL {s:?} has an invalid host or port"))?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
        {
            return Err(format!("URL {s:?} has an invalid host"));
        }
        Ok(Target {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// The value for a Host header and for display.
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// This URL with `path` appended to its path (query dropped): `https://h/base` + `/v1/x`.
    pub fn join(&self, path: &str) -> Target {
        let prefix = self
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        Target {
            path: format!("{prefix}{path}"),
            ..self.clone()
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.https { "https" } else { "http" },
            self.authority(),
            self.path
        )
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// Splits `host:port`, `[v6]:port` or a bare host.
pub fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_string(), default_port)),
        None => None,
    }
}

/// A DNS name: labels of letters, digits, '-' and '_'.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::resolve::ResolverSpec;

    #[test]
    fn targets_and_resolvers() {
        let t = Target::parse("https://clerk.test:8443/a?b=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("clerk.test", 8443, "/a?b=1")
        );
        assert_eq!(Target::parse("http://[::1]:80").unwrap().host, "::1");
        assert!(Target::parse("ftp://x").is_err());
        assert_eq!(
            t.join("/v1/jwks").url(),
            "https://clerk.test:8443/a/v1/jwks"
        );
        assert_eq!(
            ResolverSpec::parse("tcp://1.1.1.1:53").unwrap().label(),
            "1.1.1.1:53/tcp"
        );
        assert_eq!(
            ResolverSpec::parse("8.8.8.8").unwrap().label(),
            "8.8.8.8:53/udp"
        );
        assert!(ResolverSpec::parse("dns.google").is_err());
    }
}
