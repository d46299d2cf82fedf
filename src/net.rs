//! Listeners and streams over TCP or a unix socket, shared by the gateway, the admin endpoint and the
//! emulator, so each of them accepts both without an enum of its own.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Pause after a failed accept (EMFILE and friends) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound listener. Bind it before calling a `run()` so tests can use port 0.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix socket listener, with its path (removed again on drop of the process, not here).
    Unix(UnixListener, PathBuf),
}

/// A bound listener's socket outside any runtime, to be opened on another one (one per worker
/// thread; every copy accepts from the same socket).
#[derive(Debug)]
pub enum SharedListener {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A unix socket listener, with its path.
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

impl SharedListener {
    /// Registers this copy with the current runtime.
    pub fn open(self) -> io::Result<Listener> {
        Ok(match self {
            SharedListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            SharedListener::Unix(l, path) => Listener::Unix(UnixListener::from_std(l)?, path),
        })
    }
}

/// An accepted connection.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
}

impl Listener {
    /// Binds a TCP address.
    pub async fn bind_tcp(addr: SocketAddr) -> io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::bind(addr).await?))
    }

    /// Binds a unix socket, replacing a stale socket file left by an earlier run.
    pub fn bind_unix(path: &Path) -> io::Result<Listener> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        Ok(Listener::Unix(UnixListener::bind(path)?, path.to_owned()))
    }

    /// Accepts one connection. The address is `None` for unix sockets.
    pub async fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Small request/response exchanges: do not wait for Nagle.
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Some(peer)))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), None))
            }
        }
    }

    /// Accepts the next connection, logging and backing off on errors instead of spinning or
    /// giving up, so running out of file descriptors never stops a server. Cancel-safe.
    pub async fn accept_retrying(&self) -> (Stream, Option<SocketAddr>) {
        loop {
            match self.accept().await {
                Ok(accepted) => return accepted,
                Err(e) => {
                    tracing::warn!(listen = self.describe(), error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// `n` copies of the socket (duplicated descriptors) for `n` worker threads. The listener
    /// itself leaves its runtime.
    pub fn share(self, n: usize) -> io::Result<Vec<SharedListener>> {
        let first = match self {
            Listener::Tcp(l) => SharedListener::Tcp(l.into_std()?),
            Listener::Unix(l, path) => SharedListener::Unix(l.into_std()?, path),
        };
        let mut copies = Vec::with_capacity(n);
        for _ in 1..n {
            copies.push(match &first {
                SharedListener::Tcp(l) => SharedListener::Tcp(l.try_clone()?),
                SharedListener::Unix(l, path) => SharedListener::Unix(l.try_clone()?, path.clone()),
            });
        }
        copies.push(first);
        Ok(copies)
    }

    /// The bound TCP address, for tests that bind port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// A printable form: `127.0.0.1:8080` or `unix:/path`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp:?".into()),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
