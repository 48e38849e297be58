//! A real Prometheus server (Debian's `prometheus` binary) on 127.0.0.1, started by a test with
//! its own config and rules, queried over its HTTP API, and killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::free_port;
use super::http::http_get;

pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, evaluating `rule_files` every second.
    pub async fn start(target: SocketAddr, rule_files: &[&Path]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir for prometheus");
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("  - {}\n", p.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 900ms\nrule_files:\n{}scrape_configs:\n  - job_name: authwatch\n    static_configs:\n      - targets: ['{target}']\n",
            rules.concat()
        );
        Self::start_in(dir, &config).await
    }

    /// Starts Prometheus with a whole `prometheus.yml` the test wrote, e.g. several scrape
    /// jobs in the form an operator would write them.
    pub async fn start_with_config(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir for prometheus");
        Self::start_in(dir, config).await
    }

    async fn start_in(dir: tempfile::TempDir, config: &str) -> Prometheus {
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus ({e}); install the Debian `prometheus` package (the README's test command does)")
            });
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
            log,
        };
        for _ in 0..300 {
            if let Ok((200, _, _)) = http_get(addr, "/-/ready", None).await {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus not ready in 30 s:\n{}", p.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn api(&self, path: &str) -> Value {
        let (status, _, body) = http_get(self.addr, path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: status {status}, not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "GET {path}: {body}");
        v["data"].clone()
    }

    /// An instant query; returns the result vector.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(expr)))
            .await;
        match &data["result"] {
            Value::Array(a) => a.clone(),
            // Scalars and strings come back as a single [time, value] pair.
            other => vec![other.clone()],
        }
    }

    /// Active alerts (pending and firing).
    pub async fn alerts(&self) -> Vec<Value> {
        match &self.api("/api/v1/alerts").await["alerts"] {
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        }
    }

    /// Polls until `pred` holds on the active alerts; returns them.
    pub async fn wait_alerts(
        &self,
        pred: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let alerts = self.alerts().await;
            if pred(&alerts) {
                return alerts;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("alerts never matched within {timeout:?}; last: {alerts:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls an instant query until `pred` holds on its result.
    pub async fn wait_query(
        &self,
        expr: &str,
        pred: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = self.query(expr).await;
            if pred(&r) {
                return r;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("query {expr} never matched within {timeout:?}; last: {r:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
