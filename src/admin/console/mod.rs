//! The web console under `/console/` on the admin listener: server-rendered pages (maud) that
//! work without JavaScript, for the static Tokens and API connections of the config.
//!
//! - Sign-in ([`session`]): `POST /console/login` with the field `token`, an Administrator token
//!   (or one without a Role, which has full access) or an Administrator connection's access token.
//!   Any other role, a wrong and a disabled token get the same refusal; failed sign-ins are limited
//!   per client IP. The session cookie is signed, HttpOnly, SameSite=Strict and short-lived.
//! - Every POST needs a same-origin `Origin`/`Sec-Fetch-Site` (when the browser sends them) and,
//!   once signed in, the session's CSRF token. GET never changes anything.
//! - Changes go through [`crate::auth::token_ops`] and [`crate::auth::connections::ops`], the
//!   functions the CLI calls; the gateway picks the new file up by its usual reload.
//! - The Engines page ([`engines`]) shows each scan engine's state, in flight and queue; it only
//!   reads.
//! - The Detections page ([`detections`]) lists the latest detections the scan audit kept, by
//!   credential and tenant; it only reads.
//! - Each action is one line on the `scangate::audit` log target: who, what, which item, from
//!   which IP. Never a token.

mod actions;
pub mod charts;
pub mod detections;
pub mod engines;
mod listing;
pub mod pages;
pub mod session;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use maud::Markup;

use crate::auth::jwt::{self, Kind as JwtKind};
use crate::auth::store::Lookup;
use crate::auth::token::TokenKey;
use crate::config::Role;
use crate::proxy::body::ProxyBody;
use crate::state::Gateway;
use pages::Frame;
use session::{FailedSignIns, Kind, Session};

/// The largest form the console reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The one message every refused sign-in gets.
pub const REFUSED: &str = "Sign-in refused: this is not a valid Administrator token.";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's own state: the failed sign-ins per IP.
#[derive(Debug, Default)]
pub struct Console {
    failed: FailedSignIns,
}

/// A parsed form: the last value of each field.
type Form = HashMap<String, String>;

/// Answers one request under `/console`.
pub async fn handle(
    gw: &Arc<Gateway>,
    console: &Console,
    req: Request<Incoming>,
    peer: Option<SocketAddr>,
) -> Response<ProxyBody> {
    let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let snap = gw.snapshot.load_full();
    let now = now_secs();
    let session = (snap.key.as_ref()).and_then(|key| {
        let cookie = cookies(req.headers())?;
        let s = session::verify(key, cookie, now)?;
        still_administrator(gw, &s).then_some(s)
    });
    let read_only = read_only(&gw.config_path);
    fn frame<'s>(
        s: Option<&'s Session>,
        key: Option<&TokenKey>,
        read_only: &Option<String>,
    ) -> Frame<'s> {
        Frame {
            session: s.zip(key).map(|(s, k)| (s, s.csrf(k))),
            read_only: read_only.clone(),
        }
    }
    let key = snap.key.as_ref();
    let frame = |s| frame(s, key, &read_only);

    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/console/static/console.js") => {
            asset(include_str!("assets/console.js"), "text/javascript")
        }
        (Method::GET | Method::HEAD, "/console/static/console.css") => {
            asset(include_str!("assets/console.css"), "text/css")
        }
        (Method::GET | Method::HEAD, "/console/login") => match &session {
            Some(_) => see_other("/console/"),
            None => html(StatusCode::OK, pages::sign_in(&frame(None), None)),
        },
        (Method::POST, "/console/login") => {
            if !same_origin(req.headers()) {
                return text(StatusCode::FORBIDDEN, "cross-origin request refused");
            }
            let Some(form) = read_form(req).await else {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
            };
            sign_in(gw, console, &form, ip, &frame(None), now)
        }
        (Method::GET | Method::HEAD, _) => {
            let Some(s) = &session else {
                return see_other("/console/login");
            };
            let f = frame(Some(s));
            match path.as_str() {
                "/console" | "/console/" => listing::list_page(gw, &f, &query, now).await,
                "/console/add" => html(StatusCode::OK, pages::add(&f, &f.csrf(), None)),
                "/console/item" => listing::item_page(gw, &f, &query, now).await,
                "/console/engines" => {
                    html(StatusCode::OK, engines::page(&f, &engines::engines(gw)))
                }
                "/console/detections" => {
                    html(StatusCode::OK, detections::page(&f, gw, &query, now))
                }
                _ => html(
                    StatusCode::NOT_FOUND,
                    pages::message(&f, "Not found", "No such page."),
                ),
            }
        }
        (Method::POST, _) => {
            if !same_origin(req.headers()) {
                return text(StatusCode::FORBIDDEN, "cross-origin request refused");
            }
            let (Some(s), Some(key)) = (&session, snap.key.as_ref()) else {
                return text(StatusCode::UNAUTHORIZED, "sign in first");
            };
            let Some(form) = read_form(req).await else {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
            };
            if !form.get("csrf").is_some_and(|c| s.csrf_matches(key, c)) {
                return text(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
            }
            let f = frame(Some(s));
            match path.as_str() {
                "/console/logout" => {
                    audit(s, "sign-out", "", ip);
                    let mut resp = see_other("/console/login");
                    set_cookie(&mut resp, "", 0);
                    resp
                }
                "/console/add" => actions::add(gw, &f, s, &form, ip).await,
                "/console/action" => actions::act(gw, &f, s, &form, ip).await,
                _ => text(StatusCode::NOT_FOUND, "not found"),
            }
        }
        _ => {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            resp
        }
    }
}

