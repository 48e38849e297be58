//! Side-by-side benchmark of authwatch and Prometheus's blackbox_exporter on the same loopback
//! TLS targets, at the same rate and in the same windows; run by hand, never in CI.
//!
//! One nginx (Debian's `nginx-light`, one worker) serves a JWKS over TLS on 127.0.0.1 with a
//! test CA. authwatch runs N `jwks` probes against it; at the same time Prometheus scrapes
//! blackbox_exporter's `/probe` for the same N URLs at the same interval, and also scrapes
//! authwatch's `/metrics` every 15 s, as production would. nginx logs every request with
//! `$msec` and the User-Agent, which tells the two apart and times their schedules. A bare
//! rustls client (aws-lc-rs, full handshake + one GET) against the same nginx, in process, is
//! the floor. For each probe count it prints one markdown table: each figure for authwatch and
//! blackbox_exporter, their ratio, and the target the figure is held to. It prints figures and
//! asserts nothing about speed.
//!
//! ```sh
//! bash benches/compare.sh      # installs the Debian packages when missing, then runs this
//! cargo bench --bench compare  # when prometheus, prometheus-blackbox-exporter, nginx are there
//! AUTHWATCH_COMPARE_PROBES=200 AUTHWATCH_COMPARE_WINDOW_SECS=20 \
//!   AUTHWATCH_COMPARE_INTERVAL_SECS=10 cargo bench --bench compare   # quick look
//! ```
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `AUTHWATCH_COMPARE_PROBES` | `1000,10000` | probe counts, comma-separated; one table each |
//! | `AUTHWATCH_COMPARE_INTERVAL_SECS` | `30` | interval of every probe, for both |
//! | `AUTHWATCH_COMPARE_WINDOW_SECS` | `60` | measurement window |
//! | `AUTHWATCH_COMPARE_WARMUP_SECS` | interval + 10 | from start to the window |
//! | `AUTHWATCH_COMPARE_SCRAPES` | `50` | timed GETs of `/metrics` after the window, probes still running |
//! | `AUTHWATCH_COMPARE_FLOOR_SECS` | `5` | how long the rustls floor is measured |
//! | `AUTHWATCH_COMPARE_FAILURE_SERIES` | unset (`all`) | authwatch's `global.failure_series`: `active` exports only the failure reason that is 1 |
//! | `AUTHWATCH_COMPARE_SEQUENTIAL` | `0` | `1`: authwatch's window, then blackbox_exporter's (each with its own Prometheus), instead of both in one window; for a machine too small to run both at 10k |
//!
//! How each figure is taken:
//! - CPU per run: utime + stime of the process (`/proc/PID/stat`) over the window, divided by
//!   the runs in the window: for authwatch the change of `authwatch_probe_runs_total`, for
//!   blackbox_exporter the requests with its User-Agent in nginx's log. authwatch's CPU
//!   includes serving Prometheus's scrapes of its `/metrics`, as in production; its runs are
//!   read from two scrapes of ours just outside the window, timed by their first byte (the
//!   page is rendered before it is sent) and scaled to the window. The floor is the CPU of the
//!   one thread running the rustls client, per handshake + GET.
//! - RSS and peak RSS: `VmRSS` and `VmHWM` from `/proc/PID/status` at the end of the window.
//!   nginx runs as root with its worker as `nobody`, which only ever answers from memory.
//! - Memory per configured probe: authwatch brings the first run of a probe whose interval is
//!   longer than its start-up window (N/200 s, 5 to 60 s) into that window (README, Schedule),
//!   so no first run is an hour away. It is started alone with N probes at a 1 h interval and
//!   with none, and `VmRSS` is read as soon as `/-/healthy` answers (every probe's task exists
//!   by then); the table says how many probes had finished a run at that moment.
//! - Series per probe: non-comment lines of authwatch's `/metrics` over N; for blackbox the
//!   lines of one `/probe` answer plus the 5 series Prometheus adds per target.
//! - `/metrics`: after the window, back-to-back GETs (each on a new connection) while the
//!   probes go on; CPU per scrape is the CPU during them less the window's rate. One more GET
//!   with `Accept-Encoding: gzip` shows what is served, and `gzip -6` here what it could be.
//! - Schedule: requests per whole second in the window at nginx, busiest over mean; first runs:
//!   each URL's first request per client, bucketed by the second after the client started
//!   (for blackbox_exporter, Prometheus decides when, so that is Prometheus's start).
//!
//! blackbox_exporter's module checks for status 200 and a body matching `"keys"`: it has no
//! JSON check to match authwatch's JWKS validation, so that is as close as it comes.
//!
//! Everything binds and connects to 127.0.0.1 only: authwatch resolves `localhost` through a
//! hosts file of ours, and its resolv.conf points at a socket here that never answers (and is
//! checked for queries at the end); blackbox_exporter resolves it through /etc/hosts, and gets
//! 127.0.0.1 literally when that file does not map `localhost` there. Child processes run in
//! their own process groups and are killed with them when the benchmark ends, panics or is
//! interrupted; the temporary directories go with them.
//!
//! `cargo bench` passes `--bench` to this binary; without it (`cargo test --all-targets`) it
//! prints a line and exits.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use support::{env_u64, loadavg};

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{Pid, Signal};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use common::prometheus::encode;
use common::tls::TestPki;

const NGINX: &str = "/usr/sbin/nginx";
const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Deadline of one probe run, for both (authwatch's default).
const PROBE_TIMEOUT_SECS: u64 = 10;
/// How often Prometheus scrapes authwatch's `/metrics`, as the shipped Prometheus config does.
const AUTHWATCH_SCRAPE_INTERVAL: &str = "15s";
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// A 10k-probe `/metrics` on a loaded 2-core machine can take seconds.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Linux reports utime and stime in USER_HZ ticks, which is 100 per second everywhere.
const TICK_MS: u64 = 10;
/// Series Prometheus adds to every target it scrapes: up, scrape_duration_seconds,
/// scrape_samples_scraped, scrape_series_added, scrape_samples_post_metric_relabeling.
const PROMETHEUS_SYNTHETIC_SERIES: usize = 5;
const FLOOR_UA: &str = "authwatch-compare-floor";
const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    probes: Vec<usize>,
    interval: u64,
    window: Duration,
    warmup: Duration,
    scrapes: usize,
    floor: Duration,
    /// authwatch's window first, then blackbox_exporter's, instead of both in one.
    sequential: bool,
}

