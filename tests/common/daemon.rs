//! Runs the real `authwatch` binary against a YAML config, captures everything it logs, and
//! talks plain HTTP to its /metrics endpoint.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{Headers, http_get};

pub const BIN: &str = env!("CARGO_BIN_EXE_authwatch");

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Proxy variables a developer's shell may carry; the daemon must not see them unless a test
/// passes them on purpose.
const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Captured output lines. `all` keeps both streams interleaved in arrival order.
#[derive(Default)]
struct Output {
    all: Vec<String>,
    stderr: Vec<String>,
    stdout: Vec<String>,
}

/// A running daemon; dropping it kills the process and reaps it.
pub struct Daemon {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<Output>>,
    config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn spawn_reader(stream: impl Read + Send + 'static, output: Arc<Mutex<Output>>, is_stderr: bool) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    let mut out = output.lock().unwrap();
                    out.all.push(line.clone());
                    if is_stderr {
                        out.stderr.push(line);
                    } else {
                        out.stdout.push(line);
                    }
                }
            }
        }
    });
}

/// The address from the daemon's `{"fields":{"message":"listening","address":..}}` line.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields").unwrap_or(&v);
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("address")?.as_str()?.parse().ok()
}

impl Daemon {
    /// Starts the daemon or panics with its output.
    pub async fn start(config_yaml: &str, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with_args(config_yaml, extra_env, &[]).await
    }

    pub async fn start_with_args(
        config_yaml: &str,
        extra_env: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Self {
        match Self::try_start(config_yaml, extra_env, extra_args).await {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like `start_with_args`, but a daemon that exits or never logs its address is an `Err`
    /// carrying the exit status and all output, for tests that expect startup to fail.
    pub async fn try_start(
        config_yaml: &str,
        extra_env: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Result<Self, String> {
        Self::try_start_limited(config_yaml, extra_env, extra_args, None).await
    }

    /// Starts the daemon with its descriptor limit (soft and hard) set to `nofile`, as a
    /// unit's `LimitNOFILE` would.
    pub async fn start_with_fd_limit(config_yaml: &str, extra_args: &[&str], nofile: u64) -> Self {
        match Self::try_start_limited(config_yaml, &[], extra_args, Some(nofile)).await {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    async fn try_start_limited(
        config_yaml: &str,
        extra_env: &[(&str, &str)],
        extra_args: &[&str],
        nofile: Option<u64>,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temp dir for daemon config");
        let config_path = dir.path().join("authwatch.yml");
        std::fs::write(&config_path, config_yaml).expect("write config");
        let mut cmd = command(extra_env);
        cmd.arg("--config.file")
            .arg(&config_path)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(["--log.format", "json", "--log.level", "debug"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt as _;
            let lim = rustix::process::Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, lim)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let output = Arc::new(Mutex::new(Output::default()));
        spawn_reader(child.stderr.take().unwrap(), output.clone(), true);
        spawn_reader(child.stdout.take().unwrap(), output.clone(), false);

        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            let found = output
                .lock()
                .unwrap()
                .stderr
                .iter()
                .find_map(|l| listening_addr(l));
            if let Some(addr) = found {
                break addr;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || tokio::time::Instant::now() >= deadline {
                if exited.is_none() {
                    let _ = child.kill();
                }
                let status = child.wait().ok();
                // The reader threads may still be draining the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let logs = output.lock().unwrap().all.join("\n");
                let why = match exited {
                    Some(_) => "exited before logging its listen address",
                    None => "did not log its listen address within 20 s",
                };
                return Err(format!(
                    "authwatch {why} (status {status:?}); output:\n{logs}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Daemon {
            child,
            addr,
            output,
            config_path,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Replaces the config file in place, for reload tests.
    pub fn rewrite_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml).expect("rewrite config");
    }

    /// Sends a signal by name (e.g. "HUP", "TERM") with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Exit status if the process has ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// stderr and stdout so far, one line each, in arrival order.
    pub fn logs(&self) -> String {
        self.output.lock().unwrap().all.join("\n")
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.output.lock().unwrap().stderr.clone()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.output.lock().unwrap().stdout.clone()
    }

    /// stderr lines that parse as JSON objects.
    pub fn log_records(&self) -> Vec<serde_json::Value> {
        self.stderr_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn get(&self, path: &str) -> (u16, Headers, String) {
        self.get_with_accept(path, None).await
    }

    pub async fn get_with_accept(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> (u16, Headers, String) {
        match http_get(self.addr, path, accept).await {
            Ok(r) => r,
            Err(e) => panic!("GET {path} from daemon failed: {e}\nlogs:\n{}", self.logs()),
        }
    }

    /// Body of GET /metrics; panics unless the status is 200.
    pub async fn metrics(&self) -> String {
        let (status, _, body) = self.get("/metrics").await;
        assert_eq!(
            status,
            200,
            "/metrics returned {status}: {body}\nlogs:\n{}",
            self.logs()
        );
        body
    }

    /// Polls /metrics every 100 ms until `pred` accepts it; returns that text. Panics with the
    /// last text seen and the daemon's logs on timeout.
    /// `/metrics` once `probes` probes have finished a run (each exports its success then).
    pub async fn wait_for_runs(&self, probes: usize, timeout: Duration) -> String {
        self.wait_for(
            |t| super::prom::find(t, "authwatch_probe_success", &[]).len() == probes,
            timeout,
        )
        .await
    }

    pub async fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match http_get(self.addr, "/metrics", None).await {
                Ok((200, _, body)) if pred(&body) => return body,
                Ok((200, _, body)) => body,
                Ok((status, _, body)) => format!("(status {status}) {body}"),
                Err(e) => format!("(request failed: {e})"),
            };
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "condition not met within {timeout:?}; last /metrics:\n{last}\nlogs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until some output line satisfies `pred` and returns it.
    pub async fn wait_for_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.output.lock().unwrap().all.iter().find(|l| pred(l)) {
                return l.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "no matching log line within {timeout:?}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs `authwatch check-config --config.file <path>`; returns (exit code, stdout, stderr).
/// Blocking: it is a short-lived subprocess that needs no fixture to answer.
pub fn run_check_config(path: &Path) -> (i32, String, String) {
    let out = command(&[])
        .arg("check-config")
        .arg("--config.file")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run_check_config` on YAML written to a temp file.
pub fn check_config_yaml(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("authwatch.yml");
    std::fs::write(&path, yaml).expect("write config");
    run_check_config(&path)
}
