//! The HTTP endpoints: `/metrics` (text format or OpenMetrics by negotiation), `/probe`,
//! `/-/healthy`, `/-/ready`, `/-/reload`, the status page and its JSON, all behind the
//! optional TLS and basic auth of `--web.config.file`, with bounded connections and `/probe`
//! runs so that no client can take what the scheduled probes need.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::limits::{Limits, WebCounters};
use crate::web::Authenticator;

/// Everything a request handler needs.
pub struct Server {
    pub app: Arc<App>,
    pub auth: Authenticator,
    pub tls: Option<TlsAcceptor>,
    /// Lifts the `/probe` target allowlist (`--probe.allow-any-target`).
    pub allow_any_target: bool,
    paths: Paths,
    conns: Conns,
    probe_runs: Arc<Semaphore>,
    /// `/metrics` renders at once: each holds a blocking thread while its scraper reads.
    renders: Arc<Semaphore>,
    probe_limit: usize,
}

/// Where the endpoints are: under a route prefix (behind a reverse proxy), with the metrics
/// at their own path, as `--web.route-prefix` and `--web.telemetry-path` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `""` or `/something`, without a trailing slash.
    prefix: String,
    telemetry: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            prefix: String::new(),
            telemetry: "/metrics".into(),
        }
    }
}

impl Paths {
    /// From the flags: an explicit prefix wins over the path of the external URL, as in
    /// Prometheus.
    pub fn new(
        route_prefix: Option<&str>,
        external_url: Option<&str>,
        telemetry: &str,
    ) -> Result<Paths, String> {
        let from_url = external_url.map(|u| {
            let rest = u.split_once("://").map_or(u, |(_, r)| r);
            rest.find('/').map_or("", |i| &rest[i..]).to_string()
        });
        let prefix = route_prefix
            .map(str::to_string)
            .or(from_url)
            .unwrap_or_default();
        let prefix = format!("/{}", prefix.trim_matches('/'));
        let prefix = if prefix == "/" { String::new() } else { prefix };
        if !telemetry.starts_with('/') || telemetry.len() < 2 {
            return Err(format!(
                "--web.telemetry-path {telemetry:?} must start with / and name a path"
            ));
        }
        if prefix.contains(['?', '#']) {
            return Err(format!("route prefix {prefix:?} must be a plain path"));
        }
        Ok(Paths {
            prefix,
            telemetry: telemetry.trim_end_matches('/').to_string(),
        })
    }

    /// The endpoint a request path names, with the prefix taken off; `None` outside it.
    fn local<'a>(&self, path: &'a str) -> Option<&'a str> {
        match path.strip_prefix(self.prefix.as_str())? {
            "" => Some("/"),
            p if p.starts_with('/') => Some(p),
            _ => None,
        }
    }
}

impl Server {
    pub fn new(
        app: Arc<App>,
        auth: Authenticator,
        tls: Option<TlsAcceptor>,
        allow_any_target: bool,
        limits: Limits,
        paths: Paths,
    ) -> Server {
        Server {
            app,
            auth,
            tls,
            allow_any_target,
            paths,
            conns: Conns::new(limits.connections),
            probe_runs: Arc::new(Semaphore::new(limits.probe_runs)),
            renders: Arc::new(Semaphore::new(4)),
            probe_limit: limits.probe_runs,
        }
    }

    fn counters(&self) -> &WebCounters {
        &self.app.web
    }
}

/// One accepted connection's place in the table.
#[derive(Debug, Default)]
struct Slot {
    /// Requests being answered on it; 0 means idle (between keep-alive requests, or before
    /// the first).
    busy: AtomicUsize,
    evicted: AtomicBool,
    evict: Notify,
}

/// Open connections, oldest first. A full table makes room by closing its oldest idle
/// connection, so a client holding connections open cannot lock Prometheus out; when every
/// connection is busy (or as many are still closing), a new one is answered 503.
#[derive(Debug)]
struct Conns {
    max: usize,
    inner: std::sync::Mutex<ConnTable>,
}

#[derive(Debug, Default)]
struct ConnTable {
    live: VecDeque<Arc<Slot>>,
    /// Evicted connections not yet closed; at most `max`, so descriptors stay within 2 × max.
    draining: usize,
}

impl Conns {
    fn new(max: usize) -> Conns {
        Conns {
            max: max.max(1),
            inner: std::sync::Mutex::new(ConnTable::default()),
        }
    }

