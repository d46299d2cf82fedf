//! The console's actions, each through the library operations the CLI uses. Those block (file
//! lock, fsync), so they run on a blocking thread.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Response, StatusCode};

use super::pages::{self, Frame};
use super::session::Session;
use super::{audit, audit_refused, html, see_other_to, Form};
use crate::auth::connections::ops::{self as conn_ops, Spec};
use crate::auth::token_ops::{self, TokenSpec};
use crate::config::validate::parse_role;
use crate::config::Role;
use crate::proxy::body::ProxyBody;
use crate::state::Gateway;

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
                limits: None,
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
                limits: None,
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
