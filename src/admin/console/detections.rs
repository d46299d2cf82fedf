//! The Detections page: the latest detections the scan audit kept in memory
//! ([`crate::audit::Recent`]), filterable by credential and tenant, with each credential's count
//! over the last 24 hours. Read-only. The audit log is the durable record; this list holds the
//! latest `RecentDetections` and starts empty after a restart. Objects appear as the audit line
//! has them (none with `RedactObjects`), and never content or a token.

use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup};

use super::pages::{self, Frame};
use super::Form;
use crate::audit::Detection;
use crate::state::Gateway;

/// The most rows the page lists, newest first.
pub const PAGE_ROWS: usize = 200;

/// The filters, from the query string (trimmed; empty = no filter).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Exact credential Name.
    pub credential: String,
    /// Exact tenant.
    pub tenant: String,
}

impl Filter {
    /// Reads `credential` and `tenant` from `q`.
    pub fn from_query(q: &Form) -> Filter {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        Filter {
            credential: get("credential"),
            tenant: get("tenant"),
        }
    }

    fn keeps(&self, d: &Detection) -> bool {
        (self.credential.is_empty() || *d.credential == *self.credential)
            && (self.tenant.is_empty() || d.tenants.contains(&self.tenant))
    }
}

/// The page.
pub fn page(f: &Frame<'_>, gw: &Gateway, q: &Form, now: u64) -> Markup {
    let filter = Filter::from_query(q);
    let rows = gw.recent.latest(PAGE_ROWS, |d| filter.keeps(d));
    let counts = gw.recent.per_credential(now);
    let audit = gw.snapshot.load().settings.gateway.audit.clone();
    pages::page(
        "Detections",
        f,
        html! {
            h1 { "Detections" }
            @if !audit.enabled {
                p.banner id="audit-off" { "The scan audit is off (GatewaySettings/Audit/Enabled is 0): no verdicts are read." }
            }
            h2 { "Last 24 hours, per credential" }
            @if counts.is_empty() {
                p id="no-counts" { "No detections in the last 24 hours." }
            } @else {
                table id="counts" {
                    thead { tr { th { "Credential" } th { "Detections" } } }
                    tbody {
                        @for (name, n) in &counts {
                            tr {
                                td { a href=(format!("/console/detections?credential={}", encode(name))) { (display_name(name)) } }
                                td { (n) }
                            }
                        }
                    }
                }
            }
            h2 { "Latest" }
            form id="filter" method="get" action="/console/detections" {
                label { "Credential " input type="text" name="credential" value=(filter.credential); }
                " "
                label { "Tenant " input type="text" name="tenant" value=(filter.tenant); }
                " "
                button type="submit" { "Filter" }
                @if filter != Filter::default() {
                    " " a href="/console/detections" { "Clear" }
                }
            }
            @if rows.is_empty() {
                p id="none" { "No detections kept" @if filter != Filter::default() { " that match" } "." }
            } @else {
                table id="detections" {
                    thead { tr {
                        th { "Time (UTC)" } th { "Credential" } th { "Tenants" } th { "Client" }
                        th { "Engine" } th { "Call" } th { "Object" } th { "Result" } th { "Detection" }
                    } }
                    tbody {
                        @for d in &rows {
                            tr {
                                td { (time(d.at)) }
                                td { (display_name(&d.credential)) " " span.muted { (d.kind) } }
                                td { (d.tenants.join(", ")) }
                                td { @match d.client { Some(c) => (c), None => "unix" } }
                                td { @if let Some(e) = &d.engine { code { (e) } } }
                                td { (d.call) " " span.muted { (d.version) } }
                                td { @match &d.object { Some(o) => code { (o) }, None => span.muted { "—" } } }
                                td class=(format!("result-{}", d.result.as_str())) { (d.result.as_str()) }
                                td { @if let Some(n) = &d.detection { (n) } @else if let Some(r) = &d.reason { (r) } }
                            }
                        }
                    }
                }
            }
            p.muted {
                "Kept in memory: the latest " (audit.recent_detections)
                " (RecentDetections); the scangate::audit log is the durable record. Read-only."
            }
        },
    )
}

/// A credential's Name, or a note when UseAccessToken is 0 and there is none.
fn display_name(name: &str) -> &str {
    match name {
        "" => "(no token)",
        name => name,
    }
}

/// `2026-12-02 04:10:22`.
fn time(at: u64) -> String {
    let ts = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string();
    ts.trim_end_matches('Z').replace('T', " ")
}

/// A query-string value, percent-encoded.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_and_names_are_encoded() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(encode("a b&c"), "a+b%26c");
        assert_eq!(display_name(""), "(no token)");
    }
}
