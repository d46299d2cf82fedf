//! The Engines page: each scan engine's state, sessions in flight against its cap, weight and
//! tenants, with the gateway's queue and the count of engines up. Read-only. It reads the same
//! accessors as `/config` ([`crate::admin::config_page`]), and shows each engine by its label,
//! which holds scheme, host and port only (the config refuses an upstream with user info).

use maud::{html, Markup};

use super::pages::{self, Frame};
use crate::proxy::upstream::health::now_ms;
use crate::state::Gateway;

/// One engine as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineRow {
    /// The upstream's label: `http://host:port` or `unix:/path`.
    pub label: String,
    /// `up`, `down` or `ejected`.
    pub state: &'static str,
    /// Requests in flight now.
    pub in_flight: usize,
    /// `MaxSessions` in force; `None` = no cap.
    pub max_sessions: Option<usize>,
    /// `Weight` in force.
    pub weight: usize,
    /// `Tenants`; empty = the default group.
    pub tenants: Vec<String>,
    /// The last active check: `Some(true)` passed, `Some(false)` failed, `None` none yet.
    pub last_check: Option<bool>,
}

/// What the page shows of the whole gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engines {
    /// The engines, in config order.
    pub rows: Vec<EngineRow>,
    /// Engines active checks call up.
    pub up: usize,
    /// Requests waiting for a session.
    pub queue: usize,
    /// `HealthCheckIntervalMs` in milliseconds; `None` = active checks off.
    pub check_interval_ms: Option<u128>,
    /// `HealthCheckPath`.
    pub check_path: String,
}

/// The engines of the snapshot in force now.
pub fn engines(gw: &Gateway) -> Engines {
    let snap = gw.snapshot.load();
    let settings = &snap.settings.gateway.upstream;
    let now = now_ms();
    let rows = (snap.upstreams.all().iter().enumerate())
        .map(|(i, u)| {
            let max = u.max_sessions();
            EngineRow {
                label: u.label.to_string(),
                state: u.health.state(now).as_str(),
                in_flight: u.in_flight(),
                max_sessions: (max != usize::MAX).then_some(max),
                weight: u.weight(),
                // The set is built from the upstreams in config order, as the options are.
                tenants: settings.engine(i).tenants,
                last_check: u.health.last_check(),
            }
        })
        .collect();
    Engines {
        rows,
        up: snap.upstreams.up_count(),
        queue: snap.upstreams.queue_len(),
        check_interval_ms: settings.health_check_interval.map(|d| d.as_millis()),
        check_path: settings.health_check_path.clone(),
    }
}

/// The page.
pub fn page(frame: &Frame<'_>, e: &Engines) -> Markup {
    pages::page(
        "Engines",
        frame,
        html! {
            h1 { "Engines " span.muted { "(" (e.rows.len()) ")" } }
            p id="summary" {
                "Engines up: " strong id="up" { (e.up) } " of " (e.rows.len())
                ". Requests waiting in the queue: " strong id="queue" { (e.queue) } "."
            }
            p id="checks" {
                @match e.check_interval_ms {
                    Some(ms) => { "Active health checks: on, GET " code { (e.check_path) } " every " (ms) " ms." }
                    None => { "Active health checks: off (HealthCheckIntervalMs is 0); failed requests still eject an engine." }
                }
            }
            table id="engines" {
                thead { tr {
                    th { "Engine" } th { "State" } th { "In flight / MaxSessions" }
                    th { "Weight" } th { "Tenants" } th { "Last check" }
                } }
                tbody {
                    @for r in &e.rows {
                        tr {
                            td { code { (r.label) } }
                            td class=(format!("engine-{}", r.state)) { (r.state) }
                            td { (r.in_flight) " / " @match r.max_sessions { Some(m) => (m), None => "no cap" } }
                            td { (r.weight) }
                            td { @if r.tenants.is_empty() { "default group" } @else { (r.tenants.join(", ")) } }
                            td { (last_check(r.last_check, e.check_interval_ms.is_some())) }
                        }
                    }
                }
            }
            p.muted { "Read-only. Reload the page for fresh figures." }
        },
    )
}

fn last_check(last: Option<bool>, checks_on: bool) -> &'static str {
    match (last, checks_on) {
        (Some(true), _) => "pass",
        (Some(false), _) => "fail",
        (None, true) => "none yet",
        (None, false) => "checks off",
    }
}
