//! The client listener: accept, cap concurrent connections (in all and per address), terminate
//! TLS, serve HTTP/1.1 and h2 (ALPN or h2c prior knowledge) with hyper under an idle deadline and a
//! write deadline, and drain gracefully on shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Request, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use super::client_cap::{ClientCap, OverCap};
use super::conn::{self, Activity, Tracked};
use super::error::GatewayError;
use super::framing::FramingGuard;
use super::handler::{handle, Downstream};
use super::headers;
use super::send_timeout::{SendTimeout, Written};
use super::upstream;
use crate::auth::quota;
use crate::config::{KeepAlive, ListenAddr};
use crate::net::{Accept, Listener};
use crate::state::Gateway;

/// The idle timeout when KeepAliveSettings/TimeoutMs is 0: the time allowed for a TLS handshake,
/// for the first request head after it, between keep-alive requests and on HTTP/2 with no stream
/// open. Slow clients are cut off after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP/1.1 request head (hyper's read buffer cap); past it the client gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long a connection over MaxHTTPSessionsNum waits for a slot before it gets 503.
pub const QUEUE_WAIT: Duration = Duration::from_millis(500);
/// HTTP/2 streams per connection.
pub const H2_MAX_STREAMS: u32 = 256;
/// HTTP/2 keep-alive ping interval; a peer that does not answer within the same time is dropped.
pub const H2_PING: Duration = Duration::from_secs(20);

/// The connection caps (MaxHTTPSessionsNum, MaxConnectionsPerClient), shared by every worker
/// serving one listener.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    sessions: Arc<Semaphore>,
    queue: Arc<Semaphore>,
    clients: Arc<ClientCap>,
}

impl SessionLimits {
    /// Caps from the gateway's current settings.
    pub fn new(gw: &Gateway) -> SessionLimits {
        let settings = &gw.snapshot.load().settings;
        let max = settings.server.max_sessions;
        SessionLimits {
            sessions: Arc::new(Semaphore::new(max)),
            queue: Arc::new(Semaphore::new(max)),
            clients: ClientCap::new(settings.gateway.max_connections_per_client),
        }
    }
}

/// A worker's log timer: its buffered log lines wait less than a second (src/logging.rs).
async fn flush_log_lines() {
    let mut tick = tokio::time::interval(crate::logging::FLUSH_EVERY / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        crate::logging::flush_this_thread(false);
    }
}

/// Serves the gateway on `workers` threads until `shutdown` resolves, then drains each of them
/// (see [`run`]). Each worker thread runs its own single-threaded runtime and accepts from its own
/// listening socket (`accept`, see [`Accept`]): a connection, its requests and the upstream
/// connections they use stay on one thread, with no work stealing or cross-thread wake-ups on
/// the request path. The connection caps are shared.
pub async fn run_workers(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    workers: usize,
    accept: Accept,
) -> std::io::Result<()> {
    let limits = SessionLimits::new(&gw);
    let _health = HealthChecks::start(&gw);
    let _quotas = QuotaFlusher::start(&gw);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let copies = listener.share_as(workers.max(1), accept)?;
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
                // Access lines collect in this thread's buffer (src/logging.rs); the timer below
                // hands them over at least once a second, and the last ones go when it stops.
                crate::logging::buffer_this_thread();
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            tokio::spawn(flush_log_lines());
                            let stopped = async move {
                                let _ = stop.wait_for(|stop| *stop).await;
                            };
                            serve_on(copy.open()?, gw, stopped, drain, limits, i).await
                        })
                    });
                crate::logging::flush_this_thread(true);
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
    // The last counts, so a restart loses none.
    gw.flush_quotas(true).await;
    result
}

/// Serves the gateway on `listener` until `shutdown` resolves, then stops accepting and waits up to
/// `drain` for in-flight connections.
///
/// At most MaxHTTPSessionsNum connections are served at once. Past that, up to as many again wait
/// [`QUEUE_WAIT`] for a slot and then get 503; any beyond those get 503 at once. So the number of
/// open sockets stays bounded and the process never runs out of file descriptors. An address past
/// MaxConnectionsPerClient gets 503 at once, and every slot comes free again at the idle timeout
/// or the write timeout (see [`conn`], [`SendTimeout`]) when its client stops taking part.
pub async fn run(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let limits = SessionLimits::new(&gw);
    let _health = HealthChecks::start(&gw);
    let _quotas = QuotaFlusher::start(&gw);
    let served = serve_on(listener, Arc::clone(&gw), shutdown, drain, limits, 0).await;
    // The last counts, so a restart loses none.
    gw.flush_quotas(true).await;
    served
}

