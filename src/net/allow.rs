//! The `/probe` target allowlist: which names, addresses and ports a request may reach,
//! checked once on the name a request gives and again on every address that name resolves
//! to, so an allowed name cannot lead the prober to loopback, the cloud metadata address or
//! a private network it was never meant to see.

use std::net::IpAddr;

use ipnet::IpNet;

/// What an entry's host part matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// One name, exactly.
    Name(String),
    /// Any name under a domain (`*.clerk.com`), not the domain itself.
    Under(String),
    /// An address or a network (`127.0.0.1`, `10.0.0.0/8`, `[fd00::/8]`).
    Net(IpNet),
}

/// The ports an entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// No port written: the web's own, 80 and 443, which is what a URL without a port uses
    /// and all a Clerk endpoint needs. Anything else must be asked for.
    Web,
    One(u16),
    /// `:*`.
    Any,
}

impl Ports {
    /// A kind that connects nowhere of the request's choosing (a DNS query for a name) has
    /// no port to check.
    fn allow(self, port: Option<u16>) -> bool {
        match (self, port) {
            (_, None) | (Ports::Any, _) => true,
            (Ports::Web, Some(p)) => p == 80 || p == 443,
            (Ports::One(want), Some(p)) => p == want,
        }
    }
}

/// One `probe_allowlist` entry: `host`, `*.domain`, an address or CIDR network, each with an
/// optional `:port` or `:*` (IPv6 in brackets when a port follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    host: Host,
    ports: Ports,
}

/// The address checks for one allowed request, applied to every address before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrGuard {
    /// Networks written in the allowlist for this port: these may be reached whatever they are.
    listed: Vec<IpNet>,
    /// Whether the request's name matched an exact name entry: naming one host is a statement
    /// about it, so its private addresses are allowed; a wildcard covers names nobody looked at.
    exact: bool,
}

fn split_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| format!("{s:?}: expected ':port' after ']'")),
        };
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        // An IPv6 address without brackets has no port.
        1 => Ok(s.split_once(':').map_or((s, None), |(h, p)| (h, Some(p)))),
        _ => Ok((s, None)),
    }
}

impl Entry {
    /// Parses an entry; the error says what is wrong without the rest of the file.
    pub fn parse(raw: &str) -> Result<Entry, String> {
        let s = raw.trim().to_ascii_lowercase();
        let (host, port) = split_port(&s)?;
        let ports = match port {
            None => Ports::Web,
            Some("*") => Ports::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Ports::One(n),
                _ => return Err(format!("{s:?}: port must be 1-65535 or *")),
            },
        };
        let host = host.trim_end_matches('.');
        let host = if host.contains('/') {
            Host::Net(
                host.parse::<IpNet>()
                    .map_err(|_| format!("{s:?}: not a CIDR network"))?
                    .trunc(),
            )
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Net(IpNet::from(ip.to_canonical()))
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !crate::net::target::is_hostname(domain) {
                return Err(format!("{s:?}: not *.domain"));
            }
            Host::Under(domain.to_string())
        } else if crate::net::target::is_hostname(host) {
            Host::Name(host.to_string())
        } else {
            return Err(format!(
                "{s:?} is not a host name, *.domain, IP address or CIDR network"
            ));
        };
        Ok(Entry { host, ports })
    }

    fn matches_name(&self, host: &str) -> bool {
        match (&self.host, host.parse::<IpAddr>()) {
            (Host::Net(net), Ok(ip)) => net.contains(&ip.to_canonical()),
            (Host::Name(n), Err(_)) => n == host,
            (Host::Under(d), Err(_)) => host
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            _ => false,
        }
    }
}

/// The whole allowlist, as the config wrote it; `/probe` runs carry it so that every request
/// they make (an OIDC `jwks_uri` too) is decided again, name, port and address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allowlist(pub Vec<Entry>);

