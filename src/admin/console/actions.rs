//! The console's pages that read the config, and its actions, each through the library
//! operations the CLI uses. Those block (file lock, fsync), so they run on a blocking thread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Response, StatusCode};

use super::pages::{self, Frame, Row};
use super::session::Session;
use super::{audit, audit_refused, charts, html, see_other_to, Form};
use crate::auth::connections::ops::{self as conn_ops, Spec};
use crate::auth::store::TokenStats;
use crate::auth::token_ops::{self, TokenSpec};
use crate::config::validate::parse_role;
use crate::config::Role;
use crate::proxy::body::ProxyBody;
use crate::state::Gateway;

/// Rows per page of the All tokens list.
pub const PAGE_ROWS: usize = 50;

/// Every Token and Connection of the config, with the running gateway's figures.
async fn rows(gw: &Arc<Gateway>, now: u64) -> Result<Vec<Row>, String> {
    let path = gw.config_path.clone();
    let (tokens, connections) = tokio::task::spawn_blocking(move || {
        let tokens = token_ops::list(&path).map_err(|e| e.to_string())?;
        let connections = conn_ops::list(&path).map_err(|e| e.to_string())?;
        Ok::<_, String>((tokens, connections.connections))
    })
    .await
    .map_err(|e| e.to_string())??;
    let live_tokens: HashMap<String, _> = (gw.tokens.records().into_iter())
        .map(|r| (r.name.to_string(), r))
        .collect();
    let live_connections: HashMap<String, _> = (gw.connections.records().into_iter())
        .map(|r| (r.name.to_string(), r))
        .collect();
    let figures = |stats: Option<&TokenStats>| match stats {
        None => (0, 0, [0; 3]),
        Some(s) => {
            let t = s.minutes.hour_totals(now);
            (
                s.requests.load(Ordering::Relaxed),
                s.last_used.load(Ordering::Relaxed),
                [t[1], t[2], t[3]],
            )
        }
    };
    let mut out = Vec::with_capacity(tokens.len() + connections.len());
    for t in tokens {
        let live = live_tokens.get(&t.name);
        let (requests, last_used, denied) = figures(live.and_then(|r| r.stats.get()));
        out.push(Row {
            kind: "token",
            role: t.role.unwrap_or("full access").to_owned(),
            tenants: t.tenants.join(", "),
            named_tenants: t.tenants.join(", "),
            root_tenant: false,
            state: if t.enabled { "enabled" } else { "disabled" },
            fingerprint: t.fingerprint,
            description: t.description.unwrap_or_default(),
            name: t.name,
            requests,
            last_used,
            denied,
        });
    }
    for c in connections {
        let live = live_connections.get(&c.name);
        let (requests, last_used, denied) = figures(live.map(|r| &*r.stats));
        let named_tenants = c.tenants.join(", ");
        let mut tenants = c.tenants.clone();
        if c.root_tenant {
            tenants.push("Root without tenants".into());
        }
        out.push(Row {
            kind: "connection",
            role: c.role.as_str().to_owned(),
            tenants: tenants.join(", "),
            named_tenants,
            root_tenant: c.root_tenant,
            state: c.status.as_str(),
            fingerprint: c.client_id,
            description: c.description.unwrap_or_default(),
            name: c.name,
            requests,
            last_used,
            denied,
        });
    }
    Ok(out)
}

