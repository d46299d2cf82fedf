//! The console's pages as maud templates. maud escapes every value it splices in, so a Name or a
//! Description with markup in it renders as text.

use maud::{html, Markup, DOCTYPE};

use super::charts;
use super::session::Session;
use crate::metrics::minutes::MinuteSeries;

/// One row of the All tokens list.
#[derive(Debug, Clone)]
pub struct Row {
    /// `token` or `connection`.
    pub kind: &'static str,
    /// `Name`.
    pub name: String,
    /// The role, or "full access" for a token without one.
    pub role: String,
    /// Tenants, comma-separated ("Root without tenants" included).
    pub tenants: String,
    /// The named tenants alone, comma-separated, for the edit form.
    pub named_tenants: String,
    /// A connection's "Root without tenants".
    pub root_tenant: bool,
    /// enabled, disabled, pending activation, active, revoked.
    pub state: &'static str,
    /// A token's Value prefix or a connection's client ID.
    pub fingerprint: String,
    /// `Description`.
    pub description: String,
    /// Requests accepted since start.
    pub requests: u64,
    /// Unix seconds of the last request, 0 for none.
    pub last_used: u64,
    /// 401, 403 and 429 answers in the last hour.
    pub denied: [u64; 3],
    /// The limits in force (`5/s burst 10, 1000/day`), `-` for none.
    pub limits: String,
}

/// What every page frame needs.
pub struct Frame<'a> {
    /// The signed-in session, when there is one.
    pub session: Option<(&'a Session, String)>,
    /// Why edits are off, when the config is read-only.
    pub read_only: Option<String>,
}

/// The page frame: header, banner, body.
pub fn page(title: &str, frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — scangate console" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header {
                    strong { "scangate" }
                    @if let Some((session, csrf)) = &frame.session {
                        a href="/console/" { "All tokens" }
                        a href="/console/add" { "Add" }
                        a href="/console/engines" { "Engines" }
                        a href="/console/detections" { "Detections" }
                        form.inline method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            span.muted { "Signed in as " (session.name) " " }
                            button type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                main {
                    @if let Some(why) = &frame.read_only {
                        p.banner id="read-only" { strong { "Read-only: " } (why) }
                    }
                    (body)
                }
            }
        }
    }
}

/// The sign-in form; `error` is the one refusal message.
pub fn sign_in(frame: &Frame<'_>, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        frame,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error id="error" { (e) } }
            form method="post" action="/console/login" {
                label { "Administrator token or access token"
                    br; input type="password" name="token" id="token" autocomplete="off" required; }
                button type="submit" id="sign-in" { "Sign in" }
            }
            p.muted { "The token is checked and forgotten: the session cookie holds only its Name." }
        },
    )
}

/// Sort keys the list accepts.
pub const SORTS: [&str; 5] = ["name", "kind", "state", "requests", "last_used"];

