//! The web console over real sockets, without a browser: every page needs a session, sign-in
//! refuses anything but an Administrator with one message and is rate limited, cross-origin and
//! CSRF-less POSTs get 403, forged and expired cookies are refused, markup in a Name is text, and
//! an added token works at the gateway within 3 s and gets 401 once disabled from the console,
//! the Engines page shows each engine's state and figures, never an upstream's password, and the
//! Detections page lists the latest detections, filtered by credential and tenant.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use scangate::admin::console::session::{self, Kind};
use scangate::auth::token::TokenKey;
use scangate::auth::token_ops::{self, TokenSpec};
use scangate::config::Role;
use scangate::net::Listener;
use scangate::state::Gateway;
use tokio::sync::oneshot;

const ADMIN: &str = "sg_ConsoleAdmin-1";
const OFFICER: &str = "sg_ConsoleOfficer-2";
const OFF: &str = "sg_ConsoleDisabled-3";

struct Console {
    gw: TestGateway,
    _up: Upstream,
    addr: SocketAddr,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Console {
    async fn start() -> Console {
        Console::start_with(|_| {}).await
    }

    /// Starts with `tweak` applied to the config (engines and their settings).
    async fn start_with(tweak: impl FnOnce(&mut Cfg)) -> Console {
        let up = Upstream::start(Behaviour::Ok).await;
        let mut cfg = Cfg::new(
            &up.url(),
            &[Tok::new("admin", ADMIN, true), Tok::new("off", OFF, false)],
        );
        tweak(&mut cfg);
        let dir = ConfigDir::new(&cfg);
        let spec = TokenSpec {
            limits: None,
            name: "officer".into(),
            description: None,
            enabled: true,
            role: Some(Role::SecurityOfficer),
            tenants: vec![],
        };
        token_ops::add(&dir.path, &spec, Some(OFFICER.into())).unwrap();
        let gw = TestGateway::start_in(dir, true).await;
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(scangate::admin::run(listener, Arc::clone(&gw.gw), async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Console {
            gw,
            _up: up,
            addr,
            http,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn gateway(&self) -> &Arc<Gateway> {
        &self.gw.gw
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("scangate_console={c}"));
        }
        req.send().await.unwrap()
    }

    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("scangate_console={c}"));
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await.unwrap()
    }

    /// Signs in with `token`: the cookie value on success.
    async fn sign_in(&self, token: &str) -> (u16, Option<String>, String) {
        let r = self
            .post("/console/login", None, &[("token", token)], None)
            .await;
        let status = r.status().as_u16();
        let cookie = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let value = cookie.as_deref().and_then(|c| {
            c.split(';')
                .next()?
                .strip_prefix("scangate_console=")
                .map(str::to_owned)
        });
        (status, value, r.text().await.unwrap())
    }

    /// The CSRF token of the page at `path`.
    async fn csrf(&self, path: &str, cookie: &str) -> String {
        let page = self.get(path, Some(cookie)).await.text().await.unwrap();
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        page[at..].split('"').next().unwrap().to_owned()
    }
}

fn key(c: &Console) -> TokenKey {
    TokenKey::read(&c.gw.config.dir.path().join("scangate.key")).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn no_page_answers_without_a_session() {
    let c = Console::start().await;
    for path in [
        "/console/",
        "/console/add",
        "/console/item?name=admin",
        "/console/engines",
        "/console",
    ] {
        let r = c.get(path, None).await;
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/console/login", "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("admin"), "{path} leaks: {body}");
    }
    let r = c
        .post(
            "/console/action",
            None,
            &[("action", "disable"), ("name", "admin")],
            None,
        )
        .await;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.text().await.unwrap(), "sign in first\n");
    let r = c.get("/console/login", None).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(r.text().await.unwrap().contains("name=\"token\""));
}

