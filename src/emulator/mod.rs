//! A KAV-protocol scan-engine emulator: the backend for demos, tests and benchmarks, so none of them
//! needs a licensed Kaspersky Scan Engine. It speaks v3 (JSON) and v1 (plain text) as documented in
//! `reference/scan-engine-and-mdr.md` §4, detects the EICAR test string and a few test URLs, and keeps
//! the engine's statistics.
//!
//! - `mod.rs`: options and the accept loop (this file).
//! - `routes`: path → endpoint, request checks, envelope, the error → status mapping.
//! - `v3`, `v1`: the two protocols' bodies.
//! - `engine`: shared state and the scan operations; `scan`: what counts as a detection;
//!   `stats`: the counters; `bases`: database date and simulated updates.

mod bases;
mod engine;
mod routes;
mod scan;
mod stats;
mod v1;
mod v3;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

use crate::net::Listener;
use engine::Engine;

pub use scan::{EICAR, MALICIOUS_HOSTS, PHISHING_HOSTS};

/// How the emulator behaves. Fixed for its lifetime: the emulator has no reload.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// The only folder `scanfile` may read, with everything below it. `None` (the default) refuses
    /// every `scanfile`, so an emulator never exposes the host's files unless asked to.
    pub scan_root: Option<PathBuf>,
    /// Simulated scan time, slept before answering each scan, so benchmarks and timeout tests see a
    /// backend that takes time. Default 0.
    pub scan_delay: Duration,
    /// The largest request body accepted, in bytes; larger ones get 413. Default 104857600, the
    /// engine's MaxTCPFileSize default.
    pub max_body_bytes: u64,
    /// How long a simulated database update runs. Default 3 s: long enough to poll a progress.
    pub update_duration: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            scan_root: None,
            scan_delay: Duration::ZERO,
            max_body_bytes: 104_857_600,
            update_duration: Duration::from_secs(3),
        }
    }
}

/// Serves the emulator on `listener` until `shutdown` resolves, then stops accepting and waits for
/// in-flight connections to finish (idle keep-alive connections are closed). HTTP/1.1 and h2c.
///
/// Fails at once when `scan_root` cannot be resolved; accept errors (such as running out of file
/// descriptors) are logged and retried, so a burst of clients cannot stop the emulator.
pub async fn run(
    listener: Listener,
    opts: EmulatorOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let engine = Arc::new(Engine::new(opts)?);
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tracing::info!(listen = %listener.describe(), "emulator listening");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "emulator accept failed");
                    // Back off so a persistent error (EMFILE) does not spin a core.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let local = is_local(peer);
        let engine = Arc::clone(&engine);
        let service = service_fn(move |req| {
            let engine = Arc::clone(&engine);
            async move { Ok::<_, Infallible>(routes::handle(req, &engine, local).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "emulator connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Whether a peer may call `update/*`: loopback, or a unix socket (no address), which only local
/// processes can reach.
fn is_local(peer: Option<SocketAddr>) -> bool {
    peer.is_none_or(|addr| addr.ip().to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn local_peers() {
        assert!(is_local(None));
        assert!(is_local(Some("127.0.0.1:1".parse().unwrap())));
        assert!(is_local(Some("[::1]:1".parse().unwrap())));
        assert!(is_local(Some("[::ffff:127.0.0.1]:1".parse().unwrap())));
        assert!(!is_local(Some("192.0.2.1:1".parse().unwrap())));
    }

    /// Remote peers cannot be made over loopback in an integration test, so this drives the
    /// handler directly.
    #[tokio::test]
    async fn remote_clients_get_405_for_update() {
        let engine = Engine::new(EmulatorOptions::default()).unwrap();
        for (method, path, allow) in [
            ("POST", "/api/v3.0/update/start", "OPTIONS, POST"),
            ("GET", "/api/v3.0/update/status", "OPTIONS, GET"),
            ("GET", "/api/v3.1/update/status", "OPTIONS, GET"),
        ] {
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            let response = routes::handle(req, &engine, false).await;
            assert_eq!(response.status(), 405, "{path}");
            assert_eq!(response.headers()["allow"], allow);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                body,
                r#"{"error":"update is available to local clients only"}"#
            );
        }
        assert!(
            engine.bases.start(),
            "the remote start did not start an update"
        );
    }
}