impl Frame<'_> {
    /// The session's CSRF token (empty without a session, which never reaches a form).
    fn csrf(&self) -> String {
        self.session
            .as_ref()
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }
}

/// Checks `token` and starts a session, or refuses with [`REFUSED`].
fn sign_in(
    gw: &Gateway,
    console: &Console,
    form: &Form,
    ip: IpAddr,
    frame: &Frame<'_>,
    now: u64,
) -> Response<ProxyBody> {
    let started = Instant::now();
    if let Some(wait) = console.failed.blocked(ip, started) {
        tracing::warn!(target: "scangate::audit", client_ip = %ip, "console sign-in rate limited");
        let mut resp = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::sign_in(frame, Some("Too many failed sign-ins: wait a minute.")),
        );
        let secs = HeaderValue::from(wait.as_secs().max(1));
        resp.headers_mut().insert(header::RETRY_AFTER, secs);
        return resp;
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let snap = gw.snapshot.load();
    let who = snap.key.as_ref().and_then(|key| {
        let who = administrator(gw, token, now)?;
        Some((who, key))
    });
    let Some(((kind, name), key)) = who else {
        console.failed.fail(ip, started);
        tracing::warn!(target: "scangate::audit", client_ip = %ip, "console sign-in refused");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(frame, Some(REFUSED)),
        );
    };
    let expires = now + session::SESSION_LIFETIME.as_secs();
    let cookie = session::sign(key, kind, &name, expires);
    tracing::info!(target: "scangate::audit", who = %name, action = "sign-in", client_ip = %ip, "console");
    let mut resp = see_other("/console/");
    set_cookie(&mut resp, &cookie, session::SESSION_LIFETIME.as_secs());
    resp
}

/// The Administrator behind `token`: a static token with Role Administrator or none, or an
/// access token of an Administrator connection.
fn administrator(gw: &Gateway, token: &str, now: u64) -> Option<(Kind, String)> {
    let snap = gw.snapshot.load();
    if token.is_empty() || token.len() > 4096 {
        return None;
    }
    if let (Some(keys), true) = (&snap.jwt, jwt::looks_like_jwt(token.as_bytes())) {
        if let Ok(claims) = jwt::verify(keys, JwtKind::Access, token, now) {
            let record = gw.connections.admit(&claims, now).ok()?;
            return (record.role == Role::Administrator)
                .then(|| (Kind::Connection, record.name.to_string()));
        }
    }
    let key = snap.key.as_ref()?;
    match gw.tokens.lookup(&key.digest(token.as_bytes())) {
        Lookup::Valid(r) if matches!(r.role(), None | Some(Role::Administrator)) => {
            Some((Kind::Token, r.name.to_string()))
        }
        _ => None,
    }
}