#[tokio::test]
async fn sign_in_refuses_all_but_an_administrator_alike_and_limits_failures() {
    let c = Console::start().await;
    let (status, cookie, _) = c.sign_in(ADMIN).await;
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session cookie");
    assert!(
        !cookie.contains(ADMIN),
        "the cookie must not hold the token"
    );
    for bad in [OFFICER, OFF, "sg_NotAToken-9", ""] {
        let (status, cookie, body) = c.sign_in(bad).await;
        assert_eq!((status, cookie), (401, None), "{bad:?}");
        assert!(body.contains(scangate::admin::console::REFUSED), "{body}");
    }
    // Four failures so far; the fifth is still answered, the sixth is limited, even for a good token.
    assert_eq!(c.sign_in("wrong").await.0, 401);
    let (status, _, body) = c.sign_in(ADMIN).await;
    assert_eq!(status, 429);
    assert!(body.contains("Too many failed sign-ins"), "{body}");
    // The session signed in earlier still works.
    assert_eq!(
        c.get("/console/", Some(&cookie)).await.status().as_u16(),
        200
    );
}

#[tokio::test]
async fn cross_origin_and_csrf_less_posts_are_403() {
    let c = Console::start().await;
    let cookie = c.sign_in(ADMIN).await.1.unwrap();
    let csrf = c.csrf("/console/", &cookie).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("action", "disable"),
        ("name", "admin"),
        ("kind", "token"),
    ];
    let r = c
        .post(
            "/console/action",
            Some(&cookie),
            &form,
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.text().await.unwrap(), "cross-origin request refused\n");
    let r = c
        .http
        .post(c.url("/console/action"))
        .form(&form)
        .header("cookie", format!("scangate_console={cookie}"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = c
        .post(
            "/console/login",
            None,
            &[("token", ADMIN)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 403, "login CSRF");
    let no_csrf = [("action", "disable"), ("name", "admin"), ("kind", "token")];
    let r = c
        .post("/console/action", Some(&cookie), &no_csrf, None)
        .await;
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.text().await.unwrap(), "missing or wrong CSRF token\n");
    // Nothing was disabled, and GET never changes state.
    let r = c
        .get("/console/action?action=disable&name=admin", Some(&cookie))
        .await;
    assert_eq!(r.status().as_u16(), 404);
    assert!(c
        .gateway()
        .tokens
        .records()
        .iter()
        .any(|t| t.name == "admin" && t.enabled));
}

#[tokio::test]
async fn forged_and_expired_cookies_are_refused() {
    let c = Console::start().await;
    let key = key(&c);
    let expired = session::sign(&key, Kind::Token, "admin", now() - 1);
    let other = TokenKey::read_or_create(&tempfile::tempdir().unwrap().path().join("k")).unwrap();
    let forged = session::sign(&other, Kind::Token, "admin", now() + 600);
    let officer = session::sign(&key, Kind::Token, "officer", now() + 600);
    for cookie in [
        expired.as_str(),
        forged.as_str(),
        officer.as_str(),
        "garbage",
    ] {
        let r = c.get("/console/", Some(cookie)).await;
        assert_eq!(r.status().as_u16(), 303, "{cookie}");
        assert_eq!(r.headers()["location"], "/console/login");
    }
    let good = session::sign(&key, Kind::Token, "admin", now() + 600);
    assert_eq!(c.get("/console/", Some(&good)).await.status().as_u16(), 200);
}

#[tokio::test]
async fn markup_in_a_name_renders_as_text_and_tokens_work_then_stop() {
    let c = Console::start().await;
    let cookie = c.sign_in(ADMIN).await.1.unwrap();
    let csrf = c.csrf("/console/add", &cookie).await;
    let name = "<script>alert(1)</script>";
    let r = c
        .post(
            "/console/add",
            Some(&cookie),
            &[
                ("csrf", &csrf),
                ("kind", "token"),
                ("name", name),
                ("role", ""),
            ],
            None,
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let info = r.text().await.unwrap();
    assert!(
        !info.contains(name) && info.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{info}"
    );
    let at = info.find("id=\"secret\">").unwrap() + 12;
    let token = info[at..].split('<').next().unwrap().to_owned();
    assert!(token.starts_with("sg_"));
    let list = c
        .get("/console/", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(!list.contains(name) && list.contains("&lt;script&gt;"));
    assert!(!list.contains(&token), "the list never shows the token");
    // The new token works at the gateway within 3 s.
    let http = client();
    let url = c.gw.url("/api/v3.0/version");
    assert!(
        eventually(Duration::from_secs(3), || async {
            status_with(&http, &url, &token).await == 200
        })
        .await
    );
    // Disabled from the console: 401.
    let form = [
        ("csrf", csrf.as_str()),
        ("action", "disable"),
        ("name", name),
        ("kind", "token"),
    ];
    let r = c.post("/console/action", Some(&cookie), &form, None).await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        eventually(Duration::from_secs(3), || async {
            status_with(&http, &url, &token).await == 401
        })
        .await
    );
    // Remove needs its confirmation.
    let form = [
        ("csrf", csrf.as_str()),
        ("action", "remove"),
        ("name", name),
        ("kind", "token"),
    ];
    let r = c.post("/console/action", Some(&cookie), &form, None).await;
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn an_edit_sets_description_role_and_tenants_and_keeps_comments() {
    let c = Console::start().await;
    let path = c.gw.config.path.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "<Configuration>",
            "<Configuration>\n  <!-- ops: keep me -->",
        ),
    )
    .unwrap();
    let cookie = c.sign_in(ADMIN).await.1.unwrap();
    let csrf = c.csrf("/console/item?name=officer", &cookie).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("action", "edit"),
        ("name", "officer"),
        ("kind", "token"),
        ("description", "<b>mail relay</b>"),
        ("role", "SeniorSecurityOfficer"),
        ("tenants", "acme, beta"),
    ];
    let r = c.post("/console/action", Some(&cookie), &form, None).await;
    assert_eq!(r.status().as_u16(), 303);
    let listed = token_ops::list(&path).unwrap();
    let officer = listed.iter().find(|t| t.name == "officer").unwrap();
    assert_eq!(officer.description.as_deref(), Some("<b>mail relay</b>"));
    assert_eq!(officer.role, Some("SeniorSecurityOfficer"));
    assert_eq!(officer.tenants, ["acme", "beta"]);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("<!-- ops: keep me -->"));
    let page = c
        .get("/console/item?name=officer", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("&lt;b&gt;mail relay&lt;/b&gt;") && !page.contains("<b>mail relay"));
}