fn settings() -> Settings {
    let list = std::env::var("AUTHWATCH_COMPARE_PROBES").unwrap_or_default();
    let list = if list.trim().is_empty() {
        "1000,10000".to_string()
    } else {
        list
    };
    let probes: Vec<usize> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("AUTHWATCH_COMPARE_PROBES: {s:?} is not a probe count of at least 1"),
        })
        .collect();
    assert!(
        !probes.is_empty(),
        "AUTHWATCH_COMPARE_PROBES lists no count"
    );
    let interval = env_u64("AUTHWATCH_COMPARE_INTERVAL_SECS", 30).max(1);
    Settings {
        probes,
        interval,
        window: Duration::from_secs(env_u64("AUTHWATCH_COMPARE_WINDOW_SECS", 60).max(5)),
        warmup: Duration::from_secs(env_u64("AUTHWATCH_COMPARE_WARMUP_SECS", interval + 10)),
        scrapes: env_u64("AUTHWATCH_COMPARE_SCRAPES", 50).max(1) as usize,
        floor: Duration::from_secs(env_u64("AUTHWATCH_COMPARE_FLOOR_SECS", 5).max(1)),
        sequential: env_u64("AUTHWATCH_COMPARE_SEQUENTIAL", 0) != 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes and /proc

/// A child process in a process group of its own. Dropping it kills the whole group (nginx's
/// worker goes with its master) and reaps the child, also while a panic unwinds.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // If this benchmark is killed outright, its children must not outlive it.
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                    .map_err(io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of what the process wrote, for a failure message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its output:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a /proc `stat` file (a process's or a thread's).
fn stat_cpu(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces and parentheses; the fields start after the last ')'.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * TICK_MS)
}

fn proc_cpu(pid: u32) -> Duration {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.strip_prefix(':'))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// First line of `BIN --version`-style output, whichever stream it went to.
fn version_of(bin: &str, arg: &str) -> String {
    match Command::new(bin).arg(arg).stdin(Stdio::null()).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines().next().unwrap_or("?").trim().to_string()
        }
        Err(e) => format!("not runnable ({e})"),
    }
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP to the processes' own endpoints

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// When the first byte of the answer arrived.
    first_byte: Instant,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Splits a complete HTTP/1.1 response, keeping the body as bytes (it may be gzip).
fn parse_response(raw: &[u8], first_byte: Instant) -> io::Result<Resp> {
    let end = common::http::find(raw, b"\r\n\r\n").ok_or_else(|| invalid("no end of head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status"))?;
    let headers = common::http::parse_headers(lines);
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        first_byte,
    };
    let rest = &raw[end + 4..];
    resp.body = if resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        common::http::decode_chunked(rest).ok_or_else(|| invalid("truncated chunked body"))?
    } else if let Some(len) = resp
        .header("Content-Length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        rest.get(..len)
            .ok_or_else(|| invalid("truncated body"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(resp)
}

/// One GET with `Connection: close` on a new connection, read to the end.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Resp> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = vec![0u8; 64 * 1024];
        let n = s.read(&mut raw).await?;
        let first_byte = Instant::now();
        raw.truncate(n);
        s.read_to_end(&mut raw).await?;
        parse_response(&raw, first_byte)
    };
    tokio::time::timeout(HTTP_TIMEOUT, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("GET {path} timed out")))?
}

