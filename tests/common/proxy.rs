//! HTTP CONNECT proxy on 127.0.0.1 for testing the daemon's HTTPS_PROXY support; it only ever
//! tunnels to loopback targets, so a misdirected probe cannot leave the machine.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::http::{find, parse_headers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    Tunnel,
    /// Answer every CONNECT with 502, as a proxy that cannot reach upstream would.
    BadGateway,
}

#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Required `Proxy-Authorization: Basic` credentials; missing or wrong ones get a 407.
    pub auth: Option<(String, String)>,
    pub mode: ProxyMode,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            auth: None,
            mode: ProxyMode::Tunnel,
        }
    }
}

#[derive(Default)]
struct Shared {
    connects: AtomicU64,
    tunnels: AtomicU64,
    targets: Mutex<Vec<String>>,
    auth_headers: Mutex<Vec<Option<String>>>,
}

/// Running proxy; dropping it closes the listener and all tunnels.
pub struct ConnectProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    pub async fn start() -> Self {
        Self::start_with(ProxyOptions::default()).await
    }

    pub async fn with_auth(user: &str, pass: &str) -> Self {
        Self::start_with(ProxyOptions {
            auth: Some((user.to_string(), pass.to_string())),
            mode: ProxyMode::Tunnel,
        })
        .await
    }

    pub async fn bad_gateway() -> Self {
        Self::start_with(ProxyOptions {
            auth: None,
            mode: ProxyMode::BadGateway,
        })
        .await
    }

    pub async fn start_with(opts: ProxyOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy fixture on 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, Arc::new(opts), shared.clone()));
        ConnectProxy { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Value for HTTPS_PROXY, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Proxy URL with userinfo, e.g. `http://user:pass@127.0.0.1:41234`.
    pub fn url_with_auth(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.addr)
    }

    /// CONNECT requests received, whatever the answer was.
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::SeqCst)
    }

    /// CONNECT requests that were answered 200 and spliced.
    pub fn tunnels(&self) -> u64 {
        self.shared.tunnels.load(Ordering::SeqCst)
    }

    /// `host:port` of every CONNECT, in arrival order.
    pub fn targets(&self) -> Vec<String> {
        self.shared.targets.lock().unwrap().clone()
    }

    /// The `Proxy-Authorization` header of every CONNECT (None where absent).
    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.shared.auth_headers.lock().unwrap().clone()
    }
}

async fn accept_loop(listener: TcpListener, opts: Arc<ProxyOptions>, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        conns.spawn(handle(stream, opts.clone(), shared.clone()));
    }
}

async fn reply(client: &mut TcpStream, status: &str, extra: &str) {
    let msg = format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = client.write_all(msg.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Maps a CONNECT authority to a loopback socket address, or None if it points elsewhere.
/// `localhost` is mapped by hand rather than resolved so nothing outside 127.0.0.1 is dialled.
fn loopback_target(authority: &str) -> Option<SocketAddr> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    match host.to_ascii_lowercase().as_str() {
        "127.0.0.1" | "localhost" => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => None,
    }
}

async fn handle(mut client: TcpStream, opts: Arc<ProxyOptions>, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    // A client may send its first tunnelled bytes (TLS ClientHello) without waiting for the 200.
    let early = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("");
    let authority = first.next().unwrap_or("").to_string();
    let headers = parse_headers(lines);

    if !method.eq_ignore_ascii_case("CONNECT") {
        reply(&mut client, "405 Method Not Allowed", "").await;
        return;
    }
    shared.connects.fetch_add(1, Ordering::SeqCst);
    shared.targets.lock().unwrap().push(authority.clone());
    let auth_header = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Proxy-Authorization"))
        .map(|(_, v)| v.clone());
    shared
        .auth_headers
        .lock()
        .unwrap()
        .push(auth_header.clone());

    if let Some((user, pass)) = &opts.auth {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        if auth_header.as_deref().map(str::trim) != Some(expected.as_str()) {
            reply(
                &mut client,
                "407 Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"authwatch-test\"\r\n",
            )
            .await;
            return;
        }
    }
    if opts.mode == ProxyMode::BadGateway {
        reply(&mut client, "502 Bad Gateway", "").await;
        return;
    }
    let Some(target) = loopback_target(&authority) else {
        reply(&mut client, "403 Forbidden", "").await;
        return;
    };
    let mut upstream = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(_) => {
            reply(&mut client, "502 Bad Gateway", "").await;
            return;
        }
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    shared.tunnels.fetch_add(1, Ordering::SeqCst);
    if !early.is_empty() && upstream.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
