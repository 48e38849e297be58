//! The HTTP engine shared by the HTTP-based probes: resolve, connect (directly or through an
//! HTTP CONNECT proxy), TLS, request and bounded body, each phase timed into the run's trace.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::failure::Failure;
use crate::failure::Reason;
use crate::net::allow::{AddrGuard, Allowlist};
use crate::net::resolve::{IpFamily, Resolver, ResolverSpec};
use crate::net::target::{Target, split_host_port};
use crate::net::tls::{self, Recorder, TrustCache};
use crate::net::trace::{Phase, Trace};
use crate::secret::Secret;

pub const USER_AGENT: &str = concat!("authwatch/", env!("CARGO_PKG_VERSION"));

/// An HTTP CONNECT proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySpec {
    pub host: String,
    pub port: u16,
    /// `Basic` credentials, already base64-encoded.
    pub auth: Option<Secret>,
}

impl ProxySpec {
    pub fn parse(s: &str) -> Result<ProxySpec, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| "proxy URL must start with http:// (HTTP CONNECT proxy)".to_string())?;
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport, 80)
            .ok_or_else(|| "proxy URL has an invalid host or port".to_string())?;
        let auth =
            userinfo.map(|u| Secret::new(base64::engine::general_purpose::STANDARD.encode(u)));
        Ok(ProxySpec { host, port, auth })
    }
}

/// Which proxy an HTTP probe uses.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyChoice {
    Direct,
    Proxy(ProxySpec),
}

/// Connection settings shared by every HTTP-based probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnSpec {
    pub resolver: ResolverSpec,
    pub ip_family: IpFamily,
    pub proxy: ProxyChoice,
    pub body_limit: u64,
    pub headers: Vec<(String, String)>,
    pub ca_file: Option<std::path::PathBuf>,
    pub server_name: Option<String>,
    pub roots: Roots,
    /// The allowlist a `/probe` request's every connection is decided by; scheduled probes,
    /// which the operator wrote, have none.
    pub guard: Option<Arc<Allowlist>>,
    /// Record who the server certificate names (`/probe` runs, for blackbox's chain info).
    pub leaf_details: bool,
}

/// Which roots a chain is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Roots {
    /// The system trust store (honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    #[default]
    System,
    /// A bundle shipped with the client instead: the Mozilla set that certifi (Python) and
    /// Node carry, here the reference roots.
    Bundled,
}

/// Seconds since the epoch, negative before it.
fn secs(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Local clock minus a server's clock, in seconds: the interval the evidence allows and its
/// middle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockOffset {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

impl ClockOffset {
    /// Whether every offset in the interval is beyond `threshold` seconds either way.
    pub fn surely_beyond(&self, threshold: f64) -> bool {
        self.lower > threshold || self.upper < -threshold
    }
}

/// A response that arrived in full (within the body limit).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Wall-clock time just before the request was written and when its head arrived.
    pub sent_at: SystemTime,
    pub received_at: SystemTime,
}

impl Response {
    /// Local clock minus the server's `Date`, as the interval it is. A server stamps `Date`
    /// anywhere between receiving the request and sending the answer (uvicorn at arrival),
    /// and with whole seconds: its clock read some time in [D, D+1) at a local moment in
    /// [sent, received]. So the offset lies in [sent − D − 1, received − D]; the estimate is
    /// the middle.
    pub fn clock_offset(&self) -> Option<ClockOffset> {
        let date = self.headers.get(http::header::DATE)?.to_str().ok()?;
        let server = secs(httpdate::parse_http_date(date).ok()?);
        let (sent, received) = (secs(self.sent_at), secs(self.received_at));
        Some(ClockOffset {
            estimate: (sent + received) / 2.0 - (server + 0.5),
            lower: sent - server - 1.0,
            upper: received - server,
        })
    }
}

/// `Last-Modified` in Unix seconds. A server's header is untrusted input: anything that is
/// not one HTTP date (the three forms Go's `http.ParseTime` takes, so blackbox agrees) gives
/// `None`, and a parsed date is a year in 1970..=9999, so the value is bounded.
fn last_modified(headers: &HeaderMap) -> Option<f64> {
    let value = headers.get(http::header::LAST_MODIFIED)?.to_str().ok()?;
    Some(secs(httpdate::parse_http_date(value.trim()).ok()?))
}

/// The `Content-Length` a response declared, −1 when it declared none or one that is not a
/// number (as Go's `Response.ContentLength`, which blackbox reports).
fn declared_length(headers: &HeaderMap) -> i64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .and_then(|n| i64::try_from(n).ok())
        .unwrap_or(-1)
}

