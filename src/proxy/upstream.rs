//! Upstream selection, and the keep-alive connections that reach each backend.
//!
//! Each upstream keeps its own stack of idle HTTP/1.1 connections ([`Pool`]). A request takes the
//! most recently used one (its socket is the warmest), sends over it, and the response body puts it
//! back the moment its last byte has been read. A reload that keeps an upstream keeps its pool
//! (see [`UpstreamSet::rebuild`]), so warm connections survive config changes.
//!
//! This replaces hyper-util's general-purpose pooled client: one upstream is one host, so the pool
//! needs no key, no connection racing and no HTTP/2; a profile put the general client at 45 % of
//! scangate's user time (see benches/RESULTS.md).

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use super::body::GuardedBody;
use super::upstream_limit::{Busy, UpstreamLimit, UpstreamPermit};
use crate::config::UpstreamAddr;

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

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;
type Sender = SendRequest<GuardedBody>;

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
    scheme: Scheme,
    authority: Authority,
    /// The `Host` header every request to this upstream carries.
    host: HeaderValue,
    /// The URI the connector opens (scheme and authority only).
    connect_uri: Uri,
    connector: Connector,
    pool: Arc<Pool>,
    /// Connections in use, against MaxUpstreamConnections.
    limit: Arc<UpstreamLimit>,
    /// The connector the pool uses, kept to probe reachability the same way (same resolver).
    probe_connector: Option<HttpConnector>,
    /// The last probe: 0 not probed yet, 1 reachable, 2 unreachable.
    probed: AtomicU8,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("label", &self.label)
            .finish()
    }
}

impl Upstream {
    fn new(addr: &UpstreamAddr, tls: &rustls::ClientConfig) -> Upstream {
        let mut probe_connector = None;
        let (scheme, authority, connector) = match addr {
            UpstreamAddr::Http(uri) => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(CONNECT_TIMEOUT));
                probe_connector = Some(http.clone());
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
            scheme,
            authority,
            connect_uri,
            connector,
            pool: Arc::new(Pool::default()),
            limit: Arc::default(),
            probe_connector,
            probed: AtomicU8::new(0),
        }
    }

    /// Whether the last probe could connect; `None` before the first probe.
    pub fn reachable(&self) -> Option<bool> {
        match self.probed.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Opens (and closes) one connection to the upstream, resolving its host as the pool does,
    /// and remembers whether it worked. No request is sent: a scan engine need not answer a probe.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let connect = async {
            match (&self.addr, self.probe_connector.clone()) {
                (UpstreamAddr::Unix(path), _) => {
                    tokio::net::UnixStream::connect(path).await.is_ok()
                }
                (UpstreamAddr::Http(_), Some(mut http)) => {
                    // TCP only, even for https: reachability is the question, not the handshake.
                    let uri = Uri::from_parts({
                        let mut parts = http::uri::Parts::default();
                        parts.scheme = Some(Scheme::HTTP);
                        parts.authority = Some(self.tcp_authority());
                        parts.path_and_query = Some(PathAndQuery::from_static("/"));
                        parts
                    });
                    match uri {
                        Ok(uri) => tower_service::Service::call(&mut http, uri).await.is_ok(),
                        Err(_) => false,
                    }
                }
                (UpstreamAddr::Http(_), None) => false,
            }
        };
        let up = tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or(false);
        self.probed.store(if up { 1 } else { 2 }, Ordering::Relaxed);
        up
    }

    /// `host:port` with the scheme's default port filled in, so the probe's plain-TCP URI keeps
    /// pointing at an https upstream's port 443.
    fn tcp_authority(&self) -> Authority {
        if self.authority.port_u16().is_some() {
            return self.authority.clone();
        }
        let port = if self.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        format!("{}:{port}", self.authority.host())
            .parse()
            .unwrap_or_else(|_| self.authority.clone())
    }

    /// The `Host` header for requests to this upstream: its authority (`localhost` on a unix
    /// socket).
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends a request, whose URI is the origin form (path and query), over an idle connection or
    /// a new one; `permit` (from [`UpstreamSet::reserve`]) stays with the connection until the
    /// response body is done. A request that an idle connection refused before sending a byte (the
    /// upstream had just closed it) goes to the next one.
    pub async fn send(
        &self,
        mut req: Request<GuardedBody>,
        permit: UpstreamPermit,
    ) -> Result<Response<UpstreamBody>, SendError> {
        while let Some(mut sender) = self.pool.checkout() {
            if poll_fn(|cx| sender.poll_ready(cx)).await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.lease(resp, sender, permit)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Request(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.lease(resp, sender, permit)),
            Err(e) => Err(SendError::Request(e)),
        }
    }

    fn lease(
        &self,
        resp: Response<Incoming>,
        sender: Sender,
        permit: UpstreamPermit,
    ) -> Response<UpstreamBody> {
        let pool = Arc::clone(&self.pool);
        resp.map(|body| UpstreamBody {
            body,
            lease: Some(Lease {
                sender,
                pool,
                _permit: permit,
            }),
        })
    }

    /// Opens a new connection and starts its task.
    async fn connect(&self) -> Result<Sender, SendError> {
        let connect_error = |e: Box<dyn std::error::Error + Send + Sync>| SendError::Connect(e);
        match &self.connector {
            Connector::Http(https) => {
                let io = tower_service::Service::call(&mut https.clone(), self.connect_uri.clone())
                    .await
                    .map_err(connect_error)?;
                start(io).await
            }
            Connector::Unix(path) => {
                let io = tokio::net::UnixStream::connect(&**path)
                    .await
                    .map_err(|e| connect_error(Box::new(e)))?;
                start(TokioIo::new(io)).await
            }
        }
    }

    /// Closes idle connections past the idle timeout, and forgets ones the upstream closed.
    pub fn prune_idle(&self) {
        self.pool.prune(Instant::now());
    }
}

