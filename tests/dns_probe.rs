//! The `dns` probe against an in-process DNS server on loopback: answers, NXDOMAIN, SERVFAIL,
//! REFUSED, silence, garbage, the system resolver from a resolv.conf, and no caching.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::daemon::Daemon;
use common::dns::{Behavior, DnsServer};
use common::prom::{expect_value, promtool_check, reason_of, value};

fn reason_is(text: &str, probe: &str, reason: &str) -> bool {
    reason_of(text, probe).as_deref() == Some(reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_outcomes_are_classified_per_resolver() {
    let dns = DnsServer::with_zone([
        (
            "good.test",
            Behavior::Answer {
                a: vec![Ipv4Addr::new(127, 0, 0, 9)],
                aaaa: vec!["::9".parse().unwrap()],
            },
        ),
        ("v4only.test", Behavior::a([Ipv4Addr::new(127, 0, 0, 10)])),
        ("empty.test", Behavior::nodata()),
        ("fail.test", Behavior::ServFail),
        ("refused.test", Behavior::Refused),
        ("silent.test", Behavior::Silent),
        ("garbage.test", Behavior::Garbage),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "# test\nnameserver 127.0.0.1\noptions ndots:0\n").unwrap();
    let s = dns.addr();
    let yaml = format!(
        r#"
global:
  interval: 300ms
  timeout: 1s
  resolv_conf: {resolv}
  resolv_conf_port: {port}
probes:
  - name: good-udp
    dns: {{names: [good.test, v4only.test], resolvers: ["{s}"]}}
  - name: good-tcp
    dns: {{names: [good.test], resolvers: ["tcp://{s}"]}}
  - name: good-system
    dns: {{names: [good.test], resolvers: [system]}}
  - name: nx
    dns: {{names: [missing.test], resolvers: ["{s}"]}}
  - name: nodata
    dns: {{names: [empty.test], resolvers: ["{s}"]}}
  - name: servfail
    dns: {{names: [fail.test], resolvers: ["{s}"]}}
  - name: refused
    dns: {{names: [refused.test], resolvers: ["{s}"]}}
  - name: silent
    dns: {{names: [silent.test], resolvers: ["{s}"]}}
  - name: garbage
    dns: {{names: [garbage.test], resolvers: ["{s}"]}}
  - name: mixed
    dns: {{names: [good.test], resolvers: ["{s}", "127.0.0.1:1"]}}
"#,
        resolv = resolv.display(),
        port = dns.port(),
    );
    let d = Daemon::start(&yaml, &[]).await;
    let text = d
        .wait_for(
            |t| {
                [
                    "good-udp",
                    "good-tcp",
                    "good-system",
                    "nx",
                    "nodata",
                    "servfail",
                    "refused",
                    "silent",
                    "garbage",
                    "mixed",
                ]
                .iter()
                .all(|p| value(t, "authwatch_probe_success", &[("probe", p)]).is_some())
            },
            Duration::from_secs(15),
        )
        .await;

    for p in ["good-udp", "good-tcp", "good-system"] {
        assert_eq!(
            expect_value(&text, "authwatch_probe_success", &[("probe", p)]),
            1.0,
            "{p}\n{text}"
        );
    }
    // AAAA NODATA for an IPv4-only name is normal, and is exported as such.
    let v4 = [
        ("probe", "good-udp"),
        ("name", "v4only.test"),
        ("type", "AAAA"),
    ];
    assert_eq!(expect_value(&text, "authwatch_dns_rcode", &v4), 0.0);
    assert_eq!(expect_value(&text, "authwatch_dns_answers", &v4), 0.0);
    assert_eq!(
        expect_value(&text, "authwatch_dns_lookup_success", &v4),
        0.0
    );
    let good = [("probe", "good-udp"), ("name", "good.test"), ("type", "A")];
    assert_eq!(expect_value(&text, "authwatch_dns_answers", &good), 1.0);
    let resolver = format!("{s}/udp");
    assert!(
        value(
            &text,
            "authwatch_dns_lookup_duration_seconds",
            &[
                ("probe", "good-udp"),
                ("resolver", resolver.as_str()),
                ("name", "good.test"),
                ("type", "A")
            ]
        )
        .is_some()
    );
    assert!(
        value(
            &text,
            "authwatch_dns_rcode",
            &[
                ("probe", "good-system"),
                ("resolver", "system"),
                ("type", "A")
            ]
        )
        .is_some()
    );

    assert!(reason_is(&text, "nx", "dns_nxdomain"), "{text}");
    assert_eq!(
        expect_value(
            &text,
            "authwatch_dns_rcode",
            &[("probe", "nx"), ("type", "A")]
        ),
        3.0
    );
    assert!(reason_is(&text, "nodata", "dns_nodata"), "{text}");
    assert!(reason_is(&text, "servfail", "dns_servfail"), "{text}");
    assert_eq!(
        expect_value(
            &text,
            "authwatch_dns_rcode",
            &[("probe", "servfail"), ("type", "A")]
        ),
        2.0
    );
    assert!(reason_is(&text, "refused", "dns_refused"), "{text}");
    assert!(reason_is(&text, "silent", "dns_timeout"), "{text}");
    assert_eq!(
        expect_value(
            &text,
            "authwatch_dns_rcode",
            &[("probe", "silent"), ("type", "A")]
        ),
        -1.0
    );
    assert!(reason_is(&text, "garbage", "dns_error"), "{text}");
    // One resolver answering does not hide the other one failing.
    assert_eq!(
        expect_value(&text, "authwatch_probe_success", &[("probe", "mixed")]),
        0.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_dns_lookup_success",
            &[
                ("probe", "mixed"),
                ("resolver", resolver.as_str()),
                ("type", "A")
            ]
        ),
        1.0
    );
    assert_eq!(
        expect_value(
            &text,
            "authwatch_dns_lookup_success",
            &[
                ("probe", "mixed"),
                ("resolver", "127.0.0.1:1/udp"),
                ("type", "A")
            ]
        ),
        0.0
    );

    // Exactly one reason is set per failing probe.
    for p in ["nx", "servfail", "silent", "garbage"] {
        let ones = common::prom::find(&text, "authwatch_probe_failure", &[("probe", p)])
            .into_iter()
            .filter(|s| s.value == 1.0)
            .count();
        assert_eq!(ones, 1, "{p}");
    }

    let (out, ok) = promtool_check(&text);
    assert!(ok && out.trim().is_empty(), "promtool: {out}");

    // No caching: every run asks again, so a changed answer shows on the next run.
    let before = dns.queries_for("good.test");
    dns.set("good.test", Behavior::NxDomain);
    let text = d
        .wait_for(
            // Each probe runs on its own schedule: wait for both to have asked again.
            |t| {
                reason_is(t, "good-udp", "dns_nxdomain")
                    && reason_is(t, "good-system", "dns_nxdomain")
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(dns.queries_for("good.test") > before);
    assert_eq!(
        expect_value(
            &text,
            "authwatch_probe_success",
            &[("probe", "good-system")]
        ),
        0.0
    );
    // The daemon and its endpoint survived garbage and silence.
    let (status, _, _) = d.get("/-/healthy").await;
    assert_eq!(status, 200);
}
