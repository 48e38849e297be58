//! Scriptable HTTP/1.1 server on 127.0.0.1 (plaintext or TLS) for playing the upstreams the
//! daemon probes, including broken ones: skewed clocks, slow bodies, hangs and resets.
//!
//! Written by hand rather than with hyper's server so that misbehaviour (hanging before the TLS
//! handshake, resetting, dribbling a body) is fully under the test's control. Every response
//! carries `Connection: close`, so keep-alive never has to be reasoned about.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tls::Leaf;
use super::{httpdate, unix_now};

const MAX_HEAD: usize = 64 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

pub type Headers = Vec<(String, String)>;

/// What the handler sees of a request. Header names keep the case the client sent.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub method: String,
    /// Request target as sent, including any query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RequestInfo {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// A body sent as `chunks` copies of `chunk`, each preceded by a pause of `interval`.
/// Content-Length is announced up front, so the client knows the body is incomplete.
#[derive(Clone, Debug)]
pub struct SlowBody {
    pub chunk: Vec<u8>,
    pub interval: Duration,
    pub chunks: usize,
}

#[derive(Clone, Debug)]
pub struct ResponseSpec {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `Date` header this many seconds from now; `None` means the real current time.
    pub date_offset: Option<i64>,
    /// When false no `Date` header is sent at all.
    pub send_date: bool,
    /// Replaces `body` when set.
    pub slow_body: Option<SlowBody>,
    /// Pause after reading the request and before sending the status line.
    pub delay: Option<Duration>,
}

impl ResponseSpec {
    pub fn new(status: u16) -> Self {
        ResponseSpec {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            date_offset: None,
            send_date: true,
            slow_body: None,
            delay: None,
        }
    }

    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self::text(status, "application/json", body)
    }

    pub fn text(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", content_type)
            .body(body.into().into_bytes())
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn date_offset(mut self, seconds: i64) -> Self {
        self.date_offset = Some(seconds);
        self
    }

    pub fn without_date(mut self) -> Self {
        self.send_date = false;
        self
    }

    pub fn slow_body(
        mut self,
        chunk: impl Into<Vec<u8>>,
        interval: Duration,
        chunks: usize,
    ) -> Self {
        self.slow_body = Some(SlowBody {
            chunk: chunk.into(),
            interval,
            chunks,
        });
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

/// How accepted connections are treated; read at accept time, so it can change mid-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMode {
    Normal,
    /// Accept the TCP connection, then never read or write (no TLS handshake either).
    AcceptAndHang,
    /// Accept, then close with SO_LINGER 0 so the client gets a connection reset.
    Reset,
}

pub type Handler = Arc<dyn Fn(&RequestInfo) -> ResponseSpec + Send + Sync>;

struct Shared {
    handler: Mutex<Handler>,
    mode: Mutex<ServerMode>,
    requests: AtomicU64,
    connections: AtomicU64,
    log: Mutex<Vec<RequestInfo>>,
}

/// Running server; dropping it closes the listener and every open connection.
pub struct TestServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start<F>(handler: F) -> Self
    where
        F: Fn(&RequestInfo) -> ResponseSpec + Send + Sync + 'static,
    {
        Self::start_with(None, ServerMode::Normal, Arc::new(handler)).await
    }

    pub async fn start_tls<F>(leaf: &Leaf, handler: F) -> Self
    where
        F: Fn(&RequestInfo) -> ResponseSpec + Send + Sync + 'static,
    {
        Self::start_with(
            Some(leaf.server_config()),
            ServerMode::Normal,
            Arc::new(handler),
        )
        .await
    }

    pub async fn start_with(
        tls: Option<Arc<ServerConfig>>,
        mode: ServerMode,
        handler: Handler,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind HTTP fixture on 127.0.0.1");
        Self::start_on_listener(listener, tls, mode, handler)
    }

    /// Serves on a listener the caller bound: for a test inside a network namespace it
    /// created, on that namespace's own addresses (the constructors above keep to 127.0.0.1).
    /// Must be called inside a tokio runtime.
    pub fn start_on_listener(
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        mode: ServerMode,
        handler: Handler,
    ) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            handler: Mutex::new(handler),
            mode: Mutex::new(mode),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let is_tls = tls.is_some();
        let acceptor = tls.map(TlsAcceptor::from);
        let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        TestServer {
            addr,
            tls: is_tls,
            shared,
            task,
        }
    }

    /// Answers every request with `status` and a JSON body.
    pub async fn json(status: u16, body: impl Into<String>) -> Self {
        let body = body.into();
        Self::start(move |_| ResponseSpec::json(status, body.clone())).await
    }

    pub async fn json_tls(leaf: &Leaf, status: u16, body: impl Into<String>) -> Self {
        let body = body.into();
        Self::start_tls(leaf, move |_| ResponseSpec::json(status, body.clone())).await
    }

    /// `(path, status, content_type, body)` entries matched on the path without query string;
    /// anything else is a 404.
    pub async fn routes(routes: Vec<(&str, u16, &str, &str)>) -> Self {
        Self::start_with(None, ServerMode::Normal, route_handler(routes)).await
    }

    pub async fn routes_tls(leaf: &Leaf, routes: Vec<(&str, u16, &str, &str)>) -> Self {
        Self::start_with(
            Some(leaf.server_config()),
            ServerMode::Normal,
            route_handler(routes),
        )
        .await
    }

    pub async fn hang() -> Self {
        Self::start_with(None, ServerMode::AcceptAndHang, not_found_handler()).await
    }

    pub async fn reset() -> Self {
        Self::start_with(None, ServerMode::Reset, not_found_handler()).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http(s)://127.0.0.1:<port><path>`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        self.url_with_host("127.0.0.1", path)
    }

    /// Same port under another host name (e.g. `localhost` or `clerk.test` for SNI tests).
    pub fn url_with_host(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    /// Requests parsed and answered (not counting hung or reset connections).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted, in any mode.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn request_log(&self) -> Vec<RequestInfo> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Option<RequestInfo> {
        self.shared.log.lock().unwrap().last().cloned()
    }

    pub fn set_mode(&self, mode: ServerMode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn set_handler<F>(&self, handler: F)
    where
        F: Fn(&RequestInfo) -> ResponseSpec + Send + Sync + 'static,
    {
        *self.shared.handler.lock().unwrap() = Arc::new(handler);
    }
}

