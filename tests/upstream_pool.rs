//! The upstream connection pool against a raw-socket upstream whose connection handling is
//! scripted: reuse, upstreams that close idle connections, truncated bodies, empty bodies.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ALPHA: &str = "sg_AlphaToken-1";

/// What the raw upstream does after reading each request head (requests carry no body here).
#[derive(Debug, Clone, Copy)]
enum Script {
    /// `200` with a 2-byte body, and keep the connection open.
    KeepAlive,
    /// `204` (no body), and keep the connection open.
    NoContent,
    /// `200` with a 2-byte body, then close the connection 50 ms later without saying so first:
    /// what an upstream with a short keep-alive timeout does.
    CloseAfterAnswer,
    /// The first connection promises 100 bytes, sends 10 and closes; later ones behave.
    TruncateFirst,
    /// On the first connection, `200` at once without reading the upload, then nothing more
    /// (the connection stays open); later ones behave like `KeepAlive`.
    AnswerFirstEarly,
}

/// A raw HTTP/1.1 upstream that counts the connections it accepts.
struct RawUpstream {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(script: Script) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve(stream, script, n));
            }
        });
        RawUpstream { addr, connections }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, script: Script, nth: usize) {
    let mut buf = Vec::new();
    loop {
        // Read one request head; these requests have no body.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..end);
        let answer: &[u8] = match script {
            Script::KeepAlive | Script::CloseAfterAnswer | Script::AnswerFirstEarly => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            }
            Script::NoContent => b"HTTP/1.1 204 No Content\r\n\r\n",
            Script::TruncateFirst if nth == 1 => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789"
            }
            Script::TruncateFirst => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        };
        if stream.write_all(answer).await.is_err() {
            return;
        }
        match script {
            Script::CloseAfterAnswer => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            Script::TruncateFirst if nth == 1 => return,
            Script::AnswerFirstEarly if nth == 1 => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            _ => {}
        }
    }
}

async fn get(gw: &TestGateway) -> reqwest::Result<(u16, String)> {
    get_with(&client(), &gw.url("/api/v3.0/version")).await
}

