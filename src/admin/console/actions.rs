//! The console's actions, each through the library operations the CLI uses. Those block (file
//! lock, fsync), so they run on a blocking thread.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use http::{Response, StatusCode};

use super::pages::{self, Frame};
use super::session::Session;
use super::{audit, audit_refused, html, see_other_to, Form};
use crate::auth::connections::ops::{self as conn_ops, Spec};
use crate::auth::token_ops::{self, TokenSpec};
use crate::config::validate::parse_role;
use crate::config::{LimitScope, Limits, Rate, Role};
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

/// The Add form's limits: `None` when every field is empty (the defaults apply). The bounds and
/// words are the config's, so the file validation never sees a value the form let through.
fn form_limits(form: &Form) -> Result<Option<Limits>, String> {
    let number = |name: &str, label: &str, max: u64| -> Result<Option<u64>, String> {
        let text = field(form, name).trim();
        if text.is_empty() {
            return Ok(None);
        }
        match text.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Some(n))
            }
            _ => Err(format!(
                "{label} must be a whole number from 1 to {max}, found {text:?}"
            )),
        }
    };
    let small =
        |n: u64| NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    let rate = number("rate_limit", "Requests per second", 1_000_000)?;
    let burst = number("burst", "Burst", 1_000_000)?;
    if burst.is_some() && rate.is_none() {
        return Err("Burst needs Requests per second".to_owned());
    }
    let limits = Limits {
        rate: rate.map(|r| Rate {
            per_second: small(r),
            burst: small(burst.unwrap_or(r)),
        }),
        max_concurrent: number("max_concurrent", "Max concurrent", u64::from(u32::MAX))?.map(small),
        daily_quota: number("daily_quota", "Daily quota", 1_000_000_000_000)?,
        monthly_quota: number("monthly_quota", "Monthly quota", 1_000_000_000_000)?,
        daily_quota_bytes: None,
        scope: LimitScope::Replica,
    };
    Ok((!limits.is_empty()).then_some(limits))
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
    let limits = match form_limits(form) {
        Ok(limits) => limits,
        Err(e) => return html(StatusCode::BAD_REQUEST, pages::add(f, &f.csrf(), Some(&e))),
    };
    let description = Some(field(form, "description").to_owned()).filter(|d| !d.is_empty());
    let path = gw.config_path.clone();
    let kind = field(form, "kind").to_owned();
    let root_tenant = field(form, "root_tenant") == "1";
    let result = tokio::task::spawn_blocking(move || match kind.as_str() {
        "connection" => {
            let spec = Spec {
                limits,
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
                limits,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        (pairs.iter())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_add_form_reads_limits_and_refuses_bad_ones_with_the_config_words() {
        assert_eq!(form_limits(&form(&[("rate_limit", "")])), Ok(None));
        let got = form_limits(&form(&[
            ("rate_limit", "5"),
            ("max_concurrent", "2"),
            ("daily_quota", "1000"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(got.summary(), "5/s burst 5, 2 concurrent, 1000/day");
        let cases = [
            (
                ("rate_limit", "0"),
                "Requests per second must be a whole number from 1 to 1000000, found \"0\"",
            ),
            (
                ("max_concurrent", "-2"),
                "Max concurrent must be a whole number from 1 to 4294967295, found \"-2\"",
            ),
            (
                ("daily_quota", "ten"),
                "Daily quota must be a whole number from 1 to 1000000000000, found \"ten\"",
            ),
            (("burst", "3"), "Burst needs Requests per second"),
        ];
        for ((name, value), want) in cases {
            assert_eq!(form_limits(&form(&[(name, value)])), Err(want.to_owned()));
        }
    }
}
