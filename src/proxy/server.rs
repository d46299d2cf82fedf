//! The client listener: accept, cap concurrent connections, terminate TLS, serve HTTP/1.1 and h2
//! (ALPN or h2c prior knowledge) with hyper, and drain gracefully on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::error::GatewayError;
use super::framing::FramingGuard;
use super::handler::{handle, Downstream};
use super::headers;
use crate::config::{KeepAlive, ListenAddr};
use crate::net::Listener;
use crate::state::Gateway;

/// Time allowed for a TLS handshake, and for a request head when keep-alive sets no idle timeout.
/// Slow clients are cut off after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP/1.1 request head (hyper's read buffer cap); past it the client gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long a connection over MaxHTTPSessionsNum waits for a slot before it gets 503.
pub const QUEUE_WAIT: Duration = Duration::from_millis(500);
/// HTTP/2 streams per connection.
pub const H2_MAX_STREAMS: u32 = 256;
/// HTTP/2 keep-alive ping interval; a peer that does not answer within the same time is dropped.
pub const H2_PING: Duration = Duration::from_secs(20);

/// The connection caps (MaxHTTPSessionsNum), shared by every worker serving one listener.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    sessions: Arc<Semaphore>,
    queue: Arc<Semaphore>,
}

impl SessionLimits {
    /// Caps from the gateway's current settings.
    pub fn new(gw: &Gateway) -> SessionLimits {
        let max = gw.snapshot.load().settings.server.max_sessions;
        SessionLimits {
            sessions: Arc::new(Semaphore::new(max)),
            queue: Arc::new(Semaphore::new(max)),
        }
    }
}

/// Serves the gateway on `workers` threads until `shutdown` resolves, then drains each of them
/// (see [`run`]). Each worker thread runs its own single-threaded runtime and accepts from its own
/// copy of the listening socket, as nginx's worker processes do: a connection, its requests and
/// the upstream connections they use stay on one thread, with no work stealing or cross-thread
/// wake-ups on the request path. The connection caps are shared.
pub async fn run_workers(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    workers: usize,
) -> std::io::Result<()> {
    let limits = SessionLimits::new(&gw);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let copies = listener.share(workers.max(1))?;
    let started = copies.len();
    for (i, copy) in copies.into_iter().enumerate() {
        let (gw, limits, mut stop, done) = (
            Arc::clone(&gw),
            limits.clone(),
            stop_rx.clone(),
            done_tx.clone(),
        );
        std::thread::Builder::new()
            .name(format!("scangate-worker-{i}"))
            .spawn(move || {
                super::upstream::set_worker(i);
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let stopped = async move {
                                let _ = stop.wait_for(|stop| *stop).await;
                            };
                            serve_on(copy.open()?, gw, stopped, drain, limits).await
                        })
                    });
                let _ = done.send(served);
            })?;
    }
    drop(done_tx);
    tokio::pin!(shutdown);
    let mut finished = 0;
    let mut result = Ok(());
    // A worker that ends before the shutdown failed: stop the others and report it.
    tokio::select! {
        () = &mut shutdown => {}
        Some(early) = done_rx.recv() => {
            finished += 1;
            result = early.and_then(|()| Err(std::io::Error::other("a worker stopped serving")));
        }
    }
    let _ = stop_tx.send(true);
    while finished < started {
        match done_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => result = Err(e),
            None => {
                result = Err(std::io::Error::other("a worker thread panicked"));
                break;
            }
        }
        finished += 1;
    }
    result
}

/// Serves the gateway on `listener` until `shutdown` resolves, then stops accepting and waits up to
/// `drain` for in-flight connections.
///
/// At most MaxHTTPSessionsNum connections are served at once. Past that, up to as many again wait
/// [`QUEUE_WAIT`] for a slot and then get 503; any beyond those get 503 at once. So the number of
/// open sockets stays bounded and the process never runs out of file descriptors.
pub async fn run(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let limits = SessionLimits::new(&gw);
    serve_on(listener, gw, shutdown, drain, limits).await
}

