//! The scan engines: selection, sessions and the queue, health, and the keep-alive connections
//! that reach each engine.
//!
//! Each upstream keeps its own stack of idle HTTP/1.1 connections ([`Pool`]). A request takes the
//! most recently used one (its socket is the warmest), sends over it, and the response body puts it
//! back the moment its last byte has been read. A reload that keeps an upstream keeps its pool
//! (see [`UpstreamSet::rebuild`]), so warm connections survive config changes.
//!
//! Split by concern: [`pool`] (idle connections and leases), [`connection`] (one connection,
//! driven by the task that uses it), [`connect`] (opening connections,
//! open ones kept to `MaxSessions`), [`select`] (least outstanding
//! requests, tie-break, weights), [`queue`] (sessions under `MaxSessions` and the FIFO of requests
//! waiting for one), [`health`] (active checks, passive ejection, the checker task), [`set`] (the
//! configured engines across reloads, tenant groups) and [`tls`] (the client TLS config).
//!
//! This replaces hyper-util's general-purpose pooled client: one upstream is one host, so the pool
//! needs no key, no connection racing and no HTTP/2; a profile put the general client at 45 % of
//! scangate's user time (see benches/RESULTS.md).

mod connect;
mod connection;
pub mod health;
mod pool;
pub mod queue;
pub mod select;
mod set;
mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;

use pool::Pool;
pub use pool::{set_worker, UpstreamBody};
pub use queue::{Acquired, EnginePermit, Refusal};
pub use select::Group;
pub use set::{Outcome, UpstreamSet};

use super::body::GuardedBody;
use crate::config::UpstreamAddr;
use connect::{OpenConnections, ROOM_WAIT};
use health::Health;

/// Idle upstream connections kept per upstream.
const POOL_MAX_IDLE: usize = 1024;
/// How long an idle upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Time allowed to open a TCP connection to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an upstream set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `UpstreamCaFile` could not be read or parsed.
    #[error("{}: cannot load upstream CA file: {reason}", path.display())]
    CaFile {
        /// The CA file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Why a request to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, DNS, TLS handshake).
    #[error("cannot connect: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed while the request or the response head was under way.
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

impl SendError {
    /// Whether the failure was in making the connection.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// A send that failed, with the request when no byte of it reached the engine.
pub struct Failed {
    /// What went wrong.
    pub error: SendError,
    /// The request, untouched, when it was never sent: it may go to another engine.
    pub unsent: Option<Request<GuardedBody>>,
}

impl Failed {
    fn sent(error: SendError) -> Failed {
        Failed {
            error,
            unsent: None,
        }
    }
}

impl std::fmt::Debug for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failed")
            .field("error", &self.error)
            .field("unsent", &self.unsent.is_some())
            .finish()
    }
}

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

enum Connector {
    Http(HttpsConnector),
    Unix(Arc<Path>),
}

/// One backend and its idle connections.
pub struct Upstream {
    /// The configured address.
    pub addr: UpstreamAddr,
    /// A printable form for logs and metric labels.
    pub label: Arc<str>,
    /// The `Host` header every request to this upstream carries.
    host: HeaderValue,
    /// The URI the connector opens (scheme and authority only).
    connect_uri: Uri,
    connector: Connector,
    pool: Arc<Pool>,
    /// Requests in flight (from selection until the response body is done), against
    /// `max_sessions`; kept across reloads with the engine.
    in_flight: AtomicUsize,
    /// `MaxSessions` in force (`usize::MAX` = no cap); a reload may change it.
    max_sessions: AtomicUsize,
    /// `Weight` in force.
    weight: AtomicU32,
    /// Active and passive health.
    pub health: Health,
    /// Connections open to it, idle or busy, on every worker.
    conns: Arc<OpenConnections>,
    /// The queue of the set this engine belongs to (kept across reloads, as the engine is): a
    /// session that ends looks there for a waiter.
    queue: Arc<queue::Queue>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("label", &self.label)
            .finish()
    }
}