/// `GET /console/?q=&sort=&page=`.
pub async fn list_page(
    gw: &Arc<Gateway>,
    f: &Frame<'_>,
    q: &Form,
    now: u64,
) -> Response<ProxyBody> {
    let mut all = match rows(gw, now).await {
        Ok(rows) => rows,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message(f, "Cannot read the config", &e),
            )
        }
    };
    let needle = q
        .get("q")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    if !needle.is_empty() {
        all.retain(|r| {
            r.name.to_lowercase().contains(&needle) || r.tenants.to_lowercase().contains(&needle)
        });
    }
    let sort = q
        .get("sort")
        .map(String::as_str)
        .filter(|s| pages::SORTS.contains(s))
        .unwrap_or("name");
    match sort {
        "kind" => all.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name))),
        "state" => all.sort_by(|a, b| (a.state, &a.name).cmp(&(b.state, &b.name))),
        "requests" => all.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.name.cmp(&b.name))),
        "last_used" => all.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.name.cmp(&b.name))),
        _ => all.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    let total = all.len();
    let pages_n = total.div_ceil(PAGE_ROWS).max(1);
    let page_no = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .clamp(1, pages_n);
    let shown: Vec<Row> = all
        .into_iter()
        .skip((page_no - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .collect();
    let notice = q.get("done").map(String::as_str);
    let page = pages::list(
        f,
        &shown,
        total,
        &needle,
        sort,
        page_no,
        pages_n,
        &gw.metrics.minutes,
        now,
        notice,
    );
    html(StatusCode::OK, page)
}

/// `GET /console/item?name=`.
pub async fn item_page(
    gw: &Arc<Gateway>,
    f: &Frame<'_>,
    q: &Form,
    now: u64,
) -> Response<ProxyBody> {
    let name = q.get("name").cloned().unwrap_or_default();
    let all = match rows(gw, now).await {
        Ok(rows) => rows,
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::message(f, "Cannot read the config", &e),
            )
        }
    };
    let Some(row) = all.into_iter().find(|r| r.name == name) else {
        return html(
            StatusCode::NOT_FOUND,
            pages::message(f, "Not found", "No token or connection has that name."),
        );
    };
    let chart = if row.kind == "token" {
        let live = gw.tokens.records().into_iter().find(|r| r.name == name);
        live.and_then(|r| {
            r.stats
                .get()
                .map(|s| charts::requests_per_minute(&name, &s.minutes, now))
        })
    } else {
        let live = gw
            .connections
            .records()
            .into_iter()
            .find(|r| *r.name == *name);
        live.map(|r| charts::requests_per_minute(&name, &r.stats.minutes, now))
    };
    let notice = q.get("done").map(String::as_str);
    html(
        StatusCode::OK,
        pages::item(f, &row, chart, &f.csrf(), notice),
    )
}

/// The comma-separated `tenants` field as a list.
fn tenant_list(form: &Form) -> Vec<String> {
    (field(form, "tenants").split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn field<'f>(form: &'f Form, name: &str) -> &'f str {
    form.get(name).map(String::as_str).unwrap_or("")
}

fn bad_request(f: &Frame<'_>, text: &str) -> Response<ProxyBody> {
    html(
        StatusCode::BAD_REQUEST,
        pages::message(f, "Not changed", text),
    )
}