/// The HTTP/1.1 handshake on a new connection; the connection then runs in a task of its own,
/// which ends when the upstream closes it or when its sender is dropped.
async fn start<T>(io: T) -> Result<Sender, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Idle-connection stacks per upstream: one per worker thread (modulo this), so a connection is
/// reused on the thread whose runtime drives it.
const POOL_SLOTS: usize = 64;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `i`: the upstream connections it opens go back to its own
/// idle stack. Threads that never call it share stack 0.
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// An upstream's idle connections, per worker, most recently used last.
struct Pool {
    slots: Box<[Mutex<VecDeque<Idle>>]>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            slots: (0..POOL_SLOTS).map(|_| Mutex::default()).collect(),
        }
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Pool {
    /// The most recently used idle connection that is still open and not past the idle timeout.
    fn checkout(&self) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.mine();
        while let Some(c) = idle.pop_back() {
            if !c.sender.is_closed() && now.duration_since(c.since) < POOL_IDLE_TIMEOUT {
                return Some(c.sender);
            }
        }
        None
    }

    fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.mine();
        // The oldest idle connections are at the front: expire those first.
        while idle.front().is_some_and(|c| {
            c.sender.is_closed() || now.duration_since(c.since) >= POOL_IDLE_TIMEOUT
        }) {
            idle.pop_front();
        }
        if idle.len() >= POOL_MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back(Idle { sender, since: now });
    }

    fn prune(&self, now: Instant) {
        for slot in &*self.slots {
            let mut idle = slot.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|c| {
                !c.sender.is_closed() && now.duration_since(c.since) < POOL_IDLE_TIMEOUT
            });
        }
    }

    /// This worker's idle stack.
    fn mine(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let slot = &self.slots[WORKER.with(Cell::get) % POOL_SLOTS];
        slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection on loan to one response: back to the pool when the body has been read to the end,
/// closed if the body is dropped or fails before that. Either way its place under
/// MaxUpstreamConnections is freed with it.
struct Lease {
    sender: Sender,
    pool: Arc<Pool>,
    _permit: UpstreamPermit,
}

/// An upstream response body. It returns its connection to the pool as soon as the last frame
/// has been read, before the client has even received it.
pub struct UpstreamBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.checkin(lease.sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (204, Content-Length: 0) is never polled; its connection is reusable too.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

/// The configured upstreams, picked round robin.
#[derive(Debug, Default)]
pub struct UpstreamSet {
    list: Vec<Arc<Upstream>>,
    next: AtomicUsize,
    /// MaxUpstreamConnections, for each upstream; `None` = unbounded.
    max_connections: Option<usize>,
}

impl UpstreamSet {
    /// Builds the set for `addrs`, reusing upstreams (and their pools and in-use counts) from
    /// `previous` whose address is unchanged. `max_connections` bounds each upstream's connections
    /// in use.
    pub fn rebuild(
        addrs: &[UpstreamAddr],
        ca_file: Option<&Path>,
        max_connections: Option<usize>,
        previous: Option<&UpstreamSet>,
    ) -> Result<UpstreamSet, UpstreamError> {
        let needs_tls = addrs
            .iter()
            .any(|a| matches!(a, UpstreamAddr::Http(u) if u.scheme() == Some(&Scheme::HTTPS)));
        let tls = if needs_tls {
            client_tls(ca_file)?
        } else {
            plain_tls_placeholder()
        };
        let list = addrs
            .iter()
            .map(|addr| {
                previous
                    .and_then(|p| p.list.iter().find(|u| &u.addr == addr))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Upstream::new(addr, &tls)))
            })
            .collect();
        Ok(UpstreamSet {
            list,
            next: AtomicUsize::new(0),
            max_connections,
        })
    }

    /// Reserves a connection to `upstream` under MaxUpstreamConnections, waiting briefly (up to
    /// `deadline`) when all are in use.
    pub async fn reserve(
        &self,
        upstream: &Upstream,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<UpstreamPermit, Busy> {
        upstream.limit.reserve(self.max_connections, deadline).await
    }

    /// The next upstream in round-robin order, or `None` when the set is empty.
    pub fn pick(&self) -> Option<&Arc<Upstream>> {
        if self.list.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.list.len();
        self.list.get(i)
    }

    /// All upstreams, in config order.
    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.list
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// System roots are read once per process: they do not change under a running gateway.
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let err = |reason: String| UpstreamError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = super::tls::pem_certs(path).map_err(err)?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(err("no usable CA certificate".into()));
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Plain-http upstreams never handshake; an empty root store keeps `system_roots` unread.
fn plain_tls_placeholder() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}