/// An HTTP client bound to one probe's connection settings. It keeps no connections between
/// runs: each run measures a full resolve, connect and handshake, as the API's first fetch would.
#[derive(Debug)]
pub struct HttpClient {
    conn: ConnSpec,
    resolver: Resolver,
    trust: Arc<TrustCache>,
}

fn io_reason(e: &io::Error) -> Reason {
    if crate::failure::local_exhaustion(e) {
        return Reason::LocalResourcesExhausted;
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Reason::ConnectRefused,
        io::ErrorKind::TimedOut => Reason::ConnectTimeout,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Reason::ConnectionReset,
        _ => Reason::NetworkUnreachable,
    }
}

/// Connects to the first address that accepts, giving each a fair share of the time left
/// so a black-holed IPv6 route does not eat the whole deadline. Addresses the guard refuses
/// are skipped, never dialled, and the trace says so.
pub async fn connect_any(
    addrs: &[IpAddr],
    port: u16,
    deadline: Instant,
    trace: &Trace,
    guard: Option<&AddrGuard>,
) -> Result<TcpStream, Failure> {
    let mut last = Failure::new(Reason::NetworkUnreachable, "no address to connect to");
    for (i, ip) in addrs.iter().enumerate() {
        let sa = SocketAddr::new(*ip, port);
        if guard.is_some_and(|g| !g.permits(*ip)) {
            trace.update(|t| t.refused = Some(sa.to_string()));
            last = Failure::new(
                Reason::NetworkUnreachable,
                format!("connect to {sa}: not allowed by probe_allowlist"),
            );
            continue;
        }
        trace.update(|t| t.dialled = Some(*ip));
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(1);
        match tokio::time::timeout(share, TcpStream::connect(sa)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                trace.update(|t| t.ip_protocol = Some(if ip.is_ipv4() { 4 } else { 6 }));
                return Ok(s);
            }
            Ok(Err(e)) => last = Failure::new(io_reason(&e), format!("connect to {sa}: {e}")),
            Err(_) => {
                last = Failure::new(
                    Reason::ConnectTimeout,
                    format!("connect to {sa}: timed out"),
                )
            }
        }
    }
    Err(last)
}

/// Decides one connection of a `/probe` run by its allowlist: the address checks to apply,
/// or a failure the trace marks as refused. Runs without an allowlist connect anywhere.
pub fn admit(
    list: Option<&Allowlist>,
    host: &str,
    port: u16,
    trace: &Trace,
) -> Result<Option<AddrGuard>, Failure> {
    let Some(list) = list else {
        return Ok(None);
    };
    match list.decide(host, Some(port)) {
        Some(g) => Ok(Some(g)),
        None => {
            let what = format!("{}:{port}", crate::failure::bounded(host, 253));
            let failure = Failure::new(
                Reason::NetworkUnreachable,
                format!("{what}: not allowed by probe_allowlist"),
            );
            trace.update(|t| t.refused = Some(what));
            Err(failure)
        }
    }
}

impl HttpClient {
    pub fn new(conn: ConnSpec, resolver: Resolver, trust: Arc<TrustCache>) -> Self {
        HttpClient {
            conn,
            resolver,
            trust,
        }
    }

    async fn resolve(&self, host: &str, deadline: Instant) -> Result<Vec<IpAddr>, Failure> {
        self.resolver
            .addresses(host, self.conn.ip_family, deadline)
            .await
    }

    /// Opens a tunnel through an HTTP CONNECT proxy.
    async fn connect_via_proxy(
        &self,
        proxy: &ProxySpec,
        target: &Target,
        deadline: Instant,
        trace: &Trace,
    ) -> Result<TcpStream, Failure> {
        trace.enter(Phase::Resolve);
        let addrs = self.resolve(&proxy.host, deadline).await.map_err(|f| {
            Failure::new(
                Reason::ProxyConnectFailed,
                format!("proxy {}: {}", proxy.host, f.message),
            )
        })?;
        trace.enter(Phase::Connect);
        let mut stream = connect_any(&addrs, proxy.port, deadline, trace, None)
            .await
            .map_err(|f| {
                Failure::new(Reason::ProxyConnectFailed, format!("proxy: {}", f.message))
            })?;
        if !target.https {
            return Ok(stream);
        }
        let authority = format!("{}:{}", bracket(&target.host), target.port);
        let mut req = format!(
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n"
        );
        if let Some(auth) = &proxy.auth {
            req.push_str("Proxy-Authorization: Basic ");
            req.push_str(auth.expose());
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        let proxy_err =
            |e: io::Error| Failure::new(Reason::ProxyConnectFailed, format!("proxy CONNECT: {e}"));
        stream.write_all(req.as_bytes()).await.map_err(proxy_err)?;
        // Read the proxy's answer byte by byte so no tunnelled byte is swallowed.
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 {
                return Err(Failure::new(
                    Reason::ProxyConnectFailed,
                    "proxy answer head too large",
                ));
            }
            let n = stream.read(&mut byte).await.map_err(proxy_err)?;
            if n == 0 {
                return Err(Failure::new(
                    Reason::ProxyConnectFailed,
                    "proxy closed the connection during CONNECT",
                ));
            }
            head.push(byte[0]);
        }
        let status_line = String::from_utf8_lossy(&head);
        let code: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        match code {
            200..=299 => Ok(stream),
            407 => Err(Failure::new(
                Reason::ProxyAuthRequired,
                "proxy answered 407 Proxy Authentication Required",
            )),
            _ => Err(Failure::new(
                Reason::ProxyConnectFailed,
                format!("proxy refused CONNECT to {authority} with status {code}"),
            )),
        }
    }

