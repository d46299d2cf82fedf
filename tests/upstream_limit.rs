//! Upstream connections under load (issue 13, F7 and the write half of F1): MaxUpstreamConnections
//! bounds the connections to each upstream, and SendTimeoutMs drops a client that stops reading,
//! freeing its slot and the upstream connection streaming to it.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body::{Body, Frame};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const TOKEN: &str = "sg_Limits-1";

fn toks() -> Vec<Tok> {
    vec![Tok::new("limits", TOKEN, true)]
}

/// What the engine does with each request.
#[derive(Debug, Clone, Copy)]
enum Engine {
    /// Never answers.
    Hang,
    /// 200 with this many zero bytes, streamed as fast as the gateway takes them.
    Big(u64),
}

/// An HTTP/1.1 engine on 127.0.0.1:0 that counts its connections.
struct CountingEngine {
    addr: SocketAddr,
    /// Open now.
    open: Arc<AtomicUsize>,
    /// The most open at once.
    most: Arc<AtomicUsize>,
    /// Accepted in all.
    accepted: Arc<AtomicUsize>,
}

impl CountingEngine {
    async fn start(engine: Engine) -> CountingEngine {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, most, accepted) = (Arc::default(), Arc::default(), Arc::default());
        let counters = (Arc::clone(&open), Arc::clone(&most), Arc::clone(&accepted));
        tokio::spawn(async move {
            let (open, most, accepted): (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) =
                counters;
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let open = Arc::clone(&open);
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| async move {
                        let size = match engine {
                            Engine::Hang => std::future::pending().await,
                            Engine::Big(n) => n,
                        };
                        Ok::<_, Infallible>(http::Response::new(Zeros { left: size }))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        CountingEngine {
            addr,
            open,
            most,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A body of `left` zero bytes, made as it is read.
struct Zeros {
    left: u64,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(ZEROS.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &ZEROS[..n as usize],
        )))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Sends a GET for a big response on a socket with a small receive buffer, and never reads.
async fn slow_reader(gw: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(gw).await.unwrap();
    let req = format!("GET /big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

const BIG: u64 = 32 * 1024 * 1024;

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let engine = CountingEngine::start(Engine::Big(BIG)).await;
    let mut cfg = Cfg::new(&engine.url(), &toks());
    cfg.gateway_extra = "<SendTimeoutMs>500</SendTimeoutMs><UpstreamSettings>\
        <HealthCheckIntervalMs>0</HealthCheckIntervalMs></UpstreamSettings>"
        .into();
    let gw = TestGateway::start(&cfg).await;
    let mut s = slow_reader(gw.addr).await;
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || async {
            engine.accepted.load(Ordering::SeqCst) == 1 && gw.gw.metrics.connections_open() == 0
        })
        .await,
        "the slow reader still holds its slot after {:?}",
        started.elapsed()
    );
    // Its upstream connection went with it, mid-body.
    assert!(
        eventually(Duration::from_secs(3), || async {
            engine.open.load(Ordering::SeqCst) == 0
        })
        .await
    );
    // What the client can still read ends well short of the body.
    let mut got = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert!(got < BIG, "the whole body arrived: {got} bytes");
}

#[tokio::test]
async fn past_max_upstream_connections_a_request_gets_503_and_the_engine_never_sees_more() {
    let engine = CountingEngine::start(Engine::Hang).await;
    let mut cfg = Cfg::new(&engine.url(), &toks());
    // The deprecated spelling of UpstreamSettings/MaxSessions; no active checks, whose
    // connections this engine would count.
    cfg.gateway_extra = "<MaxUpstreamConnections>2</MaxUpstreamConnections>\
        <UpstreamSettings><QueueTimeoutMs>2000</QueueTimeoutMs>\
        <HealthCheckIntervalMs>0</HealthCheckIntervalMs></UpstreamSettings>"
        .into();
    let gw = TestGateway::start(&cfg).await;
    let url = gw.url("/api/v3.0/version");
    for _ in 0..2 {
        let (c, url) = (client(), url.clone());
        tokio::spawn(async move { c.get(url).bearer_auth(TOKEN).send().await });
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            engine.open.load(Ordering::SeqCst) == 2
        })
        .await
    );
    let started = Instant::now();
    let resp = client().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"all scan engines busy"}"#
    );
    // It waited in the queue for a session to come free (QueueTimeoutMs, 2 s) first.
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "answered after {waited:?}"
    );
    assert_eq!(engine.most.load(Ordering::SeqCst), 2);
    assert_eq!(engine.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_send_timeout_frees_the_upstream_connection_a_slow_reader_held() {
    let engine = CountingEngine::start(Engine::Big(BIG)).await;
    let mut cfg = Cfg::new(&engine.url(), &toks());
    cfg.gateway_extra = "<SendTimeoutMs>500</SendTimeoutMs><UpstreamSettings>\
        <MaxSessions>1</MaxSessions><HealthCheckIntervalMs>0</HealthCheckIntervalMs>\
        </UpstreamSettings>"
        .into();
    let gw = TestGateway::start(&cfg).await;
    let _stuck = slow_reader(gw.addr).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            engine.open.load(Ordering::SeqCst) == 1
        })
        .await
    );
    // The only upstream connection is the slow reader's; this request gets it once the slow
    // reader is dropped, within its wait for one.
    let resp = client()
        .get(gw.url("/big"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len() as u64, BIG);
    assert_eq!(engine.accepted.load(Ordering::SeqCst), 2);
}