/// The All tokens list with the gateway's chart above it.
#[allow(clippy::too_many_arguments)]
pub fn list(
    frame: &Frame<'_>,
    rows: &[Row],
    total: usize,
    q: &str,
    sort: &str,
    page_no: usize,
    pages: usize,
    gateway: &MinuteSeries,
    now: u64,
    notice: Option<&str>,
) -> Markup {
    let link = |p: usize, s: &str| format!("/console/?q={}&sort={}&page={}", enc(q), s, p);
    page(
        "All tokens",
        frame,
        html! {
            @if let Some(n) = notice { p.done id="notice" { (n) } }
            (charts::requests_per_minute("Gateway", gateway, now))
            h1 { "All tokens " span.muted { "(" (total) ")" } }
            form method="get" action="/console/" {
                input type="search" name="q" id="q" value=(q) placeholder="Search by name or tenant";
                input type="hidden" name="sort" value=(sort);
                " " button type="submit" { "Search" }
                " " a href="/console/add" id="add" { "Add" }
            }
            table id="tokens" {
                thead { tr {
                    @for (key, label) in [("name", "Name"), ("kind", "Kind")] { th { a href=(link(1, key)) { (label) } } }
                    th { "Role" } th { "Tenants" }
                    th { a href=(link(1, "state")) { "State" } }
                    th { "Fingerprint" } th { "Description" }
                    th { a href=(link(1, "requests")) { "Requests" } }
                    th { a href=(link(1, "last_used")) { "Last used" } }
                    th { "401 / 403 / 429 (1 h)" }
                } }
                tbody {
                    @for r in rows {
                        tr data-search=(format!("{} {}", r.name, r.tenants).to_lowercase()) {
                            td { a href=(format!("/console/item?name={}", enc(&r.name))) { (r.name) } }
                            td { (r.kind) } td { (r.role) } td { (r.tenants) }
                            td class=(state_class(r.state)) { (r.state) }
                            td { code { (r.fingerprint) } } td { (r.description) }
                            td { (r.requests) } td { (ago(r.last_used, now)) }
                            td { (r.denied[0]) " / " (r.denied[1]) " / " (r.denied[2]) }
                        }
                    }
                }
            }
            @if pages > 1 {
                p.pager {
                    "Page " (page_no) " of " (pages) ": "
                    @if page_no > 1 { a href=(link(page_no - 1, sort)) rel="prev" { "Previous" } }
                    @if page_no < pages { a href=(link(page_no + 1, sort)) rel="next" id="next" { "Next" } }
                }
            }
        },
    )
}

/// One item: its facts, its chart, and its actions.
pub fn item(
    frame: &Frame<'_>,
    row: &Row,
    chart: Option<Markup>,
    csrf: &str,
    notice: Option<&str>,
) -> Markup {
    let token = row.kind == "token";
    let off = frame.read_only.is_some();
    let action = |act: &str, label: &str, confirm: Option<&str>| {
        html! {
            form.inline method="post" action="/console/action" data-confirm=[confirm] {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="name" value=(row.name);
                input type="hidden" name="kind" value=(row.kind);
                input type="hidden" name="action" value=(act);
                @if confirm.is_some() {
                    label.inline { input type="checkbox" name="confirm" value="yes" required; " confirm" }
                }
                button type="submit" id=(format!("do-{act}")) disabled[off] { (label) }
            }
            " "
        }
    };
    page(
        &row.name,
        frame,
        html! {
            @if let Some(n) = notice { p.done id="notice" { (n) } }
            h1 { (row.name) " " span.muted { "(" (row.kind) ")" } }
            table { tbody {
                tr { th { "State" } td class=(state_class(row.state)) id="state" { (row.state) } }
                tr { th { "Role" } td { (row.role) } }
                tr { th { "Tenants" } td { (row.tenants) } }
                tr { th { @if token { "Fingerprint" } @else { "Client ID" } } td { code { (row.fingerprint) } } }
                tr { th { "Description" } td { (row.description) } }
                tr { th { "Limits" } td id="limits" { (row.limits) } }
                tr { th { "Requests" } td { (row.requests) } }
            } }
            @if let Some(chart) = chart { (chart) }
            h2 { "Actions" }
            p {
                @if row.state == "disabled" { (action("enable", "Enable", None)) }
                @else { (action("disable", "Disable", None)) }
                @if token { (action("rotate", "Rotate", Some("Rotate: the current token stops working."))) }
                @else {
                    (action("refresh", "Refresh", Some("Refresh: every token issued so far stops working.")))
                    (action("revoke", "Revoke", Some("Revoke: every token issued so far stops working.")))
                }
                (action("remove", "Remove", Some("Remove: this cannot be undone.")))
            }
            h2 { "Edit" }
            form method="post" action="/console/action" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="name" value=(row.name);
                input type="hidden" name="kind" value=(row.kind);
                input type="hidden" name="action" value="edit";
                label { "Description" br; textarea name="description" id="description" maxlength="1000" { (row.description) } }
                label { "Role" br; (role_select(&row.role, token)) }
                button type="submit" id="do-edit" disabled[off] { "Save" }
            }
        },
    )
}

