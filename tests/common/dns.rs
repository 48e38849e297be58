//! In-process authoritative DNS server on loopback, answering UDP and TCP on one port, whose
//! answers a test scripts per name and can change while the daemon is running.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// What the server does with a query for one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// NOERROR with the records of the queried type; a type with no records yields NODATA.
    Answer {
        a: Vec<Ipv4Addr>,
        aaaa: Vec<Ipv6Addr>,
    },
    NxDomain,
    ServFail,
    Refused,
    /// Never replies, so the client has to time out.
    Silent,
    /// Replies with bytes too short to be a DNS header, so no parser can accept them.
    Garbage,
    /// Waits, then behaves as the inner behaviour.
    Delay(Duration, Box<Behavior>),
}

impl Behavior {
    pub fn a(addrs: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        Behavior::Answer {
            a: addrs.into_iter().collect(),
            aaaa: Vec::new(),
        }
    }

    pub fn aaaa(addrs: impl IntoIterator<Item = Ipv6Addr>) -> Self {
        Behavior::Answer {
            a: Vec::new(),
            aaaa: addrs.into_iter().collect(),
        }
    }

    /// An existing name with no address records of any type.
    pub fn nodata() -> Self {
        Behavior::Answer {
            a: Vec::new(),
            aaaa: Vec::new(),
        }
    }

    pub fn delayed(delay: Duration, then: Behavior) -> Self {
        Behavior::Delay(delay, Box::new(then))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query as the server saw it; `name` is lowercase without the trailing dot.
#[derive(Clone, Debug)]
pub struct SeenQuery {
    pub transport: Transport,
    pub name: String,
    pub qtype: RecordType,
}

struct Shared {
    zone: Mutex<HashMap<String, Behavior>>,
    fallback: Mutex<Behavior>,
    ttl: AtomicU32,
    queries: AtomicU64,
    log: Mutex<Vec<SeenQuery>>,
}

impl Shared {
    fn lookup(&self, name: &str) -> Behavior {
        let zone = self.zone.lock().unwrap();
        match zone.get(name) {
            Some(b) => b.clone(),
            None => self.fallback.lock().unwrap().clone(),
        }
    }
}

/// Running DNS server; dropping it closes both sockets and cancels pending delayed replies.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Starts on 127.0.0.1 with a random port and an empty zone (everything is NXDOMAIN).
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0")
            .await
            .expect("bind DNS fixture on 127.0.0.1")
    }

    pub async fn with_zone<'a>(entries: impl IntoIterator<Item = (&'a str, Behavior)>) -> Self {
        let server = Self::start().await;
        for (name, behavior) in entries {
            server.set(name, behavior);
        }
        server
    }

    /// Binds a specific loopback address such as `127.0.0.53:53`; port 0 picks a free port.
    /// Errors instead of panicking so a test can skip when the address is taken.
    pub async fn start_on(addr: &str) -> io::Result<Self> {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "DNS fixture only binds loopback addresses",
            ));
        }
        let (udp, tcp) = bind_pair(addr).await?;
        Self::start_on_sockets(udp, tcp)
    }

    /// Serves on sockets the caller bound, UDP and TCP on one address: for a test inside a
    /// network namespace it created, on that namespace's own addresses (the constructors above
    /// keep to loopback). Must be called inside a tokio runtime.
    pub fn start_on_sockets(udp: UdpSocket, tcp: TcpListener) -> io::Result<Self> {
        let addr = udp.local_addr()?;
        let shared = Arc::new(Shared {
            zone: Mutex::new(HashMap::new()),
            fallback: Mutex::new(Behavior::NxDomain),
            ttl: AtomicU32::new(60),
            queries: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(serve(Arc::new(udp), tcp, shared.clone()));
        Ok(DnsServer { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set(&self, name: &str, behavior: Behavior) {
        self.shared
            .zone
            .lock()
            .unwrap()
            .insert(normalize_name(name), behavior);
    }

    pub fn remove(&self, name: &str) {
        self.shared
            .zone
            .lock()
            .unwrap()
            .remove(&normalize_name(name));
    }

    /// Behaviour for names not in the zone (NXDOMAIN unless changed).
    pub fn set_default(&self, behavior: Behavior) {
        *self.shared.fallback.lock().unwrap() = behavior;
    }

    pub fn set_ttl(&self, ttl: u32) {
        self.shared.ttl.store(ttl, Ordering::SeqCst);
    }

    /// Messages received over both transports, parseable or not.
    pub fn queries(&self) -> u64 {
        self.shared.queries.load(Ordering::SeqCst)
    }

    pub fn query_log(&self) -> Vec<SeenQuery> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Queries received for `name` (any type, any transport).
    pub fn queries_for(&self, name: &str) -> usize {
        let name = normalize_name(name);
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.name == name)
            .count()
    }
}

async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        return Ok((udp, tcp));
    }
    // The UDP port may already be taken for TCP by someone else; a fresh UDP port usually isn't.
    let mut last_err = None;
    for _ in 0..32 {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap())
}

async fn serve(udp: Arc<UdpSocket>, tcp: TcpListener, shared: Arc<Shared>) {
    // Owning every child task here means aborting this one task tears everything down.
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let Ok((n, peer)) = r else { continue };
                shared.queries.fetch_add(1, Ordering::SeqCst);
                let packet = buf[..n].to_vec();
                let (udp, shared) = (udp.clone(), shared.clone());
                tasks.spawn(async move {
                    if let Some(reply) = respond(&shared, &packet, Transport::Udp).await {
                        let _ = udp.send_to(&reply, peer).await;
                    }
                });
            }
            r = tcp.accept() => {
                let Ok((stream, _)) = r else { continue };
                tasks.spawn(serve_tcp(stream, shared.clone()));
            }
        }
    }
}