/// `POST /console/add`: a Token or a Connection, then the Token info page (shown once).
pub async fn add(
    gw: &Arc<Gateway>,
    f: &Frame<'_>,
    s: &Session,
    form: &Form,
    ip: IpAddr,
) -> Response<ProxyBody> {
    if let Some(why) = &f.read_only {
        return html(StatusCode::CONFLICT, pages::add(f, &f.csrf(), Some(why)));
    }
    let name = field(form, "name").to_owned();
    let role = match field(form, "role") {
        "" => None,
        r => match parse_role(r) {
            Ok(role) => Some(role),
            Err(e) => return html(StatusCode::BAD_REQUEST, pages::add(f, &f.csrf(), Some(&e))),
        },
    };
    let tenants = tenant_list(form);
    let description = Some(field(form, "description").to_owned()).filter(|d| !d.is_empty());
    let path = gw.config_path.clone();
    let kind = field(form, "kind").to_owned();
    let root_tenant = field(form, "root_tenant") == "1";
    let result = tokio::task::spawn_blocking(move || match kind.as_str() {
        "connection" => {
            let spec = Spec {
                name,
                role: role.unwrap_or(Role::SecurityOfficer),
                tenants,
                root_tenant,
                description,
            };
            let added =
                conn_ops::add(&path, &spec, super::now_secs()).map_err(|e| e.to_string())?;
            Ok((
                added.token.name,
                Some(added.token.client_id),
                added.token.refresh_token,
            ))
        }
        _ => {
            let spec = TokenSpec {
                name,
                description,
                enabled: true,
                role,
                tenants,
            };
            let added = token_ops::add(&path, &spec, None).map_err(|e| e.to_string())?;
            Ok((spec.name, None, added.token))
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match result {
        Ok((name, client_id, secret)) => {
            audit(s, "add", &name, ip);
            html(
                StatusCode::OK,
                pages::token_info(f, &name, client_id.as_deref(), &secret),
            )
        }
        Err(e) => {
            audit_refused(s, "add", field(form, "name"), ip, &e);
            html(StatusCode::BAD_REQUEST, pages::add(f, &f.csrf(), Some(&e)))
        }
    }
}

/// What an action led to: a page with a new secret, or a place to go back to.
enum Done {
    Secret(String, Option<String>, String),
    Back(String),
}

/// `POST /console/action`: enable, disable, rotate, refresh, revoke, remove, edit.
pub async fn act(
    gw: &Arc<Gateway>,
    f: &Frame<'_>,
    s: &Session,
    form: &Form,
    ip: IpAddr,
) -> Response<ProxyBody> {
    if let Some(why) = &f.read_only {
        return html(StatusCode::CONFLICT, pages::message(f, "Read-only", why));
    }
    let name = field(form, "name").to_owned();
    let action = field(form, "action").to_owned();
    let connection = field(form, "kind") == "connection";
    let destructive = matches!(action.as_str(), "rotate" | "refresh" | "revoke" | "remove");
    if destructive && field(form, "confirm") != "yes" {
        return bad_request(
            f,
            "Tick the confirm box first: this action cannot be undone.",
        );
    }
    let description = field(form, "description").to_owned();
    let tenants = tenant_list(form);
    let root_tenant = field(form, "root_tenant") == "1";
    let role = match field(form, "role") {
        "" => None,
        r => match parse_role(r) {
            Ok(role) => Some(role),
            Err(e) => return bad_request(f, &e),
        },
    };
    let path = gw.config_path.clone();
    let (act, item) = (action.clone(), name.clone());
    let result = tokio::task::spawn_blocking(move || -> Result<Done, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let back = |what: &str| Ok(Done::Back(format!("{what} {item}")));
        match (act.as_str(), connection) {
            ("enable" | "disable", false) => token_ops::set_enabled(&path, &item, act == "enable")
                .map_err(|x| e(&x))
                .and(back(&format!("{act}d"))),
            ("enable" | "disable", true) => conn_ops::set_enabled(&path, &item, act == "enable")
                .map_err(|x| e(&x))
                .and(back(&format!("{act}d"))),
            ("rotate", false) => token_ops::rotate(&path, &item, None)
                .map(|t| Done::Secret(item.clone(), None, t))
                .map_err(|x| e(&x)),
            ("refresh", true) => conn_ops::refresh(&path, &item, super::now_secs())
                .map(|r| Done::Secret(item.clone(), Some(r.token.client_id), r.token.refresh_token))
                .map_err(|x| e(&x)),
            ("revoke", true) => conn_ops::revoke(&path, &item, super::now_secs())
                .map_err(|x| e(&x))
                .and(back("revoked")),
            ("remove", false) => token_ops::remove(&path, &item)
                .map_err(|x| e(&x))
                .map(|()| Done::Back(String::new())),
            ("remove", true) => conn_ops::remove(&path, &item)
                .map_err(|x| e(&x))
                .map(|()| Done::Back(String::new())),
            ("edit", false) => token_ops::describe(&path, &item, &description)
                .and_then(|()| token_ops::set_role(&path, &item, role))
                .and_then(|()| token_ops::set_tenants(&path, &item, &tenants))
                .map_err(|x| e(&x))
                .and(back("saved")),
            ("edit", true) => conn_ops::describe(&path, &item, &description)
                .and_then(|()| {
                    conn_ops::set_role(&path, &item, role.unwrap_or(Role::SecurityOfficer))
                })
                .and_then(|()| conn_ops::set_tenants(&path, &item, &tenants, root_tenant))
                .map_err(|x| e(&x))
                .and(back("saved")),
            _ => Err("unknown action".into()),
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match result {
        Ok(done) => {
            audit(s, &action, &name, ip);
            match done {
                Done::Secret(name, client_id, secret) => html(
                    StatusCode::OK,
                    pages::token_info(f, &name, client_id.as_deref(), &secret),
                ),
                Done::Back(notice) if notice.is_empty() => see_other_to(format!(
                    "/console/?done={}",
                    pages::enc(&format!("removed {name}"))
                )),
                Done::Back(notice) => see_other_to(format!(
                    "/console/item?name={}&done={}",
                    pages::enc(&name),
                    pages::enc(&notice)
                )),
            }
        }
        Err(e) => {
            audit_refused(s, &action, &name, ip, &e);
            bad_request(f, &e)
        }
    }
}