    /// A slot for a new connection, and whether an idle one was evicted for it; `None`
    /// when there is no room.
    fn admit(&self) -> Option<(Arc<Slot>, bool)> {
        let mut t = crate::lock(&self.inner);
        let mut evicted = false;
        if t.live.len() >= self.max {
            if t.draining >= self.max {
                return None;
            }
            let idle = t
                .live
                .iter()
                .position(|s| s.busy.load(Ordering::Acquire) == 0)?;
            if let Some(old) = t.live.remove(idle) {
                old.evicted.store(true, Ordering::Release);
                old.evict.notify_one();
                t.draining += 1;
                evicted = true;
            }
        }
        let slot = Arc::new(Slot::default());
        t.live.push_back(slot.clone());
        Some((slot, evicted))
    }

    fn release(&self, slot: &Arc<Slot>) {
        let mut t = crate::lock(&self.inner);
        if slot.evicted.load(Ordering::Acquire) {
            t.draining = t.draining.saturating_sub(1);
        } else if let Some(i) = t.live.iter().position(|s| Arc::ptr_eq(s, slot)) {
            t.live.remove(i);
        }
    }
}

/// Gives a slot back when its connection ends, however it ends.
struct Held<'a> {
    conns: &'a Conns,
    counters: &'a WebCounters,
    slot: Arc<Slot>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.conns.release(&self.slot);
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Marks a connection busy for one request, even when the request is cut off.
struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: &Arc<Slot>) -> Busy {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy(slot.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every answer's body: whole, or streamed (`/metrics`).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", body.to_string())
}

/// The weight a header gives to the entries `matches` accepts (the highest of them), from
/// its comma-separated `value;q=weight` list; `None` when none is named. Accept and
/// Accept-Encoding share this form (RFC 9110 §12.4.2).
fn weight(
    req: &Request<Incoming>,
    name: header::HeaderName,
    matches: impl Fn(&str) -> bool,
) -> Option<f32> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let value = parts.next()?.to_ascii_lowercase();
            if !matches(&value) {
                return None;
            }
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(q)
        })
        .reduce(f32::max)
}

/// OpenMetrics when the scraper asks for it with a weight above zero and above the text
/// format's, as Prometheus's `Accept` does.
fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    let om = weight(req, header::ACCEPT, |v| v == "application/openmetrics-text");
    let text = weight(req, header::ACCEPT, |v| v == "text/plain");
    om.is_some_and(|q| q > 0.0 && text.is_none_or(|t| q >= t))
}

/// Gzip when `Accept-Encoding` names it (or `*`) with a weight above zero.
fn wants_gzip(req: &Request<Incoming>) -> bool {
    let named = weight(req, header::ACCEPT_ENCODING, |v| v == "gzip");
    let any = weight(req, header::ACCEPT_ENCODING, |v| v == "*");
    named.or(any).is_some_and(|q| q > 0.0)
}

/// A body fed by the renderer, chunk by chunk.
struct Streamed(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Hands rendered chunks to the connection from the blocking pool; a scraper that stops
/// reading for `STALL` ends its scrape, so it cannot hold a thread.
struct ToConnection {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    rt: tokio::runtime::Handle,
}

const STALL: Duration = Duration::from_secs(10);

impl std::io::Write for ToConnection {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let send = tokio::time::timeout(STALL, self.tx.send(Bytes::copy_from_slice(b)));
        match self.rt.block_on(send) {
            Ok(Ok(())) => Ok(b.len()),
            _ => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams `/metrics` from the blocking pool: at thousands of probes rendering and
/// compressing take long enough that they must not hold up a runtime worker (and the probes
/// on it), and the text is tens of megabytes that must never sit in memory whole. Gzip is at
/// the fastest level: the text still shrinks several times, and a higher level's CPU would be
/// paid on every scrape.
async fn metrics(server: &Server, openmetrics: bool, gzip: bool) -> Response<Body> {
    let Ok(permit) = tokio::time::timeout(STALL, server.renders.clone().acquire_owned()).await
    else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once\n",
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sink = ToConnection {
        tx,
        rt: tokio::runtime::Handle::current(),
    };
    let sink: Box<dyn std::io::Write + Send> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            sink,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(sink)
    };
    let mut e = crate::encode::Encoder::streaming(openmetrics, sink);
    let content_type = e.content_type();
    let app = server.app.clone();
    // Dropping the encoder's sink at the end (gzip's trailer, then the channel) ends the body.
    tokio::task::spawn_blocking(move || {
        app.render_metrics_into(&mut e);
        e.finish();
        drop(permit);
    });
    let mut r = Response::new(Streamed(rx).boxed());
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if gzip {
        r.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    r.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    r
}

async fn handle(server: Arc<Server>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !server.auth.allows(authorization).await {
        return Ok(unauthorized());
    }
    Ok(route(&server, &req).await)
}

fn unauthorized() -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"authwatch\""),
    );
    r
}