/// Polls `path` until it answers 200; panics with the process's output if it exits or never does.
async fn wait_ok(proc: &mut Proc, addr: SocketAddr, path: &str) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(r) = get(addr, path, &[]).await
            && r.status == 200
        {
            return;
        }
        proc.assert_running();
        if Instant::now() >= deadline {
            panic!(
                "{} did not answer 200 on {path} within {START_TIMEOUT:?}; its output:\n{}",
                proc.name,
                proc.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An instant query's first value, or `None` if it returned nothing.
async fn prom_value(addr: SocketAddr, expr: &str) -> Option<f64> {
    let r = get(addr, &format!("/api/v1/query?query={}", encode(expr)), &[])
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn series_lines(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count()
}

/// Size of `data` after `gzip -6`, the level Go's Prometheus client uses by default too.
fn gzip_size(data: &[u8], dir: &Path) -> usize {
    let path = dir.join("metrics-for-gzip.txt");
    std::fs::write(&path, data).expect("write body for gzip");
    let out = Command::new("gzip")
        .args(["-6", "-c"])
        .stdin(File::open(&path).expect("open body for gzip"))
        .output()
        .expect("run gzip (Debian package gzip)");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "gzip failed");
    out.stdout.len()
}

fn gunzip_size(data: &[u8], dir: &Path) -> usize {
    let path = dir.join("metrics.gz");
    std::fs::write(&path, data).expect("write gzip body");
    let out = Command::new("gzip")
        .args(["-d", "-c"])
        .stdin(File::open(&path).expect("open gzip body"))
        .output()
        .expect("run gzip -d");
    let _ = std::fs::remove_file(&path);
    out.stdout.len()
}

// ---------------------------------------------------------------------------------------------
// The rustls floor

fn floor_config(ca: CertificateDer<'static>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca).expect("add the test CA");
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Both daemons make a full handshake on every run, so the floor does too.
    cfg.resumption = Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

async fn floor_once(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?;
    let req = format!(
        "GET /jwks/floor HTTP/1.1\r\nHost: localhost:{}\r\nUser-Agent: {FLOOR_UA}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    tls.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    if raw.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(invalid("nginx did not answer 200"))
    }
}

/// Handshakes + GETs on one thread with its own single-threaded runtime, so that thread's CPU
/// time is the client's whole cost (its I/O driver included): (operations, CPU time).
fn floor(port: u16, ca: CertificateDer<'static>, secs: Duration) -> (u64, Duration) {
    std::thread::Builder::new()
        .name("compare-floor".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("floor runtime");
            rt.block_on(async move {
                let config = Arc::new(floor_config(ca));
                let addr = loopback(port);
                for _ in 0..20 {
                    floor_once(addr, &config)
                        .await
                        .unwrap_or_else(|e| panic!("floor: handshake + GET against nginx: {e}"));
                }
                let (t0, c0) = (Instant::now(), stat_cpu("/proc/thread-self/stat"));
                let mut ops = 0;
                while t0.elapsed() < secs {
                    floor_once(addr, &config)
                        .await
                        .unwrap_or_else(|e| panic!("floor: handshake + GET against nginx: {e}"));
                    ops += 1;
                }
                (ops, stat_cpu("/proc/thread-self/stat").saturating_sub(c0))
            })
        })
        .expect("spawn floor thread")
        .join()
        .expect("floor thread")
}

// ---------------------------------------------------------------------------------------------
// Configurations

/// The files every process of one run reads, in a directory removed with it.
struct Files {
    dir: tempfile::TempDir,
    pki: TestPki,
    hosts: PathBuf,
    resolv: PathBuf,
    /// Where authwatch's resolv.conf points: bound, never read, so a query would go unanswered
    /// and be counted at the end.
    dns_trap: UdpSocket,
    /// Host blackbox_exporter's targets name: `localhost` when /etc/hosts maps it to 127.0.0.1.
    bb_host: &'static str,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("write hosts file");
        let dns_trap = UdpSocket::bind("127.0.0.1:0").expect("bind DNS trap on 127.0.0.1");
        dns_trap
            .set_nonblocking(true)
            .expect("non-blocking DNS trap");
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .expect("write resolv.conf");
        Files {
            dir,
            pki,
            hosts,
            resolv,
            dns_trap,
            bb_host: if etc_hosts_maps_localhost() {
                "localhost"
            } else {
                "127.0.0.1"
            },
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Datagrams that reached the DNS trap so far.
    fn dns_queries(&self) -> usize {
        let mut buf = [0u8; 1500];
        let mut n = 0;
        while self.dns_trap.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}

/// Whether Go's resolver (files before dns) will answer `localhost` from /etc/hosts with
/// 127.0.0.1, asking no name server.
fn etc_hosts_maps_localhost() -> bool {
    std::fs::read_to_string("/etc/hosts").is_ok_and(|h| {
        h.lines().any(|l| {
            let l = l.split('#').next().unwrap_or("");
            let mut f = l.split_whitespace();
            f.next() == Some("127.0.0.1") && f.any(|n| n == "localhost")
        })
    })
}

fn nginx_conf(f: &Files, port: u16, jwks: &str) -> String {
    let d = f.dir.path().display();
    // nginx's `return` takes the body in single quotes; a JWKS has none and no `$`.
    assert!(!jwks.contains('\'') && !jwks.contains('$') && !jwks.contains('\\'));
    format!(
        r#"worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
  client_body_temp_path {d}/nginx-body;
  proxy_temp_path {d}/nginx-proxy;
  fastcgi_temp_path {d}/nginx-fastcgi;
  uwsgi_temp_path {d}/nginx-uwsgi;
  scgi_temp_path {d}/nginx-scgi;
  log_format compare '$msec "$http_user_agent" $request_uri $status';
  access_log {d}/access.log compare;
  server {{
    listen 127.0.0.1:{port} ssl backlog=4096;
    server_name localhost;
    ssl_certificate {d}/leaf.crt;
    ssl_certificate_key {d}/leaf.key;
    ssl_session_cache off;
    ssl_session_tickets off;
    location /jwks/ {{
      default_type application/json;
      return 200 '{jwks}';
    }}
    location / {{ return 404; }}
  }}
}}
"#
    )
}

fn authwatch_config(f: &Files, nginx: u16, n: usize, interval: &str) -> String {
    let mut y = format!(
        "global:\n  interval: {interval}\n  timeout: {PROBE_TIMEOUT_SECS}s\n  hosts_file: \"{}\"\n  resolv_conf: \"{}\"\n  resolv_conf_port: {}\n  trust_store_file: \"{}\"\n",
        f.hosts.display(),
        f.resolv.display(),
        f.dns_trap.local_addr().expect("DNS trap address").port(),
        f.pki.ca_pem_path().display(),
    );
    // Either form of the failure gauge (all | active), so both costs can be measured.
    if let Ok(form) = std::env::var("AUTHWATCH_COMPARE_FAILURE_SERIES") {
        let _ = writeln!(y, "  failure_series: {form}");
    }
    if n == 0 {
        y.push_str("probes: []\n");
    } else {
        y.push_str("probes:\n");
    }
    for i in 0..n {
        let _ = writeln!(
            y,
            "  - {{name: j{i}, jwks: {{url: \"https://localhost:{nginx}/jwks/{i}\"}}}}"
        );
    }
    y
}

fn blackbox_config(f: &Files) -> String {
    // ip4: nginx listens on 127.0.0.1 only, and blackbox prefers IPv6 by default. The body
    // regexp makes blackbox read and look into the JWKS; it has no JSON check to match
    // authwatch's, so this is the closest it comes.
    format!(
        "modules:\n  jwks:\n    prober: http\n    timeout: {PROBE_TIMEOUT_SECS}s\n    http:\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n      valid_status_codes: [200]\n      fail_if_body_not_matches_regexp: ['\"keys\"']\n      tls_config:\n        ca_file: \"{}\"\n",
        f.pki.ca_pem_path().display()
    )
}

fn prometheus_config(
    f: &Files,
    s: &Settings,
    n: usize,
    nginx: u16,
    bb: Option<u16>,
    aw: Option<u16>,
) -> String {
    let timeout = s.interval.min(PROBE_TIMEOUT_SECS);
    let mut y = format!(
        "global:\n  scrape_interval: {}s\n  scrape_timeout: {timeout}s\nscrape_configs:\n",
        s.interval
    );
    if let Some(aw) = aw {
        let _ = write!(
            y,
            "  - job_name: authwatch\n    scrape_interval: {AUTHWATCH_SCRAPE_INTERVAL}\n    scrape_timeout: 10s\n    static_configs: [{{targets: ['127.0.0.1:{aw}']}}]\n"
        );
    }
    if let Some(bb) = bb {
        let _ = write!(
            y,
            "  - job_name: blackbox\n    metrics_path: /probe\n    params: {{module: [jwks]}}\n    relabel_configs:\n      - {{source_labels: [__address__], target_label: __param_target}}\n      - {{source_labels: [__param_target], target_label: instance}}\n      - {{target_label: __address__, replacement: '127.0.0.1:{bb}'}}\n    static_configs:\n      - targets:\n"
        );
        for i in 0..n {
            let _ = writeln!(y, "          - https://{}:{nginx}/jwks/{i}", f.bb_host);
        }
    }
    y
}

// ---------------------------------------------------------------------------------------------
// Starting the processes

fn start_nginx(f: &Files, jwks: &str) -> (Proc, u16) {
    let leaf = f.pki.good(&["localhost", "127.0.0.1"]);
    leaf.write_pem_files(f.dir.path(), "leaf");
    let port = common::free_port();
    let conf = f.path("nginx.conf");
    std::fs::write(&conf, nginx_conf(f, port, jwks)).expect("write nginx.conf");
    let mut cmd = Command::new(NGINX);
    // -e: the error log before the config is read would otherwise be /var/log/nginx's.
    cmd.arg("-p")
        .arg(f.dir.path())
        .arg("-e")
        .arg(f.path("nginx-error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    let mut p = Proc::spawn("nginx", &mut cmd, f.path("nginx.out"));
    let deadline = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect(loopback(port)).is_err() {
        p.assert_running();
        if Instant::now() >= deadline {
            panic!(
                "nginx did not listen; error log:\n{}",
                std::fs::read_to_string(f.path("nginx-error.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, port)
}

fn check_config(path: &Path) {
    let out = Command::new(common::daemon::BIN)
        .arg("check-config")
        .arg("--config.file")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run authwatch check-config");
    assert!(
        out.status.success(),
        "authwatch check-config refused {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Validates the config with `check-config`, then starts the daemon: (process, address, Unix
/// time it was spawned).
fn spawn_authwatch(f: &Files, name: &str, yaml: &str, port: u16) -> (Proc, SocketAddr, f64) {
    let config = f.path(&format!("{name}.yml"));
    std::fs::write(&config, yaml).expect("write authwatch config");
    check_config(&config);
    let mut cmd = Command::new(common::daemon::BIN);
    for var in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "https_proxy",
        "http_proxy",
        "all_proxy",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .args(["--log.format", "json", "--log.level", "info"]);
    let spawned = unix_now();
    let p = Proc::spawn("authwatch", &mut cmd, f.path(&format!("{name}.log")));
    (p, loopback(port), spawned)
}

fn spawn_blackbox(f: &Files) -> (Proc, SocketAddr) {
    let config = f.path("blackbox.yml");
    std::fs::write(&config, blackbox_config(f)).expect("write blackbox.yml");
    let port = common::free_port();
    let mut cmd = Command::new(BLACKBOX);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let p = Proc::spawn("blackbox_exporter", &mut cmd, f.path("blackbox.log"));
    (p, loopback(port))
}

fn spawn_prometheus(f: &Files, yaml: &str, port: u16) -> Proc {
    let config = f.path("prometheus.yml");
    std::fs::write(&config, yaml).expect("write prometheus.yml");
    let mut cmd = Command::new(PROMETHEUS);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            f.path("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Proc::spawn("prometheus", &mut cmd, f.path("prometheus.log"))
}

// ---------------------------------------------------------------------------------------------
// Reading nginx's log

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Who {
    Authwatch,
    Blackbox,
    Other,
}

struct Hit {
    at: f64,
    who: Who,
    uri: String,
    status: u16,
}

/// Lines of the `compare` log format: `$msec "$http_user_agent" $request_uri $status`.
fn read_access_log(path: &Path) -> Vec<Hit> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (at, rest) = l.split_once(' ')?;
            let rest = rest.strip_prefix('"')?;
            let (ua, rest) = rest.split_once("\" ")?;
            let mut f = rest.split_whitespace();
            let uri = f.next()?.to_string();
            let status = f.next()?.parse().ok()?;
            let who = if ua.starts_with("authwatch/") {
                Who::Authwatch
            } else if ua.starts_with("Blackbox Exporter") || ua.starts_with("Go-http-client") {
                Who::Blackbox
            } else {
                Who::Other
            };
            Some(Hit {
                at: at.parse().ok()?,
                who,
                uri,
                status,
            })
        })
        .collect()
}

fn user_agents(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    for l in text.lines() {
        if let Some(ua) = l.split('"').nth(1)
            && !seen.iter().any(|s| s == ua)
        {
            seen.push(ua.to_string());
        }
    }
    seen
}

/// Busiest whole second in `[from, to)` over the mean of those seconds: (ratio, busiest, mean).
fn smoothness(hits: &[Hit], who: Who, from: f64, to: f64) -> (f64, usize, f64) {
    let (first, last) = (from.ceil() as i64, to.floor() as i64);
    let mut buckets: BTreeMap<i64, usize> = (first..last).map(|s| (s, 0)).collect();
    for h in hits.iter().filter(|h| h.who == who) {
        if let Some(c) = buckets.get_mut(&(h.at.floor() as i64)) {
            *c += 1;
        }
    }
    let busiest = buckets.values().copied().max().unwrap_or(0);
    let mean = buckets.values().sum::<usize>() as f64 / buckets.len().max(1) as f64;
    (busiest as f64 / mean, busiest, mean)
}

struct FirstRuns {
    urls: usize,
    /// Share of the first runs in the busiest second after the client started.
    busiest_share: f64,
    busiest_at: i64,
    /// From the first first run to the last, in seconds.
    spread: f64,
    first_after: f64,
}

fn first_runs(hits: &[Hit], who: Who, started: f64) -> FirstRuns {
    let mut first: HashMap<&str, f64> = HashMap::new();
    for h in hits
        .iter()
        .filter(|h| h.who == who && h.uri.starts_with("/jwks/"))
    {
        let e = first.entry(h.uri.as_str()).or_insert(h.at);
        *e = e.min(h.at);
    }
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for &t in first.values() {
        *per_second.entry((t - started).floor() as i64).or_default() += 1;
    }
    let (busiest_at, busiest) = per_second
        .iter()
        .max_by_key(|(_, c)| **c)
        .map_or((0, 0), |(s, c)| (*s, *c));
    let min = first.values().copied().fold(f64::INFINITY, f64::min);
    let max = first.values().copied().fold(f64::NEG_INFINITY, f64::max);
    if first.is_empty() {
        return FirstRuns {
            urls: 0,
            busiest_share: f64::NAN,
            busiest_at,
            spread: f64::NAN,
            first_after: f64::NAN,
        };
    }
    FirstRuns {
        urls: first.len(),
        busiest_share: busiest as f64 / first.len() as f64,
        busiest_at,
        spread: max - min,
        first_after: min - started,
    }
}

// ---------------------------------------------------------------------------------------------
// authwatch's /metrics

struct AwSnap {
    runs: f64,
    /// Probes with at least one finished run (every configured probe has the series).
    probes_ran: usize,
    succeeding: usize,
}

fn aw_snap(text: &str) -> AwSnap {
    let mut s = AwSnap {
        runs: 0.0,
        probes_ran: 0,
        succeeding: 0,
    };
    for sample in common::prom::parse(text) {
        match sample.name.as_str() {
            "authwatch_probe_runs_total" => {
                s.runs += sample.value;
                s.probes_ran += usize::from(sample.value > 0.0);
            }
            "authwatch_probe_success" if sample.value == 1.0 => s.succeeding += 1,
            _ => {}
        }
    }
    s
}

/// A snapshot and when its first byte arrived: the page is rendered whole before it is sent,
/// so that is when the counters had just been read. (The middle of a request is a worse
/// guess: sending 50 MB on a loaded machine takes seconds, and not the same at both ends.)
async fn aw_snap_timed(addr: SocketAddr) -> (AwSnap, Instant) {
    let (body, at) = aw_metrics(addr).await;
    (aw_snap(&body), at)
}

async fn aw_metrics(addr: SocketAddr) -> (String, Instant) {
    let r = get(addr, "/metrics", &[])
        .await
        .unwrap_or_else(|e| panic!("GET authwatch /metrics: {e}"));
    assert_eq!(r.status, 200, "authwatch /metrics answered {}", r.status);
    (r.text(), r.first_byte)
}

struct Timed {
    count: usize,
    p50: Duration,
    p99: Duration,
}

/// `n` GETs of `path`, one after the other, each on a new connection, timed end to end.
async fn timed_gets(addr: SocketAddr, path: &str, n: usize) -> Timed {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = get(addr, path, &[])
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        times.push(t.elapsed());
        assert_eq!(r.status, 200, "GET {path} answered {}", r.status);
    }
    times.sort();
    let pick = |q: f64| times[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Timed {
        count: n,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// authwatch alone with `n` probes at a 1 h interval: (VmRSS as soon as it serves, probes
/// whose first run had finished by then).
async fn idle_rss(f: &Files, nginx: u16, n: usize) -> (f64, usize) {
    let yaml = authwatch_config(f, nginx, n, "1h");
    let (mut p, addr, _) = spawn_authwatch(f, &format!("idle-{n}"), &yaml, common::free_port());
    // Every probe's task is spawned, its memory allocated, before the server starts to serve.
    wait_ok(&mut p, addr, "/-/healthy").await;
    let rss = proc_status_bytes(p.pid(), "VmRSS");
    let ran = aw_snap(&aw_metrics(addr).await.0).probes_ran;
    (rss, ran)
}

// ---------------------------------------------------------------------------------------------
// Output

struct Row {
    figure: String,
    aw: String,
    bb: String,
    ratio: String,
    target: String,
}

fn row(figure: &str, aw: String, bb: String, ratio: String, target: &str) -> Row {
    Row {
        figure: figure.to_string(),
        aw,
        bb,
        ratio,
        target: target.to_string(),
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

fn f2(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "n/a".into()
    }
}

fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "n/a".into()
    }
}

fn mb(bytes: f64) -> String {
    if bytes.is_finite() {
        format!("{:.1}", bytes / MIB)
    } else {
        "n/a".into()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn dash() -> String {
    "—".into()
}

fn print_table(title: &str, rows: &[Row]) {
    let head = [
        "figure",
        "authwatch",
        "blackbox_exporter",
        "ratio",
        "target",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.figure.clone(),
                r.aw.clone(),
                r.bb.clone(),
                r.ratio.clone(),
                r.target.clone(),
            ]
        })
        .collect();
    print!(
        "\n{title}\n\n{}",
        common::markdown_table(&head, &cells, false)
    );
    let _ = io::stdout().flush();
}

fn say(msg: &str) {
    println!("{msg}");
    let _ = io::stdout().flush();
}

// ---------------------------------------------------------------------------------------------
// One probe count

/// What authwatch showed in its window and after it.
struct AwSide {
    started: f64,
    ready: String,
    /// Runs in the window and the CPU seconds they took.
    runs: f64,
    cpu: f64,
    rss: f64,
    hwm: f64,
    /// `RssAnon`: the heap and stacks; the rest of VmRSS is file-backed (the binary's pages).
    anon: f64,
    succeeding: usize,
    /// `/metrics` at the end of the window.
    body: String,
    scrapes: Timed,
    scrape_cpu_ms: f64,
    encoding: String,
    served_bytes: usize,
    local_gzip: usize,
    prom_scrape_max: Option<f64>,
    prom_up: Option<f64>,
    /// Prometheus's scrapes of authwatch so far: (succeeded, all).
    prom_scrapes: (Option<f64>, Option<f64>),
}

/// What blackbox_exporter showed in its window and after it.
struct BbSide {
    /// When Prometheus, which decides when blackbox probes, was started.
    started: f64,
    cpu: f64,
    rss: f64,
    hwm: f64,
    anon: f64,
    own_bytes: usize,
    gz_bytes: usize,
    gz_encoding: String,
    gz_plain: usize,
    scrapes: Timed,
    up: Option<f64>,
    ok: Option<f64>,
    probe_lines: usize,
    probe_ok: bool,
}

struct Phase {
    ws: f64,
    we: f64,
    wsecs: f64,
    load: (String, String),
    prom_rss: f64,
    prom_cpu_pct: f64,
    aw: Option<AwSide>,
    bb: Option<BbSide>,
}

fn cpu_secs(p: Option<&Proc>) -> f64 {
    p.map_or(0.0, |p| proc_cpu(p.pid()).as_secs_f64())
}

fn encoding_of(r: &Resp) -> String {
    r.header("Content-Encoding")
        .unwrap_or("identity")
        .to_string()
}

/// Starts authwatch and/or blackbox_exporter with a Prometheus, waits the warm-up, measures
/// one window and then the figures that need requests of our own; stops them all on return.
async fn phase(
    f: &Files,
    s: &Settings,
    n: usize,
    nginx: &mut Proc,
    nginx_port: u16,
    with_aw: bool,
    with_bb: bool,
) -> Phase {
    let mut bb = if with_bb {
        let (mut p, addr) = spawn_blackbox(f);
        wait_ok(&mut p, addr, "/-/healthy").await;
        Some((p, addr))
    } else {
        None
    };
    let aw_port = common::free_port();
    let prom_port = common::free_port();
    let prom_addr = loopback(prom_port);
    let prom_yaml = prometheus_config(
        f,
        s,
        n,
        nginx_port,
        bb.as_ref().map(|b| b.1.port()),
        with_aw.then_some(aw_port),
    );
    let aw_yaml = authwatch_config(f, nginx_port, n, &format!("{}s", s.interval));

    // authwatch and Prometheus (which drives blackbox_exporter) start together.
    let t0 = Instant::now();
    let mut aw = with_aw.then(|| spawn_authwatch(f, "authwatch", &aw_yaml, aw_port));
    let prom_started = unix_now();
    let mut prom = spawn_prometheus(f, &prom_yaml, prom_port);
    if let Some((p, addr, _)) = aw.as_mut() {
        wait_ok(p, *addr, "/-/healthy").await;
    }
    wait_ok(&mut prom, prom_addr, "/-/ready").await;

    tokio::time::sleep(s.warmup.saturating_sub(t0.elapsed())).await;
    nginx.assert_running();
    prom.assert_running();
    if let Some((p, _, _)) = aw.as_mut() {
        p.assert_running();
    }
    if let Some((p, _)) = bb.as_mut() {
        p.assert_running();
    }
    let aw_proc = aw.as_ref().map(|a| &a.0);
    let bb_proc = bb.as_ref().map(|b| &b.0);
    let ready = match &aw {
        Some((_, addr, _)) => match get(*addr, "/-/ready", &[]).await {
            Ok(r) => r.status.to_string(),
            Err(e) => e.to_string(),
        },
        None => String::new(),
    };

    // Our own scrape stays out of the window: scrape, then read the CPU times; at the end the
    // other way round.
    let snap_a = match &aw {
        Some((_, addr, _)) => Some(aw_snap_timed(*addr).await),
        None => None,
    };
    let cpu_a = (cpu_secs(aw_proc), cpu_secs(bb_proc), cpu_secs(Some(&prom)));
    let (ws, wa, load_a) = (unix_now(), Instant::now(), loadavg());
    tokio::time::sleep(s.window).await;
    let cpu_b = (cpu_secs(aw_proc), cpu_secs(bb_proc), cpu_secs(Some(&prom)));
    let (we, wsecs) = (unix_now(), wa.elapsed().as_secs_f64());
    let body_b = match &aw {
        Some((_, addr, _)) => Some(aw_metrics(*addr).await),
        None => None,
    };
    let load_b = loadavg();
    let rss = |p: &Proc| {
        (
            proc_status_bytes(p.pid(), "VmRSS"),
            proc_status_bytes(p.pid(), "VmHWM"),
            proc_status_bytes(p.pid(), "RssAnon"),
        )
    };
    let prom_rss = rss(&prom).0;

    let aw_side = match (&aw, snap_a, body_b) {
        (Some((p, addr, started)), Some((snap_a, mid_a)), Some((body, mid_b))) => {
            let (rss, hwm, anon) = rss(p);
            let snap_b = aw_snap(&body);
            let cpu = cpu_b.0 - cpu_a.0;
            // The counters were read inside our two scrapes, just outside the CPU window:
            // their rate between the two readings, over the window's length.
            let runs =
                (snap_b.runs - snap_a.runs) / mid_b.duration_since(mid_a).as_secs_f64() * wsecs;
            // /metrics while the probes go on.
            let (c0, t0) = (proc_cpu(p.pid()), Instant::now());
            let scrapes = timed_gets(*addr, "/metrics", s.scrapes).await;
            let (c1, t1) = (proc_cpu(p.pid()), Instant::now());
            let probing = cpu / wsecs * t1.duration_since(t0).as_secs_f64();
            let scrape_cpu_ms = 1000.0 * (c1.saturating_sub(c0).as_secs_f64() - probing).max(0.0)
                / scrapes.count as f64;
            let gz = get(*addr, "/metrics", &[("Accept-Encoding", "gzip")])
                .await
                .unwrap_or_else(|e| panic!("GET authwatch /metrics with gzip: {e}"));
            let prom_scrape_max = prom_value(
                prom_addr,
                "max_over_time(scrape_duration_seconds{job=\"authwatch\"}[10m])",
            )
            .await;
            Some(AwSide {
                started: *started,
                ready,
                runs,
                cpu,
                rss,
                anon,
                hwm,
                succeeding: snap_b.succeeding,
                local_gzip: gzip_size(body.as_bytes(), f.dir.path()),
                body,
                scrapes,
                scrape_cpu_ms,
                encoding: encoding_of(&gz),
                served_bytes: gz.body.len(),
                prom_scrape_max,
                prom_up: prom_value(prom_addr, "up{job=\"authwatch\"}").await,
                prom_scrapes: (
                    prom_value(prom_addr, "sum_over_time(up{job=\"authwatch\"}[10m])").await,
                    prom_value(prom_addr, "count_over_time(up{job=\"authwatch\"}[10m])").await,
                ),
            })
        }
        _ => None,
    };

    let bb_side = match &bb {
        Some((p, addr)) => {
            let (rss, hwm, anon) = rss(p);
            let own = get(*addr, "/metrics", &[])
                .await
                .expect("blackbox /metrics");
            let gz = get(*addr, "/metrics", &[("Accept-Encoding", "gzip")])
                .await
                .expect("blackbox /metrics with gzip");
            let gz_encoding = encoding_of(&gz);
            let gz_plain = if gz_encoding == "gzip" {
                gunzip_size(&gz.body, f.dir.path())
            } else {
                gz.body.len()
            };
            let scrapes = timed_gets(*addr, "/metrics", s.scrapes).await;
            // One /probe answer, as Prometheus gets it.
            let probe_path = format!(
                "/probe?module=jwks&target={}",
                encode(&format!("https://{}:{nginx_port}/jwks/0", f.bb_host))
            );
            let probe = get(*addr, &probe_path, &[])
                .await
                .expect("blackbox /probe")
                .text();
            Some(BbSide {
                started: prom_started,
                cpu: cpu_b.1 - cpu_a.1,
                rss,
                anon,
                hwm,
                own_bytes: own.body.len(),
                gz_bytes: gz.body.len(),
                gz_encoding,
                gz_plain,
                scrapes,
                up: prom_value(prom_addr, "count(up{job=\"blackbox\"} == 1)").await,
                ok: prom_value(prom_addr, "sum(probe_success{job=\"blackbox\"})").await,
                probe_lines: series_lines(&probe),
                probe_ok: probe.lines().any(|l| l == "probe_success 1"),
            })
        }
        None => None,
    };
    Phase {
        ws,
        we,
        wsecs,
        load: (load_a, load_b),
        prom_rss,
        prom_cpu_pct: 100.0 * (cpu_b.2 - cpu_a.2) / wsecs,
        aw: aw_side,
        bb: bb_side,
    }
}

async fn compare(s: &Settings, n: usize) {
    let interval = format!("{}s", s.interval);
    let mode = if s.sequential {
        "one after the other, in windows of the same length"
    } else {
        "at the same time, in the same window"
    };
    say(&format!(
        "\n## {n} probes, interval {interval}, {mode}: warm-up {} s, window {} s (load average {})",
        s.warmup.as_secs(),
        s.window.as_secs(),
        loadavg()
    ));
    let f = Files::new();
    let jwks = common::jwks::jwks([common::jwks::rsa_jwk("compare-1", 2048)]).to_string();
    let (mut nginx, nginx_port) = start_nginx(&f, &jwks);

    let ca = f.pki.ca_der();
    let (ops, floor_cpu) = tokio::task::block_in_place(|| floor(nginx_port, ca, s.floor));
    let floor_ms = floor_cpu.as_secs_f64() * 1000.0 / ops.max(1) as f64;
    say(&format!(
        "floor: {ops} handshakes + GETs in {} s, {} ms CPU each",
        s.floor.as_secs(),
        f3(floor_ms)
    ));

    let phases = if s.sequential {
        vec![
            phase(&f, s, n, &mut nginx, nginx_port, true, false).await,
            phase(&f, s, n, &mut nginx, nginx_port, false, true).await,
        ]
    } else {
        vec![phase(&f, s, n, &mut nginx, nginx_port, true, true).await]
    };
    let hits = read_access_log(&f.path("access.log"));
    let agents = user_agents(&f.path("access.log"));

    // Memory per configured probe, authwatch alone.
    let (rss_n, ran_n) = idle_rss(&f, nginx_port, n).await;
    let (rss_0, _) = idle_rss(&f, nginx_port, 0).await;
    let per_probe_kb = (rss_n - rss_0) / n as f64 / 1024.0;
    let dns_queries = f.dns_queries();
    nginx.assert_running();
    drop(nginx);

    let (pa, a) = phases
        .iter()
        .find_map(|p| p.aw.as_ref().map(|a| (p, a)))
        .expect("a phase with authwatch");
    let (pb, b) = phases
        .iter()
        .find_map(|p| p.bb.as_ref().map(|b| (p, b)))
        .expect("a phase with blackbox_exporter");
    let in_window = |who: Who, p: &Phase| {
        hits.iter()
            .filter(|h| h.who == who && h.at >= p.ws && h.at < p.we)
            .count()
    };
    let aw_hits = in_window(Who::Authwatch, pa);
    let bb_runs = in_window(Who::Blackbox, pb) as f64;
    let expected = n as f64 * pa.wsecs / s.interval as f64;
    let aw_cpu_ms = 1000.0 * a.cpu / a.runs;
    let bb_cpu_ms = 1000.0 * b.cpu / bb_runs;
    let non_200 = |who: Who| {
        hits.iter()
            .filter(|h| h.who == who && h.status != 200)
            .count()
    };
    let (aw_smooth, aw_busiest, aw_mean) = smoothness(&hits, Who::Authwatch, pa.ws, pa.we);
    let (bb_smooth, bb_busiest, bb_mean) = smoothness(&hits, Who::Blackbox, pb.ws, pb.we);
    let aw_first = first_runs(&hits, Who::Authwatch, a.started);
    let bb_first = first_runs(&hits, Who::Blackbox, b.started);
    let aw_series = series_lines(&a.body);
    let aw_own = a
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("probe=\"j0\""))
        .count();
    let bb_series = b.probe_lines + PROMETHEUS_SYNTHETIC_SERIES;

    let (rss_row, rss_target, peak_target) = match n {
        1000 => ("3", "≤ 12 MB and ≤ 0.5× blackbox", "(1k: ≤ 12 MB)"),
        10000 => ("4", "≤ 60 MB", "(10k: ≤ 60 MB)"),
        _ => (
            "3/4",
            "targets given at 1k (≤ 12 MB) and 10k (≤ 60 MB)",
            "targets given at 1k and 10k",
        ),
    };
    let opt = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0}"));
    let prom_cell = |p: &Phase| format!("{} / {:.0} %", mb(p.prom_rss), p.prom_cpu_pct);
    let (prom_aw, prom_bb, prom_label) = if s.sequential {
        (
            prom_cell(pa),
            prom_cell(pb),
            "   Prometheus: RSS MB / CPU % of a core (scraping only that side's targets)",
        )
    } else {
        (
            dash(),
            prom_cell(pb),
            "   Prometheus: RSS MB / CPU % of a core (scrapes both; blackbox needs it per probe)",
        )
    };
    let window_note = if s.sequential {
        format!(
            "{:.0} s windows, one each (expected {expected:.0})",
            pa.wsecs
        )
    } else {
        format!("the {:.0} s window (expected {expected:.0})", pa.wsecs)
    };
    let rows = vec![
        row(
            &format!("probe runs completed in {window_note}"),
            format!("{:.0} (nginx saw {aw_hits})", a.runs),
            format!("{bb_runs:.0} (nginx)"),
            ratio(a.runs, bb_runs),
            "same rate",
        ),
        row(
            "1. CPU per probe run, ms (utime+stime ÷ runs in window)",
            format!(
                "{} ({} per request nginx saw)",
                f3(aw_cpu_ms),
                f3(1000.0 * a.cpu / aw_hits as f64)
            ),
            f3(bb_cpu_ms),
            ratio(aw_cpu_ms, bb_cpu_ms),
            "≤ 0.25× blackbox",
        ),
        row(
            &format!(
                "2. CPU per run ÷ rustls floor (floor: {} ms per handshake + GET, in process)",
                f3(floor_ms)
            ),
            ratio(aw_cpu_ms, floor_ms),
            ratio(bb_cpu_ms, floor_ms),
            dash(),
            "authwatch ≤ 1.2× floor",
        ),
        row(
            &format!("{rss_row}. RSS with {n} probes at end of window, MB"),
            mb(a.rss),
            mb(b.rss),
            ratio(a.rss, b.rss),
            rss_target,
        ),
        row(
            "   of it anonymous (RssAnon: heap and stacks; the rest is the binary's file-backed pages), MB",
            mb(a.anon),
            mb(b.anon),
            ratio(a.anon, b.anon),
            dash().as_str(),
        ),
        row(
            &format!("{rss_row}. peak RSS (VmHWM) at end of window, MB"),
            mb(a.hwm),
            mb(b.hwm),
            ratio(a.hwm, b.hwm),
            peak_target,
        ),
        row(prom_label, prom_aw, prom_bb, dash(), dash().as_str()),
        row(
            &format!(
                "5. memory per configured probe before it runs, KB ((RSS@{n} − RSS@0) ÷ {n}, 1 h interval, {ran_n} of {n} had run)"
            ),
            format!("{per_probe_kb:.2} ({} − {} MB)", mb(rss_n), mb(rss_0)),
            "n/a".into(),
            "n/a".into(),
            "≤ 4 KB",
        ),
        row(
            "6. series per probe (aw: /metrics lines ÷ N; bb: one /probe + 5 added by Prometheus)",
            format!(
                "{:.1} ({aw_series} ÷ {n}; {aw_own} carry probe=\"j0\")",
                aw_series as f64 / n as f64
            ),
            format!(
                "{bb_series} ({} + {PROMETHEUS_SYNTHETIC_SERIES})",
                b.probe_lines
            ),
            ratio(aw_series as f64 / n as f64, bb_series as f64),
            "≤ 30 per healthy probe",
        ),
        row(
            &format!("7. /metrics size at {n} probes, MB (bb: its own /metrics, for reference)"),
            format!("{:.2}", a.body.len() as f64 / MIB),
            format!("{:.3}", b.own_bytes as f64 / MIB),
            dash(),
            "≤ 10 MB at 10k",
        ),
        row(
            "7. /metrics gzipped, MB (Accept-Encoding: gzip; what came back)",
            format!(
                "{:.2} (served {}; gzip -6 here: {:.2})",
                a.served_bytes as f64 / MIB,
                a.encoding,
                a.local_gzip as f64 / MIB
            ),
            format!(
                "{:.3} (served {}, {:.3} unpacked)",
                b.gz_bytes as f64 / MIB,
                b.gz_encoding,
                b.gz_plain as f64 / MIB
            ),
            dash(),
            "≤ 1.5 MB at 10k",
        ),
        row(
            &format!(
                "7. /metrics scrape p50 / p99, ms ({} back-to-back scrapes while probing)",
                a.scrapes.count
            ),
            format!("{} / {}", ms(a.scrapes.p50), ms(a.scrapes.p99)),
            format!(
                "{} / {} (own /metrics)",
                ms(b.scrapes.p50),
                ms(b.scrapes.p99)
            ),
            dash(),
            "p99 ≤ 100 ms while probing",
        ),
        row(
            "7. CPU per /metrics scrape, ms (less the probes' CPU rate)",
            f2(a.scrape_cpu_ms),
            dash(),
            dash(),
            dash().as_str(),
        ),
        row(
            "   Prometheus's own scrapes of authwatch (every 15 s): longest, ms; succeeded / all",
            format!(
                "{}; {} / {}",
                a.prom_scrape_max
                    .map_or("?".into(), |v| format!("{:.1}", v * 1000.0)),
                opt(a.prom_scrapes.0),
                opt(a.prom_scrapes.1)
            ),
            dash(),
            dash(),
            dash().as_str(),
        ),
        row(
            "8. schedule: busiest second ÷ mean requests/s at nginx, in the window",
            format!("{} ({aw_busiest} vs {aw_mean:.1}/s)", f2(aw_smooth)),
            format!("{} ({bb_busiest} vs {bb_mean:.1}/s)", f2(bb_smooth)),
            ratio(aw_smooth, bb_smooth),
            "≤ 1.3",
        ),
        row(
            "9. first runs in the busiest second after start (aw: from its start; bb: from Prometheus's)",
            format!(
                "{:.1} % (second {} of {})",
                aw_first.busiest_share * 100.0,
                aw_first.busiest_at,
                aw_first.urls
            ),
            format!(
                "{:.1} % (second {} of {})",
                bb_first.busiest_share * 100.0,
                bb_first.busiest_at,
                bb_first.urls
            ),
            dash(),
            &format!(
                "spread over the first interval (≈ {:.1} % per second)",
                100.0 / s.interval as f64
            ),
        ),
        row(
            "9. first-run spread, first → last first run, s (first one at +s)",
            format!("{:.1} (+{:.1})", aw_first.spread, aw_first.first_after),
            format!("{:.1} (+{:.1})", bb_first.spread, bb_first.first_after),
            dash(),
            &format!("≈ {} s", s.interval),
        ),
        row(
            "probes succeeding at end of window / non-200 answers at nginx",
            format!("{} of {n} / {}", a.succeeding, non_200(Who::Authwatch)),
            format!(
                "{} of {n} (up {}) / {}",
                opt(b.ok),
                opt(b.up),
                non_200(Who::Blackbox)
            ),
            dash(),
            "all",
        ),
    ];
    print_table(
        &format!(
            "### authwatch vs blackbox_exporter: {n} jwks probes at {interval}, same nginx, {mode}"
        ),
        &rows,
    );
    say("");
    // What one healthy probe costs, by family: the figure row 6 is about.
    let mut own: Vec<(String, usize)> = Vec::new();
    for l in a
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("probe=\"j0\""))
    {
        let name = l.split(['{', ' ']).next().unwrap_or("").to_string();
        match own.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => own.push((name, 1)),
        }
    }
    say(&format!(
        "series of probe j0 by family: {}",
        own.iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    say("");
    for (i, p) in phases.iter().enumerate() {
        say(&format!(
            "load average, window {}: {} at start, {} at end ({} CPUs)",
            i + 1,
            p.load.0,
            p.load.1,
            std::thread::available_parallelism().map_or(0, |c| c.get())
        ));
    }
    say(&format!("user agents at nginx: {}", agents.join(", ")));
    say(&format!(
        "authwatch /-/ready at window start: {}; Prometheus up{{job=\"authwatch\"}}: {}; blackbox /probe answer: {} lines, probe_success 1: {}",
        a.ready,
        opt(a.prom_up),
        b.probe_lines,
        b.probe_ok
    ));
    say(&format!(
        "DNS queries that reached authwatch's resolv.conf trap: {dns_queries} (0 expected: hosts file answers)"
    ));
    say(&format!(
        "notes: p99 is nearest-rank ({} of {} scrapes); memory per probe: VmRSS read as soon as /-/healthy answered, when {ran_n} of {n} probes had finished a run; blackbox_exporter keeps no per-target state, so n/a.",
        ((0.99 * a.scrapes.count as f64).ceil() as usize).clamp(1, a.scrapes.count),
        a.scrapes.count
    ));
    if bb_runs < 0.9 * expected {
        say(&format!(
            "note: blackbox_exporter completed {bb_runs:.0} of the {expected:.0} runs due: Prometheus did not keep up (CPU-bound machine?); its figures are for that rate."
        ));
    }
}

async fn run(s: Settings) {
    for (bin, pkg) in [
        (NGINX, "nginx-light"),
        (BLACKBOX, "prometheus-blackbox-exporter"),
        (PROMETHEUS, "prometheus"),
    ] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: install the Debian package {pkg} (bash benches/compare.sh does)"
        );
    }
    say(&format!(
        "# authwatch vs blackbox_exporter: probes {:?}, interval {} s, warm-up {} s, window {} s, {} scrapes, {}",
        s.probes,
        s.interval,
        s.warmup.as_secs(),
        s.window.as_secs(),
        s.scrapes,
        if s.sequential {
            "one after the other"
        } else {
            "at the same time"
        }
    ));
    say(&format!(
        "{} CPUs, load average {} at start",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        loadavg()
    ));
    say(&format!(
        "authwatch: {}\nblackbox_exporter: {}\nprometheus: {}\nnginx: {}",
        common::daemon::BIN,
        version_of(BLACKBOX, "--version"),
        version_of(PROMETHEUS, "--version"),
        version_of(NGINX, "-v"),
    ));
    for &n in &s.probes {
        compare(&s, n).await;
    }
    say(&format!("\nload average {} at end", loadavg()));
}

fn main() {
    support::main(
        "compare: a benchmark; run it with `bash benches/compare.sh`",
        || run(settings()),
    );
}
