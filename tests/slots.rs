//! Connection slots (issue 13, F1): every phase of a client connection has a deadline, so nobody
//! the gateway has not let in can hold a MaxHTTPSessionsNum slot for long, and one address cannot
//! hold them all.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TOKEN: &str = "sg_Slots-1";

fn toks() -> Vec<Tok> {
    vec![Tok::new("slots", TOKEN, true)]
}

/// A config whose KeepAliveSettings/TimeoutMs is `ms`.
fn idle_cfg(up: &Upstream, ms: u64) -> Cfg {
    let mut cfg = Cfg::new(&up.url(), &toks());
    cfg.server_extra =
        format!("<KeepAliveSettings><TimeoutMs>{ms}</TimeoutMs></KeepAliveSettings>");
    cfg
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))?;
    socket.connect(to).await
}

/// Reads until the peer closes (or fails the connection) or `limit` passes; returns what was read
/// and whether the connection ended.
async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap_or(false);
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

/// Asserts that a connection that sent `bytes` is closed after about `idle` (never before most of
/// it, never later than a second past it).
async fn assert_closed_after_idle(gw: &TestGateway, bytes: &[u8], idle: Duration) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let started = Instant::now();
    let (text, closed) = read_to_close(&mut s, idle + Duration::from_secs(3)).await;
    let took = started.elapsed();
    assert!(closed, "connection still open after {took:?}");
    assert!(
        took >= idle.mul_f32(0.8) && took < idle + Duration::from_secs(1),
        "closed after {took:?}"
    );
    assert_eq!(
        text, "",
        "nothing is answered to a connection that never asked"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_idle_timeout() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&idle_cfg(&up, 1000)).await;
    assert_closed_after_idle(&gw, b"", Duration::from_millis(1000)).await;
}

#[tokio::test]
async fn twenty_three_bytes_of_the_h2_preface_are_closed_at_the_idle_timeout() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&idle_cfg(&up, 1000)).await;
    let preface = &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..23];
    assert_closed_after_idle(&gw, preface, Duration::from_millis(1000)).await;
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed_at_the_idle_timeout_though_it_answers_pings() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&idle_cfg(&up, 1000)).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            // The client pings too, and answers the gateway's pings: activity that must not count.
            .keep_alive_interval(Duration::from_millis(200))
            .keep_alive_while_idle(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/api/v3.0/version", gw.addr))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "upstream-ok");
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(4), conn).await;
    let took = idle_from.elapsed();
    assert!(
        ended.is_ok(),
        "the h2c connection is still open after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2000),
        "closed after {took:?}"
    );
}

/// An https gateway with idle timeout `idle_ms`, and a connector that trusts its certificate.
async fn start_https(up: &Upstream, idle_ms: u64) -> (TestGateway, tokio_rustls::TlsConnector) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let mut cfg = idle_cfg(up, idle_ms);
    cfg.connection = "https://127.0.0.1:0".into();
    cfg.server_extra.push_str(
        "<TlsCertificateFile>tls.crt</TlsCertificateFile>\
         <TlsCertificateKeyFile>tls.key</TlsCertificateKeyFile>",
    );
    let dir = ConfigDir::new(&cfg);
    std::fs::write(dir.dir.path().join("tls.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let gw = TestGateway::start_in(dir, false).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (gw, tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[tokio::test]
async fn a_tls_client_silent_before_or_after_the_handshake_is_closed_at_the_idle_timeout() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (gw, connector) = start_https(&up, 1000).await;
    // No ClientHello at all: the handshake gets the idle timeout too.
    assert_closed_after_idle(&gw, b"", Duration::from_millis(1000)).await;
    // A completed handshake, then nothing.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let started = Instant::now();
    let (text, closed) = read_to_close(&mut tls, Duration::from_secs(4)).await;
    let took = started.elapsed();
    assert!(closed, "TLS connection still open after {took:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2000),
        "closed after {took:?}"
    );
    assert_eq!(text, "");
}

/// Opens `n` connections that send nothing, spread over the loopback addresses `from`, and keeps
/// them open. The test process needs two descriptors per connection (its end and the gateway's).
async fn silent_connections(to: SocketAddr, from: &[&str], n: usize) -> Vec<TcpStream> {
    scangate::proxy::server::raise_fd_limit();
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        open.push(connect_from(from[i % from.len()], to).await.unwrap());
    }
    open
}

/// Polls from 127.0.0.1 until a request is served; returns how long that took.
async fn served_again_within(gw: &TestGateway, limit: Duration) -> Option<Duration> {
    let c = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.1".parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let url = gw.url("/api/v3.0/version");
    eventually(limit, || async {
        status_with(&c, &url, TOKEN).await == 200
    })
    .await
    .then(|| started.elapsed())
}

/// The issue's acceptance test, against a default config: 2,100 connections from one address that
/// send nothing do not keep a real client out for longer than the header timeout plus a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_one_hundred_silent_connections_from_one_address_do_not_lock_others_out() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &toks())).await;
    let _attack = silent_connections(gw.addr, &["127.0.0.2"], 2100).await;
    // Default KeepAliveSettings/TimeoutMs: 5 s.
    let took = served_again_within(&gw, Duration::from_secs(6)).await;
    assert!(took.is_some(), "a real client was not served within 6 s");
}

/// The same attack spread over nine addresses, each under the per-client cap, so it does fill
/// every slot: the slots come free at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_many_addresses_free_their_slots_at_the_header_timeout() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &toks())).await;
    let from: Vec<String> = (2..=10).map(|i| format!("127.0.0.{i}")).collect();
    let from: Vec<&str> = from.iter().map(String::as_str).collect();
    let _attack = silent_connections(gw.addr, &from, 2100).await;
    let took = served_again_within(&gw, Duration::from_secs(6)).await;
    assert!(took.is_some(), "a real client was not served within 6 s");
}

/// One GET with the token on `s`; returns the whole answer once the test upstream's body is in.
async fn get_on(s: &mut TcpStream) -> String {
    let req = format!("GET /v HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("upstream-ok") {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await;
        match read.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn an_address_past_max_connections_per_client_is_turned_away_while_others_are_served() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &toks());
    cfg.gateway_extra = "<MaxConnectionsPerClient>3</MaxConnectionsPerClient>".into();
    let gw = TestGateway::start(&cfg).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", gw.addr).await.unwrap();
        assert!(get_on(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut fourth = connect_from("127.0.0.2", gw.addr).await.unwrap();
    let (text, closed) = read_to_close(&mut fourth, Duration::from_secs(5)).await;
    let body = r#"{"error":"too many connections from this address"}"#;
    assert_eq!(
        text,
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
            body.len()
        )
    );
    assert!(closed);
    // Another address is served, and the three admitted connections keep working.
    let mut other = connect_from("127.0.0.1", gw.addr).await.unwrap();
    assert!(get_on(&mut other).await.starts_with("HTTP/1.1 200"));
    for s in &mut held {
        assert!(get_on(s).await.starts_with("HTTP/1.1 200"));
    }
    // A closed connection gives its place back.
    held.pop();
    assert!(
        eventually(Duration::from_secs(3), || async {
            let Ok(mut s) = connect_from("127.0.0.2", gw.addr).await else {
                return false;
            };
            get_on(&mut s).await.starts_with("HTTP/1.1 200")
        })
        .await
    );
}
