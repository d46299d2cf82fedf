//! The set of configured engines, kept across reloads: their groups for tenant routing, the shared
//! queue, and the passive ejection rule that needs the whole fleet (at most half ejected).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::uri::Scheme;
use http::HeaderValue;
use tokio::time::Instant;

use super::health::{now_ms, CONSECUTIVE_FAILURES};
use super::queue::{Acquired, EnginePermit, Queue, QueueLimits, Refusal};
use super::select::Group;
use super::tls::{client_tls, plain_tls_placeholder};
use super::{Upstream, UpstreamError};
use crate::auth::store::header_value;
use crate::config::{UpstreamAddr, UpstreamSettings};
use crate::metrics::Metrics;

/// The configured engines and how requests reach them.
#[derive(Debug)]
pub struct UpstreamSet {
    list: Vec<Arc<Upstream>>,
    /// Engines without `Tenants`: everyone else's.
    default_group: Arc<Group>,
    /// Tenant (as `X-Scangate-Tenants` spells it) → the engines that name it.
    tenants: HashMap<Vec<u8>, Arc<Group>>,
    queue: Arc<Queue>,
    limits: QueueLimits,
}

impl Default for UpstreamSet {
    fn default() -> UpstreamSet {
        UpstreamSet {
            list: Vec::new(),
            default_group: Arc::new(Group::new(Vec::new())),
            tenants: HashMap::new(),
            queue: Arc::default(),
            limits: QueueLimits {
                timeout: UpstreamSettings::default().queue_timeout,
                max: UpstreamSettings::default().max_queue,
            },
        }
    }
}

/// An outcome the passive health rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head below 500.
    Answered,
    /// No connection, a reset or garbage before the head, or a 5xx.
    Failed,
}

impl UpstreamSet {
    /// Builds the set for `addrs` with `settings`, reusing engines (their pools, health and
    /// in-flight counts) and the queue from `previous` where the address is unchanged.
    pub fn rebuild(
        addrs: &[UpstreamAddr],
        ca_file: Option<&Path>,
        settings: &UpstreamSettings,
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
        let queue = previous.map_or_else(Arc::default, |p| Arc::clone(&p.queue));
        let mut list = Vec::with_capacity(addrs.len());
        let mut default = Vec::new();
        let mut by_tenant: HashMap<Vec<u8>, Vec<Arc<Upstream>>> = HashMap::new();
        for (i, addr) in addrs.iter().enumerate() {
            let opts = settings.engine(i);
            let kept = previous.and_then(|p| p.list.iter().find(|u| &u.addr == addr));
            let engine = kept
                .cloned()
                .unwrap_or_else(|| Arc::new(Upstream::new(addr, &tls, Arc::clone(&queue))));
            // Live tuning of a kept engine: the next pick reads the new values.
            engine.set_limits(opts.max_sessions.or(settings.max_sessions), opts.weight);
            if opts.tenants.is_empty() {
                default.push(Arc::clone(&engine));
            }
            for tenant in &opts.tenants {
                let key = header_value(tenant).as_bytes().to_vec();
                by_tenant.entry(key).or_default().push(Arc::clone(&engine));
            }
            list.push(engine);
        }
        let tenants = by_tenant
            .into_iter()
            .map(|(k, v)| (k, Arc::new(Group::new(v))))
            .collect();
        let set = UpstreamSet {
            list,
            default_group: Arc::new(Group::new(default)),
            tenants,
            queue,
            limits: QueueLimits {
                timeout: settings.queue_timeout,
                max: settings.max_queue,
            },
        };
        // A raised cap or a new engine may serve waiters at once.
        set.wake();
        Ok(set)
    }

    /// The engines a principal with `tenants` (its `X-Scangate-Tenants` value) may use: those of
    /// its tenants that have engines, else the default group.
    pub fn group_for(&self, tenants: Option<&HeaderValue>) -> Cow<'_, Arc<Group>> {
        let Some(tenants) = tenants.filter(|_| !self.tenants.is_empty()) else {
            // Borrowed: no shared count is touched on the common path.
            return Cow::Borrowed(&self.default_group);
        };
        let mut found: Vec<&Arc<Group>> = tenants
            .as_bytes()
            .split(|&b| b == b',')
            .filter_map(|t| self.tenants.get(t))
            .collect();
        match found.len() {
            0 => Cow::Borrowed(&self.default_group),
            1 => Cow::Borrowed(found[0]),
            _ => {
                // Several tenants with engines of their own: the union, each engine once.
                let mut engines: Vec<Arc<Upstream>> = Vec::new();
                for g in found.drain(..) {
                    for e in g.engines() {
                        if !engines.iter().any(|x| Arc::ptr_eq(x, e)) {
                            engines.push(Arc::clone(e));
                        }
                    }
                }
                Cow::Owned(Arc::new(Group::new(engines)))
            }
        }
    }

    /// A session on the best engine of `group` but `exclude`, waiting in the queue when all are
    /// full (see [`Queue::acquire`]).
    pub async fn acquire(
        &self,
        group: &Arc<Group>,
        exclude: Option<&Arc<Upstream>>,
        deadline: Option<Instant>,
    ) -> Result<Acquired, Refusal> {
        self.queue
            .acquire(group, exclude, self.limits, deadline)
            .await
    }

    /// A session on `engine` if it has one free now (for an active check), never queued.
    pub fn try_session(&self, engine: &Arc<Upstream>) -> Option<EnginePermit> {
        engine
            .try_take_session()
            .then(|| EnginePermit::new(Arc::clone(engine)))
    }

    /// Serves waiters from free sessions (an engine came back, a cap was raised).
    pub fn wake(&self) {
        if !self.queue.is_empty() {
            self.queue.dispatch();
        }
    }

    /// Requests waiting for a session.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Counts a request's outcome on `engine` for passive ejection: after
    /// [`CONSECUTIVE_FAILURES`] failures in a row it is ejected, unless half the fleet already is.
    pub fn record(&self, engine: &Arc<Upstream>, outcome: Outcome, metrics: &Metrics) {
        let now = now_ms();
        match outcome {
            Outcome::Answered => engine.health.succeeded(now),
            Outcome::Failed => {
                if engine.health.failed() < CONSECUTIVE_FAILURES || engine.health.is_ejected(now) {
                    return;
                }
                let ejected = self
                    .list
                    .iter()
                    .filter(|u| u.health.is_ejected(now))
                    .count();
                if (ejected + 1) * 2 > self.list.len() {
                    return;
                }
                let period = engine.health.eject(now);
                metrics.engines.ejection(&engine.label);
                tracing::warn!(
                    upstream = &*engine.label,
                    seconds = period.as_secs(),
                    "scan engine ejected after {CONSECUTIVE_FAILURES} failed requests in a row"
                );
            }
        }
    }

    /// All engines, in config order.
    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.list
    }

    /// Engines active checks call up.
    pub fn up_count(&self) -> usize {
        self.list.iter().filter(|u| u.health.is_up()).count()
    }

    /// The in-flight requests of every engine, for tests and `/config`.
    pub fn in_flight(&self) -> Vec<usize> {
        let load = |u: &Arc<Upstream>| u.in_flight.load(Ordering::SeqCst);
        self.list.iter().map(load).collect()
    }
}
