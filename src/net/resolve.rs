//! Name resolution as the API's container would do it: the hosts file, then the nameservers
//! of resolv.conf (read on every call, never cached), or one explicit server.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use hickory_proto::rr::RecordType;
use tokio::time::Instant;

use crate::failure::{Failure, Reason};
use crate::net::dns::{self, DnsError, DnsReply};

/// How to reach a DNS server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResolverSpec {
    /// The nameservers in resolv.conf (after the hosts file, for HTTP probes).
    System,
    Server {
        addr: SocketAddr,
        tcp: bool,
    },
}

impl ResolverSpec {
    /// The stable label for metrics: `system`, `8.8.8.8:53/udp`.
    pub fn label(&self) -> String {
        match self {
            ResolverSpec::System => "system".into(),
            ResolverSpec::Server { addr, tcp } => {
                format!("{addr}/{}", if *tcp { "tcp" } else { "udp" })
            }
        }
    }

    pub fn parse(s: &str) -> Result<ResolverSpec, String> {
        let s = s.trim();
        if s == "system" {
            return Ok(ResolverSpec::System);
        }
        let (tcp, rest) = if let Some(r) = s.strip_prefix("tcp://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("udp://") {
            (false, r)
        } else {
            (false, s)
        };
        let addr = if let Ok(ip) = rest.parse::<IpAddr>() {
            SocketAddr::new(ip, 53)
        } else {
            rest.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "invalid resolver {s:?}: expected `system`, `IP`, `IP:PORT`, `[IPv6]:PORT`, optionally prefixed by udp:// or tcp://"
                )
            })?
        };
        Ok(ResolverSpec::Server { addr, tcp })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// Resolve both, try IPv6 addresses first and fall back to IPv4, as getaddrinfo does.
    Dual,
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn parse(s: &str) -> Result<IpFamily, String> {
        match s {
            "dual" => Ok(IpFamily::Dual),
            "ipv4" | "ip4" => Ok(IpFamily::Ipv4),
            "ipv6" | "ip6" => Ok(IpFamily::Ipv6),
            other => Err(format!(
                "invalid ip_family {other:?}: use dual, ipv4 or ipv6"
            )),
        }
    }
}

/// Where the `system` resolver looks.
#[derive(Debug, Clone)]
pub struct SystemFiles {
    pub resolv_conf: PathBuf,
    pub resolv_conf_port: u16,
    pub hosts_file: PathBuf,
}

/// A failed resolution: the reason and a message for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ResolveError {
    pub reason: Reason,
    pub message: String,
}

/// Orders DNS failures so the most telling one is reported: local exhaustion first, then a
/// definite NXDOMAIN over a NODATA for the other address family.
pub fn severity_rank(reason: Reason) -> u8 {
    match reason {
        // Out of descriptors, the other lookups' answers say nothing: report that first.
        Reason::LocalResourcesExhausted => 0,
        Reason::DnsNxdomain => 1,
        Reason::DnsServfail | Reason::DnsRefused => 2,
        Reason::DnsTimeout | Reason::DnsUnreachable => 3,
        Reason::DnsNodata => 5,
        _ => 4,
    }
}

/// The nameservers in a resolv.conf text; glibc falls back to the local host when none is set.
pub fn parse_resolv_conf(text: &str, port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some("nameserver"))
                .then(|| parts.next())
                .flatten()
        })
        .filter_map(|ip| {
            let ip = ip.split('%').next().unwrap_or(ip);
            ip.parse::<IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    out.truncate(3);
    if out.is_empty() {
        out.push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    }
    out
}

/// Addresses for `host` in a hosts-file text.
pub fn lookup_hosts(text: &str, host: &str) -> Vec<IpAddr> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let ip: IpAddr = parts.next()?.parse().ok()?;
            parts.any(|n| n.eq_ignore_ascii_case(host)).then_some(ip)
        })
        .collect()
}

/// The nameservers the system resolver would use right now.
pub async fn system_servers(files: &SystemFiles) -> Vec<SocketAddr> {
    let text = read_small(&files.resolv_conf).await;
    parse_resolv_conf(&text, files.resolv_conf_port)
}

/// Queries the servers in order, moving on when one does not answer in its share of the
/// remaining time, as the libc stub resolver does. Returns the first real reply.
pub async fn query_servers(
    servers: &[SocketAddr],
    tcp: bool,
    name: &str,
    rtype: RecordType,
    deadline: Instant,
) -> Result<DnsReply, ResolveError> {
    let mut last = ResolveError {
        reason: Reason::DnsTimeout,
        message: format!("no DNS server answered for {name} {rtype}"),
    };
    for (i, server) in servers.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let share = left / u32::try_from(servers.len() - i).unwrap_or(1);
        match tokio::time::timeout(share, dns::query(*server, tcp, name, rtype)).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(e @ DnsError::BadName(_))) => {
                return Err(ResolveError {
                    reason: Reason::DnsError,
                    message: e.to_string(),
                });
            }
            Ok(Err(e)) => {
                last = ResolveError {
                    reason: e.reason(),
                    message: e.to_string(),
                }
            }
            Err(_) => {
                last = ResolveError {
                    reason: Reason::DnsTimeout,
                    message: format!("DNS server {server} did not answer for {name} {rtype}"),
                }
            }
        }
    }
    Err(last)
}