impl Allowlist {
    /// Decides a request for `host` (as the target gives it) on `port` (`None` for a kind that
    /// connects nowhere of the request's choosing). `None` means refused by name or port.
    pub fn decide(&self, host: &str, port: Option<u16>) -> Option<AddrGuard> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let mut matched = self
            .0
            .iter()
            .filter(|e| e.ports.allow(port) && e.matches_name(&host))
            .peekable();
        matched.peek()?;
        let exact = matched.any(|e| matches!(e.host, Host::Name(_)));
        let listed = self
            .0
            .iter()
            .filter(|e| e.ports.allow(port))
            .filter_map(|e| match e.host {
                Host::Net(n) => Some(n),
                _ => None,
            })
            .collect();
        Some(AddrGuard { listed, exact })
    }
}

/// Addresses no name may lead to unless the allowlist lists them: this host itself, the
/// link-local range (169.254.169.254 is the cloud metadata service), and addresses that are
/// not one host at all.
fn special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unicast_link_local()
                || v6.is_unspecified()
                || v6.is_multicast()
        }
    }
}

/// Networks of an organisation's own (RFC 1918, shared address space RFC 6598, unique local
/// IPv6 RFC 4193): reachable through an exact name, not through a wildcard.
fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => v6.is_unique_local(),
    }
}

impl AddrGuard {
    /// Whether a connection to `ip` may be made.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.listed.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        !special(ip) && (self.exact || !private(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist(
            entries
                .iter()
                .map(|e| Entry::parse(e).unwrap_or_else(|m| panic!("{m}")))
                .collect(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn ports_are_part_of_what_is_allowed() {
        let l = list(&["*.clerk.com", "api.internal:8080", "any.test:*"]);
        assert!(l.decide("x.clerk.com", Some(443)).is_some());
        assert!(l.decide("x.clerk.com", Some(80)).is_some());
        assert!(l.decide("x.clerk.com", Some(22)).is_none());
        assert!(
            l.decide("clerk.com", Some(443)).is_none(),
            "wildcard is not the apex"
        );
        assert!(l.decide("evilclerk.com", Some(443)).is_none());
        assert!(l.decide("api.internal", Some(8080)).is_some());
        assert!(l.decide("api.internal", Some(443)).is_none());
        assert!(l.decide("any.test", Some(6379)).is_some());
        assert!(
            l.decide("x.clerk.com", None).is_some(),
            "a name query has no port"
        );
    }

    #[test]
    fn loopback_and_link_local_need_listing_private_needs_an_exact_name() {
        let l = list(&["*.corp.test", "db.corp.test:5432", "10.9.0.0/16:*"]);
        let wild = l.decide("x.corp.test", Some(443)).expect("allowed by name");
        for refused in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(!wild.permits(ip(refused)), "{refused}");
        }
        assert!(wild.permits(ip("93.184.216.34")));
        assert!(wild.permits(ip("10.9.8.7")), "listed network");
        let exact = l
            .decide("db.corp.test", Some(5432))
            .expect("allowed by name");
        assert!(exact.permits(ip("10.1.2.3")));
        assert!(!exact.permits(ip("127.0.0.1")));
        assert!(!exact.permits(ip("169.254.169.254")));
    }

    #[test]
    fn addresses_and_networks_as_entries() {
        let l = list(&["127.0.0.1:*", "[::1]:8443", "fd00::/8"]);
        let g = l.decide("127.0.0.1", Some(9999)).expect("listed");
        assert!(g.permits(ip("127.0.0.1")));
        assert!(l.decide("[::1]", Some(8443)).is_some());
        assert!(l.decide("::1", Some(443)).is_none());
        assert!(l.decide("fd00::5", Some(443)).is_some());
        assert!(l.decide("127.0.0.2", Some(80)).is_none());
        for bad in [
            "a b",
            "10.0.0.0/33",
            "x.test:0",
            "x.test:http",
            "[::1",
            "*.",
        ] {
            assert!(Entry::parse(bad).is_err(), "{bad}");
        }
    }
}
