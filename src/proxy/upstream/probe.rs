//! Reachability: one connection opened (and closed) to an upstream, no request sent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;

use super::Upstream;
use crate::config::UpstreamAddr;

impl Upstream {
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
}
