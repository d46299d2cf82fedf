//! End to end with the built binary: `scangate serve` as a child process, its exit codes, and a
//! search of its whole log output for the tokens and the key it handled.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{accepts, free_port, Scangate};
use common::*;

const TOKEN: &str = "sg_SecretLeakProbe-7x";
const OTHER: &str = "sg_OtherLeakProbe-8y";

/// Runs `serve` on a config that must fail at start-up, and returns its output.
fn serve_once(config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scangate"))
        .args(["serve", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn spawn_serve(config: &std::path::Path) -> Scangate {
    Scangate::spawn_logging(&["serve", "--config", config.to_str().unwrap()], "trace")
}

#[tokio::test]
async fn logs_of_a_run_never_contain_a_token_or_the_key() {
    let up = Upstream::start(Behaviour::Ok).await;
    let port = free_port();
    let cfg = Cfg::new(
        &up.url(),
        &[
            Tok::new("probe", TOKEN, true),
            Tok::new("off", OTHER, false),
        ],
    );
    let dir = ConfigDir::new(&cfg);
    let xml = cfg
        .xml()
        .replace("http://127.0.0.1:0", &format!("http://127.0.0.1:{port}"));
    std::fs::write(&dir.path, &xml).unwrap();
    let child = spawn_serve(&dir.path);
    let base = format!("http://127.0.0.1:{port}");
    let c = client();
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.get(&base).send().await.is_ok()
        })
        .await,
        "serve did not start"
    );
    // Every path a token takes: accepted, disabled, unknown-but-plausible, malformed, custom scheme.
    assert_eq!(
        status_with(&c, &format!("{base}/api/v3.0/version"), TOKEN).await,
        200
    );
    assert_eq!(status_with(&c, &format!("{base}/x"), OTHER).await, 401);
    assert_eq!(
        status_with(&c, &format!("{base}/x"), &format!("{TOKEN}x")).await,
        401
    );
    let r = c
        .get(&base)
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A reload with a broken file logs an error; the file holds only digests, never the token.
    std::fs::write(&dir.path, "<Configuration><Broken>").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_with(&c, &format!("{base}/x"), TOKEN).await, 200);

    let (status, logs) = child.stop("TERM");
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    assert!(
        logs.contains("config reload failed"),
        "reload error not logged:\n{logs}"
    );
    // The default text format: the access line of the one good request, in fmt's shape.
    let ok: Vec<&str> = (logs.lines())
        .filter(|l| l.contains("  INFO scangate::access: client=127.0.0.1:"))
        .filter(|l| l.contains(r#" path="/api/v3.0/version" status=200 "#))
        .collect();
    assert_eq!(ok.len(), 1, "one access line of the 200:\n{logs}");
    assert!(
        ok[0].contains(r#" token="probe" upstream="http://127.0.0.1:"#),
        "{}",
        ok[0]
    );
    assert!(
        ok[0].starts_with("20") && ok[0].as_bytes()[26] == b'Z',
        "{}",
        ok[0]
    );
    for secret in [TOKEN, OTHER, &base64_key()] {
        assert!(!logs.contains(secret), "secret {secret:?} found in logs");
    }
    // A loopback listener and a 0600 key: no start-up warning.
    for warning in ["in cleartext", "token key file is", "DEMO KEY"] {
        assert!(!logs.contains(warning), "{warning:?} in logs:\n{logs}");
    }
    // Nor any substring long enough to matter.
    assert!(
        !logs.contains(&TOKEN[3..15]),
        "part of the token found in logs"
    );
}

#[test]
fn bad_config_exits_64_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.xml");
    std::fs::write(
        &path,
        "<Configuration>\n  <ServerSettings>\n</Configuration>\n",
    )
    .unwrap();
    let out = serve_once(&path);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", path.display())), "{err}");
}

#[test]
fn missing_key_file_is_a_startup_error_naming_the_path() {
    let cfg = Cfg::new("http://127.0.0.1:9", &[Tok::new("a", TOKEN, true)]);
    let dir = ConfigDir::new(&cfg);
    let key = dir.dir.path().join("scangate.key");
    std::fs::remove_file(&key).unwrap();
    let out = serve_once(&dir.path);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: cannot read token key file", key.display())),
        "{err}"
    );

    std::fs::write(&key, "").unwrap();
    let out = serve_once(&dir.path);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: token key file must hold one line",
            key.display()
        )),
        "{err}"
    );
}

