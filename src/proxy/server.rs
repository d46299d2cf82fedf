//! The client listener: accept, cap concurrent connections, serve HTTP/1.1 and h2c with hyper, and
//! drain gracefully on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;

use super::handler::{handle, Downstream};
use crate::net::Listener;
use crate::state::Gateway;

/// Time allowed to send a complete request head. Slow clients are cut off after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head, in bytes, HTTP/1.1 (hyper's read buffer cap).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves the gateway on `listener` until `shutdown` resolves, then stops accepting and waits up to
/// `drain` for in-flight connections.
pub async fn run(
    listener: Listener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let settings = gw.snapshot.load().settings.server.clone();
    let sessions = Arc::new(Semaphore::new(settings.max_sessions));
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(connection_builder(&settings.keep_alive));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&sessions).acquire_owned() => permit.expect("semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let downstream = Downstream { peer, https: false };
        let gw = Arc::clone(&gw);
        let service = service_fn(move |req| handle(Arc::clone(&gw), downstream, req));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("listener closed; draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
    Ok(())
}

fn connection_builder(keep_alive: &crate::config::KeepAlive) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // Without a timer hyper silently disables the header read timeout.
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(keep_alive.enabled);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    b
}