#[tokio::test]
async fn hundreds_of_entries_are_paged_searched_and_sorted() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut toks = vec![Tok::new("admin", ADMIN, true)];
    toks.extend((0..320).map(|i| {
        Tok::new(
            &format!("client-{i:03}"),
            &format!("sg_PagedToken-{i}"),
            true,
        )
    }));
    let gw = TestGateway::start(&Cfg::new(&up.url(), &toks)).await;
    let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(scangate::admin::run(listener, Arc::clone(&gw.gw), async {
        let _ = stopped.await;
    }));
    let key = TokenKey::read(&gw.config.dir.path().join("scangate.key")).unwrap();
    let cookie = format!(
        "scangate_console={}",
        session::sign(&key, Kind::Token, "admin", now() + 600)
    );
    let http = client();
    let page = |q: &'static str| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move {
            let r = http
                .get(format!("http://{addr}/console/{q}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{q}");
            r.text().await.unwrap()
        }
    };
    let rows = |html: &str| html.matches("<tr data-search=").count();
    let first = page("").await;
    assert!(
        first.contains("(321)") && first.contains("Page 1 of 7"),
        "321 entries, 50 a page"
    );
    assert_eq!(rows(&first), 50);
    assert!(first.contains("client-000") && !first.contains("client-060"));
    let last = page("?page=7").await;
    assert_eq!(rows(&last), 21);
    assert!(last.contains("client-319"));
    let found = page("?q=CLIENT-31").await;
    assert_eq!(rows(&found), 10, "client-310 … client-319");
    // Sorted by requests, the one token that sent a request comes first.
    assert_eq!(
        status_with(&http, &gw.url("/api/v3.0/version"), "sg_PagedToken-250").await,
        200
    );
    let sorted = page("?sort=requests").await;
    let first_row = sorted.split("<tr data-search=").nth(1).unwrap();
    assert!(first_row.contains("client-250"), "{first_row}");
}

