//! The web console in a real headless Chromium over WebDriver, against a real `scangate serve`:
//! sign in, add a token and use it at the gateway within 3 s, disable it and see 401, add an API
//! connection and exchange its refresh token, read-only mode, sign out; and the Detections page
//! after EICAR scans through the gateway, with its tenant filter.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test says why and passes,
//! unless `SCANGATE_REQUIRE_BROWSER=1` (CI), where it fails. With `SCANGATE_SCREENSHOTS=DIR` it
//! saves screenshots of the main pages there (the README's come from `docs/console`).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::process::{accepts, free_port, Scangate};
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

const ADMIN: &str = "sg_BrowserAdmin-1";

/// chromedriver as a child, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The chromedriver binary, or why there is none.
fn chromedriver() -> Result<PathBuf, String> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("chromedriver");
        if p.is_file() {
            return Ok(p);
        }
    }
    let fallback = PathBuf::from("/usr/bin/chromedriver");
    if fallback.is_file() {
        return Ok(fallback);
    }
    Err("chromedriver not found (apt-get install chromium chromium-driver)".into())
}

async fn browser() -> Result<(Driver, Client), String> {
    let bin = chromedriver()?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start chromedriver: {e}"))?;
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = client();
    let status = format!("{url}/status");
    if !eventually(Duration::from_secs(10), || async {
        http.get(&status).send().await.is_ok()
    })
    .await
    {
        return Err("chromedriver did not answer".into());
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .map_err(|e| format!("cannot start a Chromium session: {e}"))?;
    Ok((driver, client))
}

async fn shot(c: &Client, name: &str) {
    let Some(dir) = std::env::var_os("SCANGATE_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn wait_for(c: &Client, css: &str) {
    if let Err(e) = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
    {
        let url = c.current_url().await.map(|u| u.to_string());
        let page = c.source().await.unwrap_or_default();
        panic!("{css}: {e}\nat {url:?}:\n{page}");
    }
}

#[tokio::test]
async fn console_in_a_real_browser() {
    let required = std::env::var("SCANGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (_driver, c) = match browser().await {
        Ok(b) => b,
        Err(why) if !required => {
            eprintln!("skipped: {why} (set SCANGATE_REQUIRE_BROWSER=1 to fail instead)");
            return;
        }
        Err(why) => panic!("{why}"),
    };

    let up = Upstream::start(Behaviour::Ok).await;
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("admin", ADMIN, true)]);
    cfg.admin = format!("127.0.0.1:{admin_port}");
    cfg.connection = format!("http://127.0.0.1:{port}");
    let dir = ConfigDir::new(&cfg);
    let serve = Scangate::spawn(&["serve", "--config", dir.path.to_str().unwrap()]);
    let gateway = format!("http://127.0.0.1:{port}");
    let console = format!("http://127.0.0.1:{admin_port}/console");
    let http = client();
    let health = format!("http://127.0.0.1:{admin_port}/healthz");
    assert!(
        eventually(Duration::from_secs(10), || async {
            http.get(&health).send().await.is_ok()
        })
        .await,
        "serve did not start"
    );

    // Sign in.
    c.goto(&format!("{console}/login")).await.unwrap();
    shot(&c, "sign-in").await;
    fill(&c, "#token", ADMIN).await;
    click(&c, "#sign-in").await;
    wait_for(&c, "#tokens").await;

    // Add a token; the Token info page shows it once.
    c.goto(&format!("{console}/add")).await.unwrap();
    fill(&c, "#name", "browser-token").await;
    fill(&c, "#tenants", "acme").await;
    click(&c, "#role option[value='']").await;
    fill(&c, "#add-description", "added in Chromium").await;
    shot(&c, "add").await;
    click(&c, "#generate").await;
    wait_for(&c, "#secret").await;
    shot(&c, "token-info").await;
    let token = text_of(&c, "#secret").await;
    assert!(token.starts_with("sg_"), "{token}");
    let version = format!("{gateway}/api/v3.0/version");
    assert!(
        eventually(Duration::from_secs(3), || async {
            status_with(&http, &version, &token).await == 200
        })
        .await,
        "the new token did not work within 3 s"
    );

    // Disable it from its page: 401.
    click(&c, "#close").await;
    wait_for(&c, "#do-disable").await;
    click(&c, "#do-disable").await;
    wait_for(&c, "#notice").await;
    assert_eq!(text_of(&c, "#state").await, "disabled");
    shot(&c, "item").await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            status_with(&http, &version, &token).await == 401
        })
        .await,
        "the disabled token still worked after 3 s"
    );

    // Add an API connection and exchange its refresh token.
    c.goto(&format!("{console}/add")).await.unwrap();
    click(&c, "#kind option[value='connection']").await;
    fill(&c, "#name", "browser-connection").await;
    click(&c, "#generate").await;
    wait_for(&c, "#client-id").await;
    let client_id = text_of(&c, "#client-id").await;
    let refresh = text_of(&c, "#secret").await;
    let confirm = format!("{gateway}/api/v1/{client_id}/session/confirm");
    let body = serde_json::json!({ "refresh_token": refresh }).to_string();
    // The gateway reloads the new connection within 3 s; until then the exchange is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let access = loop {
        let r = http
            .post(&confirm)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let json: serde_json::Value = r.json().await.unwrap();
            break json["access_token"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exchange within 3 s: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status_with(&http, &version, &access).await, 200);
    c.goto(&format!("{console}/")).await.unwrap();
    shot(&c, "all-tokens").await;
    let list = text_of(&c, "#tokens").await;
    assert!(
        list.contains("browser-connection") && list.contains("active"),
        "{list}"
    );

    // Read-only: a config without write permission.
    use std::os::unix::fs::PermissionsExt;
    let perms = |mode| std::fs::Permissions::from_mode(mode);
    std::fs::set_permissions(&dir.path, perms(0o444)).unwrap();
    c.goto(&format!("{console}/add")).await.unwrap();
    wait_for(&c, "#read-only").await;
    shot(&c, "read-only").await;
    let generate = c.find(Locator::Css("#generate")).await.unwrap();
    assert!(
        !generate.is_enabled().await.unwrap(),
        "Generate is off in read-only mode"
    );
    std::fs::set_permissions(&dir.path, perms(0o644)).unwrap();

    // Sign out: the console asks for a token again.
    click(&c, "#sign-out").await;
    wait_for(&c, "#sign-in").await;
    c.goto(&format!("{console}/")).await.unwrap();
    wait_for(&c, "#sign-in").await;
    c.close().await.unwrap();

    // One audit line per action, and no secret anywhere in the log.
    let (_, logs) = serve.stop("TERM");
    for secret in [ADMIN, token.as_str(), refresh.as_str(), access.as_str()] {
        assert!(!logs.contains(secret), "a secret in the log:\n{logs}");
    }
    let audit: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("scangate::audit"))
        .collect();
    for action in ["sign-in", "add", "disable", "sign-out"] {
        assert!(
            audit
                .iter()
                .any(|l| l.contains(action) && l.contains("admin") && l.contains("127.0.0.1")),
            "no audit line for {action}:\n{}",
            audit.join("\n")
        );
    }
}

