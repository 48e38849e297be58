//! Proves the shared fixtures in tests/common behave as documented, without the daemon, so a
//! failing daemon test can be blamed on the daemon.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::dns::{Behavior, DnsServer, Transport, query_tcp, query_udp};
use common::http::{ResponseSpec, ServerMode, TestServer, get_over, header, http_get, https_get};
use common::proxy::ConnectProxy;
use common::tls::TestPki;
use common::{httpdate, jwks, prom, unix_now};

const T: Duration = Duration::from_secs(2);

fn a_answers(msg: &hickory_proto::op::Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn dns_answers_over_udp_and_tcp() {
    let loop1 = Ipv4Addr::new(127, 0, 0, 1);
    let dns = DnsServer::with_zone([
        ("ok.test", Behavior::a([loop1, Ipv4Addr::new(127, 0, 0, 2)])),
        ("v6.test", Behavior::aaaa([Ipv6Addr::LOCALHOST])),
        ("fail.test", Behavior::ServFail),
        ("refused.test", Behavior::Refused),
        ("gone.test", Behavior::NxDomain),
    ])
    .await;
    let addr = dns.addr();
    assert!(addr.ip().is_loopback());

    for tcp in [false, true] {
        let q = |name: &'static str, ty: RecordType| async move {
            if tcp {
                query_tcp(addr, name, ty, T).await.unwrap()
            } else {
                query_udp(addr, name, ty, T).await.unwrap()
            }
        };
        let r = q("OK.test", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_answers(&r), vec![loop1, Ipv4Addr::new(127, 0, 0, 2)]);

        let r = q("ok.test", RecordType::AAAA).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty(), "NODATA expected");

        let r = q("v6.test", RecordType::AAAA).await;
        assert!(matches!(&r.answers[0].data, RData::AAAA(a) if a.0 == Ipv6Addr::LOCALHOST));

        for (name, code) in [
            ("unknown.test", ResponseCode::NXDomain),
            ("gone.test", ResponseCode::NXDomain),
            ("fail.test", ResponseCode::ServFail),
            ("refused.test", ResponseCode::Refused),
        ] {
            assert_eq!(
                q(name, RecordType::A).await.metadata.response_code,
                code,
                "{name} tcp={tcp}"
            );
        }
    }
    assert_eq!(dns.queries(), 14);
    let log = dns.query_log();
    assert_eq!(
        log.iter().filter(|q| q.transport == Transport::Tcp).count(),
        7
    );
    assert_eq!(dns.queries_for("ok.test"), 4);

    // Answers follow the zone as it is now: nothing is cached.
    dns.set("ok.test", Behavior::a([Ipv4Addr::new(127, 0, 0, 3)]));
    let r = query_udp(addr, "ok.test", RecordType::A, T).await.unwrap();
    assert_eq!(a_answers(&r), vec![Ipv4Addr::new(127, 0, 0, 3)]);
    assert_eq!(dns.queries(), 15);
}

#[tokio::test]
async fn dns_silent_garbage_and_delay() {
    let dns = DnsServer::with_zone([
        ("silent.test", Behavior::Silent),
        ("garbage.test", Behavior::Garbage),
        (
            "slow.test",
            Behavior::delayed(
                Duration::from_millis(200),
                Behavior::a([Ipv4Addr::LOCALHOST]),
            ),
        ),
    ])
    .await;
    let short = Duration::from_millis(300);
    let e = query_udp(dns.addr(), "silent.test", RecordType::A, short)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    let e = query_tcp(dns.addr(), "silent.test", RecordType::A, short)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);

    for e in [
        query_udp(dns.addr(), "garbage.test", RecordType::A, T)
            .await
            .unwrap_err(),
        query_tcp(dns.addr(), "garbage.test", RecordType::A, T)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    }

    let started = Instant::now();
    let r = query_udp(dns.addr(), "slow.test", RecordType::A, T)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(a_answers(&r), vec![Ipv4Addr::LOCALHOST]);
}