fn not_found_handler() -> Handler {
    Arc::new(|_| ResponseSpec::text(404, "text/plain", "not found\n"))
}

fn route_handler(routes: Vec<(&str, u16, &str, &str)>) -> Handler {
    let routes: Vec<(String, u16, String, String)> = routes
        .into_iter()
        .map(|(p, s, ct, b)| (p.to_string(), s, ct.to_string(), b.to_string()))
        .collect();
    Arc::new(
        move |req| match routes.iter().find(|(p, ..)| p == req.path_only()) {
            Some((_, status, ct, body)) => ResponseSpec::text(*status, ct, body.clone()),
            None => ResponseSpec::text(404, "text/plain", "not found\n"),
        },
    )
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    // Connection tasks live in this set so aborting the accept loop also closes them.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let mode = *shared.mode.lock().unwrap();
        match mode {
            ServerMode::Reset => {
                let _ = stream.set_zero_linger();
                drop(stream);
            }
            ServerMode::AcceptAndHang => {
                conns.spawn(async move {
                    let _keep_open = stream;
                    std::future::pending::<()>().await;
                });
            }
            ServerMode::Normal => {
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                conns.spawn(async move {
                    let _ = serve_conn(stream, acceptor, shared).await;
                });
            }
        }
    }
}

async fn serve_conn(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) -> io::Result<()> {
    match acceptor {
        Some(acceptor) => serve_stream(acceptor.accept(stream).await?, &shared).await,
        None => serve_stream(stream, &shared).await,
    }
}

async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    shared: &Shared,
) -> io::Result<()> {
    let Some(req) = read_request(&mut s).await? else {
        return Ok(());
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.log.lock().unwrap().push(req.clone());
    let handler = shared.handler.lock().unwrap().clone();
    let spec = handler(&req);
    if let Some(d) = spec.delay {
        tokio::time::sleep(d).await;
    }
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    write_response(&mut s, &spec, head_only).await?;
    s.shutdown().await
}

/// Reads one request; `Ok(None)` when the client closed before sending a full head.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Option<RequestInfo>> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers = parse_headers(lines);
    let mut req = RequestInfo {
        method,
        path,
        headers,
        body: buf[head_end + 4..].to_vec(),
    };
    let chunked = req
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            if let Some(body) = decode_chunked(&req.body) {
                req.body = body;
                break;
            }
            if read_more(s, &mut req.body).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    } else if let Some(len) = req
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok())
    {
        while req.body.len() < len {
            if read_more(s, &mut req.body).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        req.body.truncate(len);
    }
    Ok(Some(req))
}