/// Reload is the only endpoint that changes state, so it alone takes POST or PUT and every
/// other endpoint only GET or HEAD.
async fn route(server: &Server, req: &Request<Incoming>) -> Response<Body> {
    let app = &server.app;
    let Some(path) = server.paths.local(req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    if read && path == server.paths.telemetry {
        return metrics(server, wants_openmetrics(req), wants_gzip(req)).await;
    }
    match (path, read) {
        ("/-/reload", _) if req.method() == Method::POST || req.method() == Method::PUT => {
            reload(app)
        }
        (_, false) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        ("/probe", true) => probe(server, req).await,
        ("/-/healthy", true) => text(StatusCode::OK, "Healthy.\n"),
        ("/-/ready", true) => ready(app),
        ("/api/v1/status", true) => reply(
            StatusCode::OK,
            "application/json",
            app.status().json().to_string(),
        ),
        ("/", true) => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::status::html(&app.status(), &server.paths.prefix, &server.paths.telemetry),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn reload(app: &App) -> Response<Body> {
    match app.reload() {
        Ok(n) => text(
            StatusCode::OK,
            &format!("configuration reloaded: {n} probes\n"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("failed to reload config: {e}\n"),
        ),
    }
}

async fn probe(server: &Server, req: &Request<Incoming>) -> Response<Body> {
    // Each run holds outbound sockets and perhaps a blocking thread; beyond the limit a
    // request is turned away at once rather than queued behind runs that may all hang.
    let Ok(_run) = server.probe_runs.clone().try_acquire_owned() else {
        WebCounters::bump(&server.counters().refused_probes);
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many concurrent /probe requests (limit {}; see --probe.max-concurrent)\n",
                server.probe_limit
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    let query = req.uri().query().unwrap_or("");
    let timeout = req
        .headers()
        .get("X-Prometheus-Scrape-Timeout-Seconds")
        .and_then(|v| v.to_str().ok());
    let (status, ct, body) = crate::blackbox::probe(
        &server.app,
        query,
        timeout,
        server.allow_any_target,
        wants_openmetrics(req),
    )
    .await;
    reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        ct,
        body,
    )
}

fn ready(app: &App) -> Response<Body> {
    if app.store.all_ran() {
        text(StatusCode::OK, "Ready.\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: some probes have not completed a run yet.\n",
        )
    }
}

/// Binds the listener (so a bad address fails at start-up, before probing begins).
pub async fn bind(addr: &str, tls: bool) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(address = %local, tls, "listening");
    Ok(listener)
}

async fn serve_connection<S>(stream: S, server: Arc<Server>, slot: Arc<Slot>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_requests = slot.clone();
    let service = service_fn(move |req| {
        let busy = Busy::new(&for_requests);
        let server = server.clone();
        async move {
            let r = handle(server, req).await;
            drop(busy);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    // A connection is recycled after `CONNECTION_LIFETIME`, gracefully: the request in flight
    // is answered (with `Connection: close`) and an idle one is closed, so a scraper's
    // keep-alive connection ends between scrapes, never in the middle of one (a hard cut made
    // every Prometheus scrape that fell on it fail, and reset alerts' `for`). A request still
    // running `FINISH_WITHIN` later is dropped: nothing holds a slot forever.
    let ended = tokio::select! {
        _ = conn.as_mut() => true,
        _ = slot.evict.notified() => false,
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => false,
    };
    if !ended {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(FINISH_WITHIN, conn.as_mut()).await;
    }
}

/// How long a connection is kept before it is recycled (see `serve_connection`).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// How long a recycled or evicted connection may take to finish its request.
const FINISH_WITHIN: Duration = Duration::from_secs(30);

/// Tells a client that arrived when every slot was taken, without waiting on it.
fn turn_away(stream: &TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n";
    let _ = stream.try_write(BUSY);
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Running out of file descriptors must not end the server.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some((slot, evicted)) = server.conns.admit() else {
            WebCounters::bump(&server.counters().refused_connections);
            // A TLS client would not understand a plain answer; it just sees the close.
            if server.tls.is_none() {
                turn_away(&stream);
            }
            continue;
        };
        if evicted {
            WebCounters::bump(&server.counters().evicted_connections);
        }
        server.counters().open.fetch_add(1, Ordering::Relaxed);
        let server = server.clone();
        tokio::spawn(async move {
            let _held = Held {
                conns: &server.conns,
                counters: server.counters(),
                slot: slot.clone(),
            };
            match server.tls.clone() {
                None => serve_connection(stream, server.clone(), slot).await,
                Some(acceptor) => {
                    // A client that never finishes its handshake must not hold a task forever.
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => serve_connection(tls, server.clone(), slot).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake with a client failed")
                        }
                        Err(_) => tracing::debug!("TLS handshake with a client timed out"),
                    }
                }
            }
        });
    }
}
