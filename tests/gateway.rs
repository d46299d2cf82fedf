//! The gateway core over real sockets: auth decisions, forwarding rules, streaming, limits.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

const ALPHA: &str = "sg_AlphaToken-1";
const BETA: &str = "sg_BetaToken-2";

fn tokens() -> Vec<Tok> {
    vec![
        Tok::new("alpha", ALPHA, true),
        Tok::new("beta", BETA, false),
    ]
}

#[tokio::test]
async fn valid_token_is_forwarded_with_name_and_without_token() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &tokens())).await;
    let resp = client()
        .post(gw.url("/api/v3.0/scanmemory?x=1&y=%20z"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .header("X-Scangate-Token-Name", "forged")
        .header("X-Scangate-Anything", "forged")
        .header("X_Scangate_Token_Name", "forged")
        .header("X_Scangate_Tenants", "forged")
        .header("Forwarded", "for=203.0.113.1")
        .header("X-Real-IP", "203.0.113.1")
        .header("X-Forwarded-For", "198.51.100.9")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "drop-me")
        .header("X-KAV-Timeout", "1000")
        .body("{\"object\":\"\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "1");
    assert!(
        resp.headers().get("keep-alive").is_none(),
        "hop-by-hop header from upstream leaked"
    );
    assert_eq!(resp.text().await.unwrap(), "upstream-ok");

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.uri.to_string(), "/api/v3.0/scanmemory?x=1&y=%20z");
    assert_eq!(s.body, Bytes::from_static(b"{\"object\":\"\"}"));
    assert!(
        s.headers.get("authorization").is_none(),
        "token header reached the upstream"
    );
    assert_eq!(s.headers["x-scangate-token-name"], "alpha");
    assert_eq!(s.headers.get_all("x-scangate-token-name").iter().count(), 1);
    assert!(s.headers.get("x-scangate-anything").is_none());
    // Underscore spellings merge with the real names in CGI-style backends (see forged_headers.rs).
    for forged in [
        "x_scangate_token_name",
        "x_scangate_tenants",
        "x-scangate-tenants",
    ] {
        assert!(
            s.headers.get(forged).is_none(),
            "{forged} reached the upstream"
        );
    }
    assert!(s.headers.get("forwarded").is_none());
    assert!(s.headers.get("x-real-ip").is_none());
    assert!(s.headers.get("x-hop").is_none());
    assert_eq!(s.headers["x-kav-timeout"], "1000");
    assert_eq!(s.headers["x-forwarded-for"], "198.51.100.9, 127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(s.headers["host"], up.addr.to_string());
}

#[tokio::test]
async fn rejections_get_401_with_bearer_challenge_and_never_reach_upstream() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &tokens())).await;
    let c = client();
    let cases: [(&str, Option<String>, &str); 7] = [
        ("missing", None, r#"{"error":"missing API token"}"#),
        // A static token may be 256 bytes: looked up (and unknown); one byte more is malformed.
        (
            "256 bytes",
            Some(format!("Bearer sg_{}", "a".repeat(253))),
            r#"{"error":"invalid API token"}"#,
        ),
        (
            "257 bytes",
            Some(format!("Bearer sg_{}", "a".repeat(254))),
            r#"{"error":"malformed API token header"}"#,
        ),
        (
            "wrong scheme",
            Some(format!("Basic {ALPHA}")),
            r#"{"error":"malformed API token header"}"#,
        ),
        (
            "two spaces",
            Some(format!("Bearer  {ALPHA}")),
            r#"{"error":"malformed API token header"}"#,
        ),
        (
            "unknown",
            Some("Bearer sg_NotAToken-9".into()),
            r#"{"error":"invalid API token"}"#,
        ),
        (
            "disabled",
            Some(format!("Bearer {BETA}")),
            r#"{"error":"invalid API token"}"#,
        ),
    ];
    for (what, header, body) in cases {
        let mut req = c.get(gw.url("/api/v3.0/version"));
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            r#"Bearer realm="test-realm""#,
            "{what}"
        );
        assert_eq!(resp.headers()["content-type"], "application/json", "{what}");
        let text = resp.text().await.unwrap();
        assert_eq!(text, body, "{what}");
        assert!(!text.contains("sg_"), "{what}: token echoed");
    }
    assert!(
        up.seen().is_empty(),
        "a rejected request reached the upstream"
    );
}

