//! Load benchmark for the `authwatch` daemon (DESIGN.md section 7). Scenarios:
//!
//! - `lab`: in process, on one client thread: bare rustls handshakes against the TLS server,
//!   the daemon's own probe code for one run, a few of its parts, and its futures' sizes;
//! - `1`: N healthy HTTPS probes at 1 s against one in-process TLS server: runs/s, daemon CPU
//!   per run, RSS, and `/metrics` scrape latency, size and series count;
//! - `1b`: fixed versus per-run daemon CPU (idle probes; a tenth of the probes at 100 ms);
//! - `1c`: memory per probe by how the test CA is trusted (`trust_store_file` or `ca_file`);
//! - `2`: half the HTTPS probes at a hung server and N/10 DNS probes at a silent server;
//! - `3` (soak, off by default): the mix of `2` for a long time, RSS every 10 s.
//!
//! It measures and prints tables; it asserts nothing about timings. Everything binds and
//! connects to 127.0.0.1 only (the probes resolve `localhost` through a hosts file of ours that
//! maps it to 127.0.0.1 alone). The daemon is the real release binary, started by the
//! integration-test launcher as its own process, so its CPU and memory are its own.
//!
//! ```sh
//! cargo bench --bench load
//! AUTHWATCH_BENCH_PROBES=200 cargo bench --bench load
//! AUTHWATCH_BENCH_SOAK_SECS=600 AUTHWATCH_BENCH_PROBES=1000 cargo bench --bench load
//! ```
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `AUTHWATCH_BENCH_PROBES` | `200,1000` | probe counts to run each scenario with (comma-separated) |
//! | `AUTHWATCH_BENCH_SECS` | `20` | measurement window of each run, after warm-up |
//! | `AUTHWATCH_BENCH_WARMUP_SECS` | `5` | wait after every probe has run once |
//! | `AUTHWATCH_BENCH_SCRAPES` | `50` | at least this many timed GETs of `/metrics` per run, back to back for at least 5 s |
//! | `AUTHWATCH_BENCH_SOAK_SECS` | `0` | soak length (0 skips it), with the first probe count |
//! | `AUTHWATCH_BENCH_SCENARIOS` | all | comma-separated subset of `lab`, `1`, `1b`, `1c`, `2` (`soak`: none of them) |
//!
//! `cargo bench` passes `--bench` to this binary; without it (`cargo test --all-targets`) it
//! prints a line and exits. Other arguments are ignored.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use support::{env_u64, loadavg};

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsConnector;

use common::daemon::Daemon;
use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, TestServer, http_get};
use common::prom;
use common::tls::TestPki;

const INTERVAL: &str = "1s";
const TIMEOUT: &str = "2s";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const SOAK_EVERY: Duration = Duration::from_secs(10);
/// Scrapes go on back to back for at least this long.
const SCRAPE_MIN: Duration = Duration::from_secs(5);
const MIB: f64 = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    probes: Vec<usize>,
    window: Duration,
    warmup: Duration,
    scrapes: usize,
    soak: Duration,
    /// Scenarios to run (`lab`, `1`, `1b`, `1c`, `2`); empty: all of them.
    only: Vec<String>,
}

impl Settings {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == scenario)
    }
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(env_u64(name, default))
}

