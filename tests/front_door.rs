//! The hardened front door: HTTPS with certificate reload, HTTP/2, slow and oversized input, the
//! connection cap, request smuggling and the receive timeout.

mod common;

use std::time::{Duration, Instant};

use common::pki::{serial_bytes, Pki};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "sg_FrontDoor-1";

fn toks() -> Vec<Tok> {
    vec![Tok::new("front", TOKEN, true)]
}

fn https_cfg(up: &Upstream) -> Cfg {
    let mut cfg = Cfg::new(&up.url(), &toks());
    cfg.connection = "https://127.0.0.1:0".into();
    cfg.server_extra = "<TlsCertificateFile>tls.crt</TlsCertificateFile><TlsCertificateKeyFile>tls.key</TlsCertificateKeyFile>".into();
    cfg
}

async fn start_https(pki: &Pki, up: &Upstream, serial: u64) -> TestGateway {
    let cfg = https_cfg(up);
    let dir = ConfigDir::new(&cfg);
    let (cert, key) = pki.leaf(serial);
    std::fs::write(dir.dir.path().join("tls.crt"), cert).unwrap();
    std::fs::write(dir.dir.path().join("tls.key"), key).unwrap();
    TestGateway::start_in(dir, true).await
}

fn https_client(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_request_with_valid_token_gets_200_over_h1_and_h2() {
    let up = Upstream::start(Behaviour::Ok).await;
    let pki = Pki::new();
    let gw = start_https(&pki, &up, 1001).await;
    let url = format!("https://localhost:{}/api/v3.0/version", gw.addr.port());
    let c = https_client(&pki);
    let resp = c.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // ALPN offers h2: reqwest takes it.
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(up.seen()[0].headers["x-forwarded-proto"], "https");

    let h1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = h1.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, reqwest::Version::HTTP_11)
    );
    let resp = h1.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn h2c_prior_knowledge_on_plain_listener() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &toks())).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c
        .get(gw.url("/api/v3.0/version"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, reqwest::Version::HTTP_2)
    );
    assert_eq!(resp.text().await.unwrap(), "upstream-ok");
}

#[tokio::test]
async fn replaced_certificate_is_served_to_new_handshakes_and_broken_one_is_ignored() {
    let up = Upstream::start(Behaviour::Ok).await;
    let pki = Pki::new();
    let gw = start_https(&pki, &up, 1001).await;
    assert_eq!(pki.served_serial(gw.addr).await, serial_bytes(1001));

    // A connection opened before the swap keeps working.
    let c = https_client(&pki);
    let url = format!("https://localhost:{}/v", gw.addr.port());
    assert_eq!(
        c.get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let (cert, key) = pki.leaf(2002);
    let dir = gw.config.dir.path();
    write_atomic(&dir.join("tls.key"), &key);
    write_atomic(&dir.join("tls.crt"), &cert);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = pki.served_serial(gw.addr).await;
    while seen != serial_bytes(2002) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = pki.served_serial(gw.addr).await;
    }
    let swapped = seen == serial_bytes(2002);
    assert!(swapped, "new certificate not served; last serial {seen:?}");
    assert_eq!(
        c.get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A broken certificate file keeps the last good one.
    let generation = gw.gw.generation();
    write_atomic(
        &dir.join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            gw.gw.generation() > generation
        })
        .await,
        "the rest of the config should still reload"
    );
    assert_eq!(pki.served_serial(gw.addr).await, serial_bytes(2002));
}

#[tokio::test]
async fn broken_certificate_at_startup_names_the_file() {
    let up = Upstream::start(Behaviour::Ok).await;
    let dir = ConfigDir::new(&https_cfg(&up));
    std::fs::write(dir.dir.path().join("tls.crt"), "garbage").unwrap();
    std::fs::write(dir.dir.path().join("tls.key"), "garbage").unwrap();
    let err = scangate::state::Gateway::start(&dir.path)
        .unwrap_err()
        .to_string();
    let crt = dir.dir.path().join("tls.crt");
    assert_eq!(
        err,
        format!(
            "{}: cannot load TLS certificate: no PEM certificate found",
            crt.display()
        )
    );
}

