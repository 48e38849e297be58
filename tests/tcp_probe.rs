//! The `tcp` probe (the kind added as one file plus one registry line): connects to a
//! listener on loopback, names a refused port and a missing name, resolves through the hosts
//! file and an explicit resolver, and serves as a `/probe` module.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::daemon::{Daemon, check_config_yaml};
use common::dns::{Behavior, DnsServer};
use common::prom::{expect_value, find, promtool_check, reason_of, value};
use tokio::net::TcpListener;

/// A listener that accepts and drops every connection, as a database port would look to a
/// bare connect.
async fn listener() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    (port, task)
}

/// A port nothing listens on: bound once to reserve a free number, then closed.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connects_and_names_what_failed() {
    let (open, _accepting) = listener().await;
    let closed = closed_port().await;
    let dns = DnsServer::with_zone([("db.zone.test", Behavior::a([Ipv4Addr::LOCALHOST]))]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 db.hosts.test\n").expect("hosts");
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 1s, hosts_file: {hosts}}}
probe_allowlist: ["127.0.0.1:*"]
modules:
  tcp_connect: {{tcp: {{}}}}
probes:
  - {{name: open, tcp: {{address: "127.0.0.1:{open}"}}}}
  - {{name: refused, tcp: {{address: "127.0.0.1:{closed}"}}}}
  - {{name: by-hosts, role: api, tcp: {{address: "db.hosts.test:{open}"}}}}
  - {{name: by-dns, tcp: {{address: "db.zone.test:{open}", resolver: "{dns}", ip_family: ipv4}}}}
  - {{name: missing, tcp: {{address: "nope.zone.test:{open}", resolver: "{dns}"}}}}
"#,
        hosts = hosts.display(),
        dns = dns.addr(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d.wait_for_runs(5, Duration::from_secs(10)).await;
    for ok in ["open", "by-hosts", "by-dns"] {
        assert_eq!(
            expect_value(&text, "authwatch_probe_success", &[("probe", ok)]),
            1.0,
            "{ok}: {text}"
        );
    }
    assert_eq!(
        reason_of(&text, "refused").as_deref(),
        Some("connect_refused")
    );
    assert_eq!(reason_of(&text, "missing").as_deref(), Some("dns_nxdomain"));
    let phases = find(
        &text,
        "authwatch_probe_phase_duration_seconds",
        &[("probe", "open")],
    );
    let mut labels: Vec<&str> = phases.iter().filter_map(|s| s.label("phase")).collect();
    labels.sort_unstable();
    assert_eq!(labels, ["connect", "resolve"]);
    assert!(
        find(&text, "authwatch_http_status_code", &[("kind", "tcp")]).is_empty(),
        "a tcp probe has no HTTP series"
    );
    // A refused tcp probe of role `other` names no cause; this config watches no Clerk
    // instance, so the one cause is the coverage gap and auth is not called healthy. The
    // diagnosis runs once a second, so wait for its verdict on these runs.
    let text = d
        .wait_for(
            |t| value(t, "authwatch_diagnosis", &[("cause", "coverage_missing")]) == Some(1.0),
            Duration::from_secs(5),
        )
        .await;
    let active: Vec<String> = find(&text, "authwatch_diagnosis", &[])
        .into_iter()
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.label("cause").map(str::to_string))
        .collect();
    assert_eq!(active, ["coverage_missing"], "{text}");
    assert_eq!(expect_value(&text, "authwatch_auth_healthy", &[]), 0.0);
    assert_eq!(
        expect_value(&text, "authwatch_coverage", &[("scope", "api")]),
        1.0,
        "the role api tcp probe counts as watching the API"
    );
    assert_eq!(
        reason_of(&text, "refused").as_deref(),
        Some("connect_refused")
    );
    let (out, ok) = promtool_check(&text);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    let (status, _, body) = d
        .get(&format!(
            "/probe?module=tcp_connect&target=127.0.0.1:{open}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(expect_value(&body, "probe_success", &[]), 1.0, "{body}");
    let (status, _, body) = d
        .get(&format!(
            "/probe?module=tcp_connect&target=127.0.0.1:{closed}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        expect_value(
            &body,
            "authwatch_probe_failure",
            &[("reason", "connect_refused")]
        ),
        1.0
    );
}

#[test]
fn tcp_config_errors_are_located() {
    let (code, _, err) =
        check_config_yaml("probes:\n  - name: db\n    tcp: {address: \"db.internal\"}\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(":3:") && err.contains("host:port"), "{err}");
    let (code, _, err) = check_config_yaml(
        "probes:\n  - name: db\n    tcp: {address: \"db:5432\"}\n    connection: {proxy_from_env: false}\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("takes no connection section"), "{err}");
}