async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn write_response<S: AsyncWrite + Unpin>(
    s: &mut S,
    spec: &ResponseSpec,
    head_only: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", spec.status, reason(spec.status));
    for (k, v) in &spec.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if spec.send_date && !spec.has_header("Date") {
        let when = unix_now() + spec.date_offset.unwrap_or(0);
        head.push_str(&format!("Date: {}\r\n", httpdate::format(when)));
    }
    let body_len = match &spec.slow_body {
        Some(slow) => slow.chunk.len() * slow.chunks,
        None => spec.body.len(),
    };
    if !spec.has_header("Content-Length") && !spec.has_header("Transfer-Encoding") {
        head.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    if !spec.has_header("Connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    if head_only {
        return s.flush().await;
    }
    match &spec.slow_body {
        Some(slow) => {
            s.flush().await?;
            for _ in 0..slow.chunks {
                tokio::time::sleep(slow.interval).await;
                s.write_all(&slow.chunk).await?;
                s.flush().await?;
            }
        }
        None => s.write_all(&spec.body).await?,
    }
    s.flush().await
}

/// Splits `Name: value` lines; lines without a colon are ignored.
pub fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body; `None` if `data` does not yet hold the terminating chunk.
pub fn decode_chunked(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_str = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_str.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers, if any, end with an empty line; we do not need their contents.
            return Some(out);
        }
        if rest.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// One `GET` with `Connection: close` over plain TCP, read to EOF (bounded to 10 s).
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> io::Result<(u16, Headers, String)> {
    let fut = async {
        let s = TcpStream::connect(addr).await?;
        get_over(s, &addr.to_string(), path, accept).await
    };
    tokio::time::timeout(CLIENT_TIMEOUT, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HTTP GET timed out"))?
}

/// Same over TLS; `server_name` is the SNI / verified name (a DNS name or an IP literal).
pub async fn https_get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
    path: &str,
) -> io::Result<(u16, Headers, String)> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let fut = async {
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        get_over(tls, &format!("{server_name}:{}", addr.port()), path, None).await
    };
    tokio::time::timeout(CLIENT_TIMEOUT, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HTTPS GET timed out"))?
}

/// Sends a GET on an already-connected stream (e.g. a proxy tunnel) and reads the response.
pub async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    host: &str,
    path: &str,
    accept: Option<&str>,
) -> io::Result<(u16, Headers, String)> {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    send_over(s, "GET", host, path, &headers).await
}

/// Sends one request with `Connection: close` on a connected stream and reads the response.
pub async fn send_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<(u16, Headers, String)> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if method != "GET" {
        req.push_str("Content-Length: 0\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    // Servers that close without TLS close_notify make rustls report UnexpectedEof after the
    // full body; what was read is still the whole response.
    match s.read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_response(&raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response"))
}

/// Splits a complete HTTP/1.1 response; `None` if it is truncated or malformed.
pub fn parse_response(raw: &[u8]) -> Option<(u16, Headers, String)> {
    let head_end = find(raw, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = parse_headers(lines);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let rest = &raw[head_end + 4..];
    let chunked =
        header("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = header("Content-Length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// First header with this name, case-insensitively.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Any request with extra headers, over plain TCP or (with `tls`: client config and server
/// name) over TLS. For endpoints that need a method, credentials or headers.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    tls: Option<(Arc<ClientConfig>, &str)>,
) -> io::Result<(u16, Headers, String)> {
    let host = addr.to_string();
    let fut = async {
        let tcp = TcpStream::connect(addr).await?;
        match tls {
            None => send_over(tcp, method, &host, path, headers).await,
            Some((config, name)) => {
                let name = ServerName::try_from(name.to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let stream = TlsConnector::from(config).connect(name, tcp).await?;
                send_over(stream, method, &host, path, headers).await
            }
        }
    };
    tokio::time::timeout(CLIENT_TIMEOUT, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timed out"))?
}