async fn read_all(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
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

#[tokio::test]
async fn slowloris_half_header_is_disconnected_within_the_idle_timeout_and_its_grace() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &toks());
    cfg.server_extra = "<KeepAliveSettings><Enabled>1</Enabled><TimeoutMs>1000</TimeoutMs><MaxRequests>100</MaxRequests></KeepAliveSettings>".into();
    let gw = TestGateway::start(&cfg).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /api/v3.0/version HTTP/1.1\r\nHost: x\r\nX-Slow: aaa")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "slow client was not disconnected");
    let took = started.elapsed();
    // The idle timeout (1 s), then IDLE_CLOSE_GRACE (1 s) with nothing written.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // Nothing reached the engine but its health checks.
    let seen = up.seen();
    assert!(
        seen.iter().all(|s| s.uri.path() == "/api/v3.0/basesdate"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn seventy_kib_of_headers_gets_431() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &toks())).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut req = format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n");
    for i in 0..70 {
        req.push_str(&format!("X-Big-{i}: {}\r\n", "a".repeat(1010)));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let (text, _) = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 431"), "got {text:?}");
    assert!(up.seen().is_empty());
}

async fn request_on(s: &mut TcpStream) -> String {
    let req = format!("GET /v HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // The test upstream answers with an 11-byte body; read until it is all here.
    while !String::from_utf8_lossy(&got).contains("upstream-ok") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn connections_past_the_cap_get_503_and_admitted_ones_keep_working() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &toks());
    cfg.server_extra = "<MaxHTTPSessionsNum>10</MaxHTTPSessionsNum>".into();
    // Every connection comes from 127.0.0.1: no per-address cap here (tests/slots.rs has it).
    cfg.gateway_extra = "<MaxConnectionsPerClient>0</MaxConnectionsPerClient>".into();
    let gw = TestGateway::start(&cfg).await;
    let mut admitted = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        assert!(request_on(&mut s).await.starts_with("HTTP/1.1 200"));
        admitted.push(s);
    }
    let mut extra = Vec::new();
    for _ in 0..20 {
        extra.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    for s in &mut extra {
        let (text, closed) = read_all(s, Duration::from_secs(5)).await;
        assert!(text.starts_with("HTTP/1.1 503"), "got {text:?}");
        assert!(
            text.ends_with(r#"{"error":"gateway overloaded"}"#),
            "got {text:?}"
        );
        assert!(closed);
    }
    for s in &mut admitted {
        assert!(request_on(s).await.starts_with("HTTP/1.1 200"));
    }
    // Freeing slots lets new connections in again.
    drop(admitted);
    let c = client();
    assert!(
        eventually(Duration::from_secs(3), || async {
            status_with(&c, &gw.url("/v"), TOKEN).await == 200
        })
        .await
    );
}

#[tokio::test]
async fn smuggling_attempts_get_400_and_never_reach_upstream() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &toks())).await;
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let attacks = [
        ("CL.TE", format!("POST /a HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG")),
        ("TE.CL", format!("POST /a HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n")),
        ("CL.CL", format!("POST /a HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")),
        ("CL.CL same", format!("POST /a HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")),
    ];
    for (name, raw) in attacks {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let _ = s.write_all(raw.as_bytes()).await;
        let (text, closed) = read_all(&mut s, Duration::from_secs(5)).await;
        assert!(
            text.starts_with("HTTP/1.1 400") || (text.is_empty() && closed),
            "{name}: got {text:?}"
        );
    }
    assert!(
        up.seen().is_empty(),
        "a smuggling attempt reached the upstream: {:?}",
        up.seen()
    );
}

/// Sends `raw` on one connection; the answer, whether the gateway closed it, and what the upstream
/// saw. Each stream opens with a request without a token, which the gateway answers itself (401),
/// so anything the upstream sees was smuggled behind it.
async fn desync_attempt(raw: &[u8]) -> (String, bool, Vec<Seen>) {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &toks())).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let _ = s.write_all(raw).await;
    let (text, closed) = read_all(&mut s, Duration::from_secs(5)).await;
    (text, closed, up.seen())
}

