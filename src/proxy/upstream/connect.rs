//! Opening connections to an engine, and keeping its open connections (idle ones included) to
//! `MaxSessions`: a Scan Engine counts every open connection against `MaxHTTPSessionsNum` and
//! leaves the next in its backlog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::connection::Connection;
use super::{Connector, SendError, Upstream};

impl Upstream {
    /// This worker's newest idle connection; at the engine's cap, another worker's, since a new
    /// connection would wait in the engine's backlog behind the idle ones (a Scan Engine counts
    /// every open connection against `MaxHTTPSessionsNum`).
    pub(super) fn idle_connection(&self) -> Option<Connection> {
        self.pool.checkout().or_else(|| {
            let at_cap = self.open_connections() >= self.max_sessions();
            at_cap.then(|| self.pool.borrow_other()).flatten()
        })
    }

    /// A place for one more open connection, if fewer than `MaxSessions` are open.
    pub(super) fn reserve_connection(&self) -> Option<OpenGuard> {
        let max = self.max_sessions();
        let open = &self.conns.open;
        let reserved = open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        });
        reserved.ok().map(|_| OpenGuard(Arc::clone(&self.conns)))
    }

    /// Opens a new connection in `slot` (given back if the connect fails) and starts its task.
    /// A place past the cap: after [`ROOM_WAIT`] a request opens its connection anyway (it is
    /// never held up by the count of sockets alone).
    pub(super) fn force_connection(&self) -> OpenGuard {
        self.conns.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(Arc::clone(&self.conns))
    }

    pub(super) async fn connect(&self, slot: OpenGuard) -> Result<Connection, SendError> {
        let connect_error = |e: Box<dyn std::error::Error + Send + Sync>| SendError::Connect(e);
        match &self.connector {
            Connector::Http(https) => {
                let io = tower_service::Service::call(&mut https.clone(), self.connect_uri.clone())
                    .await
                    .map_err(connect_error)?;
                start(io, slot).await
            }
            Connector::Unix(path) => {
                let io = tokio::net::UnixStream::connect(&**path)
                    .await
                    .map_err(|e| connect_error(Box::new(e)))?;
                start(TokioIo::new(io), slot).await
            }
        }
    }
}

/// The HTTP/1.1 handshake on a new connection, which `open` counts while it is open.
async fn start<T>(io: T, open: OpenGuard) -> Result<Connection, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(io).await?;
    Ok(Connection::new(sender, conn, open))
}

/// An engine's open connections, idle or busy, on every worker: a Scan Engine counts each against
/// `MaxHTTPSessionsNum` and leaves the rest in its backlog, so they are kept to `MaxSessions`.
#[derive(Debug, Default)]
pub(super) struct OpenConnections {
    pub(super) open: AtomicUsize,
}

/// One open (or opening) connection in [`OpenConnections`], until it is dropped.
pub(super) struct OpenGuard(Arc<OpenConnections>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a request at its engine's connection cap waits for an idle connection to use.
pub(super) const ROOM_WAIT: Duration = Duration::from_millis(100);