async fn get_with(c: &reqwest::Client, url: &str) -> reqwest::Result<(u16, String)> {
    let resp = c
        .get(url)
        .header("Authorization", format!("Bearer {ALPHA}"))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

async fn gateway(upstream: &RawUpstream) -> TestGateway {
    let cfg = Cfg::new(&upstream.url(), &[Tok::new("alpha", ALPHA, true)]);
    TestGateway::start(&cfg).await
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = RawUpstream::start(Script::KeepAlive).await;
    let gw = gateway(&upstream).await;
    for _ in 0..20 {
        assert_eq!(get(&gw).await.unwrap(), (200, "ok".to_owned()));
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn a_prune_keeps_an_open_idle_connection_and_forgets_one_the_engine_closed() {
    // Open and idle: a prune keeps it, and the next request uses it.
    let upstream = RawUpstream::start(Script::KeepAlive).await;
    let gw = gateway(&upstream).await;
    let engine = || Arc::clone(&gw.gw.snapshot.load().upstreams.all()[0]);
    assert_eq!(get(&gw).await.unwrap(), (200, "ok".to_owned()));
    assert!(
        eventually(Duration::from_secs(5), || async {
            engine().open_connections() == 1
        })
        .await,
        "no engine connection open after the answer"
    );
    engine().prune_idle();
    assert_eq!(engine().open_connections(), 1);
    assert_eq!(get(&gw).await.unwrap(), (200, "ok".to_owned()));
    assert_eq!(upstream.connections(), 1);

    // Closed by the engine while idle: a prune forgets it, so it no longer counts against the
    // engine's MaxSessions.
    let closing = RawUpstream::start(Script::CloseAfterAnswer).await;
    let gw = gateway(&closing).await;
    let engine = || Arc::clone(&gw.gw.snapshot.load().upstreams.all()[0]);
    assert_eq!(get(&gw).await.unwrap(), (200, "ok".to_owned()));
    // Past the engine's close (50 ms after its answer).
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine().prune_idle();
    assert_eq!(engine().open_connections(), 0);
}

#[tokio::test]
async fn empty_responses_give_their_connection_back_too() {
    let upstream = RawUpstream::start(Script::NoContent).await;
    let gw = gateway(&upstream).await;
    for _ in 0..5 {
        assert_eq!(get(&gw).await.unwrap(), (204, String::new()));
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    let upstream = RawUpstream::start(Script::CloseAfterAnswer).await;
    let gw = gateway(&upstream).await;
    for _ in 0..5 {
        assert_eq!(get(&gw).await.unwrap(), (200, "ok".to_owned()));
        // Past the upstream's close: the pooled connection is dead when the next request comes.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(upstream.connections(), 5);
}

#[tokio::test]
async fn a_truncated_body_fails_that_response_and_its_connection_is_not_reused() {
    let upstream = RawUpstream::start(Script::TruncateFirst).await;
    let gw = gateway(&upstream).await;
    // The client must see the exchange fail, never a short body as a whole one. Whether the 200
    // head gets out before the break depends on whether the engine's bytes and its close come in
    // one read: if they do, the connection to the client is closed before the head is flushed.
    let first = async {
        let resp = client()
            .get(gw.url("/api/v3.0/version"))
            .header("Authorization", format!("Bearer {ALPHA}"))
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
        resp.bytes().await
    };
    let first = first.await;
    assert!(
        first.is_err(),
        "a truncated answer passed as whole: {first:?}"
    );
    assert_eq!(get(&gw).await.unwrap(), (200, "ok".to_owned()));
    assert_eq!(get(&gw).await.unwrap(), (200, "ok".to_owned()));
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn a_connection_whose_upload_is_still_going_is_not_reused() {
    let upstream = RawUpstream::start(Script::AnswerFirstEarly).await;
    let gw = gateway(&upstream).await;
    // An upload that stops halfway: the engine answers before it has read any of it.
    let mut uploader = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /api/v3.0/scanmemory HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ALPHA}\r\n\
         content-length: 100000\r\n\r\n"
    );
    uploader.write_all(head.as_bytes()).await.unwrap();
    uploader.write_all(&[b'a'; 1000]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\nok") {
            match uploader.read(&mut chunk).await.unwrap() {
                0 => break,
                n => answer.extend_from_slice(&chunk[..n]),
            }
        }
    });
    read.await.expect("the early answer reaches the client");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    // That engine connection is still busy with the upload, so the next request takes a new one
    // instead of waiting behind it.
    let next = tokio::time::timeout(Duration::from_secs(5), get(&gw)).await;
    assert_eq!(next.expect("not held up").unwrap(), (200, "ok".to_owned()));
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn worker_threads_share_the_session_cap_and_reuse_their_own_upstream_connections() {
    let upstream = RawUpstream::start(Script::KeepAlive).await;
    let mut cfg = Cfg::new(&upstream.url(), &[Tok::new("alpha", ALPHA, true)]);
    cfg.server_extra = "<MaxHTTPSessionsNum>4</MaxHTTPSessionsNum>".into();
    // Every connection comes from 127.0.0.1: no per-address cap here.
    cfg.gateway_extra = "<MaxConnectionsPerClient>0</MaxConnectionsPerClient>".into();
    let dir = ConfigDir::new(&cfg);
    let served = WorkersGateway::start(&dir, 3).await;
    let (addr, gw) = (served.addr, Arc::clone(&served.gw));
    let url = format!("http://{addr}/api/v3.0/version");
    // One keep-alive client connection stays on one worker, which reuses one upstream connection.
    let c = client();
    for _ in 0..10 {
        assert_eq!(get_with(&c, &url).await.unwrap(), (200, "ok".to_owned()));
    }
    assert_eq!(upstream.connections(), 1);
    // Fresh client connections land on whichever worker accepts them; all are served.
    for _ in 0..12 {
        assert_eq!(get_with(&client(), &url).await.unwrap().0, 200);
    }
    assert!(upstream.connections() <= 3, "{}", upstream.connections());
    // The cap is for all workers together: with 4 connections held (on any of the 3 workers),
    // more get 503, whichever worker accepts them. First the clients above must be gone.
    drop(c);
    assert!(
        eventually(Duration::from_secs(3), || async {
            gw.metrics.connections_open() == 0
        })
        .await
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let answer = raw_get(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "got {answer:?}");
        held.push(conn);
    }
    assert_eq!(gw.metrics.connections_open(), 4);
    for _ in 0..6 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let answer = raw_get(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "got {answer:?}");
        assert!(
            answer.ends_with(r#"{"error":"gateway overloaded"}"#),
            "got {answer:?}"
        );
    }
    drop(held);
    served.stop().await;
    // Every worker closed its copy of the socket.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// One GET on a raw connection; returns what came back until the response's end or the close.
async fn raw_get(conn: &mut TcpStream) -> String {
    let req = format!("GET /v HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {ALPHA}\r\n\r\n");
    if conn.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        // A 200 from the raw upstream ends with its 2-byte body; the gateway keeps it open.
        if text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\nok") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The requests each worker received, from `scangate_worker_requests_total`.
fn worker_requests(gw: &scangate::state::Gateway, workers: usize) -> Vec<u64> {
    let text = gw.metrics.encode();
    (0..workers)
        .map(|i| {
            let series = format!("scangate_worker_requests_total{{worker=\"{i}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .map_or(0, |n| n.trim().parse().unwrap())
        })
        .collect()
}

/// Listening TCP sockets on `port` in this process's network namespace (`/proc/net/tcp`).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1].ends_with(&local) && f[3] == "0A"
        })
        .count()
}

/// 64 clients connect at once, then each sends a request: every worker gets its share.
async fn burst_of_clients(accept: scangate::net::Accept) -> (Vec<u64>, usize) {
    let upstream = RawUpstream::start(Script::KeepAlive).await;
    let mut cfg = Cfg::new(&upstream.url(), &[Tok::new("alpha", ALPHA, true)]);
    cfg.gateway_extra = "<MaxConnectionsPerClient>0</MaxConnectionsPerClient>".into();
    let dir = ConfigDir::new(&cfg);
    let served = WorkersGateway::start_with(&dir, 2, accept).await;
    let (addr, gw) = (served.addr, Arc::clone(&served.gw));
    let mut conns = Vec::new();
    for _ in 0..64 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    for conn in &mut conns {
        let answer = raw_get(conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "got {answer:?}");
    }
    let sockets = listening_sockets(addr.port());
    // A socket without SO_REUSEPORT (another server started by mistake) still cannot bind there.
    let err = std::net::TcpListener::bind(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let split = worker_requests(&gw, 2);
    drop(conns);
    served.stop().await;
    (split, sockets)
}

#[tokio::test]
async fn with_reuseport_each_worker_listens_on_its_own_socket_and_gets_a_share_of_a_burst() {
    let (split, sockets) = burst_of_clients(scangate::net::Accept::ReusePort).await;
    assert_eq!(sockets, 2, "one listening socket per worker");
    assert_eq!(split.iter().sum::<u64>(), 64, "{split:?}");
    // The kernel hashes each connection to a socket: 32 ± 4 (one standard deviation) each.
    assert!(split.iter().all(|&n| n >= 12), "{split:?}");
}

#[tokio::test]
async fn with_a_shared_socket_the_workers_accept_from_one_listening_socket() {
    let (split, sockets) = burst_of_clients(scangate::net::Accept::Shared).await;
    assert_eq!(sockets, 1);
    assert_eq!(split.iter().sum::<u64>(), 64, "{split:?}");
}

#[tokio::test]
async fn one_worker_leaves_the_port_closed_to_other_reuseport_sockets() {
    let upstream = RawUpstream::start(Script::KeepAlive).await;
    let cfg = Cfg::new(&upstream.url(), &[Tok::new("alpha", ALPHA, true)]);
    let dir = ConfigDir::new(&cfg);
    let served = WorkersGateway::start_with(&dir, 1, scangate::net::Accept::ReusePort).await;
    let addr = served.addr;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    assert!(raw_get(&mut conn).await.starts_with("HTTP/1.1 200"));
    // With one worker there is no sibling to add, so the socket never gets SO_REUSEPORT and
    // another process of the same user cannot join it.
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other.set_reuse_address(true).unwrap();
    other.set_reuse_port(true).unwrap();
    let err = other.bind(&addr.into()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(listening_sockets(addr.port()), 1);
    drop(conn);
    served.stop().await;
}