fn settings() -> Settings {
    let probes = std::env::var("AUTHWATCH_BENCH_PROBES").unwrap_or_else(|_| "200,1000".into());
    let probes: Vec<usize> = probes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(n) if n >= 2 => n,
            _ => panic!("AUTHWATCH_BENCH_PROBES: {s:?} is not a probe count of at least 2"),
        })
        .collect();
    assert!(!probes.is_empty(), "AUTHWATCH_BENCH_PROBES lists no count");
    let scrapes = env_u64("AUTHWATCH_BENCH_SCRAPES", 50).max(1) as usize;
    Settings {
        probes,
        window: env_secs("AUTHWATCH_BENCH_SECS", 20).max(Duration::from_secs(1)),
        warmup: env_secs("AUTHWATCH_BENCH_WARMUP_SECS", 5),
        scrapes,
        soak: env_secs("AUTHWATCH_BENCH_SOAK_SECS", 0),
        only: std::env::var("AUTHWATCH_BENCH_SCENARIOS")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Accepts TCP connections and never answers, not even the TLS handshake: a hung target.
/// Unlike `TestServer::hang()`, which keeps every accepted socket until it is dropped, each
/// socket is let go once the client gives up and closes, so a long soak does not pile up
/// descriptors in this process.
struct HangServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HangServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hang server on 127.0.0.1");
        let addr = listener.local_addr().expect("hang server address");
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                match listener.accept().await {
                    Ok((mut stream, _)) => {
                        conns.spawn(async move {
                            // Swallow the ClientHello and whatever follows until the peer closes.
                            let mut buf = [0u8; 4096];
                            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        HangServer { addr, task }
    }
}

impl Drop for HangServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The servers the probes target and the files the daemon reads instead of the system's.
struct Fixtures {
    pki: TestPki,
    leaf: common::tls::Leaf,
    https: TestServer,
    hang: HangServer,
    dns: DnsServer,
    _dir: tempfile::TempDir,
    hosts: PathBuf,
    resolv: PathBuf,
}

impl Fixtures {
    async fn start() -> Self {
        let pki = TestPki::new();
        let leaf = pki.good(&["localhost"]);
        let https =
            TestServer::start_tls(&leaf, |_| ResponseSpec::text(200, "text/plain", "ok\n")).await;
        let hang = HangServer::start().await;
        // Every name not in the zone gets the fallback: silence.
        let dns = DnsServer::start().await;
        dns.set_default(Behavior::Silent);
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("write hosts file");
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.1\n").expect("write resolv.conf");
        Fixtures {
            pki,
            leaf,
            https,
            hang,
            dns,
            _dir: dir,
            hosts,
            resolv,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Daemon configurations

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// `global.trust_store_file` = the test CA: one root set shared by every probe.
    Store,
    /// Per-probe `connection.tls.ca_file` = the test CA, on top of the platform store.
    CaFile,
}

impl Trust {
    fn label(self) -> &'static str {
        match self {
            Trust::Store => "global.trust_store_file",
            Trust::CaFile => "per-probe tls.ca_file",
        }
    }
}

struct Mix {
    ok: usize,
    hung: usize,
    dns: usize,
}

fn config(fx: &Fixtures, interval: &str, trust: Trust, mix: &Mix) -> String {
    let ca = fx.pki.ca_pem_path().display();
    let mut y = format!(
        "global:\n  interval: {interval}\n  timeout: {TIMEOUT}\n  hosts_file: \"{}\"\n  resolv_conf: \"{}\"\n  resolv_conf_port: {}\n",
        fx.hosts.display(),
        fx.resolv.display(),
        fx.dns.port()
    );
    if trust == Trust::Store {
        y.push_str(&format!("  trust_store_file: \"{ca}\"\n"));
    }
    y.push_str("probes:\n");
    let conn = match trust {
        Trust::Store => String::new(),
        Trust::CaFile => format!("    connection: {{tls: {{ca_file: \"{ca}\"}}}}\n"),
    };
    for i in 0..mix.ok {
        y.push_str(&format!(
            "  - name: ok-{i}\n    https: {{url: \"https://localhost:{}/p{i}\"}}\n{conn}",
            fx.https.port()
        ));
    }
    for i in 0..mix.hung {
        y.push_str(&format!(
            "  - name: hung-{i}\n    https: {{url: \"https://localhost:{}/h{i}\"}}\n{conn}",
            fx.hang.addr.port()
        ));
    }
    for i in 0..mix.dns {
        y.push_str(&format!(
            "  - name: dns-{i}\n    dns: {{names: [silent{i}.test], resolvers: [\"127.0.0.1:{}\"]}}\n",
            fx.dns.port()
        ));
    }
    y
}

// ---------------------------------------------------------------------------------------------
// Reading the daemon

/// Per probe group (the name up to its first `-`): what one scrape showed.
#[derive(Clone, Default)]
struct Group {
    probes: usize,
    runs: f64,
    succeeding: usize,
    duration_sum: f64,
    duration_count: f64,
    /// Runs that took at most 25 ms (the histogram's `le="0.025"` bucket).
    fast: f64,
    reasons: BTreeMap<String, usize>,
}

struct Snap {
    at: Instant,
    groups: BTreeMap<String, Group>,
    /// From the daemon's /proc/PID/stat at the scrape, for the user/system split.
    proc_cpu: Cpu,
    cpu: f64,
    rss: f64,
    fds: f64,
}

impl Snap {
    fn group(&self, name: &str) -> Group {
        self.groups.get(name).cloned().unwrap_or_default()
    }

    fn runs(&self) -> f64 {
        self.groups.values().map(|g| g.runs).sum()
    }
}

async fn snap(d: &Daemon) -> Snap {
    let before = Instant::now();
    let body = d.metrics().await;
    // The values were taken somewhere during the request; its midpoint is the best guess.
    let at = before + before.elapsed() / 2;
    let mut s = Snap {
        at,
        groups: BTreeMap::new(),
        proc_cpu: Cpu::read(std::path::Path::new(&format!("/proc/{}/stat", d.pid()))),
        cpu: 0.0,
        rss: 0.0,
        fds: 0.0,
    };
    for sample in prom::parse(&body) {
        let v = sample.value;
        let group = sample
            .label("probe")
            .map(|p| p.split('-').next().unwrap_or(p).to_string());
        let g = group.map(|g| s.groups.entry(g).or_default());
        match (sample.name.as_str(), g) {
            ("authwatch_probe_runs_total", Some(g)) => {
                g.probes += 1;
                g.runs += v;
            }
            ("authwatch_probe_success", Some(g)) if v == 1.0 => g.succeeding += 1,
            ("authwatch_probe_duration_seconds_sum", Some(g)) => g.duration_sum += v,
            ("authwatch_probe_duration_seconds_count", Some(g)) => g.duration_count += v,
            ("authwatch_probe_duration_seconds_bucket", Some(g))
                if sample.label("le") == Some("0.025") =>
            {
                g.fast += v
            }
            ("authwatch_probe_failure", Some(g)) if v == 1.0 => {
                let reason = sample.label("reason").unwrap_or("?").to_string();
                *g.reasons.entry(reason).or_default() += 1;
            }
            ("process_cpu_seconds_total", None) => s.cpu = v,
            ("process_resident_memory_bytes", None) => s.rss = v,
            ("process_open_fds", None) => s.fds = v,
            _ => {}
        }
    }
    s
}

/// What happened between two snapshots.
struct Delta {
    secs: f64,
    runs: f64,
    cpu: f64,
    split: Cpu,
}

impl Delta {
    fn of(a: &Snap, b: &Snap) -> Delta {
        Delta {
            secs: b.at.duration_since(a.at).as_secs_f64(),
            runs: b.runs() - a.runs(),
            cpu: b.cpu - a.cpu,
            split: b.proc_cpu.since(a.proc_cpu),
        }
    }

    fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu / self.secs
    }

    fn cpu_ms_per_run(&self) -> f64 {
        if self.runs > 0.0 {
            1000.0 * self.cpu / self.runs
        } else {
            f64::NAN
        }
    }
}

struct GroupDelta {
    probes: usize,
    runs_per_sec: f64,
    mean_ms: f64,
    /// Share of the runs that took longer than 25 ms, in percent.
    slow_percent: f64,
    failing: usize,
    reasons: String,
}

fn group_delta(a: &Snap, b: &Snap, name: &str) -> GroupDelta {
    let (ga, gb) = (a.group(name), b.group(name));
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let count = gb.duration_count - ga.duration_count;
    let reasons: Vec<String> = gb.reasons.iter().map(|(r, n)| format!("{r}×{n}")).collect();
    GroupDelta {
        probes: gb.probes,
        runs_per_sec: (gb.runs - ga.runs) / secs,
        mean_ms: if count > 0.0 {
            1000.0 * (gb.duration_sum - ga.duration_sum) / count
        } else {
            f64::NAN
        },
        slow_percent: if count > 0.0 {
            100.0 * (count - (gb.fast - ga.fast)) / count
        } else {
            f64::NAN
        },
        failing: gb.probes - gb.succeeding,
        reasons: if reasons.is_empty() {
            "-".into()
        } else {
            reasons.join(" ")
        },
    }
}

async fn wait_ready(d: &Daemon) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok((200, _, _)) = http_get(d.addr(), "/-/ready", None).await {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "daemon not ready within {READY_TIMEOUT:?}; logs:\n{}",
                d.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Scrapes {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    bytes: usize,
    series: usize,
}

/// GETs of /metrics one after the other, each on a new connection, timed end to end: at least
/// `n` of them and for at least `SCRAPE_MIN` (so the probe runs meanwhile can be counted).
async fn scrape_loop(d: &Daemon, n: usize) -> Scrapes {
    let mut times = Vec::with_capacity(n);
    let (mut bytes, mut series) = (0, 0);
    let started = Instant::now();
    while times.len() < n || started.elapsed() < SCRAPE_MIN {
        let t = Instant::now();
        let (status, _, body) = http_get(d.addr(), "/metrics", None)
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        times.push(t.elapsed());
        assert_eq!(status, 200, "/metrics answered {status}");
        if bytes == 0 {
            bytes = body.len();
            series = body
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count();
        }
    }
    times.sort();
    let count = times.len();
    let pick = |q: f64| times[((q * count as f64).ceil() as usize).clamp(1, count) - 1];
    Scrapes {
        count,
        p50: pick(0.50),
        p99: pick(0.99),
        max: times[count - 1],
        bytes,
        series,
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: f64) -> String {
    format!("{:.1}", bytes / MIB)
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn f3(v: f64) -> String {
    format!("{v:.3}")
}

fn print_table(title: &str, head: &[&str], rows: &[Vec<String>]) {
    print!("\n{title}\n{}", common::markdown_table(head, rows, true));
    let _ = io::stdout().flush();
}

fn note(msg: &str) {
    println!("  {msg}");
    let _ = io::stdout().flush();
}

// ---------------------------------------------------------------------------------------------
// In-process lab: bare TLS connections and the daemon's own probe code, on one client thread

/// Name of the lab's client thread and of its runtime's blocking-pool threads, so their CPU
/// time can be told from the TLS server's (which runs on the main runtime).
const LAB_THREAD: &str = "bench-client";
/// Each variant runs this many rounds of `LAB_SLICE`, interleaved with the other variants so
/// that a change in background load hits them all alike.
const LAB_ROUNDS: u32 = 4;
const LAB_SLICE: Duration = Duration::from_millis(500);

/// User and system CPU time, as /proc reports them (in ticks of 10 ms).
#[derive(Clone, Copy, Default)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

impl Cpu {
    /// utime and stime of a /proc `stat` file (a process's or a thread's).
    fn read(path: &std::path::Path) -> Cpu {
        let stat = std::fs::read_to_string(path).unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // Linux reports these in USER_HZ = 100 ticks per second.
        let ticks = |i: usize| Duration::from_millis(fields.get(i).copied().unwrap_or(0) * 10);
        Cpu {
            user: ticks(11),
            sys: ticks(12),
        }
    }

    fn total(self) -> Duration {
        self.user + self.sys
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.user += other.user;
        self.sys += other.sys;
    }

    /// Share of the time spent in the kernel, in percent.
    fn sys_percent(self) -> f64 {
        100.0 * self.sys.as_secs_f64() / self.total().as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// CPU time of every thread of this process named `name`, from /proc.
fn threads_cpu(name: &str) -> Cpu {
    let mut cpu = Cpu::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            cpu.add(Cpu::read(&task.path().join("stat")));
        }
    }
    cpu
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lab {
    /// rustls client: connect and handshake, then close; one client config for all.
    Handshake,
    /// Plus a GET read to the end, as a probe run does.
    HandshakeGet,
    /// The daemon's code: one run of an `https` probe, as the scheduler runs it.
    Execute,
    /// The same on a two-worker multi-thread runtime, like the daemon's.
    ExecuteMt,
    /// Parts of that run.
    Resolve,
    ResolveMt,
    TrustGet,
    ClientConfig,
    NotAfter,
    /// Paid by a probe with `tls.ca_file` whenever the trust store is re-read (every 60 s).
    CaFileVerifiers,
}

impl Lab {
    const ALL: [Lab; 10] = [
        Lab::Handshake,
        Lab::HandshakeGet,
        Lab::Execute,
        Lab::ExecuteMt,
        Lab::Resolve,
        Lab::ResolveMt,
        Lab::TrustGet,
        Lab::ClientConfig,
        Lab::NotAfter,
        Lab::CaFileVerifiers,
    ];

    fn label(self) -> &'static str {
        match self {
            Lab::Handshake => "bare rustls: TLS 1.3 handshake only",
            Lab::HandshakeGet => "bare rustls: handshake + GET",
            Lab::Execute => "authwatch: https probe run (scheduler::execute)",
            Lab::ExecuteMt => "authwatch: same, on a 2-worker multi-thread runtime",
            Lab::Resolve => "  part: resolve localhost via hosts_file",
            Lab::ResolveMt => "  part: same, on the multi-thread runtime",
            Lab::TrustGet => "  part: TrustCache::get (stat per run)",
            Lab::ClientConfig => "  part: ClientConfig + RecordingVerifier per run",
            Lab::NotAfter => "  part: x509 notAfter parse of the leaf",
            Lab::CaFileVerifiers => "  part: verifiers rebuilt for a tls.ca_file probe",
        }
    }
}

/// What the lab's variants use, built once.
struct LabKit {
    addr: SocketAddr,
    shared: Arc<ClientConfig>,
    probe: Arc<authwatch::probe::Probe>,
    resolver: authwatch::net::resolve::Resolver,
    /// A runtime shaped like the daemon's (two workers), owned by `lab`.
    mt: tokio::runtime::Handle,
    trust: Arc<authwatch::net::tls::TrustCache>,
    system: Option<Arc<WebPkiServerVerifier>>,
    reference: Option<Arc<WebPkiServerVerifier>>,
    platform: authwatch::net::tls::TrustStore,
    leaf: rustls::pki_types::CertificateDer<'static>,
    ca_file: PathBuf,
}

impl LabKit {
    fn new(
        fx: &Fixtures,
        leaf: rustls::pki_types::CertificateDer<'static>,
        mt: tokio::runtime::Handle,
    ) -> LabKit {
        use authwatch::net::resolve::{Resolver, SystemFiles};
        use authwatch::net::tls::{self, TrustCache, TrustStore};
        let mix = Mix {
            ok: 1,
            hung: 0,
            dns: 0,
        };
        let cfg = authwatch::config::Config::parse(
            &config(fx, INTERVAL, Trust::Store, &mix),
            "bench",
            &|_| None,
        )
        .expect("lab config");
        let g = &cfg.global;
        let files = SystemFiles {
            resolv_conf: g.resolv_conf.clone(),
            resolv_conf_port: g.resolv_conf_port,
            hosts_file: g.hosts_file.clone(),
        };
        let trust = Arc::new(TrustCache::new(
            g.trust_store_file.clone(),
            g.reference_trust_store_file.clone(),
        ));
        let store = Arc::new(authwatch::store::Store::new());
        let deps = authwatch::probe::kind::Deps {
            files: files.clone(),
            trust: trust.clone(),
            keys: store.clone(),
            hints: store.clone(),
        };
        let probe = Arc::new(authwatch::probe::Probe::new(cfg.probes[0].clone(), &deps));
        let store = trust.get();
        let mut roots = RootCertStore::empty();
        roots.add(fx.pki.ca_der()).expect("test CA");
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .expect("verifier");
        LabKit {
            addr: fx.https.addr(),
            shared: Arc::new(client_config(verifier)),
            probe,
            resolver: Resolver {
                spec: authwatch::net::resolve::ResolverSpec::System,
                files,
            },
            mt,
            system: tls::build_verifier(&store, None),
            reference: tls::build_verifier(&trust.reference, None),
            trust,
            platform: TrustStore::load(None),
            leaf,
            ca_file: fx.pki.ca_pem_path().to_path_buf(),
        }
    }

    async fn once(&self, variant: Lab) -> io::Result<()> {
        use authwatch::net::tls;
        match variant {
            Lab::Handshake | Lab::HandshakeGet => {
                bare_once(self.addr, variant == Lab::HandshakeGet, &self.shared).await?
            }
            Lab::Execute => execute(self.probe.clone()).await?,
            Lab::ExecuteMt => self
                .mt
                .spawn(execute(self.probe.clone()))
                .await
                .map_err(io::Error::other)??,
            Lab::Resolve => resolve(self.resolver.clone()).await?,
            Lab::ResolveMt => self
                .mt
                .spawn(resolve(self.resolver.clone()))
                .await
                .map_err(io::Error::other)??,
            Lab::TrustGet => drop(self.trust.get()),
            Lab::ClientConfig => {
                // What net/http.rs builds before every handshake.
                let recorder = Arc::new(tls::RecordingVerifier::new(
                    self.system.clone(),
                    self.reference.clone(),
                ));
                let mut config = ClientConfig::builder_with_provider(tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(io::Error::other)?
                    .dangerous()
                    .with_custom_certificate_verifier(recorder)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                drop(Arc::new(config));
            }
            Lab::NotAfter => drop(tls::not_after(&self.leaf)),
            Lab::CaFileVerifiers => {
                let ca = Some(self.ca_file.as_path());
                drop(tls::build_verifier(&self.platform, ca));
                drop(tls::build_verifier(&self.trust.reference, ca));
            }
        }
        Ok(())
    }
}

async fn execute(probe: Arc<authwatch::probe::Probe>) -> io::Result<()> {
    let (result, _, _) = authwatch::scheduler::execute(&probe, Duration::from_secs(2)).await;
    match result.failure {
        Some(f) => Err(io::Error::other(format!("probe run failed: {f:?}"))),
        None => Ok(()),
    }
}

async fn resolve(resolver: authwatch::net::resolve::Resolver) -> io::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    resolver
        .resolve(
            "localhost",
            authwatch::net::resolve::IpFamily::Dual,
            deadline,
        )
        .await
        .map_err(|e| io::Error::other(e.message))?;
    Ok(())
}

/// Sizes of the futures behind one probe (created, never polled). A probe's task holds its
/// whole `run_once` state machine from spawn to removal, so this is memory per configured probe.
fn future_sizes(kit: &LabKit) -> Vec<(&'static str, usize)> {
    use authwatch::net::trace::Trace;
    use authwatch::probe::Spec;
    let spec = &kit.probe.spec;
    let state = std::sync::Mutex::new(std::sync::Arc::new(
        authwatch::probe::state::ProbeState::new(spec),
    ));
    let trace = Trace::default();
    let deadline = tokio::time::Instant::now();
    let mut out = vec![
        (
            "scheduler::run_once (boxed per run; a sleeping task holds only its loop)",
            std::mem::size_of_val(&authwatch::scheduler::run_once(&kit.probe, &state)),
        ),
        (
            "Probe::run (boxes the kind's future)",
            std::mem::size_of_val(&kit.probe.run(&trace, deadline)),
        ),
    ];
    if let Spec::Https(h) = &spec.settings {
        let client = authwatch::net::http::HttpClient::new(
            spec.conn.clone(),
            kit.resolver.clone(),
            kit.trust.clone(),
        );
        out.push((
            "HttpClient::get (one https probe run)",
            std::mem::size_of_val(&client.get(&h.target, &[], &trace, deadline)),
        ));
    }
    out.extend(kind_future_sizes(kit));
    out
}

/// The `run` future of each kind on its own (nothing is contacted: the futures are not polled).
fn kind_future_sizes(kit: &LabKit) -> Vec<(&'static str, usize)> {
    use authwatch::config::Config;
    use authwatch::net::trace::Trace;
    let yaml = "global: {interval: 1h}
clerk: {secret_key: sk_test_bench, api_url: \"https://localhost:1\", auto_probes: false}
probes:
  - {name: k-dns, dns: {names: [a.test], resolvers: [\"127.0.0.1:1\"]}}
  - {name: k-https, https: {url: \"https://localhost:1/\"}}
  - {name: k-jwks, jwks: {url: \"https://localhost:1/jwks\"}}
  - {name: k-api, api_health: {url: \"https://localhost:1/health\"}}
  - {name: k-clock, clock: {url: \"https://localhost:1/\"}}
  - {name: k-auth, auth: {url: \"https://localhost:1/x\", token_source: backend, session_id: sess_bench, issuer: \"https://clerk.test\"}}
";
    let cfg = match Config::parse(yaml, "kinds", &|_| None) {
        Ok(c) => c,
        Err(e) => {
            note(&format!("(per-kind future sizes skipped: {e})"));
            return Vec::new();
        }
    };
    let trace = Trace::default();
    let deadline = tokio::time::Instant::now();
    let store = Arc::new(authwatch::store::Store::new());
    let deps = authwatch::probe::kind::Deps {
        files: kit.resolver.files.clone(),
        trust: kit.trust.clone(),
        keys: store.clone(),
        hints: store,
    };
    cfg.probes
        .iter()
        .map(|spec| {
            let label: &'static str = match spec.kind().as_label() {
                "dns" => "  dns probe run alone",
                "https" => "  https probe run alone",
                "jwks" => "  jwks probe run alone",
                "api_health" => "  api_health probe run alone",
                "clock" => "  clock probe run alone",
                _ => "  auth probe run alone",
            };
            let p = authwatch::probe::Probe::new(spec.clone(), &deps);
            (label, p.run_future_size(&trace, deadline))
        })
        .collect()
}

fn client_config(verifier: Arc<WebPkiServerVerifier>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Every probe run is a full handshake: no session resumption here either.
    cfg.resumption = Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

async fn bare_once(addr: SocketAddr, get: bool, config: &Arc<ClientConfig>) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?;
    if !get {
        return Ok(());
    }
    let req = format!(
        "GET /bare HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    tls.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw).await {
        Ok(_) => Ok(()),
        // The fixture closes without close_notify.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(()),
        Err(e) => Err(e),
    }
}

/// One lab result: operations, wall time and client CPU per operation.
struct LabRow {
    variant: Lab,
    ops: u64,
    wall: Duration,
    cpu: Cpu,
}

impl LabRow {
    fn cpu_ms(&self) -> f64 {
        self.cpu.total().as_secs_f64() * 1000.0 / self.ops.max(1) as f64
    }
}

/// Runs every variant on a dedicated thread with its own single-threaded runtime; the TLS
/// server stays on the main runtime, so the lab threads' CPU time is the client's alone.
fn lab(fx: &Fixtures) -> (Vec<LabRow>, Vec<(&'static str, usize)>) {
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(LAB_THREAD)
        .thread_keep_alive(Duration::from_secs(600))
        .build()
        .expect("lab multi-thread runtime");
    let kit = LabKit::new(fx, fx.leaf.cert_der.clone(), mt.handle().clone());
    let sizes = future_sizes(&kit);
    let rows = std::thread::Builder::new()
        .name(LAB_THREAD.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(LAB_THREAD)
                .thread_keep_alive(Duration::from_secs(600))
                .build()
                .expect("lab runtime");
            rt.block_on(async move {
                let mut rows: Vec<LabRow> = Lab::ALL
                    .iter()
                    .map(|&variant| LabRow {
                        variant,
                        ops: 0,
                        wall: Duration::ZERO,
                        cpu: Cpu::default(),
                    })
                    .collect();
                for row in &rows {
                    for _ in 0..20 {
                        kit.once(row.variant)
                            .await
                            .unwrap_or_else(|e| panic!("{}: {e}", row.variant.label()));
                    }
                }
                for _ in 0..LAB_ROUNDS {
                    for row in &mut rows {
                        let (wall0, cpu0) = (Instant::now(), threads_cpu(LAB_THREAD));
                        while wall0.elapsed() < LAB_SLICE {
                            kit.once(row.variant)
                                .await
                                .unwrap_or_else(|e| panic!("{}: {e}", row.variant.label()));
                            row.ops += 1;
                        }
                        row.wall += wall0.elapsed();
                        row.cpu.add(threads_cpu(LAB_THREAD).since(cpu0));
                    }
                }
                rows
            })
        })
        .expect("spawn lab thread")
        .join()
        .expect("lab thread");
    mt.shutdown_background();
    (rows, sizes)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Daemon CPU per scrape: the CPU used while scraping less what the probes use in that time
/// (their rate measured over the window before).
fn scrape_cpu_ms(probing: &Delta, scraping: &Delta, scrapes: usize) -> f64 {
    let probes = probing.cpu / probing.secs * scraping.secs;
    1000.0 * (scraping.cpu - probes).max(0.0) / scrapes as f64
}

/// Scenario 1: `n` healthy HTTPS probes at 1 s.
async fn healthy(fx: &Fixtures, s: &Settings, n: usize) -> (Vec<String>, Vec<String>, f64) {
    let mix = Mix {
        ok: n,
        hung: 0,
        dns: 0,
    };
    let d = Daemon::start(&config(fx, INTERVAL, Trust::Store, &mix), &[]).await;
    let boot = snap(&d).await;
    wait_ready(&d).await;
    tokio::time::sleep(s.warmup).await;
    let a = snap(&d).await;
    tokio::time::sleep(s.window).await;
    let b = snap(&d).await;
    let sc = scrape_loop(&d, s.scrapes).await;
    let after = snap(&d).await;
    drop(d);
    let delta = Delta::of(&a, &b);
    let ok = group_delta(&a, &b, "ok");
    let during = group_delta(&b, &after, "ok");
    let probing = vec![
        n.to_string(),
        f1(delta.secs),
        f1(delta.runs / delta.secs),
        n.to_string(),
        f1(100.0 * (ok.probes - ok.failing) as f64 / ok.probes.max(1) as f64),
        f1(ok.mean_ms),
        f1(ok.slow_percent),
        f1(delta.cpu_percent()),
        f3(delta.cpu_ms_per_run()),
        format!("{:.0}", delta.split.sys_percent()),
        mb(boot.rss),
        mb(a.rss),
        mb(b.rss),
    ];
    let scrape = vec![
        n.to_string(),
        sc.count.to_string(),
        ms(sc.p50),
        ms(sc.p99),
        ms(sc.max),
        format!("{:.0}", sc.bytes as f64 / 1024.0),
        sc.series.to_string(),
        format!("{:.0}", sc.series as f64 / n as f64),
        f1(scrape_cpu_ms(&delta, &Delta::of(&b, &after), sc.count)),
        f1(during.runs_per_sec),
        f1(during.mean_ms),
        f1(during.slow_percent),
    ];
    (probing, scrape, delta.cpu_ms_per_run())
}

/// Scenario 1b: what part of the daemon's CPU is per run and what is fixed. The same N probes
/// at a 1 h interval (idle once each ran), and N/10 probes at 100 ms (the run rate of N at
/// 1 s with a tenth of the probes).
async fn cost_split(fx: &Fixtures, s: &Settings, n: usize) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (label, interval, probes) in [
        ("N probes, interval 1h (idle after the first run)", "1h", n),
        ("N/10 probes, interval 100ms", "100ms", (n / 10).max(1)),
    ] {
        let mix = Mix {
            ok: probes,
            hung: 0,
            dns: 0,
        };
        let d = Daemon::start(&config(fx, interval, Trust::Store, &mix), &[]).await;
        wait_ready(&d).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let a = snap(&d).await;
        tokio::time::sleep(s.window.min(Duration::from_secs(10))).await;
        let b = snap(&d).await;
        drop(d);
        let delta = Delta::of(&a, &b);
        rows.push(vec![
            label.to_string(),
            probes.to_string(),
            f1(delta.runs / delta.secs),
            f1(delta.cpu_percent()),
            f1(1000.0 * delta.cpu / delta.secs),
            f3(delta.cpu_ms_per_run()),
        ]);
    }
    rows
}

/// Scenario 2: half the HTTPS probes at a hung server, plus n/10 DNS probes at a silent server.
async fn hung(fx: &Fixtures, s: &Settings, n: usize) -> (Vec<Vec<String>>, Vec<String>) {
    let mix = Mix {
        ok: n / 2,
        hung: n - n / 2,
        dns: (n / 10).max(1),
    };
    let d = Daemon::start(&config(fx, INTERVAL, Trust::Store, &mix), &[]).await;
    wait_ready(&d).await;
    tokio::time::sleep(s.warmup).await;
    let a = snap(&d).await;
    tokio::time::sleep(s.window).await;
    let b = snap(&d).await;
    let sc = scrape_loop(&d, s.scrapes).await;
    let after = snap(&d).await;
    drop(d);
    let delta = Delta::of(&a, &b);
    let during = group_delta(&b, &after, "ok");
    // Expected periods: a healthy run takes ms, so 1 s; a hung one lasts the 2 s timeout and
    // the next starts at once (the 1 s interval has passed); DNS lookups stop 50 ms earlier.
    let groups = [("ok", 1.0), ("hung", 2.0), ("dns", 1.95)];
    let rows = groups
        .iter()
        .map(|(name, period)| {
            let g = group_delta(&a, &b, name);
            vec![
                n.to_string(),
                name.to_string(),
                g.probes.to_string(),
                f1(g.runs_per_sec),
                f1(g.probes as f64 / period),
                f1(g.mean_ms),
                f1(g.slow_percent),
                g.failing.to_string(),
                g.reasons,
            ]
        })
        .collect();
    let ok_runs = group_delta(&a, &b, "ok").runs_per_sec * delta.secs;
    let overall = vec![
        n.to_string(),
        f1(delta.cpu_percent()),
        f3(delta.cpu_ms_per_run()),
        f3(1000.0 * delta.cpu / ok_runs.max(1.0)),
        mb(a.rss),
        mb(b.rss),
        format!("{:.0}", b.fds),
        ms(sc.p50),
        ms(sc.p99),
        ms(sc.max),
        sc.series.to_string(),
        f1(during.runs_per_sec),
        f1(during.mean_ms),
        f1(during.slow_percent),
    ];
    (rows, overall)
}

/// Scenario 1c: resident memory after every probe ran once, by how the test CA is trusted,
/// at a relaxed 10 s interval so the TLS load does not dominate.
async fn trust_memory(fx: &Fixtures, n: usize) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for trust in [Trust::Store, Trust::CaFile] {
        let mix = Mix {
            ok: n,
            hung: 0,
            dns: 0,
        };
        let d = Daemon::start(&config(fx, "10s", trust, &mix), &[]).await;
        let boot = snap(&d).await;
        wait_ready(&d).await;
        let a = snap(&d).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let b = snap(&d).await;
        drop(d);
        let delta = Delta::of(&a, &b);
        rows.push(vec![
            trust.label().to_string(),
            n.to_string(),
            mb(boot.rss),
            mb(b.rss),
            format!("{:.1}", (b.rss - boot.rss) / 1024.0 / n as f64),
            f1(delta.runs),
            f3(delta.cpu_ms_per_run()),
        ]);
    }
    rows
}

/// Scenario 3: the mixed configuration for a long time, printing memory every 10 s.
async fn soak(fx: &Fixtures, s: &Settings, n: usize) {
    let mix = Mix {
        ok: n / 2,
        hung: n - n / 2,
        dns: (n / 10).max(1),
    };
    println!(
        "\nSoak: {} healthy + {} hung HTTPS probes + {} silent-DNS probes at {INTERVAL} for {} s",
        mix.ok,
        mix.hung,
        mix.dns,
        s.soak.as_secs()
    );
    let d = Daemon::start(&config(fx, INTERVAL, Trust::Store, &mix), &[]).await;
    wait_ready(&d).await;
    let start = snap(&d).await;
    let mut prev = snap(&d).await;
    let mut rss = Vec::new();
    let head = [
        "t s",
        "RSS MB",
        "open fds",
        "runs",
        "runs/s",
        "CPU % core",
        "ok failing",
        "bench RSS MB",
    ];
    let widths: Vec<usize> = head.iter().map(|h| h.len().max(8)).collect();
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        note(&format!("| {} |", cells.join(" | ")));
    };
    line(&head.map(String::from));
    while prev.at.duration_since(start.at) < s.soak {
        tokio::time::sleep(SOAK_EVERY).await;
        let cur = snap(&d).await;
        let delta = Delta::of(&prev, &cur);
        let ok = cur.group("ok");
        line(&[
            format!("{:.0}", cur.at.duration_since(start.at).as_secs_f64()),
            mb(cur.rss),
            format!("{:.0}", cur.fds),
            format!("{:.0}", cur.runs()),
            f1(delta.runs / delta.secs),
            f1(delta.cpu_percent()),
            (ok.probes - ok.succeeding).to_string(),
            mb(own_rss()),
        ]);
        rss.push(cur.rss);
        prev = cur;
    }
    drop(d);
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        let max = rss.iter().copied().fold(f64::MIN, f64::max);
        let min = rss.iter().copied().fold(f64::MAX, f64::min);
        note(&format!(
            "RSS first {} MB, last {} MB, min {} MB, max {} MB over {} samples; {:.0} runs",
            mb(*first),
            mb(*last),
            mb(min),
            mb(max),
            rss.len(),
            prev.runs()
        ));
    }
}

/// This process's resident memory (the fixtures keep a log of every request they serve).
fn own_rss() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0)
}

async fn run(s: Settings) {
    println!(
        "authwatch load benchmark: probes {:?}, window {} s, warm-up {} s, {} scrapes, soak {} s",
        s.probes,
        s.window.as_secs(),
        s.warmup.as_secs(),
        s.scrapes,
        s.soak.as_secs()
    );
    println!(
        "{} CPUs, load average {} at start; daemon: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        common::daemon::BIN
    );
    let fx = Fixtures::start().await;

    // Baseline: what one HTTPS connection costs a rustls client on this machine, and what the
    // daemon's own code costs for one run, with no scheduler, scrapes or other probes around.
    // The lab thread is joined; this worker hands its tasks (the TLS server's) to another.
    let lab_rows = if s.wants("lab") {
        let (lab_rows, sizes) = tokio::task::block_in_place(|| lab(&fx));
        let rows: Vec<Vec<String>> = lab_rows
            .iter()
            .map(|r| {
                vec![
                    r.variant.label().to_string(),
                    r.ops.to_string(),
                    format!("{:.1}", r.wall.as_secs_f64() * 1e6 / r.ops.max(1) as f64),
                    f3(r.cpu_ms()),
                    format!("{:.0}", r.cpu.sys_percent()),
                ]
            })
            .collect();
        print_table(
            "0. In-process lab: one client thread (current-thread runtime + its blocking pool) against the same TLS server, no resumption",
            &["variant", "ops", "wall µs/op", "client CPU ms/op", "sys %"],
            &rows,
        );
        for (what, bytes) in &sizes {
            note(&format!(
                "future size: {what} = {:.1} KiB",
                *bytes as f64 / 1024.0
            ));
        }
        lab_rows
    } else {
        Vec::new()
    };
    let lab_cpu = |v: Lab| {
        lab_rows
            .iter()
            .find(|r| r.variant == v)
            .map_or(f64::NAN, LabRow::cpu_ms)
    };

    // 1. Healthy HTTPS probes.
    let mut probing = Vec::new();
    let mut scrapes = Vec::new();
    let mut per_run = Vec::new();
    for &n in s.probes.iter().filter(|_| s.wants("1")) {
        let (p, sc, cpu) = healthy(&fx, &s, n).await;
        probing.push(p);
        scrapes.push(sc);
        per_run.push((n, cpu));
    }
    if s.wants("1") {
        print_table(
            &format!(
                "1. N healthy HTTPS probes, interval {INTERVAL}, timeout {TIMEOUT}, one TLS server (daemon process only)"
            ),
            &[
                "N",
                "window s",
                "runs/s",
                "expected",
                "ok %",
                "mean run ms",
                "runs >25ms %",
                "CPU % core",
                "CPU ms/run",
                "sys %",
                "RSS boot MB",
                "RSS start MB",
                "RSS end MB",
            ],
            &probing,
        );
        print_table(
            "1. /metrics scraped back to back for 5 s (at least AUTHWATCH_BENCH_SCRAPES times) right after the window, probes running; new connection each",
            &[
                "N",
                "scrapes",
                "p50 ms",
                "p99 ms",
                "max ms",
                "body KiB",
                "series",
                "series/probe",
                "CPU ms/scrape",
                "runs/s meanwhile",
                "mean run ms",
                "runs >25ms %",
            ],
            &scrapes,
        );
    }

    // 1b. Fixed versus per-run cost, at the largest probe count.
    let n_max = s.probes.iter().copied().max().unwrap_or(2);
    if s.wants("1b") {
        let mut rows = cost_split(&fx, &s, n_max).await;
        if let Some((row, _)) = probing.iter().zip(&s.probes).find(|(_, n)| **n == n_max) {
            rows.insert(
                0,
                vec![
                    "N probes, interval 1s (scenario 1)".into(),
                    n_max.to_string(),
                    row[2].clone(),
                    row[7].clone(),
                    f1(row[7].parse::<f64>().unwrap_or(f64::NAN) * 10.0),
                    row[8].clone(),
                ],
            );
        }
        print_table(
            &format!("1b. Fixed and per-run daemon CPU, N = {n_max}"),
            &[
                "configuration",
                "probes",
                "runs/s",
                "CPU % core",
                "CPU ms/s",
                "CPU ms/run",
            ],
            &rows,
        );
    }

    // 2. Hung targets and silent DNS among them.
    if s.wants("2") {
        let mut groups = Vec::new();
        let mut overall = Vec::new();
        for &n in &s.probes {
            let (g, o) = hung(&fx, &s, n).await;
            groups.extend(g);
            overall.push(o);
        }
        print_table(
            "2. N HTTPS probes, half of them at a hung server (accepts, never handshakes), plus N/10 DNS probes at a silent server",
            &[
                "N",
                "group",
                "probes",
                "runs/s",
                "expected",
                "mean run ms",
                "runs >25ms %",
                "failing",
                "reasons at end",
            ],
            &groups,
        );
        print_table(
            "2. Daemon totals for the same runs",
            &[
                "N",
                "CPU % core",
                "CPU ms/run",
                "CPU ms/healthy run",
                "RSS start MB",
                "RSS end MB",
                "open fds",
                "scrape p50 ms",
                "p99 ms",
                "max ms",
                "series",
                "ok runs/s while scraping",
                "mean ok run ms",
                "ok runs >25ms %",
            ],
            &overall,
        );
    }

    // 1c. Memory by trust setting, at the largest probe count.
    if s.wants("1c") {
        let rows = trust_memory(&fx, n_max).await;
        print_table(
            "1c. Memory by how the test CA is trusted (interval 10s, after every probe ran once; platform store = SSL_CERT_FILE or the system's)",
            &[
                "trust",
                "N",
                "RSS boot MB",
                "RSS after MB",
                "KiB/probe",
                "runs in 10 s",
                "CPU ms/run",
            ],
            &rows,
        );
    }

    // Summary line.
    for (n, cpu) in per_run.iter().filter(|_| !lab_rows.is_empty()) {
        note(&format!(
            "N={n}: authwatch CPU per HTTPS probe run = {cpu:.3} ms vs bare handshake {:.3} ms ({:.3} ms with the GET; the daemon's probe code in process: {:.3} ms)",
            lab_cpu(Lab::Handshake),
            lab_cpu(Lab::HandshakeGet),
            lab_cpu(Lab::Execute)
        ));
    }

    // 3. Soak.
    if s.soak.is_zero() {
        note("Soak skipped (set AUTHWATCH_BENCH_SOAK_SECS to run it).");
    } else {
        soak(&fx, &s, s.probes[0]).await;
    }
    println!("load average {} at end", loadavg());
}

fn main() {
    support::main(
        "load: a benchmark; run it with `cargo bench --bench load`",
        || run(settings()),
    );
}