#[tokio::test]
async fn dns_start_on_fixed_address() {
    // Port 53 may be busy (or privileged) on some machines; the fixture must report that as an
    // error rather than panic, and must refuse non-loopback addresses outright.
    assert!(DnsServer::start_on("0.0.0.0:0").await.is_err());
    match DnsServer::start_on("127.0.0.53:53").await {
        Ok(dns) => {
            dns.set("x.test", Behavior::a([Ipv4Addr::LOCALHOST]));
            let r = query_tcp(dns.addr(), "x.test", RecordType::A, T)
                .await
                .unwrap();
            assert_eq!(a_answers(&r), vec![Ipv4Addr::LOCALHOST]);
        }
        Err(e) => eprintln!("127.0.0.53:53 unavailable here: {e}"),
    }
}

#[tokio::test]
async fn tls_server_trusts_only_test_ca() {
    let pki = TestPki::new();
    let leaf = pki.good_default();
    let srv = TestServer::start_tls(&leaf, |req| {
        ResponseSpec::json(200, format!("{{\"path\":\"{}\"}}", req.path))
    })
    .await;
    assert!(srv.url("/x").starts_with("https://127.0.0.1:"));

    for name in ["127.0.0.1", "localhost", "clerk.test"] {
        let (status, _, body) = https_get(srv.addr(), pki.client_config(), name, "/hello")
            .await
            .unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"path":"/hello"}"#),
            "via {name}"
        );
    }
    assert!(
        https_get(srv.addr(), pki.client_config(), "other.test", "/")
            .await
            .is_err()
    );

    // A client that trusts only the unrelated CA must refuse the handshake.
    let mut roots = rustls::RootCertStore::empty();
    let other = x509_der_from_pem(&pki.other_ca_pem());
    roots.add(other.into()).unwrap();
    let untrusting = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let err = https_get(srv.addr(), untrusting, "localhost", "/")
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("unknown"), "{err}");

    for (leaf, what) in [
        (pki.expired(&["localhost"]), "expired"),
        (pki.not_yet_valid(&["localhost"]), "notvalidyet"),
        (pki.unknown_ca(&["localhost"]), "unknownissuer"),
        (pki.self_signed(&["localhost"]), "unknownissuer"),
    ] {
        let bad = TestServer::start_tls(&leaf, |_| ResponseSpec::new(204)).await;
        let err = https_get(bad.addr(), pki.client_config(), "localhost", "/")
            .await
            .unwrap_err();
        let msg = format!("{err:?}").to_lowercase().replace(['_', ' '], "");
        assert!(msg.contains(what), "{what}: {err:?}");
        assert_eq!(bad.requests(), 0);
    }

    // The CA file on disk is the one in memory, and the recorded validity is what was encoded.
    assert_eq!(
        std::fs::read_to_string(pki.ca_pem_path()).unwrap(),
        pki.ca_pem()
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.cert_der).unwrap();
    assert_eq!(cert.validity().not_after.timestamp(), leaf.not_after);
    assert_eq!(cert.validity().not_before.timestamp(), leaf.not_before);
    assert!(leaf.not_after > unix_now() + 29 * 86_400);
}

