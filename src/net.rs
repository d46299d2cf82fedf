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

/// How the worker threads take new connections from one TCP listener (`serve --accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accept {
    /// A listening socket per worker, all bound to the address with `SO_REUSEPORT`: the kernel
    /// hashes each new connection to one of them, so the workers get even shares whatever each
    /// is doing when a client connects.
    #[default]
    ReusePort,
    /// One listening socket shared by every worker: each new connection goes to whichever
    /// worker accepts first, so a worker that is busy when a burst of clients connects can be
    /// left with none of their keep-alive connections (seen: all 64 on one of two workers).
    Shared,
}

/// A bound listener's socket outside any runtime, to be opened on another one (one per worker
/// thread).
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

    /// Listening sockets for `n` worker threads, taking connections as `accept` says. With
    /// [`Accept::ReusePort`] this socket gets `SO_REUSEPORT` and `n - 1` more sockets are bound
    /// beside it (its backlog is kept: nothing connecting meanwhile is lost); a unix socket, or
    /// a system that refuses the option, falls back to [`Accept::Shared`].
    pub fn share_as(self, n: usize, accept: Accept) -> io::Result<Vec<SharedListener>> {
        let Listener::Tcp(first) = &self else {
            return self.share(n);
        };
        if n < 2 || accept == Accept::Shared {
            return self.share(n);
        }
        let addr = first.local_addr()?;
        if let Err(e) = socket2::SockRef::from(first).set_reuse_port(true) {
            tracing::warn!(error = %e, "SO_REUSEPORT refused; the workers share one listening socket");
            return self.share(n);
        }
        let mut copies = Vec::with_capacity(n);
        for _ in 1..n {
            copies.push(SharedListener::Tcp(reuse_port_listener(addr)?));
        }
        let Listener::Tcp(first) = self else {
            unreachable!("matched above")
        };
        copies.insert(0, SharedListener::Tcp(first.into_std()?));
        Ok(copies)
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

/// Backlog of each listening socket, as tokio's `TcpListener::bind` sets it.
const BACKLOG: i32 = 1024;

/// Another listening socket on `addr`, which a socket with `SO_REUSEPORT` holds already.
fn reuse_port_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
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