async fn serve_tcp(stream: TcpStream, shared: Arc<Shared>) {
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    // Queries on one connection are answered independently so a Silent or delayed name does not
    // hold back later queries pipelined on the same connection.
    let mut tasks = JoinSet::new();
    loop {
        let mut len = [0u8; 2];
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
        if rd.read_exact(&mut packet).await.is_err() {
            break;
        }
        shared.queries.fetch_add(1, Ordering::SeqCst);
        while tasks.try_join_next().is_some() {}
        let (wr, shared) = (wr.clone(), shared.clone());
        tasks.spawn(async move {
            if let Some(reply) = respond(&shared, &packet, Transport::Tcp).await {
                write_framed(&wr, &reply).await;
            }
        });
    }
    // The peer closed its side; let in-flight answers finish rather than cutting them off.
    while tasks.join_next().await.is_some() {}
}

async fn write_framed(wr: &tokio::sync::Mutex<OwnedWriteHalf>, msg: &[u8]) {
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    framed.extend_from_slice(msg);
    let _ = wr.lock().await.write_all(&framed).await;
}

async fn respond(shared: &Shared, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let Some(query) = req.queries.first().cloned() else {
        return Some(reply(&req, ResponseCode::FormErr, Vec::new()));
    };
    let name = normalize_name(&query.name.to_ascii());
    shared.log.lock().unwrap().push(SeenQuery {
        transport,
        name: name.clone(),
        qtype: query.query_type,
    });
    let mut behavior = shared.lookup(&name);
    while let Behavior::Delay(d, inner) = behavior {
        tokio::time::sleep(d).await;
        behavior = *inner;
    }
    let ttl = shared.ttl.load(Ordering::SeqCst);
    match behavior {
        Behavior::Silent => None,
        Behavior::Garbage => Some((0..11).map(|_| fastrand::u8(..)).collect()),
        Behavior::NxDomain => Some(reply(&req, ResponseCode::NXDomain, Vec::new())),
        Behavior::ServFail => Some(reply(&req, ResponseCode::ServFail, Vec::new())),
        Behavior::Refused => Some(reply(&req, ResponseCode::Refused, Vec::new())),
        Behavior::Answer { a, aaaa } => {
            let owner = query.name.clone();
            let answers: Vec<Record> = match query.query_type {
                RecordType::A => a
                    .iter()
                    .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))))
                    .collect(),
                RecordType::AAAA => aaaa
                    .iter()
                    .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip))))
                    .collect(),
                _ => Vec::new(),
            };
            Some(reply(&req, ResponseCode::NoError, answers))
        }
        Behavior::Delay(..) => unreachable!("delays are unwrapped above"),
    }
}

fn reply(req: &Message, code: ResponseCode, answers: Vec<Record>) -> Vec<u8> {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.response_code = code;
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = req.queries.clone();
    resp.answers = answers;
    // Resolvers that sent EDNS expect an OPT record back; echoing theirs could carry options
    // (cookies, DO) this server does not implement.
    resp.edns = req.edns.as_ref().map(|_| Edns::new());
    resp.to_vec().expect("encode DNS reply")
}

/// Builds a query for tests that talk to the server (or the daemon's resolver path) directly.
pub fn build_query(name: &str, qtype: RecordType) -> Message {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    let mut msg = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let fqdn = format!("{}.", normalize_name(name));
    msg.add_query(Query::query(
        Name::from_ascii(&fqdn).expect("valid DNS name"),
        qtype,
    ));
    msg
}

/// Sends one query over UDP and waits up to `timeout` for a parseable reply.
pub async fn query_udp(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> io::Result<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let q = build_query(name, qtype);
    sock.send_to(&q.to_vec().map_err(io::Error::other)?, server)
        .await?;
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(timeout, sock.recv(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no DNS reply"))??;
    Message::from_vec(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Sends one query over TCP (length-prefixed) and waits up to `timeout` for the reply.
pub async fn query_tcp(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> io::Result<Message> {
    let q = build_query(name, qtype)
        .to_vec()
        .map_err(io::Error::other)?;
    let fut = async {
        let mut s = TcpStream::connect(server).await?;
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, io::Error>(buf)
    };
    let buf = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no DNS reply"))??;
    Message::from_vec(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