/// Sends quota counts to the session store while the listener serves: the busy cluster-scope
/// ones every [`quota::CLUSTER_FLUSH_INTERVAL`], all of them every [`quota::FLUSH_INTERVAL`].
struct QuotaFlusher(tokio::task::JoinHandle<()>);

impl QuotaFlusher {
    fn start(gw: &Arc<Gateway>) -> QuotaFlusher {
        let gw = Arc::clone(gw);
        QuotaFlusher(tokio::spawn(async move {
            let mut tick = tokio::time::interval(quota::CLUSTER_FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let every = (quota::FLUSH_INTERVAL.as_millis()
                / quota::CLUSTER_FLUSH_INTERVAL.as_millis())
            .max(1);
            for n in 0u128.. {
                tick.tick().await;
                gw.flush_quotas(n % every == 0).await;
            }
        }))
    }
}

impl Drop for QuotaFlusher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The engines' health checker ([`upstream::health::run`]), for as long as the client listener
/// serves: it runs with or without the admin listener.
struct HealthChecks(tokio::task::JoinHandle<()>);

impl HealthChecks {
    fn start(gw: &Arc<Gateway>) -> HealthChecks {
        HealthChecks(tokio::spawn(upstream::health::run(Arc::clone(gw))))
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_on(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: SessionLimits,
    worker: usize,
) -> std::io::Result<()> {
    let meter = gw.metrics.worker(worker);
    let settings = gw.snapshot.load().settings.server.clone();
    let https = matches!(settings.listen, ListenAddr::Tcp { tls: true, .. });
    let SessionLimits {
        sessions,
        queue,
        clients,
    } = limits;
    // Every connection holds a receiver; the drain sends, then waits for all of them to be gone.
    let (drain_tx, drain_rx) = watch::channel(());
    let builder = Arc::new(connection_builder(&settings.keep_alive));
    let opts = ConnOptions {
        idle: idle_timeout(&settings.keep_alive),
        max_requests: (settings.keep_alive.max_requests).filter(|_| settings.keep_alive.enabled),
    };
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept_retrying() => accepted,
            () = &mut shutdown => break,
        };
        meter.connections.inc();
        // The per-address cap first, so an address past it takes no place in the queue either.
        let client = match clients.admit(peer) {
            Ok(client) => client,
            Err(OverCap) => {
                let ip = peer.map(|p| p.ip());
                tokio::spawn(turn_away(
                    stream,
                    https,
                    GatewayError::TooManyConnections,
                    ip,
                ));
                continue;
            }
        };
        let permit = Arc::clone(&sessions).try_acquire_owned().ok();
        let queued = match permit {
            Some(_) => None,
            None => match Arc::clone(&queue).try_acquire_owned() {
                Ok(q) => Some(q),
                Err(_) => {
                    tokio::spawn(turn_away(stream, https, GatewayError::Overloaded, None));
                    continue;
                }
            },
        };
        let (gw, builder, sessions) =
            (Arc::clone(&gw), Arc::clone(&builder), Arc::clone(&sessions));
        let counted = meter.requests.clone();
        let drain = drain_rx.clone();
        tokio::spawn(async move {
            let _client = client;
            let _permit = match permit {
                Some(p) => p,
                None => match tokio::time::timeout(QUEUE_WAIT, sessions.acquire_owned()).await {
                    Ok(p) => {
                        drop(queued);
                        p.expect("semaphore is never closed")
                    }
                    Err(_) => {
                        drop(queued);
                        return turn_away(stream, https, GatewayError::Overloaded, None).await;
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
            // Below TLS, so the handshake's writes are timed too.
            let send_timeout = gw.snapshot.load().settings.gateway.send_timeout;
            let stream = SendTimeout::new(stream, send_timeout);
            let written = stream.written();
            if https {
                let Some(tls) = (gw.snapshot.load().tls.as_ref()).map(|t| Arc::clone(&t.config))
                else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                // The handshake is a phase before the first request: it gets the idle timeout.
                match tokio::time::timeout(opts.idle, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let conn = Served {
                            gw,
                            downstream,
                            counted,
                        };
                        serve(tls_stream, written, conn, &builder, opts, drain).await
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            } else {
                let conn = Served {
                    gw,
                    downstream,
                    counted,
                };
                serve(stream, written, conn, &builder, opts, drain).await
            }
        });
    }

    drop(listener);
    gw.draining.store(true, Ordering::Relaxed);
    tracing::info!("listener closed; draining connections");
    drop(drain_rx);
    let _ = drain_tx.send(());
    tokio::select! {
        () = drain_tx.closed() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
    Ok(())
}

/// What every connection of a listener is served with.
#[derive(Debug, Clone, Copy)]
struct ConnOptions {
    /// The idle timeout (see [`conn`]).
    idle: Duration,
    /// KeepAliveSettings/MaxRequests, when keep-alive is on.
    max_requests: Option<u32>,
}

/// What one connection's requests are served with.
struct Served {
    gw: Arc<Gateway>,
    downstream: Downstream,
    /// The worker's request counter.
    counted: prometheus_client::metrics::counter::Counter,
}

/// Serves one connection until it closes, stays idle past the idle timeout, or the drain asks it
/// to finish. `written` counts the writes of the [`SendTimeout`] under `stream`.
async fn serve<S>(
    stream: S,
    written: Arc<Written>,
    conn: Served,
    builder: &auto::Builder<TokioExecutor>,
    opts: ConnOptions,
    drain: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Served {
        gw,
        downstream,
        counted,
    } = conn;
    let activity = Activity::new();
    let requests = Arc::clone(&activity);
    let service = service_fn(move |req: Request<Incoming>| {
        counted.inc();
        let gw = Arc::clone(&gw);
        // Open from here until the response body is dropped: the connection is not idle.
        let exchange = requests.begin();
        let h1 = req.version() < Version::HTTP_2;
        // Boxed once here, so hyper moves a pointer rather than the whole request-path future.
        let downstream = downstream.clone();
        let handled = super::boxed(|| handle(gw, downstream, req));
        async move {
            let mut resp = handled.await?;
            // KeepAliveSettings/MaxRequests: the Nth response on an HTTP/1 connection closes it.
            let n = exchange.respond();
            if h1 && opts.max_requests.is_some_and(|max| n >= max) {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked::new(body, exchange)))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(FramingGuard::new(stream)), service);
    let shutdown = |conn: Pin<&mut _>| auto::Connection::graceful_shutdown(conn);
    let driven = conn::drive(conn, shutdown, &activity, &written, opts.idle, drain);
    if let Err(e) = driven.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Answers 503 on a connection that got no slot, then closes it. TLS connections are just closed:
/// a plaintext answer would mean nothing to a TLS client, and a handshake costs what we lack.
async fn turn_away<S: AsyncWrite + Unpin>(
    mut stream: S,
    https: bool,
    why: GatewayError,
    client: Option<std::net::IpAddr>,
) {
    if !https {
        let bytes = why.raw_http1();
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&bytes)).await;
        let _ = stream.shutdown().await;
    }
    log_turned_away(why, client);
}

/// Logs a turned-away connection, at most one line a second, so a flood of connections cannot
/// become a flood of log lines; each line counts the ones it stands for.
fn log_turned_away(why: GatewayError, client: Option<std::net::IpAddr>) {
    static START: OnceLock<Instant> = OnceLock::new();
    static LOGGED_AT: AtomicU64 = AtomicU64::new(0);
    static UNLOGGED: AtomicU64 = AtomicU64::new(0);
    let second = START.get_or_init(Instant::now).elapsed().as_secs() + 1;
    let last = LOGGED_AT.load(Ordering::Relaxed);
    let mine = last != second
        && (LOGGED_AT.compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)).is_ok();
    if !mine {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let also = UNLOGGED.swap(0, Ordering::Relaxed);
    match (why, client) {
        (GatewayError::TooManyConnections, Some(ip)) => tracing::warn!(
            client = %ip,
            also_turned_away = also,
            "MaxConnectionsPerClient reached; connection turned away with 503"
        ),
        _ => tracing::warn!(
            also_turned_away = also,
            "MaxHTTPSessionsNum reached; connection turned away with 503"
        ),
    }
}

/// KeepAliveSettings/TimeoutMs, or [`HEADER_READ_TIMEOUT`] when that is 0 (unlimited): an idle
/// connection holds a slot, so it never waits for ever.
fn idle_timeout(keep_alive: &KeepAlive) -> Duration {
    keep_alive.idle_timeout.unwrap_or(HEADER_READ_TIMEOUT)
}

fn connection_builder(keep_alive: &KeepAlive) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // No header read timer of hyper's: `conn::drive`'s one idle deadline per connection already
    // bounds the wait for every head (a head arrives while the connection is idle), and hyper's
    // timer cost an allocation and a timer-wheel entry per request.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
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