fn healthcheck(url: &str) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_scangate"))
        .args(["healthcheck", "--timeout-ms", "1000", "--url", url])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .code()
}

#[tokio::test]
async fn json_access_log_admin_and_healthcheck_of_the_binary() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("probe", TOKEN, true)]);
    cfg.connection = format!("http://127.0.0.1:{port}");
    cfg.admin = format!("127.0.0.1:{admin_port}");
    let dir = ConfigDir::new(&cfg);
    let child = Scangate::spawn(&[
        "--log-format",
        "json",
        "serve",
        "--config",
        dir.path.to_str().unwrap(),
    ]);
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
    assert!(
        eventually(Duration::from_secs(10), || async {
            let url = readyz.clone();
            tokio::task::spawn_blocking(move || healthcheck(&url))
                .await
                .unwrap()
                == Some(0)
        })
        .await,
        "healthcheck never passed"
    );
    let free = format!("http://127.0.0.1:{}/readyz", free_port());
    assert_eq!(healthcheck(&free), Some(1), "healthcheck of a closed port");
    let missing = format!("http://127.0.0.1:{admin_port}/nope");
    assert_eq!(healthcheck(&missing), Some(1), "healthcheck of a 404");

    let base = format!("http://127.0.0.1:{port}");
    let c = client();
    let r = c
        .post(format!("{base}/api/v3.0/scanmemory?x=1"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "upstream-ok");
    assert_eq!(
        c.get(format!("{base}/x")).send().await.unwrap().status(),
        401
    );
    let metrics = c
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"scangate_auth_failures_total{reason="missing"} 1"#),
        "{metrics}"
    );

    let (status, logs) = child.stop("TERM");
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    let access: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .filter(|v| v["target"] == "scangate::access")
        .collect();
    assert_eq!(access.len(), 2, "logs:\n{logs}");
    let ok = &access[0];
    assert!(ok["timestamp"].is_string(), "{ok}");
    assert!(
        ok["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{ok}"
    );
    assert_eq!(ok["method"], "POST");
    assert_eq!(
        ok["path"], "/api/v3.0/scanmemory",
        "the query is not logged"
    );
    assert_eq!(ok["status"], 200);
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0, "{ok}");
    assert_eq!(ok["bytes_in"], 5);
    assert_eq!(ok["bytes_out"], "upstream-ok".len());
    assert_eq!(ok["token"], "probe");
    assert_eq!(ok["upstream"], up.url());
    assert!(ok.get("reason").is_none(), "{ok}");
    let denied = &access[1];
    assert_eq!(denied["status"], 401);
    assert_eq!(denied["reason"], "missing");
    assert!(denied.get("token").is_none(), "{denied}");
    assert!(denied.get("upstream").is_none(), "{denied}");
    assert!(!logs.contains(TOKEN), "token in logs");
}

#[tokio::test]
async fn sigterm_drains_in_flight_request_refuses_new_connections_and_exits_0() {
    let up = Upstream::start(Behaviour::Delay(Duration::from_secs(1))).await;
    let port = free_port();
    let cfg = Cfg::new(&up.url(), &[Tok::new("probe", TOKEN, true)]);
    let dir = ConfigDir::new(&cfg);
    let xml = cfg
        .xml()
        .replace("http://127.0.0.1:0", &format!("http://127.0.0.1:{port}"));
    std::fs::write(&dir.path, &xml).unwrap();
    let mut child = spawn_serve(&dir.path);
    let base = format!("http://127.0.0.1:{port}");
    let c = client();
    assert!(
        accepts(port, Duration::from_secs(10)).await,
        "serve did not start"
    );
    let url = format!("{base}/api/v3.0/scanmemory");
    let in_flight = tokio::spawn({
        let c = c.clone();
        async move { status_with(&c, &url, TOKEN).await }
    });
    // Wait until the upstream holds the request, then signal.
    assert!(eventually(Duration::from_secs(5), || async { !up.seen().is_empty() }).await);
    child.signal("TERM");
    // New connections are refused while the old request drains.
    assert!(
        eventually(Duration::from_secs(2), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        })
        .await,
        "listener still accepting after SIGTERM"
    );
    assert!(
        child.is_running(),
        "exited before the in-flight request finished"
    );
    assert_eq!(in_flight.await.unwrap(), 200);
    let (status, logs) = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
}

