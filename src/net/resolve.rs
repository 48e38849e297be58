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

/// The container's resolver settings as its libc reads them from resolv.conf: nameservers
/// (at most 3, in order), the search list and `ndots`, and `options timeout/attempts/rotate`.
/// Parsing is the `resolv-conf` crate's (the one hickory-resolver uses); lines glibc would
/// ignore are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemConf {
    pub servers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: u32,
    /// Per query and server, as `options timeout:` (glibc's default 5 s, capped at 30).
    pub timeout: std::time::Duration,
    /// Rounds over the servers, as `options attempts:` (default 2, capped at 5).
    pub attempts: u32,
    pub rotate: bool,
}

/// glibc's limits: 3 nameservers, 6 search domains, timeout ≤ 30 s, attempts ≤ 5.
const MAX_SERVERS: usize = 3;
const MAX_SEARCH: usize = 6;

pub fn parse_resolv_conf(text: &str, port: u16) -> SystemConf {
    let (conf, _ignored) = resolv_conf::Config::parse_with_errors(text.as_bytes());
    let mut servers: Vec<SocketAddr> = conf
        .nameservers
        .iter()
        .map(|ip| SocketAddr::new(IpAddr::from(ip), port))
        .collect();
    servers.truncate(MAX_SERVERS);
    // glibc falls back to the local host when no nameserver is set.
    if servers.is_empty() {
        servers.push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    }
    let mut search: Vec<String> = conf
        .get_last_search_or_domain()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    search.truncate(MAX_SEARCH);
    SystemConf {
        servers,
        search,
        ndots: conf.ndots.min(15),
        timeout: std::time::Duration::from_secs(u64::from(conf.timeout.clamp(1, 30))),
        attempts: conf.attempts.clamp(1, 5),
        rotate: conf.rotate,
    }
}

impl SystemConf {
    /// The names glibc's res_search tries for `host`, in order: a name ending in `.` as it
    /// is; with at least `ndots` dots the name first and then each search domain; with fewer,
    /// each search domain first and the name last.
    pub fn candidates(&self, host: &str) -> Vec<String> {
        if let Some(absolute) = host.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let dots = u32::try_from(host.matches('.').count()).unwrap_or(u32::MAX);
        let searched = self.search.iter().map(|d| format!("{host}.{d}"));
        if dots >= self.ndots {
            std::iter::once(host.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(host.to_string())).collect()
        }
    }
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
    system_conf(files).await.servers
}

/// The system resolver's settings right now (resolv.conf is read on every call, as libc
/// re-reads it when it changes).
pub async fn system_conf(files: &SystemFiles) -> SystemConf {
    let text = read_small(&files.resolv_conf).await;
    parse_resolv_conf(&text, files.resolv_conf_port)
}

/// Rotation start for `options rotate`, shared by every lookup of the process as glibc's is.
static ROTATE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Queries the system resolver as libc does: `attempts` rounds over the servers in order (a
/// rotating start with `rotate`), each query waiting `timeout`, all within the deadline.
pub async fn query_system(
    conf: &SystemConf,
    name: &str,
    rtype: RecordType,
    deadline: Instant,
) -> Result<DnsReply, ResolveError> {
    let n = conf.servers.len().max(1);
    let start = if conf.rotate {
        ROTATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n
    } else {
        0
    };
    let order: Vec<SocketAddr> = (0..n)
        .filter_map(|i| conf.servers.get((start + i) % n).copied())
        .collect();
    let mut last = ResolveError {
        reason: Reason::DnsTimeout,
        message: format!("no DNS server answered for {name} {rtype}"),
    };
    for _ in 0..conf.attempts {
        for server in &order {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last);
            }
            match query_one(*server, false, name, rtype, conf.timeout.min(left)).await {
                Ok(reply) => return Ok(reply),
                Err((e, true)) => return Err(e),
                Err((e, false)) => last = e,
            }
        }
    }
    Err(last)
}

/// One query to one server within `wait`. `Err((e, true))`: no other server can do better
/// (the name itself cannot be queried).
async fn query_one(
    server: SocketAddr,
    tcp: bool,
    name: &str,
    rtype: RecordType,
    wait: std::time::Duration,
) -> Result<DnsReply, (ResolveError, bool)> {
    match tokio::time::timeout(wait, dns::query(server, tcp, name, rtype)).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e @ DnsError::BadName(_))) => Err((
            ResolveError {
                reason: Reason::DnsError,
                message: e.to_string(),
            },
            true,
        )),
        Ok(Err(e)) => Err((
            ResolveError {
                reason: e.reason(),
                message: e.to_string(),
            },
            false,
        )),
        Err(_) => Err((
            ResolveError {
                reason: Reason::DnsTimeout,
                message: format!("DNS server {server} did not answer for {name} {rtype}"),
            },
            false,
        )),
    }
}