/// One row of the Engines table, as the page renders it.
fn engine_row(
    label: &str,
    state: &str,
    sessions: &str,
    weight: u32,
    tenants: &str,
    check: &str,
) -> String {
    format!(
        "<tr><td><code>{label}</code></td><td class=\"engine-{state}\">{state}</td>\
         <td>{sessions}</td><td>{weight}</td><td>{tenants}</td><td>{check}</td></tr>"
    )
}

#[tokio::test]
async fn the_engines_page_shows_each_engine_and_a_dead_one_as_down() {
    // Nothing listens on port 1: its checks fail, and three in a row take it down.
    let dead = "http://127.0.0.1:1";
    let c = Console::start_with(|cfg| {
        cfg.upstreams.push(format!(
            "<Upstream MaxSessions=\"3\" Weight=\"2\" Tenants=\"acme,beta\">{dead}</Upstream>"
        ));
        cfg.gateway_extra = "<UpstreamSettings><HealthCheckIntervalMs>100</HealthCheckIntervalMs>\
                             </UpstreamSettings>"
            .into();
    })
    .await;
    let live = c.gateway().snapshot.load().upstreams.all()[0]
        .label
        .to_string();
    let (_, cookie, _) = c.sign_in(ADMIN).await;
    let cookie = cookie.unwrap();
    let list = c
        .get("/console/", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("<a href=\"/console/engines\">Engines</a>"),
        "{list}"
    );

    let want_dead = engine_row(dead, "down", "0 / 3", 2, "acme, beta", "fail");
    let want_live = engine_row(&live, "up", "0 / 10", 1, "default group", "pass");
    let last = std::cell::RefCell::new(String::new());
    let shown = eventually(Duration::from_secs(10), || async {
        let r = c.get("/console/engines", Some(&cookie)).await;
        assert_eq!(r.status().as_u16(), 200);
        let page = r.text().await.unwrap();
        let both = page.contains(&want_dead) && page.contains(&want_live);
        *last.borrow_mut() = page;
        both
    })
    .await;
    let page = last.into_inner();
    assert!(shown, "{page}");
    assert!(
        page.contains("<h1>Engines <span class=\"muted\">(2)</span></h1>"),
        "{page}"
    );
    assert!(
        page.contains(
            "Engines up: <strong id=\"up\">1</strong> of 2. \
         Requests waiting in the queue: <strong id=\"queue\">0</strong>."
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "Active health checks: on, GET <code>/api/v3.0/basesdate</code> every 100 ms."
        ),
        "{page}"
    );
    // The live engine is listed first, as in the config.
    assert!(page.find(&want_live) < page.find(&want_dead), "{page}");
    assert!(
        !page.contains("<script>")
            && !page.contains("<form method=\"post\" action=\"/console/action\"")
    );
}

#[tokio::test]
async fn the_engines_page_never_shows_an_upstream_password() {
    let c = Console::start_with(|cfg| {
        cfg.gateway_extra =
            "<UpstreamSettings><HealthCheckIntervalMs>0</HealthCheckIntervalMs></UpstreamSettings>"
                .into();
    })
    .await;
    let live = c.gateway().snapshot.load().upstreams.all()[0]
        .label
        .to_string();
    // An upstream with user info is refused: the engines in force stay, and stay as they were.
    let mut cfg = Cfg::new(
        "http://scanner:hunter2@127.0.0.1:1",
        &[Tok::new("admin", ADMIN, true)],
    );
    cfg.gateway_extra =
        "<UpstreamSettings><HealthCheckIntervalMs>0</HealthCheckIntervalMs></UpstreamSettings>"
            .into();
    write_atomic(&c.gw.config.path, &cfg.xml());
    assert!(c.gateway().reload().is_err());
    let (_, cookie, _) = c.sign_in(ADMIN).await;
    let r = c.get("/console/engines", cookie.as_deref()).await;
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    let want = engine_row(&live, "up", "0 / 10", 1, "default group", "checks off");
    assert!(page.contains(&want), "{page}");
    assert!(page.contains(
        "Active health checks: off (HealthCheckIntervalMs is 0); failed requests still eject an engine."
    ), "{page}");
    for leaked in ["hunter2", "scanner", "127.0.0.1:1<"] {
        assert!(!page.contains(leaked), "{leaked} in {page}");
    }
}