#[tokio::test]
async fn start_up_warns_of_cleartext_tokens_an_exposed_key_and_the_demo_key() {
    use std::os::unix::fs::PermissionsExt;
    let port = free_port();
    let mut cfg = Cfg::new("http://127.0.0.1:9", &[Tok::new("probe", TOKEN, true)]);
    cfg.connection = format!("http://0.0.0.0:{port}");
    let dir = ConfigDir::new(&cfg);
    let key = dir.dir.path().join("scangate.key");
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/config/scangate.key");
    std::fs::copy(demo, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = spawn_serve(&dir.path);
    assert!(
        accepts(port, Duration::from_secs(10)).await,
        "serve did not start"
    );
    let (status, logs) = child.stop("TERM");
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    let k = key.display();
    for warning in [
        format!(
            "UseAccessToken is 1 on the plain http:// listener 0.0.0.0:{port}, which is not \
             loopback: tokens cross the network in cleartext (Scan Engine refuses token auth \
             without HTTPS); use https://, a loopback address or a unix socket"
        ),
        format!("{k}: token key file is readable or writable by others (mode 0644); run chmod o-rwx on it"),
        format!(
            "{k}: THIS IS THE PUBLIC DOCKER DEMO KEY, published with a demo token: anyone can \
             compute Values with it; write a new key and rotate every token before real use"
        ),
    ] {
        let line = logs.lines().find(|l| l.contains(&warning));
        assert!(
            line.is_some_and(|l| l.contains("WARN")),
            "no warning {warning:?} in logs:\n{logs}"
        );
    }
}

/// The access lines of a JSON log file; panics on a line that is not whole JSON.
fn access_lines(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line ({e}): {l:?}")))
        .filter(|v: &serde_json::Value| v["target"] == "scangate::access")
        .collect()
}

#[tokio::test]
async fn access_lines_reach_a_log_file_within_a_second_and_all_are_whole_at_exit() {
    let up = Upstream::start(Behaviour::Ok).await;
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("probe", TOKEN, true)]);
    cfg.connection = format!("http://127.0.0.1:{port}");
    cfg.admin = format!("127.0.0.1:{admin_port}");
    let dir = ConfigDir::new(&cfg);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("gateway.log");
    let child = Scangate::spawn_to_file(
        &[
            "--log-format",
            "json",
            "serve",
            "--threads",
            "2",
            "--config",
            dir.path.to_str().unwrap(),
        ],
        std::fs::File::create(&log).unwrap(),
    );
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
    let c = client();
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.get(&readyz).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await,
        "never ready"
    );
    let url = format!("http://127.0.0.1:{port}/api/v3.0/version");

    // One request, then an idle gateway: the worker's timer hands the line over.
    let sent = std::time::Instant::now();
    assert_eq!(status_with(&c, &url, TOKEN).await, 200);
    assert!(
        eventually(Duration::from_secs(3), || async {
            !access_lines(&log).is_empty()
        })
        .await,
        "no access line in the log 3 s after the request"
    );
    let waited = sent.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "the line took {waited:?}"
    );

    // 2000 more over 8 keep-alive clients, spread over both workers, then SIGTERM: every line is
    // in the file, each one whole.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, url) = (client(), url.clone());
            tokio::spawn(async move {
                for _ in 0..250 {
                    assert_eq!(status_with(&c, &url, TOKEN).await, 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (status, _) = child.stop("TERM");
    assert_eq!(status.code(), Some(0));
    let access = access_lines(&log);
    assert_eq!(access.len(), 2001);
    assert!(access
        .iter()
        .all(|v| v["status"] == 200 && v["token"] == "probe"));
}
