//! Upstream reachability for `/readyz` and `scangate_upstream_up`: every [`PROBE_INTERVAL`], and
//! right after each applied reload, open one connection to each upstream (no request is sent).
//! Each round also closes the upstreams' idle connections that are past their idle timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::state::Gateway;

/// Time between probe rounds. Readiness follows an upstream dying or returning within about this.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A connect that takes longer than this counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes forever; the admin listener aborts it when it stops.
pub async fn run(gw: Arc<Gateway>) {
    loop {
        round(&gw).await;
        tokio::select! {
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
            () = gw.reloaded.notified() => {}
        }
    }
}

/// Probes every upstream of the current snapshot once, concurrently, and logs changes.
pub async fn round(gw: &Arc<Gateway>) {
    let snap = gw.snapshot.load_full();
    let mut probes = JoinSet::new();
    for upstream in snap.upstreams.all() {
        let (upstream, gw) = (Arc::clone(upstream), Arc::clone(gw));
        // Idle upstream connections past their timeout are closed here rather than on next use.
        upstream.prune_idle();
        probes.spawn(async move {
            let before = upstream.reachable();
            let up = upstream.probe(PROBE_TIMEOUT).await;
            // A reload may have removed it (and its series) during the probe.
            let current = gw.snapshot.load();
            if current
                .upstreams
                .all()
                .iter()
                .any(|u| Arc::ptr_eq(u, &upstream))
            {
                gw.metrics.upstream_up(&upstream.label, up);
            }
            match (before, up) {
                (Some(true), false) => {
                    tracing::warn!(upstream = &*upstream.label, "upstream unreachable")
                }
                (None, false) => {
                    tracing::warn!(upstream = &*upstream.label, "upstream not reachable yet")
                }
                (Some(false), true) => {
                    tracing::info!(upstream = &*upstream.label, "upstream reachable again")
                }
                _ => {}
            }
        });
    }
    while probes.join_next().await.is_some() {}
}
