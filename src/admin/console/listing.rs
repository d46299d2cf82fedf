//! The console's pages that read the config: the All tokens list and one item's page, with the
//! running gateway's figures joined in by name.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Response, StatusCode};

use super::pages::{self, Frame, Row};
use super::{charts, html, Form};
use crate::auth::connections::ops as conn_ops;
use crate::auth::store::TokenStats;
use crate::auth::token_ops;
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
            limits: t.limits,
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
            limits: (live.and_then(|r| r.limits.as_deref()))
                .map_or_else(|| "-".to_owned(), |l| l.summary()),
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