/// Review F5(a): hyper ends a trailer line only at CRLF, httparse also at a bare LF. The guard
/// must not end the body where httparse does, or hyper's later trailer lines become a head whose
/// Content-Length swallows the real CL+TE head that follows.
#[tokio::test]
async fn bare_lf_in_a_trailer_never_lets_a_smuggled_head_through() {
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let raw = format!(
        "POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
0\r\nA: b\n\r\nZ: z\r\nContent-Length: 120\r\n\r\n\
POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let (text, closed, seen) = desync_attempt(raw.as_bytes()).await;
    assert!(
        seen.is_empty(),
        "smuggled request reached the upstream: {seen:?}"
    );
    assert!(closed, "connection left open: {text:?}");
    assert!(text.starts_with("HTTP/1.1 401"), "got {text:?}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "got {text:?}");
}

/// Review F5(b): a head split over reads that passed 64 KiB turned the old guard off. Behind a
/// pipelined request hyper's buffer can overshoot its 64 KiB limit and take a 65 KiB head, and
/// the CL+TE head after it then went through unseen. The guard hands hyper exactly 64 KiB of
/// such a head, which hyper answers with 431.
#[tokio::test]
async fn head_split_past_64_kib_gets_431_and_nothing_behind_it_goes_through() {
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let mut raw = b"GET /api/v3.0/version HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let start = raw.len();
    raw.extend_from_slice(
        format!("GET /api/v3.0/version HTTP/1.1\r\nHost: x\r\n{auth}X-Big: ").as_bytes(),
    );
    raw.resize(start + 65 * 1024 + 1 - 4, b'a');
    raw.extend_from_slice(b"\r\n\r\n");
    raw.extend_from_slice(format!("POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").as_bytes());
    let (text, closed, seen) = desync_attempt(&raw).await;
    assert!(
        seen.is_empty(),
        "{} request(s) reached the upstream",
        seen.len()
    );
    assert!(closed, "connection left open: {text:?}");
    assert!(text.starts_with("HTTP/1.1 401"), "got {text:?}");
    let second = &text[text.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 431"), "got {text:?}");
}

#[tokio::test]
async fn upload_still_arriving_at_session_timeout_gets_408() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &toks());
    cfg.session_timeout_ms = 600;
    let gw = TestGateway::start(&cfg).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!("POST /api/v3.0/scanmemory HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n0123456789");
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (text, _) = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "got {text:?}");
    assert!(
        text.ends_with(r#"{"error":"request timeout"}"#),
        "got {text:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn max_requests_closes_the_connection_after_the_nth_response() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &toks());
    cfg.server_extra = "<KeepAliveSettings><Enabled>1</Enabled><TimeoutMs>5000</TimeoutMs><MaxRequests>2</MaxRequests></KeepAliveSettings>".into();
    let gw = TestGateway::start(&cfg).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let first = request_on(&mut s).await;
    assert!(
        first.starts_with("HTTP/1.1 200") && !first.contains("connection: close"),
        "{first}"
    );
    let second = request_on(&mut s).await;
    assert!(second.contains("connection: close"), "{second}");
    let (rest, closed) = read_all(&mut s, Duration::from_secs(3)).await;
    assert!(closed && rest.is_empty());
}

/// An HTTPS upstream on 127.0.0.1 with a leaf certificate from `pki`; answers 200 `tls-upstream`.
async fn tls_upstream(pki: &Pki) -> std::net::SocketAddr {
    let (cert, key) = pki.leaf(77);
    let files = scangate::config::TlsFiles {
        cert: write_temp(&cert),
        key: write_temp(&key),
    };
    let config = scangate::proxy::tls::load(&files, 2, None).unwrap().config;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"tls-upstream")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn write_temp(content: &str) -> std::path::PathBuf {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), content).unwrap();
    file.into_temp_path().keep().unwrap()
}

#[tokio::test]
async fn https_upstream_is_verified_against_upstream_ca_file() {
    let pki = Pki::new();
    let addr = tls_upstream(&pki).await;
    let upstream = format!("https://localhost:{}", addr.port());

    // Without the CA the upstream's certificate is not trusted: 502.
    let gw = TestGateway::start(&Cfg::new(&upstream, &toks())).await;
    let c = client();
    assert_eq!(status_with(&c, &gw.url("/v"), TOKEN).await, 502);

    // With UpstreamCaFile it is.
    let cfg = Cfg::new(&upstream, &toks());
    let dir = ConfigDir::new(&cfg);
    std::fs::write(dir.dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let xml = cfg
        .xml()
        .replace("<Realm>", "<UpstreamCaFile>ca.pem</UpstreamCaFile><Realm>");
    std::fs::write(&dir.path, xml).unwrap();
    let gw = TestGateway::start_in(dir, false).await;
    let resp = c.get(gw.url("/v")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "tls-upstream");
}

#[tokio::test]
async fn unusable_upstream_ca_file_is_a_startup_error_naming_it() {
    let cfg = Cfg::new("https://localhost:9", &toks());
    let dir = ConfigDir::new(&cfg);
    let ca = dir.dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let xml = cfg
        .xml()
        .replace("<Realm>", "<UpstreamCaFile>ca.pem</UpstreamCaFile><Realm>");
    std::fs::write(&dir.path, xml).unwrap();
    let err = scangate::state::Gateway::start(&dir.path)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: cannot load upstream CA file: no PEM certificate found",
            ca.display()
        )
    );
}