fn detection(name: &str, tenants: &[&str], object: &str, at: u64) -> scangate::audit::Detection {
    scangate::audit::Detection {
        at,
        credential: Arc::from(name),
        kind: "token",
        tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
        client: Some("192.0.2.7:5000".parse().unwrap()),
        engine: Some(Arc::from("http://engine:9999")),
        call: "scanfile",
        version: "v3.0",
        object: Some(object.to_owned()),
        result: scangate::audit::ScanResult::Detect,
        detection: Some("EICAR-Test-File".into()),
        reason: None,
    }
}

#[tokio::test]
async fn the_detections_page_lists_the_latest_filtered_by_credential_and_tenant() {
    let c = Console::start().await;
    let (_, cookie, _) = c.sign_in(ADMIN).await;
    let cookie = cookie.unwrap();
    let empty = c.get("/console/detections", Some(&cookie)).await;
    assert_eq!(empty.status(), 200);
    let empty = empty.text().await.unwrap();
    assert!(
        empty.contains("<a href=\"/console/detections\">Detections</a>"),
        "{empty}"
    );
    assert!(
        empty.contains("No detections in the last 24 hours."),
        "{empty}"
    );
    assert!(
        empty.contains("<p id=\"none\">No detections kept.</p>"),
        "{empty}"
    );

    let now = scangate::config::validate::connections::now_secs();
    let recent = &c.gateway().recent;
    recent.push(detection("mail", &["acme"], "/scan/a.doc", now - 60), 1000);
    recent.push(detection("mail", &["acme"], "/scan/b.doc", now - 30), 1000);
    recent.push(
        detection("web", &["globex"], "/scan/<script>x</script>", now),
        1000,
    );

    let page = c
        .get("/console/detections", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            "<tr><td><a href=\"/console/detections?credential=mail\">mail</a></td><td>2</td></tr>\
             <tr><td><a href=\"/console/detections?credential=web\">web</a></td><td>1</td></tr>"
        ),
        "{page}"
    );
    // Newest first; what the engine or client named is escaped, never markup.
    let (web, b, a) = (
        page.find("/scan/&lt;script&gt;"),
        page.find("/scan/b.doc"),
        page.find("/scan/a.doc"),
    );
    assert!(web.is_some() && web < b && b < a, "{page}");
    assert!(!page.contains("<script>x"), "{page}");
    assert!(page.contains("<td>192.0.2.7:5000</td>"), "{page}");
    assert!(
        page.contains("<td class=\"result-detect\">detect</td><td>EICAR-Test-File</td>"),
        "{page}"
    );

    let by_name = c
        .get("/console/detections?credential=mail", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(by_name.contains("/scan/a.doc") && by_name.contains("/scan/b.doc"));
    assert!(!by_name.contains("/scan/&lt;script"), "{by_name}");
    let by_tenant = c
        .get("/console/detections?tenant=globex", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(by_tenant.contains("/scan/&lt;script") && !by_tenant.contains("/scan/a.doc"));
    let none = c
        .get("/console/detections?tenant=nobody", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        none.contains("<p id=\"none\">No detections kept that match.</p>"),
        "{none}"
    );

    // Signed out: no list.
    let r = c.get("/console/detections", None).await;
    assert_eq!(r.status(), 303);
}