async fn serve_on(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: SessionLimits,
) -> std::io::Result<()> {
    let settings = gw.snapshot.load().settings.server.clone();
    let https = matches!(settings.listen, ListenAddr::Tcp { tls: true, .. });
    let SessionLimits { sessions, queue } = limits;
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(connection_builder(&settings.keep_alive));
    let max_requests = settings
        .keep_alive
        .max_requests
        .filter(|_| settings.keep_alive.enabled);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept_retrying() => accepted,
            () = &mut shutdown => break,
        };
        let permit = Arc::clone(&sessions).try_acquire_owned().ok();
        let queued = match permit {
            Some(_) => None,
            None => match Arc::clone(&queue).try_acquire_owned() {
                Ok(q) => Some(q),
                Err(_) => {
                    tokio::spawn(turn_away(stream, https));
                    continue;
                }
            },
        };
        let (gw, builder, sessions) =
            (Arc::clone(&gw), Arc::clone(&builder), Arc::clone(&sessions));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = match permit {
                Some(p) => p,
                None => match tokio::time::timeout(QUEUE_WAIT, sessions.acquire_owned()).await {
                    Ok(p) => {
                        drop(queued);
                        p.expect("semaphore is never closed")
                    }
                    Err(_) => {
                        drop(queued);
                        return turn_away(stream, https).await;
                    }
                },
            };
            let _open = gw.metrics.connection_opened();
            let downstream = Downstream {
                peer,
                client_ip: peer.map(|p| headers::client_ip(p.ip())),
                memo: Arc::default(),
                https,
            };
            if https {
                let Some(tls) = gw.snapshot.load().tls.clone() else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        serve(tls_stream, gw, downstream, &builder, max_requests, watcher).await
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            } else {
                serve(stream, gw, downstream, &builder, max_requests, watcher).await
            }
        });
    }

    drop(listener);
    gw.draining.store(true, Ordering::Relaxed);
    tracing::info!("listener closed; draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
    Ok(())
}

/// Serves one connection until it closes or the drain asks it to finish.
async fn serve<S>(
    stream: S,
    gw: Arc<Gateway>,
    downstream: Downstream,
    builder: &auto::Builder<TokioExecutor>,
    max_requests: Option<u32>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::new(AtomicU32::new(0));
    let service = service_fn(move |req: Request<Incoming>| {
        let gw = Arc::clone(&gw);
        let served = Arc::clone(&served);
        let h1 = req.version() < Version::HTTP_2;
        // Boxed once here, so hyper moves a pointer rather than the whole request-path future.
        let handled = Box::pin(handle(gw, downstream.clone(), req));
        async move {
            let mut resp = handled.await?;
            // KeepAliveSettings/MaxRequests: the Nth response on an HTTP/1 connection closes it.
            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
            if h1 && max_requests.is_some_and(|max| n >= max) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(FramingGuard::new(stream)), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Answers 503 on a connection that got no slot, then closes it. TLS connections are just closed:
/// a plaintext answer would mean nothing to a TLS client, and a handshake costs what we lack.
async fn turn_away<S: AsyncWrite + Unpin>(mut stream: S, https: bool) {
    if !https {
        let bytes = GatewayError::Overloaded.raw_http1();
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&bytes)).await;
        let _ = stream.shutdown().await;
    }
    tracing::warn!("MaxHTTPSessionsNum reached; connection turned away with 503");
}

fn connection_builder(keep_alive: &KeepAlive) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's header read timeout also bounds the idle wait between keep-alive requests, so it is
    // KeepAliveSettings/TimeoutMs when that is set.
    let head_timeout = keep_alive.idle_timeout.unwrap_or(HEADER_READ_TIMEOUT);
    b.http1()
        // Without a timer hyper silently disables the header read timeout.
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(keep_alive.enabled);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(H2_PING)
        .keep_alive_timeout(H2_PING);
    b
}

/// Raises the soft open-files limit to the hard limit, so MaxHTTPSessionsNum is what bounds
/// connections, not a small default `ulimit -n`.
pub fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}
