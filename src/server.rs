//! The HTTP endpoints: `/metrics` (text format or OpenMetrics by negotiation), `/probe`,
//! `/-/healthy`, `/-/ready`, `/-/reload`, the status page and its JSON, all behind the
//! optional TLS and basic auth of `--web.config.file`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::web::Authenticator;

/// Everything a request handler needs.
pub struct Server {
    pub app: Arc<App>,
    pub auth: Authenticator,
    pub tls: Option<TlsAcceptor>,
    /// Lifts the `/probe` target allowlist (`--probe.allow-any-target`).
    pub allow_any_target: bool,
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_string())
}

fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

async fn handle(
    server: Arc<Server>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !server.auth.allows(authorization).await {
        return Ok(unauthorized());
    }
    Ok(route(&server, &req).await)
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"authwatch\""),
    );
    r
}

/// Reload is the only endpoint that changes state, so it alone takes POST or PUT and every
/// other endpoint only GET or HEAD.
async fn route(server: &Server, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let app = &server.app;
    let path = req.uri().path();
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    match (path, read) {
        ("/-/reload", _) if req.method() == Method::POST || req.method() == Method::PUT => {
            reload(app)
        }
        (_, false) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        ("/metrics", true) => {
            let (body, content_type) = app.render_metrics(wants_openmetrics(req));
            reply(StatusCode::OK, content_type, body)
        }
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
            crate::status::html(&app.status()),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn reload(app: &App) -> Response<Full<Bytes>> {
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

async fn probe(server: &Server, req: &Request<Incoming>) -> Response<Full<Bytes>> {
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

fn ready(app: &App) -> Response<Full<Bytes>> {
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

async fn serve_connection<S>(stream: S, server: Arc<Server>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(server.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(Duration::from_secs(120), conn).await;
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
        let server = server.clone();
        tokio::spawn(async move {
            match server.tls.clone() {
                None => serve_connection(stream, server).await,
                Some(acceptor) => {
                    // A client that never finishes its handshake must not hold a task forever.
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => serve_connection(tls, server).await,
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