#[tokio::test]
async fn lowercase_bearer_scheme_is_accepted() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &tokens())).await;
    let resp = client()
        .get(gw.url("/"))
        .header("authorization", format!("bearer {ALPHA}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn custom_field_without_bearer_uses_token_challenge() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &tokens());
    cfg.field = "X-Api-Key".into();
    cfg.bearer = false;
    let gw = TestGateway::start(&cfg).await;
    let c = client();
    let ok = c
        .get(gw.url("/v"))
        .header("x-API-kEy", ALPHA)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let seen = up.seen();
    assert!(
        seen[0].headers.get("x-api-key").is_none(),
        "token header reached the upstream"
    );

    let bad = c
        .get(gw.url("/v"))
        .header("X-Api-Key", "nope-Nope-1")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.headers()["www-authenticate"],
        r#"Token realm="test-realm""#
    );
    // The Authorization header is not the configured field: missing.
    let other = c
        .get(gw.url("/v"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn auth_off_forwards_everything_without_token_name() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[]);
    cfg.use_access_token = false;
    let gw = TestGateway::start(&cfg).await;
    let resp = client()
        .get(gw.url("/x"))
        .header("Authorization", "Bearer whatever")
        .header("X-Scangate-Token-Name", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s = &up.seen()[0];
    assert!(s.headers.get("x-scangate-token-name").is_none());
    // With auth off the Authorization header is the backend's business and passes through.
    assert_eq!(s.headers["authorization"], "Bearer whatever");
}

#[tokio::test]
async fn upload_streams_to_upstream_before_client_finishes() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel();
    *up.first_chunk.lock().unwrap() = Some(first_tx);
    let gw = TestGateway::start(&Cfg::new(&up.url(), &tokens())).await;

    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let stream = futures_stream(body_rx);
    let req = client()
        .post(gw.url("/api/v3.0/scanmemory"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let pending = tokio::spawn(req);

    body_tx
        .send(Ok(Bytes::from_static(b"first-chunk")))
        .await
        .unwrap();
    // The rest of the body is held back until the upstream has seen the first chunk: if the gateway
    // buffered whole bodies this would time out.
    let first = tokio::time::timeout(Duration::from_secs(5), first_rx.recv())
        .await
        .expect("upstream saw no chunk while the client was still sending")
        .unwrap();
    assert_eq!(first, Bytes::from_static(b"first-chunk"));
    body_tx
        .send(Ok(Bytes::from_static(b"-second")))
        .await
        .unwrap();
    drop(body_tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen()[0].body, Bytes::from_static(b"first-chunk-second"));
}

/// A `Stream` over an mpsc receiver, without pulling in futures-util.
fn futures_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_core_stream::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_core_stream::ReceiverStream(rx)
}

mod futures_core_stream {
    pub use futures_core::Stream;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);

    impl<T> Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[tokio::test]
async fn declared_body_over_limit_gets_413() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &tokens());
    cfg.max_bytes = 1000;
    let gw = TestGateway::start(&cfg).await;
    let resp = client()
        .post(gw.url("/api/v3.0/scanmemory"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .body(vec![b'a'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"request body too large"}"#
    );
    assert!(up.seen().is_empty());

    // Exactly at the limit passes.
    let resp = client()
        .post(gw.url("/api/v3.0/scanmemory"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn chunked_body_growing_past_limit_gets_413() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &tokens());
    cfg.max_bytes = 1000;
    let gw = TestGateway::start(&cfg).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let pending = tokio::spawn(
        client()
            .post(gw.url("/api/v3.0/scanmemory"))
            .header("Authorization", format!("Bearer {ALPHA}"))
            .body(reqwest::Body::wrap_stream(futures_stream(rx)))
            .send(),
    );
    for _ in 0..3 {
        if tx.send(Ok(Bytes::from(vec![b'b'; 600]))).await.is_err() {
            break;
        }
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"request body too large"}"#
    );
}

#[tokio::test]
async fn dead_upstream_gets_502() {
    // Bind then drop: nothing listens on that port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = TestGateway::start(&Cfg::new(&format!("http://{dead}"), &tokens())).await;
    let resp = client()
        .get(gw.url("/api/v3.0/version"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"upstream connection failed"}"#
    );
}

#[tokio::test]
async fn hanging_upstream_gets_504_near_session_timeout() {
    let up = Upstream::start(Behaviour::Hang).await;
    let mut cfg = Cfg::new(&up.url(), &tokens());
    cfg.session_timeout_ms = 500;
    let gw = TestGateway::start(&cfg).await;
    let started = Instant::now();
    let resp = client()
        .get(gw.url("/api/v3.0/version"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"upstream timeout"}"#
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(3000),
        "took {took:?}"
    );
}

#[tokio::test]
async fn unix_socket_listener_and_upstream() {
    let up = Upstream::start(Behaviour::Ok).await;
    // A unix-socket upstream: the emulator-like backend is reached through a socket that proxies to `up`.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("up.sock");
    let unix = tokio::net::UnixListener::bind(&sock).unwrap();
    let target = up.addr;
    tokio::spawn(async move {
        loop {
            let (mut s, _) = unix.accept().await.unwrap();
            tokio::spawn(async move {
                let mut t = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut t).await;
            });
        }
    });
    let gw = TestGateway::start(&Cfg::new(sock.to_str().unwrap(), &tokens())).await;
    let resp = client()
        .get(gw.url("/api/v3.0/version"))
        .header("Authorization", format!("Bearer {ALPHA}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen()[0].headers["host"], "localhost");
}

#[tokio::test]
async fn round_robin_over_two_upstreams() {
    let a = Upstream::start(Behaviour::Ok).await;
    let b = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&a.url(), &tokens());
    cfg.upstreams.push(b.url());
    let gw = TestGateway::start(&cfg).await;
    let c = client();
    for _ in 0..6 {
        assert_eq!(status_with(&c, &gw.url("/"), ALPHA).await, 200);
    }
    assert_eq!((a.seen().len(), b.seen().len()), (3, 3));
}

#[tokio::test]
async fn unix_socket_client_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start(Behaviour::Ok).await;
    let config = ConfigDir::new(&Cfg::new(&up.url(), &tokens()));
    let sock = config.dir.path().join("gw.sock");
    let gw = scangate::state::Gateway::start(&config.path).unwrap();
    let listener = scangate::net::Listener::bind_unix(&sock).unwrap();
    tokio::spawn(scangate::proxy::server::run(
        listener,
        gw,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    for (token, want) in [(ALPHA, "HTTP/1.1 200"), ("sg_Nope-1", "HTTP/1.1 401")] {
        let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let req = format!("GET /api/v3.0/version HTTP/1.1\r\nHost: scan\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with(want), "{out}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    // No client address on a unix socket: X-Forwarded-For says so.
    assert_eq!(seen[0].headers["x-forwarded-for"], "unix");
    assert_eq!(seen[0].headers["x-scangate-token-name"], "alpha");
}

#[tokio::test]
async fn role_outside_its_scope_gets_403_and_tenants_are_forwarded() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(&up.url(), &tokens());
    let config = ConfigDir::new(&cfg);
    // Give "alpha" the narrowest role and two tenants.
    let xml = cfg.xml().replacen(
        "<Enabled>1</Enabled></Token>",
        "<Enabled>1</Enabled><Role>SecurityOfficer</Role><Tenants><Tenant>acme</Tenant><Tenant>café</Tenant></Tenants></Token>",
        1,
    );
    std::fs::write(&config.path, xml).unwrap();
    let gw = TestGateway::start_in(config, false).await;
    let c = client();

    let denied = c
        .post(gw.url("/api/v3.0/clearstatistics"))
        .bearer_auth(ALPHA)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied.headers().get("www-authenticate").is_none());
    assert_eq!(
        denied.text().await.unwrap(),
        r#"{"error":"token not allowed for this operation"}"#
    );
    assert!(
        up.seen().is_empty(),
        "a forbidden call reached the upstream"
    );

    let allowed = c
        .post(gw.url("/api/v3.0/scanmemory"))
        .bearer_auth(ALPHA)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-scangate-tenants"], "acme,caf%C3%A9");
}
