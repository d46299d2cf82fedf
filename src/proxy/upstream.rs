//! Upstream selection and the pooled, keep-alive clients that reach each backend.
//!
//! Each upstream owns its own hyper-util connection pool. A reload that keeps an upstream keeps its
//! pool (see [`UpstreamSet::rebuild`]), so warm connections survive config changes.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::GuardedBody;
use crate::config::UpstreamAddr;

/// Idle upstream connections kept per upstream host.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
/// How long an idle upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

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

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, GuardedBody>;
type UnixClient = Client<UnixConnector, GuardedBody>;

enum Transport {
    Http(HttpsClient),
    Unix(UnixClient),
}

/// One backend and its pool.
pub struct Upstream {
    /// The configured address.
    pub addr: UpstreamAddr,
    /// A printable form for logs and metric labels.
    pub label: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    transport: Transport,
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
        let (scheme, authority, transport) = match addr {
            UpstreamAddr::Http(uri) => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(Duration::from_secs(5)));
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
                    Transport::Http(pool_builder().build(https)),
                )
            }
            UpstreamAddr::Unix(path) => (
                Scheme::HTTP,
                Authority::from_static("localhost"),
                Transport::Unix(pool_builder().build(UnixConnector(Arc::from(path.as_path())))),
            ),
        };
        Upstream {
            label: Arc::from(addr.to_string()),
            addr: addr.clone(),
            scheme,
            authority,
            transport,
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

    /// The URI for a request to this upstream: its scheme and authority, the client's path and query.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).expect("scheme, authority and path make a URI")
    }

    /// Sends a request over the pool.
    pub async fn send(
        &self,
        req: Request<GuardedBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match &self.transport {
            Transport::Http(c) => c.request(req).await,
            Transport::Unix(c) => c.request(req).await,
        }
    }
}

fn pool_builder() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    b
}

/// The configured upstreams, picked round robin.
#[derive(Debug, Default)]
pub struct UpstreamSet {
    list: Vec<Arc<Upstream>>,
    next: AtomicUsize,
}

impl UpstreamSet {
    /// Builds the set for `addrs`, reusing upstreams (and their pools) from `previous` whose address
    /// is unchanged.
    pub fn rebuild(
        addrs: &[UpstreamAddr],
        ca_file: Option<&Path>,
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
        })
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

/// Connects every request to one unix socket path, whatever the URI says.
#[derive(Clone)]
struct UnixConnector(Arc<Path>);

impl tower_service::Service<Uri> for UnixConnector {
    type Response = UnixConn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UnixConn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = Arc::clone(&self.0);
        Box::pin(async move {
            Ok(UnixConn(TokioIo::new(
                tokio::net::UnixStream::connect(&*path).await?,
            )))
        })
    }
}

/// A unix-socket connection the hyper-util pool can hold.
struct UnixConn(TokioIo<tokio::net::UnixStream>);

impl Connection for UnixConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UnixConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UnixConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