impl Upstream {
    fn new(addr: &UpstreamAddr, tls: &rustls::ClientConfig, queue: Arc<queue::Queue>) -> Upstream {
        let (scheme, authority, connector) = match addr {
            UpstreamAddr::Http(uri) => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(CONNECT_TIMEOUT));
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls.clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                (
                    uri.scheme().cloned().unwrap_or(Scheme::HTTP),
                    uri.authority()
                        .cloned()
                        .expect("validated upstream has an authority"),
                    Connector::Http(https),
                )
            }
            UpstreamAddr::Unix(path) => (
                Scheme::HTTP,
                Authority::from_static("localhost"),
                Connector::Unix(Arc::from(path.as_path())),
            ),
        };
        let connect_uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .expect("scheme and authority make a URI");
        Upstream {
            label: Arc::from(addr.to_string()),
            addr: addr.clone(),
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            connect_uri,
            connector,
            pool: Arc::new(Pool::default()),
            in_flight: AtomicUsize::new(0),
            max_sessions: AtomicUsize::new(usize::MAX),
            weight: AtomicU32::new(1),
            health: Health::default(),
            conns: Arc::default(),
            queue,
        }
    }

    /// Sets `MaxSessions` (`None` = no cap) and `Weight`.
    fn set_limits(&self, max_sessions: Option<usize>, weight: u32) {
        let max = max_sessions.unwrap_or(usize::MAX);
        self.max_sessions.store(max, Ordering::SeqCst);
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    /// `MaxSessions` in force (`usize::MAX` = no cap).
    pub fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::SeqCst)
    }

    /// `Weight` in force.
    pub fn weight(&self) -> usize {
        self.weight.load(Ordering::Relaxed) as usize
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Connections open to it now, idle or busy.
    pub fn open_connections(&self) -> usize {
        self.conns.open.load(Ordering::SeqCst)
    }

    /// Takes a session if one is free; an [`EnginePermit`] gives it back.
    fn try_take_session(&self) -> bool {
        let max = self.max_sessions();
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// The `Host` header for requests to this upstream: its authority (`localhost` on a unix
    /// socket).
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends a request, whose URI is the origin form (path and query), over an idle connection or
    /// a new one; `permit` (from [`UpstreamSet::acquire`]) stays with the connection until the
    /// response body is done. A request that an idle connection refused before sending a byte (the
    /// upstream had just closed it) goes to the next one. A request that no connection took comes
    /// back in [`Failed::unsent`], so it can go to another engine.
    #[allow(clippy::manual_async_fn)] // an async block: see the body
    pub fn send(
        &self,
        mut req: Request<GuardedBody>,
        permit: EnginePermit,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, Failed>> + '_ {
        // An async block, not an async fn: an async fn moves its arguments into locals once more,
        // and its state keeps both copies (rustc -Zprint-type-sizes).
        async move {
            // Read only when the pool is at its cap with none idle: a clock read is not free.
            let mut until = None;
            let slot = loop {
                while let Some(mut conn) = self.idle_connection() {
                    match conn.send(req).await {
                        Ok(resp) => return Ok(self.lease(resp, conn, permit)),
                        Err(refused) => match refused.unsent {
                            Some(unsent) => req = unsent,
                            None => return Err(Failed::sent(SendError::Request(refused.error))),
                        },
                    }
                }
                if let Some(slot) = self.reserve_connection() {
                    break slot;
                }
                // At the cap with none idle: this request holds a session, so one of them is
                // between its response and the pool, or closing. Past ROOM_WAIT it opens one
                // anyway: a request is never held up by the count of sockets alone.
                let now = tokio::time::Instant::now();
                if now >= *until.get_or_insert(now + ROOM_WAIT) {
                    break self.force_connection();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            // Boxed: a new connection is the rare case, and its future (a TLS stream by value, the
            // handshake) would otherwise make every request's send future, which forward boxes and
            // copies, 4,216 bytes instead of 1,464 (rustc -Zprint-type-sizes), pooled or not.
            let mut conn = match Box::pin(self.connect(slot)).await {
                Ok(conn) => conn,
                Err(error) => {
                    return Err(Failed {
                        error,
                        unsent: Some(req),
                    })
                }
            };
            match conn.send(req).await {
                Ok(resp) => Ok(self.lease(resp, conn, permit)),
                Err(refused) => Err(Failed {
                    unsent: refused.unsent,
                    error: SendError::Request(refused.error),
                }),
            }
        }
    }

    fn lease(
        &self,
        resp: Response<Incoming>,
        conn: connection::Connection,
        permit: EnginePermit,
    ) -> Response<UpstreamBody> {
        pool::lease(resp, conn, Arc::clone(&self.pool), permit)
    }

    /// Closes idle connections past the idle timeout, and forgets ones the upstream closed.
    pub fn prune_idle(&self) {
        self.pool.prune(Instant::now());
    }
}

/// An engine for unit tests: nothing listens at its address.
#[cfg(test)]
pub(crate) fn test_engine(max_sessions: usize, weight: u32) -> Arc<Upstream> {
    let addr = UpstreamAddr::Unix(PathBuf::from("/nonexistent/kav.sock"));
    let engine = Upstream::new(&addr, &tls::plain_tls_placeholder(), Arc::default());
    engine.set_limits(Some(max_sessions), weight);
    Arc::new(engine)
}