fn role_select(current: &str, token: bool) -> Markup {
    html! {
        select name="role" {
            @if token { option value="" selected[current == "full access"] { "full access (no role)" } }
            @for r in ["Administrator", "SeniorSecurityOfficer", "SecurityOfficer"] {
                option value=(r) selected[current == r] { (r) }
            }
        }
    }
}

/// The Add form, like MDR's Generate token block.
pub fn add(frame: &Frame<'_>, csrf: &str, error: Option<&str>) -> Markup {
    let off = frame.read_only.is_some();
    page(
        "Add",
        frame,
        html! {
            h1 { "Add a token or an API connection" }
            @if let Some(e) = error { p.error id="error" { (e) } }
            form method="post" action="/console/add" {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "Generate token" }
                    label { "Kind" br;
                        select name="kind" id="kind" {
                            option value="token" { "Static token (Scan Engine)" }
                            option value="connection" { "API connection (refresh token, MDR)" }
                        }
                    }
                    label { "Name" br; input type="text" name="name" id="name" maxlength="40" required; }
                    label { "Role" br;
                        select name="role" id="role" {
                            option value="" { "full access (tokens only)" }
                            option value="Administrator" { "Administrator" }
                            option value="SeniorSecurityOfficer" { "SeniorSecurityOfficer" }
                            option value="SecurityOfficer" selected { "SecurityOfficer" }
                        }
                    }
                    label { "Tenants (comma-separated)" br; input type="text" name="tenants" id="tenants"; }
                    label { input type="checkbox" name="root_tenant" value="1"; " Root without tenants (connections)" }
                    label { "Description" br; textarea name="description" id="add-description" maxlength="1000" {} }
                }
                fieldset {
                    legend { "Limits (empty: the defaults of GatewaySettings/Limits)" }
                    label { "Requests per second" br; input type="number" min="1" max="1000000" name="rate_limit" id="rate_limit"; }
                    label { "Burst" br; input type="number" min="1" max="1000000" name="burst" id="burst"; }
                    label { "Max concurrent" br; input type="number" min="1" name="max_concurrent" id="max_concurrent"; }
                    label { "Daily quota (requests)" br; input type="number" min="1" name="daily_quota" id="daily_quota"; }
                    label { "Monthly quota (requests)" br; input type="number" min="1" name="monthly_quota" id="monthly_quota"; }
                    button type="submit" id="generate" disabled[off] { "Generate" }
                }
            }
        },
    )
}

/// The Token info page: the secret, shown once.
pub fn token_info(frame: &Frame<'_>, name: &str, client_id: Option<&str>, secret: &str) -> Markup {
    page(
        "Token info",
        frame,
        html! {
            h1 { "Token info" }
            p.banner { strong { "Copy it now: " } "this " @if client_id.is_some() { "refresh token" } @else { "token" }
                " will not be shown again. scangate keeps only a digest or a signature key." }
            table { tbody {
                tr { th { "Name" } td { (name) } }
                @if let Some(id) = client_id { tr { th { "Client ID" } td { code id="client-id" { (id) } } } }
            } }
            p.secret id="secret" { (secret) }
            button type="button" data-copy="secret" hidden { "Copy" }
            p { a href=(format!("/console/item?name={}", enc(name))) id="close" { "Close" } }
        },
    )
}

/// A plain message page (errors of actions).
pub fn message(frame: &Frame<'_>, title: &str, text: &str) -> Markup {
    page(
        title,
        frame,
        html! { h1 { (title) } p.error id="error" { (text) } p { a href="/console/" { "Back to All tokens" } } },
    )
}

fn state_class(state: &str) -> &'static str {
    match state {
        "enabled" => "state-enabled",
        "active" => "state-active",
        "disabled" => "state-disabled",
        "revoked" => "state-revoked",
        _ => "state-pending",
    }
}

fn ago(at: u64, now: u64) -> String {
    match now.checked_sub(at) {
        _ if at == 0 => "never".into(),
        Some(s) if s < 60 => format!("{s} s ago"),
        Some(s) if s < 3600 => format!("{} min ago", s / 60),
        Some(s) => format!("{} h ago", s / 3600),
        None => "now".into(),
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
