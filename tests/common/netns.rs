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

unsafe extern "C" {
    fn setns(fd: std::ffi::c_int, nstype: std::ffi::c_int) -> std::ffi::c_int;
}

const CLONE_NEWNET: std::ffi::c_int = 0x4000_0000;

fn ns_id(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

impl Netns {
    /// Runs `ip -n <name> args…`: addresses, routes and links of this namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Joins this namespace to `peer` by a veth pair, each end an (interface, address/prefix),
    /// both up. The pair is created inside this namespace and its far end moved straight into
    /// `peer`, so neither end is ever in the host's.
    pub fn veth(&self, peer: &Netns, here: (&str, &str), there: (&str, &str)) {
        self.ip(&[
            "link", "add", here.0, "type", "veth", "peer", "name", there.0, "netns", &peer.0,
        ]);
        for (ns, (dev, cidr)) in [(self, here), (peer, there)] {
            ns.ip(&["addr", "add", cidr, "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
    }

    /// Whether the calling thread is inside this namespace.
    pub fn is_current(&self) -> bool {
        let ours = ns_id("/proc/thread-self/ns/net");
        ours.is_some() && ours == ns_id(&format!("/run/netns/{}", self.0))
    }

    /// Moves the calling thread into this namespace for the rest of its life: the sockets it
    /// opens, and the threads and processes it starts from then on, are inside (so a tokio
    /// runtime built afterwards runs there whole, and fixtures bound by it listen there).
    /// Other threads of the test binary stay where they are. Panics unless the move took,
    /// since going on in the host's namespace would send the test's packets out of it.
    pub fn enter(&self) {
        use std::os::fd::AsRawFd as _;
        let path = format!("/run/netns/{}", self.0);
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns reads the descriptor, open for the whole call, and changes only the
        // calling thread's network namespace.
        let rc = unsafe { setns(f.as_raw_fd(), CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns into {}: {}",
            self.0,
            std::io::Error::last_os_error()
        );
        assert!(self.is_current(), "thread not in {} after setns", self.0);
    }
}
