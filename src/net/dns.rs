//! One DNS query against one server over UDP or TCP, returning the raw rcode and answers.
//!
//! Deliberately no cache and no retries: the DNS probe must see exactly what each server says.

use std::io;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::failure::Reason;

/// What a server answered.
#[derive(Debug, Clone)]
pub struct DnsReply {
    pub rcode: ResponseCode,
    /// Records in the answer section, of any type (CNAMEs included).
    pub answer_count: usize,
    /// Records in the authority and additional sections, as a DNS library that keeps the EDNS
    /// OPT record among the additional ones counts them (blackbox_exporter's
    /// `probe_dns_authority_rrs` and `probe_dns_additional_rrs`).
    pub authority_count: u16,
    pub additional_count: u16,
    /// Setting up the socket (UDP) or connecting (TCP), and from the query sent to the reply,
    /// for the exchange that answered: blackbox_exporter's `connect` and `request` phases.
    pub connect: std::time::Duration,
    pub request: std::time::Duration,
    /// A and AAAA addresses from the answer section.
    pub addrs: Vec<IpAddr>,
}

impl DnsReply {
    /// The failure this reply amounts to for a lookup that wants answers of `rtype`.
    pub fn failure(&self) -> Option<Reason> {
        match self.rcode {
            ResponseCode::NoError if self.answer_count == 0 => Some(Reason::DnsNodata),
            ResponseCode::NoError => None,
            ResponseCode::ServFail => Some(Reason::DnsServfail),
            ResponseCode::NXDomain => Some(Reason::DnsNxdomain),
            ResponseCode::Refused => Some(Reason::DnsRefused),
            _ => Some(Reason::DnsError),
        }
    }
}

/// A query that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid query name {0:?}")]
    BadName(String),
    #[error("socket error talking to {server}: {source}")]
    Io {
        server: SocketAddr,
        source: io::Error,
    },
    #[error("malformed response from {server}: {detail}")]
    Malformed { server: SocketAddr, detail: String },
}

impl DnsError {
    pub fn reason(&self) -> Reason {
        match self {
            // A resolver that cannot be reached is a DNS failure, whatever the transport said:
            // an HTTP probe whose resolve step fails must not read as a failed connect.
            DnsError::Io { source, .. } if crate::failure::local_exhaustion(source) => {
                Reason::LocalResourcesExhausted
            }
            DnsError::Io { source, .. } => match source.kind() {
                // The resolver's port answered "closed" (ICMP port unreachable): it refuses.
                io::ErrorKind::ConnectionRefused => Reason::DnsRefused,
                io::ErrorKind::TimedOut => Reason::DnsTimeout,
                io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::AddrNotAvailable => Reason::DnsUnreachable,
                _ => Reason::DnsError,
            },
            _ => Reason::DnsError,
        }
    }
}

fn build_query(name: &str, rtype: RecordType) -> Result<(u16, Vec<u8>), DnsError> {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let qname = Name::from_ascii(&fqdn).map_err(|_| DnsError::BadName(name.to_string()))?;
    let id = fastrand::u16(..);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, rtype));
    let bytes = msg
        .to_vec()
        .map_err(|_| DnsError::BadName(name.to_string()))?;
    Ok((id, bytes))
}

#[doc(hidden)]
pub fn parse_reply(server: SocketAddr, buf: &[u8]) -> Result<Message, DnsError> {
    Message::from_vec(buf).map_err(|e| DnsError::Malformed {
        server,
        detail: e.to_string(),
    })
}

#[doc(hidden)]
pub fn to_reply(msg: &Message) -> DnsReply {
    let addrs = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    DnsReply {
        rcode: msg.metadata.response_code,
        answer_count: msg.answers.len(),
        authority_count: u16::try_from(msg.authorities.len()).unwrap_or(u16::MAX),
        additional_count: u16::try_from(msg.additionals.len() + usize::from(msg.edns.is_some()))
            .unwrap_or(u16::MAX),
        connect: std::time::Duration::ZERO,
        request: std::time::Duration::ZERO,
        addrs,
    }
}

/// Sends one query and waits for the matching reply. The caller bounds the wait with its
/// deadline; a UDP reply with a foreign id is ignored (late or spoofed), a reply that does not
/// parse fails at once. A truncated UDP reply is retried over TCP, as stub resolvers do.
pub async fn query(
    server: SocketAddr,
    tcp: bool,
    name: &str,
    rtype: RecordType,
) -> Result<DnsReply, DnsError> {
    let (id, bytes) = build_query(name, rtype)?;
    let io_err = |source| DnsError::Io { server, source };
    if !tcp {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| DnsError::BadName(name.into()))?
        } else {
            "[::]:0"
                .parse()
                .map_err(|_| DnsError::BadName(name.into()))?
        };
        let started = std::time::Instant::now();
        let sock = UdpSocket::bind(bind).await.map_err(io_err)?;
        sock.connect(server).await.map_err(io_err)?;
        let connected = std::time::Instant::now();
        sock.send(&bytes).await.map_err(io_err)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await.map_err(io_err)?;
            let msg = parse_reply(server, &buf[..n])?;
            if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
                continue;
            }
            if msg.metadata.truncation {
                break;
            }
            return Ok(DnsReply {
                connect: connected - started,
                request: connected.elapsed(),
                ..to_reply(&msg)
            });
        }
    }
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(server).await.map_err(io_err)?;
    let connected = std::time::Instant::now();
    let len = u16::try_from(bytes.len()).map_err(|_| DnsError::BadName(name.into()))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.map_err(io_err)?;
    let mut len_buf = [0u8; 2];
    stream.read_exact(&mut len_buf).await.map_err(io_err)?;
    let len = usize::from(u16::from_be_bytes(len_buf));
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.map_err(io_err)?;
    let msg = parse_reply(server, &buf)?;
    if msg.metadata.id != id {
        return Err(DnsError::Malformed {
            server,
            detail: "reply id does not match the query".into(),
        });
    }
    Ok(DnsReply {
        connect: connected - started,
        request: connected.elapsed(),
        ..to_reply(&msg)
    })
}

/// The rcode as dig prints it (`NOERROR`, `SERVFAIL`, `NXDOMAIN`, `REFUSED`, …): the names
/// operators search logs and runbooks for.
pub fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}