/// How an HTTP probe finds the addresses of a host.
#[derive(Debug, Clone)]
pub struct Resolver {
    pub spec: ResolverSpec,
    pub files: SystemFiles,
}

impl Resolver {
    /// `resolve`, with the failure a probe reports.
    pub async fn addresses(
        &self,
        host: &str,
        family: IpFamily,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, Failure> {
        self.resolve(host, family, deadline)
            .await
            .map_err(|e| Failure::new(e.reason, format!("resolve {host}: {}", e.message)))
    }

    /// Resolves `host` for `family`: IP literals as they are; with the system resolver the
    /// hosts file first. IPv6 addresses come first in dual mode, as getaddrinfo orders them.
    pub async fn resolve(
        &self,
        host: &str,
        family: IpFamily,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let wanted = |ip: &IpAddr| match family {
            IpFamily::Dual => true,
            IpFamily::Ipv4 => ip.is_ipv4(),
            IpFamily::Ipv6 => ip.is_ipv6(),
        };
        let (servers, tcp) = match &self.spec {
            ResolverSpec::System => {
                let hosts = read_small(&self.files.hosts_file).await;
                let mut found: Vec<IpAddr> = lookup_hosts(&hosts, host)
                    .into_iter()
                    .filter(wanted)
                    .collect();
                if !found.is_empty() {
                    found.sort_by_key(|ip| ip.is_ipv4());
                    return Ok(found);
                }
                (system_servers(&self.files).await, false)
            }
            ResolverSpec::Server { addr, tcp } => (vec![*addr], *tcp),
        };
        let q = |t| query_servers(&servers, tcp, host, t, deadline);
        let results = match family {
            IpFamily::Dual => {
                let (v6, v4) = tokio::join!(q(RecordType::AAAA), q(RecordType::A));
                vec![(RecordType::AAAA, v6), (RecordType::A, v4)]
            }
            IpFamily::Ipv4 => vec![(RecordType::A, q(RecordType::A).await)],
            IpFamily::Ipv6 => vec![(RecordType::AAAA, q(RecordType::AAAA).await)],
        };
        let mut addrs = Vec::new();
        let mut failures = Vec::new();
        for (t, r) in results {
            match r {
                Ok(reply) => match reply.failure() {
                    None => addrs.extend(reply.addrs.into_iter().filter(wanted)),
                    Some(reason) => failures.push(ResolveError {
                        reason,
                        message: format!("{host} {t}: {}", dns::rcode_name(reply.rcode)),
                    }),
                },
                Err(e) => failures.push(e),
            }
        }
        if !addrs.is_empty() {
            addrs.sort_by_key(|ip| ip.is_ipv4());
            addrs.dedup();
            return Ok(addrs);
        }
        failures.sort_by_key(|e| severity_rank(e.reason));
        Err(failures.into_iter().next().unwrap_or(ResolveError {
            reason: Reason::DnsNodata,
            message: format!("{host}: no addresses"),
        }))
    }
}

/// A system file read on a probe's hot path: one trip to the blocking pool, and a file over
/// 1 MiB (no real resolv.conf or hosts file) reads as empty rather than filling memory.
async fn read_small(path: &Path) -> String {
    const CAP: u64 = 1 << 20;
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut text = String::new();
        let file = std::fs::File::open(&path).ok()?;
        file.take(CAP + 1).read_to_string(&mut text).ok()?;
        (text.len() as u64 <= CAP).then_some(text)
    });
    read.await.ok().flatten().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_hosts() {
        let rc = "# c\nsearch x\nnameserver 127.0.0.11\nnameserver ::1\nnameserver bogus\noptions ndots:0\n";
        let s = parse_resolv_conf(rc, 5353);
        assert_eq!(
            s,
            vec![
                "127.0.0.11:5353".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_resolv_conf("", 53),
            vec!["127.0.0.1:53".parse().unwrap()]
        );
        let h = "127.0.0.1 localhost\n10.1.2.3 clerk.test api.clerk.test # x\n";
        assert_eq!(
            lookup_hosts(h, "API.clerk.test"),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert!(lookup_hosts(h, "nothere").is_empty());
    }
}