/// Whether the session's credential is still an enabled Administrator in the running config: a
/// disabled, removed or demoted credential loses its sessions at the next reload.
fn still_administrator(gw: &Gateway, s: &Session) -> bool {
    match s.kind {
        Kind::Token => (gw.tokens.find_by_name(&s.name))
            .is_some_and(|r| r.enabled && matches!(r.role(), None | Some(Role::Administrator))),
        Kind::Connection => {
            gw.connections.records().iter().any(|c| {
                c.name == s.name && c.enabled && !c.revoked && c.role == Role::Administrator
            })
        }
    }
}

/// Why the console cannot change the config, when it cannot: `SCANGATE_CONSOLE_READ_ONLY=1`, a
/// Kubernetes ConfigMap (the file is a link into `..data`), or a file without write permission.
pub fn read_only(config: &Path) -> Option<String> {
    if std::env::var_os("SCANGATE_CONSOLE_READ_ONLY").is_some_and(|v| v == "1") {
        return Some(
            "SCANGATE_CONSOLE_READ_ONLY=1 is set; change tokens with the CLI or in the file."
                .into(),
        );
    }
    if let Ok(target) = std::fs::read_link(config) {
        if target.components().any(|c| c.as_os_str() == "..data") {
            return Some(format!(
                "{} is a Kubernetes ConfigMap; change tokens in the ConfigMap instead.",
                config.display()
            ));
        }
    }
    match std::fs::metadata(config) {
        Ok(m) if m.permissions().readonly() => Some(format!(
            "{} has no write permission; change tokens where it is managed.",
            config.display()
        )),
        _ => None,
    }
}

/// One audit line: who, what, which item, from which IP.
fn audit(s: &Session, action: &str, item: &str, ip: IpAddr) {
    tracing::info!(target: "scangate::audit", who = %s.name, action, item, client_ip = %ip, "console");
}

/// The audit line of an action that changed nothing, with the reason (a rule or a file error,
/// never a token: the operations' errors hold none).
fn audit_refused(s: &Session, action: &str, item: &str, ip: IpAddr, why: &str) {
    tracing::warn!(
        target: "scangate::audit",
        who = %s.name, action, item, client_ip = %ip, refused = why, "console"
    );
}

/// Whether a POST may be same-origin: `Sec-Fetch-Site` must be `same-origin` or `none`, and `Origin`
/// must name this host. Browsers send both; a client that sends neither still needs the CSRF
/// token.
fn same_origin(h: &HeaderMap) -> bool {
    let get = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let site_ok = get(header::HeaderName::from_static("sec-fetch-site"))
        .is_none_or(|site| site == "same-origin" || site == "none");
    let origin_ok = get(header::ORIGIN).is_none_or(|origin| {
        let host = get(header::HOST).unwrap_or("");
        origin.split_once("://").map(|(_, rest)| rest) == Some(host)
    });
    site_ok && origin_ok
}

/// The form in the body; `None` past [`MAX_FORM_BYTES`] or when the body fails.
async fn read_form(req: Request<Incoming>) -> Option<Form> {
    let body = Limited::new(req.into_body(), MAX_FORM_BYTES);
    let bytes: Bytes = body.collect().await.ok()?.to_bytes();
    Some(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn parse_query(q: &str) -> Form {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn cookies(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
}

fn set_cookie(resp: &mut Response<ProxyBody>, value: &str, max_age: u64) {
    let cookie = format!(
        "{}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        session::COOKIE
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The headers every console response carries.
fn secure(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends `Origin: null` on the
    // console's own form posts, which the Origin check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html(status: StatusCode, page: Markup) -> Response<ProxyBody> {
    typed(status, page.into_string(), "text/html; charset=utf-8")
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    typed(status, format!("{body}\n"), "text/plain; charset=utf-8")
}

fn typed(status: StatusCode, body: String, content_type: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(resp)
}

fn asset(body: &'static str, content_type: &'static str) -> Response<ProxyBody> {
    typed(StatusCode::OK, body.to_owned(), content_type)
}

fn see_other(to: &'static str) -> Response<ProxyBody> {
    see_other_to(to.to_owned())
}

fn see_other_to(to: String) -> Response<ProxyBody> {
    let mut resp = text(StatusCode::SEE_OTHER, "see other");
    if let Ok(v) = HeaderValue::from_str(&to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