/// The Detections page in Chromium: EICAR scanned through the gateway (the emulator as engine)
/// shows up under its credential, and the tenant filter form narrows the list.
#[tokio::test]
async fn detections_page_in_a_real_browser() {
    let required = std::env::var("SCANGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (_driver, c) = match browser().await {
        Ok(b) => b,
        Err(why) if !required => {
            eprintln!("skipped: {why} (set SCANGATE_REQUIRE_BROWSER=1 to fail instead)");
            return;
        }
        Err(why) => panic!("{why}"),
    };
    const MAIL: &str = "sg_BrowserMail-1";
    const WEB: &str = "sg_BrowserWeb-1";
    let engine_port = free_port();
    let _engine = Scangate::spawn(&["emulator", "--listen", &format!("127.0.0.1:{engine_port}")]);
    // Engines count as up until their checks fail, so the gateway is ready at once: a scan sent
    // before the emulator listens finds its port closed and gets 502 (CI under load once did).
    assert!(
        accepts(engine_port, Duration::from_secs(10)).await,
        "the emulator did not start listening"
    );
    let (port, admin_port) = (free_port(), free_port());
    let toks = [
        Tok::new("admin", ADMIN, true),
        Tok::new("mail", MAIL, true).with_tenants(&["acme"]),
        Tok::new("web", WEB, true).with_tenants(&["globex"]),
    ];
    let mut cfg = Cfg::new(&format!("http://127.0.0.1:{engine_port}"), &toks);
    cfg.admin = format!("127.0.0.1:{admin_port}");
    cfg.connection = format!("http://127.0.0.1:{port}");
    let dir = ConfigDir::new(&cfg);
    let _serve = Scangate::spawn(&["serve", "--config", dir.path.to_str().unwrap()]);
    let http = client();
    let ready = format!("http://127.0.0.1:{admin_port}/readyz");
    assert!(
        eventually(Duration::from_secs(10), || async {
            http.get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "serve did not get ready"
    );
    use base64::Engine as _;
    let eicar = base64::engine::general_purpose::STANDARD.encode(scangate::emulator::EICAR);
    for (token, name) in [(MAIL, "mail.eml"), (WEB, "upload.bin")] {
        let r = http
            .post(format!("http://127.0.0.1:{port}/api/v3.1/scanmemory"))
            .bearer_auth(token)
            .body(format!(r#"{{"object":"{eicar}","name":"{name}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let console = format!("http://127.0.0.1:{admin_port}/console");
    c.goto(&format!("{console}/login")).await.unwrap();
    fill(&c, "#token", ADMIN).await;
    click(&c, "#sign-in").await;
    wait_for(&c, "#tokens").await;
    click(&c, "header a[href='/console/detections']").await;
    wait_for(&c, "#detections").await;
    let counts = text_of(&c, "#counts").await;
    assert!(
        counts.contains("mail") && counts.contains("web"),
        "{counts}"
    );
    let list = text_of(&c, "#detections").await;
    assert!(
        list.contains("mail.eml") && list.contains("upload.bin"),
        "{list}"
    );
    assert!(list.contains("EICAR-Test-File"), "{list}");
    shot(&c, "detections").await;

    fill(&c, "#filter input[name='tenant']", "globex").await;
    click(&c, "#filter button").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("tenant=globex")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the filter form did not submit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(&c, "#detections").await;
    let list = text_of(&c, "#detections").await;
    assert!(
        list.contains("upload.bin") && !list.contains("mail.eml"),
        "{list}"
    );
    c.close().await.unwrap();
}
