//! Network namespaces a test creates itself, with only a loopback interface and no link to
//! the host's namespace: no packet can leave. Files under /etc/netns/<name>/ (hosts,
//! resolv.conf) replace /etc's for processes started with `ip netns exec`.

use std::path::PathBuf;

/// A namespace, deleted (with its /etc/netns directory) on drop.
pub struct Netns(pub String);

fn ip(args: &[&str]) {
    let ok = std::process::Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {args:?} failed (this test needs root and iproute2)");
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("aw-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// Gives the namespace's processes their own /etc/`file` (e.g. `hosts`).
    pub fn etc(&self, file: &str, text: &str) {
        let dir = PathBuf::from("/etc/netns").join(&self.0);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<name>");
        std::fs::write(dir.join(file), text).expect("write the namespace's etc file");
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.0));
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// An HTTP GET inside the namespace through bash's /dev/tcp (no client of ours), cut off
/// after `seconds`: the body, or `None` when no answer came in time.
pub fn get_in(ns: &str, port: u16, path: &str, headers: &str, seconds: u32) -> Option<String> {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\n{headers}\\r\\n' >&3 && cat <&3"
    );
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "timeout",
            &seconds.to_string(),
            "bash",
            "-c",
            &script,
        ])
        .output()
        .expect("request inside the namespace");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `/metrics` of a daemon inside the namespace.
pub fn scrape_in(ns: &str, port: u16) -> String {
    get_in(ns, port, "/metrics", "", 5)
        .unwrap_or_default()
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .to_string()
}