    /// Performs one GET. Failures carry the reason for the stage that failed; whatever was
    /// learnt before (TLS chain, status) is in the trace.
    pub async fn get(
        &self,
        target: &Target,
        extra_headers: &[(HeaderName, HeaderValue)],
        trace: &Trace,
        deadline: Instant,
    ) -> Result<Response, Failure> {
        self.send(
            Method::GET,
            target,
            extra_headers,
            Bytes::new(),
            trace,
            deadline,
        )
        .await
    }

    /// Performs one request with any method and body.
    pub async fn send(
        &self,
        method: Method,
        target: &Target,
        extra_headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        trace: &Trace,
        deadline: Instant,
    ) -> Result<Response, Failure> {
        match tokio::time::timeout_at(
            deadline,
            self.send_inner(method, target, extra_headers, body, trace, deadline),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                let phase = trace.current().unwrap_or(Phase::Processing);
                Err(Failure::new(
                    phase.timeout_reason(),
                    format!(
                        "{}: deadline exceeded during {}",
                        target.authority(),
                        phase.as_label()
                    ),
                ))
            }
        }
    }

    async fn send_inner(
        &self,
        method: Method,
        target: &Target,
        extra_headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        trace: &Trace,
        deadline: Instant,
    ) -> Result<Response, Failure> {
        let request = (method, body);
        let via_proxy = match &self.conn.proxy {
            ProxyChoice::Proxy(p) => Some(p),
            ProxyChoice::Direct => None,
        };
        let tcp = match via_proxy {
            Some(p) => {
                // The proxy resolves the name, so the addresses cannot be checked here; the
                // name and port are, before the proxy is asked for anything.
                admit(self.conn.guard.as_deref(), &target.host, target.port, trace)?;
                self.connect_via_proxy(p, target, deadline, trace).await?
            }
            None => {
                let admitted = admit(self.conn.guard.as_deref(), &target.host, target.port, trace)?;
                trace.enter(Phase::Resolve);
                let addrs = self.resolve(&target.host, deadline).await?;
                trace.enter(Phase::Connect);
                connect_any(&addrs, target.port, deadline, trace, admitted.as_ref()).await?
            }
        };
        // Plain HTTP through a proxy uses the absolute form of the request target.
        let uri = if via_proxy.is_some() && !target.https {
            target.url()
        } else {
            target.path.clone()
        };
        if !target.https {
            return self
                .exchange(tcp, target, &uri, request, extra_headers, trace)
                .await;
        }
        let stream = self.tls_handshake(tcp, target, trace).await?;
        self.exchange(stream, target, &uri, request, extra_headers, trace)
            .await
    }

    /// Records what the handshake saw (chain, rejection, version) into the trace even when it
    /// fails, so a certificate problem is reported with the certificate that caused it.
    async fn tls_handshake(
        &self,
        tcp: TcpStream,
        target: &Target,
        trace: &Trace,
    ) -> Result<TlsStream<TcpStream>, Failure> {
        trace.enter(Phase::Tls);
        let config = self
            .trust
            .client_config(
                self.conn.ca_file.as_deref(),
                self.conn.roots == Roots::Bundled,
            )
            .map_err(|e| Failure::new(Reason::TlsHandshake, format!("TLS setup: {e}")))?;
        let sni = self
            .conn
            .server_name
            .clone()
            .unwrap_or_else(|| target.host.clone());
        let server_name = ServerName::try_from(sni.clone()).map_err(|_| {
            Failure::new(
                Reason::TlsHandshake,
                format!("invalid TLS server name {sni:?}"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let recorder = Arc::new(Recorder::new(self.conn.leaf_details));
        let handshake = tls::recorded(recorder.clone(), connector.connect(server_name, tcp)).await;
        trace.update(|t| t.tls = recorder.info());
        let stream = handshake.map_err(|e| tls_failure(&recorder, &sni, &e))?;
        let version = stream.get_ref().1.protocol_version().map(tls::version_name);
        trace.update(|t| {
            if let Some(info) = t.tls.as_mut() {
                info.version = version;
            }
        });
        Ok(stream)
    }

    async fn exchange<S>(
        &self,
        stream: S,
        target: &Target,
        uri: &str,
        (method, body): (Method, Bytes),
        extra_headers: &[(HeaderName, HeaderValue)],
        trace: &Trace,
    ) -> Result<Response, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        trace.enter(Phase::Processing);
        let proto = |e: hyper::Error| protocol_failure(target, &e);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(proto)?;
        let request = self.build_request(target, uri, method, body, extra_headers)?;
        let work = async {
            let sent_at = SystemTime::now();
            let response = sender.send_request(request).await.map_err(proto)?;
            let received_at = SystemTime::now();
            let status = response.status().as_u16();
            // Every response replaces the last one's: blackbox reports the final response's.
            let last_modified = last_modified(response.headers());
            let declared = declared_length(response.headers());
            trace.update(|t| {
                t.status_code = Some(status);
                t.last_modified = last_modified;
                t.content_length = Some(declared);
            });
            trace.enter(Phase::Transfer);
            let (parts, body) = response.into_parts();
            let buf = self.read_body(body, target, trace).await?;
            Ok::<_, Failure>((sent_at, received_at, status, parts, buf))
        };
        // The connection is driven here, in the run's own task, rather than spawned: one
        // exchange per connection needs no task of its own, nor the wake-ups across threads.
        let mut conn = std::pin::pin!(conn);
        let mut work = std::pin::pin!(work);
        let (sent_at, received_at, status, parts, buf) = tokio::select! {
            biased;
            r = &mut work => r?,
            _ = &mut conn => work.await?,
        };
        trace.leave();
        trace.update(|t| t.body_bytes = Some(buf.len() as u64));
        let response = Response {
            status,
            headers: parts.headers,
            body: Bytes::from(buf),
            sent_at,
            received_at,
        };
        if let Some(offset) = response.clock_offset() {
            trace.update(|t| t.clock_offset = Some(offset));
        }
        Ok(response)
    }

    fn build_request(
        &self,
        target: &Target,
        uri: &str,
        method: Method,
        body: Bytes,
        extra_headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, target.authority())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::ACCEPT, "application/json, */*;q=0.5");
        for (k, v) in &self.conn.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        for (k, v) in extra_headers {
            builder = builder.header(k, v);
        }
        builder
            .body(Full::new(body))
            .map_err(|e| Failure::new(Reason::HttpProtocol, format!("building request: {e}")))
    }

    /// Stops reading as soon as the body would pass the limit, so a huge or endless answer
    /// costs no more than the limit in memory.
    async fn read_body(
        &self,
        mut body: Incoming,
        target: &Target,
        trace: &Trace,
    ) -> Result<Vec<u8>, Failure> {
        let limit = self.conn.body_limit;
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| protocol_failure(target, &e))?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > limit {
                    trace.update(|t| t.body_bytes = Some((buf.len() + data.len()) as u64));
                    return Err(Failure::new(
                        Reason::BodyTooLarge,
                        format!(
                            "response body of {} exceeds the {limit}-byte limit",
                            target.authority()
                        ),
                    ));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    }
}

/// Prefers the verifier's recorded rejection, which names the certificate problem, over the
/// handshake's I/O error, which does not.
fn tls_failure(recorder: &Recorder, sni: &str, e: &io::Error) -> Failure {
    if let Some(rejected) = recorder.rejection() {
        return Failure::new(
            tls::reason_for(&rejected),
            format!("TLS certificate of {sni} rejected: {rejected}"),
        );
    }
    let reason = match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Reason::ConnectionReset,
        _ => Reason::TlsHandshake,
    };
    Failure::new(reason, format!("TLS handshake with {sni}: {e}"))
}

fn protocol_failure(target: &Target, e: &hyper::Error) -> Failure {
    let reason = if is_reset(e) {
        Reason::ConnectionReset
    } else {
        Reason::HttpProtocol
    };
    Failure::new(
        reason,
        format!("HTTP exchange with {}: {e}", target.authority()),
    )
}

fn is_reset(e: &hyper::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            );
        }
        src = err.source();
    }
    false
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