fn x509_der_from_pem(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test]
async fn http_date_header_offset() {
    assert_eq!(
        httpdate::format(784_111_777),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(
        httpdate::parse("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        httpdate::parse(&httpdate::format(4_107_542_400)),
        Some(4_107_542_400)
    );

    let srv = TestServer::start(|_| ResponseSpec::json(200, "{}").date_offset(30)).await;
    let (status, headers, _) = http_get(srv.addr(), "/", None).await.unwrap();
    assert_eq!(status, 200);
    let date = httpdate::parse(header(&headers, "Date").unwrap()).unwrap();
    let skew = date - unix_now();
    assert!((28..=31).contains(&skew), "skew {skew}");

    let srv = TestServer::start(|_| ResponseSpec::new(200).without_date()).await;
    let (_, headers, _) = http_get(srv.addr(), "/", None).await.unwrap();
    assert!(header(&headers, "Date").is_none());
}

#[tokio::test]
async fn http_routes_headers_and_counting() {
    let srv = TestServer::routes(vec![
        (
            "/.well-known/jwks.json",
            200,
            "application/json",
            r#"{"keys":[]}"#,
        ),
        ("/healthz", 503, "text/plain", "down"),
    ])
    .await;
    let (s, h, b) = http_get(
        srv.addr(),
        "/.well-known/jwks.json?x=1",
        Some("application/json"),
    )
    .await
    .unwrap();
    assert_eq!((s, b.as_str()), (200, r#"{"keys":[]}"#));
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    assert_eq!(http_get(srv.addr(), "/healthz", None).await.unwrap().0, 503);
    assert_eq!(http_get(srv.addr(), "/nope", None).await.unwrap().0, 404);
    assert_eq!(srv.requests(), 3);
    assert_eq!(
        srv.request_log()[0].header("ACCEPT"),
        Some("application/json")
    );

    let srv = TestServer::json(401, r#"{"error":"unauthorized"}"#).await;
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    s.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_123\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let (status, _, _) = common::http::parse_response(&raw).unwrap();
    assert_eq!(status, 401);
    let req = srv.last_request().unwrap();
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/token"));
    assert_eq!(req.header("authorization"), Some("Bearer sk_test_123"));
    assert_eq!(req.body, b"hello");
}

#[tokio::test]
async fn http_slow_hang_and_reset() {
    let srv = TestServer::start(|_| {
        ResponseSpec::new(200).slow_body("ab", Duration::from_millis(100), 3)
    })
    .await;
    let started = Instant::now();
    let (_, _, body) = http_get(srv.addr(), "/", None).await.unwrap();
    assert_eq!(body, "ababab");
    assert!(started.elapsed() >= Duration::from_millis(300));

    srv.set_mode(ServerMode::AcceptAndHang);
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(r.is_err(), "hanging server answered: {r:?}");

    srv.set_mode(ServerMode::Reset);
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let err = s.read_to_end(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(srv.requests(), 1);
    assert_eq!(srv.connections(), 3);

    // Dropping the server closes hung connections too.
    let hang = TestServer::hang().await;
    let mut s = TcpStream::connect(hang.addr()).await.unwrap();
    drop(hang);
    let n = tokio::time::timeout(T, s.read(&mut [0u8; 1]))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)));
}

async fn connect_via(
    proxy: &ConnectProxy,
    target: &str,
    auth: Option<&str>,
) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the proxy's head byte by byte so no tunnelled bytes are swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

#[tokio::test]
async fn connect_proxy_tunnels_and_authenticates() {
    let pki = TestPki::new();
    let upstream = TestServer::json_tls(&pki.good_default(), 200, r#"{"ok":true}"#).await;
    let target = format!("localhost:{}", upstream.port());

    let proxy = ConnectProxy::start().await;
    let (tunnel, head) = connect_via(&proxy, &target, None).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tokio_rustls::TlsConnector::from(pki.client_config())
        .connect("localhost".try_into().unwrap(), tunnel)
        .await
        .unwrap();
    let (status, _, body) = get_over(tls, &target, "/", None).await.unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
    assert_eq!(upstream.requests(), 1);
    assert_eq!(proxy.targets(), vec![target.clone()]);

    let (_, head) = connect_via(&proxy, "example.com:443", None).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!((proxy.connects(), proxy.tunnels()), (2, 1));

    let proxy = ConnectProxy::with_auth("user", "s3cret").await;
    let (_, head) = connect_via(&proxy, &target, None).await;
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    let creds = base64::engine::general_purpose::STANDARD.encode("user:s3cret");
    let (_, head) = connect_via(&proxy, &target, Some(&format!("Basic {creds}"))).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(proxy.auth_headers()[0], None);
    assert_eq!(
        proxy.url_with_auth("user", "s3cret"),
        format!("http://user:s3cret@{}", proxy.addr())
    );

    let proxy = ConnectProxy::bad_gateway().await;
    let (_, head) = connect_via(&proxy, &target, None).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
}

#[test]
fn prom_parser_handles_escapes_and_specials() {
    let text = r#"# HELP authwatch_probe_success Whether the probe succeeded.
# TYPE authwatch_probe_success gauge
authwatch_probe_success{probe="a",reason="ok"} 1
authwatch_probe_success{probe="b",reason="tls \"expired\"\\x\nline"} 0 1700000000000
authwatch_latency_bucket{probe="a",le="+Inf"} 3
authwatch_weird{probe="a",} NaN
authwatch_neg -Inf
authwatch_plain 1.5e3
"#;
    let samples = prom::parse(text);
    assert_eq!(samples.len(), 6);
    assert_eq!(samples[1].label("reason"), Some("tls \"expired\"\\x\nline"));
    assert_eq!(
        prom::value(text, "authwatch_probe_success", &[("probe", "b")]),
        Some(0.0)
    );
    assert_eq!(
        prom::value(text, "authwatch_latency_bucket", &[("le", "+Inf")]),
        Some(3.0)
    );
    assert!(prom::value(text, "authwatch_weird", &[]).unwrap().is_nan());
    assert_eq!(
        prom::value(text, "authwatch_neg", &[]),
        Some(f64::NEG_INFINITY)
    );
    assert_eq!(prom::value(text, "authwatch_plain", &[]), Some(1500.0));
    assert_eq!(
        prom::value(text, "authwatch_probe_success", &[("probe", "zzz")]),
        None
    );
    let ambiguous = std::panic::catch_unwind(|| prom::value(text, "authwatch_probe_success", &[]));
    assert!(ambiguous.is_err());

    let (out, ok) = prom::promtool_check(
        "# HELP authwatch_up Whether authwatch is up.\n# TYPE authwatch_up gauge\nauthwatch_up 1\n",
    );
    assert!(ok && out.trim().is_empty(), "promtool: {out}");
    let (_, ok) = prom::promtool_check("bad metric line {\n");
    assert!(!ok);
}

#[test]
fn jwks_keys_have_requested_shape() {
    use x509_parser::prelude::FromDer;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for bits in [1024usize, 2048] {
        let jwk = jwks::rsa_jwk(&format!("k{bits}"), bits);
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["kid"], format!("k{bits}"));
        let n = b64.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), bits / 8);
        assert!(n[0] & 0x80 != 0);
    }
    let key = jwks::synthetic_rsa(1023);
    assert_eq!(key.bits(), 1023);

    let key = jwks::real_rsa(2048);
    assert_eq!(key.bits(), 2048);
    let pem = key.spki_pem();
    let der = x509_der_from_pem(&pem);
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
    match spki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => {
            let m: Vec<u8> = rsa
                .modulus
                .iter()
                .copied()
                .skip_while(|&b| b == 0)
                .collect();
            assert_eq!(m, key.modulus);
        }
        other => panic!("not RSA: {other:?}"),
    }
    let set = jwks::jwks([jwks::ec_jwk("ec1"), key.jwk("rsa1")]);
    assert_eq!(set["keys"].as_array().unwrap().len(), 2);
    assert_eq!(set["keys"][0]["crv"], "P-256");
}

#[test]
fn daemon_listening_line_is_recognised() {
    use common::daemon::listening_addr;
    let line = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","fields":{"message":"listening","address":"127.0.0.1:41234"},"target":"authwatch::server"}"#;
    assert_eq!(
        listening_addr(line),
        Some("127.0.0.1:41234".parse().unwrap())
    );
    assert_eq!(listening_addr(r#"{"fields":{"message":"starting"}}"#), None);
    assert_eq!(listening_addr("listening on 127.0.0.1:1"), None);
}
