//! The set of configured upstreams, kept across reloads, and the pick of one for a request.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::uri::Scheme;

use super::tls::{client_tls, plain_tls_placeholder};
use super::{Upstream, UpstreamError};
use crate::config::UpstreamAddr;
use crate::proxy::upstream_limit::{Busy, UpstreamPermit};

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