/// Queries the servers in order, moving on when one does not answer in its share of the
/// remaining time. Returns the first real reply.
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
        match query_one(*server, tcp, name, rtype, share).await {
            Ok(reply) => return Ok(reply),
            Err((e, true)) => return Err(e),
            Err((e, false)) => last = e,
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
        match &self.spec {
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
                let conf = system_conf(&self.files).await;
                search(&conf, host, family, deadline).await
            }
            ResolverSpec::Server { addr, tcp } => {
                let server = [*addr];
                let q = |t| query_servers(&server, *tcp, host, t, deadline);
                lookup(host, family, q).await
            }
        }
    }
}

/// Tries the names of the search list in order, moving on when a name does not exist
/// (NXDOMAIN or no data), stopping at an answer or any other failure, as res_search does.
async fn search(
    conf: &SystemConf,
    host: &str,
    family: IpFamily,
    deadline: Instant,
) -> Result<Vec<IpAddr>, ResolveError> {
    let mut first_missing = None;
    for name in conf.candidates(host) {
        let q = |t| query_system(conf, &name, t, deadline);
        match lookup(&name, family, q).await {
            Ok(addrs) => return Ok(addrs),
            Err(e) if matches!(e.reason, Reason::DnsNxdomain | Reason::DnsNodata) => {
                first_missing.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first_missing.unwrap_or(ResolveError {
        reason: Reason::DnsNxdomain,
        message: format!("{host}: no name to try"),
    }))
}

/// The addresses of one name for `family`, from `q` (one query per record type). IPv6
/// addresses come first in dual mode, as getaddrinfo orders them.
async fn lookup<F, Fut>(host: &str, family: IpFamily, q: F) -> Result<Vec<IpAddr>, ResolveError>
where
    F: Fn(RecordType) -> Fut,
    Fut: std::future::Future<Output = Result<DnsReply, ResolveError>>,
{
    let wanted = |ip: &IpAddr| match family {
        IpFamily::Dual => true,
        IpFamily::Ipv4 => ip.is_ipv4(),
        IpFamily::Ipv6 => ip.is_ipv6(),
    };
    {
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

/// A system file read on a probe's hot path: read again only when it changed, and a file over
/// 1 MiB (no real resolv.conf or hosts file) reads as empty rather than filling memory.
async fn read_small(path: &Path) -> std::sync::Arc<str> {
    const CAP: u64 = 1 << 20;
    crate::files::read_system_file(path, CAP).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_hosts() {
        let rc = "# c\nsearch x\nnameserver 127.0.0.11\nnameserver ::1\nnameserver bogus\noptions ndots:0\n";
        let s = parse_resolv_conf(rc, 5353);
        assert_eq!(
            s.servers,
            vec![
                "127.0.0.11:5353".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_resolv_conf("", 53).servers,
            vec!["127.0.0.1:53".parse().unwrap()]
        );
        let h = "127.0.0.1 localhost\n10.1.2.3 clerk.test api.clerk.test # x\n";
        assert_eq!(
            lookup_hosts(h, "API.clerk.test"),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert!(lookup_hosts(h, "nothere").is_empty());
    }

    #[test]
    fn search_list_and_ndots_as_glibc_applies_them() {
        let k8s = parse_resolv_conf(
            "nameserver 10.96.0.10\nsearch prod.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:3 rotate\n",
            53,
        );
        assert_eq!((k8s.ndots, k8s.attempts, k8s.rotate), (5, 3, true));
        assert_eq!(k8s.timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            k8s.candidates("homecam-api"),
            [
                "homecam-api.prod.svc.cluster.local",
                "homecam-api.svc.cluster.local",
                "homecam-api.cluster.local",
                "homecam-api"
            ]
        );
        // Fewer dots than ndots: the search list first, even for api.clerk.com.
        assert_eq!(
            k8s.candidates("api.clerk.com").first().unwrap(),
            "api.clerk.com.prod.svc.cluster.local"
        );
        assert_eq!(
            k8s.candidates("api.clerk.com.").as_slice(),
            ["api.clerk.com"]
        );
        let plain = parse_resolv_conf("nameserver 1.1.1.1\nsearch corp.example\n", 53);
        assert_eq!(
            plain.candidates("api.clerk.com"),
            ["api.clerk.com", "api.clerk.com.corp.example"]
        );
        assert_eq!(
            (plain.ndots, plain.attempts, plain.timeout.as_secs()),
            (1, 2, 5)
        );
    }
}
