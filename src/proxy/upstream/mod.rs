//! Upstream selection, and the keep-alive connections that reach each backend.
//!
//! Each upstream keeps its own stack of idle HTTP/1.1 connections ([`Pool`]). A request takes the
//! most recently used one (its socket is the warmest), sends over it, and the response body puts it
//! back the moment its last byte has been read. A reload that keeps an upstream keeps its pool
//! (see [`UpstreamSet::rebuild`]), so warm connections survive config changes.
//!
//! Split by concern: [`pool`] (idle connections and leases), [`probe`] (reachability), [`set`]
//! (the configured upstreams and the pick), [`tls`] (the client TLS config).
//!
//! This replaces hyper-util's general-purpose pooled client: one upstream is one host, so the pool
//! needs no key, no connection racing and no HTTP/2; a profile put the general client at 45 % of
//! scangate's user time (see benches/RESULTS.md).

mod pool;
mod probe;
mod set;
mod tls;

use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use pool::Pool;
pub use pool::{set_worker, UpstreamBody};
pub use set::UpstreamSet;

use super::body::GuardedBody;
use super::upstream_limit::{UpstreamLimit, UpstreamPermit};
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
        pool::lease(resp, sender, Arc::clone(&self.pool), permit)
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
