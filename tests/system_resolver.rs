//! The `system` resolver as the container's libc applies resolv.conf: a Kubernetes-style
//! `search` list with `ndots:5` lets a short service name resolve (the shipped Deployment's
//! `http://homecam-api:8020`) against a loopback DNS server that answers only the fully
//! qualified name, exactly as getent and curl inside the pod would.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::daemon::Daemon;
use common::dns::{Behavior, DnsServer};
use common::http::{ResponseSpec, TestServer};
use common::prom::{expect_value, reason_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_service_names_resolve_through_the_search_list() {
    let api = TestServer::start(|_| ResponseSpec::json(200, r#"{"status":"ok"}"#)).await;
    // Only the fully qualified name exists, as in a cluster's DNS.
    let dns = DnsServer::with_zone([(
        "homecam-api.prod.svc.cluster.local",
        Behavior::a([Ipv4Addr::LOCALHOST]),
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\nsearch prod.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n",
    )
    .unwrap();
    let yaml = format!(
        r#"
global: {{interval: 300ms, timeout: 2s, resolv_conf: {resolv}, resolv_conf_port: {port}, hosts_file: /dev/null}}
probes:
  - name: api-short-name
    role: api
    api_health: {{url: "http://homecam-api:{api}/health/network"}}
  - name: api-missing
    role: other
    api_health: {{url: "http://no-such-service:{api}/health/network"}}
"#,
        resolv = resolv.display(),
        port = dns.port(),
        api = api.port(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d.wait_for_runs(2, Duration::from_secs(10)).await;
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "api-short-name")]
        ),
        1.0,
        "{text}"
    );
    // A name that exists nowhere is NXDOMAIN after every search domain, as for getent.
    assert_eq!(
        reason_of(&text, "api-missing").as_deref(),
        Some("dns_nxdomain")
    );
}
