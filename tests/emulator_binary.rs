//! End to end with the built binary: a `scangate emulator` process behind a `scangate serve`
//! process, both started here, over TCP and over a unix socket; and the emulator's flags and exit
//! codes.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::process::{free_port, Scangate};
use common::*;
use scangate::emulator::EICAR;

const TOKEN: &str = "sg_EndToEndProbe-4q";

/// The scanmemory body for `bytes`.
fn scan_body(bytes: &[u8]) -> String {
    let object = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(r#"{{"object":"{object}"}}"#)
}

async fn wait_for(c: &reqwest::Client, url: &str) {
    let up = eventually(Duration::from_secs(10), || async {
        c.get(url).send().await.is_ok()
    })
    .await;
    assert!(up, "{url} did not come up");
}

/// The emulator's `total_requests`, asked directly (not through the gateway).
async fn total_requests(c: &reqwest::Client, emulator: &str) -> u64 {
    let stats: serde_json::Value = c
        .get(format!("{emulator}/api/v3.0/getstatistics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["statistics"]["total_requests"].as_u64().unwrap()
}

/// `scangate serve` on a free port in front of `upstream`, with one token.
async fn serve_in_front_of(c: &reqwest::Client, upstream: &str) -> (Scangate, ConfigDir, String) {
    let mut cfg = Cfg::new(upstream, &[Tok::new("e2e", TOKEN, true)]);
    let port = free_port();
    cfg.connection = format!("http://127.0.0.1:{port}");
    let dir = ConfigDir::new(&cfg);
    let serve = Scangate::spawn(&["serve", "--config", dir.path.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{port}");
    wait_for(c, &url).await;
    (serve, dir, url)
}

#[tokio::test]
async fn eicar_through_serve_to_emulator_processes_and_401_never_reaches_it() {
    let c = client();
    let emulator_port = free_port();
    let emulator = Scangate::spawn(&[
        "emulator",
        "--listen",
        &format!("127.0.0.1:{emulator_port}"),
    ]);
    let emulator_url = format!("http://127.0.0.1:{emulator_port}");
    wait_for(&c, &emulator_url).await;
    let (serve, _dir, gateway) = serve_in_front_of(&c, &emulator_url).await;
    let scan = format!("{gateway}/api/v3.0/scanmemory");

    let before = total_requests(&c, &emulator_url).await;
    let r = c
        .post(&scan)
        .bearer_auth(TOKEN)
        .body(scan_body(EICAR))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File"}"#
    );
    assert_eq!(total_requests(&c, &emulator_url).await, before + 1);

    // No token, then a wrong one: 401 from the gateway, and the emulator counts nothing.
    let r = c.post(&scan).body(scan_body(EICAR)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), r#"{"error":"missing API token"}"#);
    let r = c
        .post(&scan)
        .bearer_auth(format!("{TOKEN}x"))
        .body(scan_body(EICAR))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(total_requests(&c, &emulator_url).await, before + 1);

    let (status, logs) = serve.stop("TERM");
    assert_eq!(status.code(), Some(0), "serve logs:\n{logs}");
    // SIGINT is what Ctrl-C sends; the emulator stops as cleanly on it.
    let (status, logs) = emulator.stop("INT");
    assert_eq!(status.code(), Some(0), "emulator logs:\n{logs}");
    assert!(logs.contains("emulator stopped"), "{logs}");
}

#[tokio::test]
async fn emulator_process_on_a_unix_socket_with_its_flags() {
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kav.sock");
    let root = dir.path().join("files");
    std::fs::create_dir(&root).unwrap();
    let sample = root.join("eicar.com");
    std::fs::write(&sample, EICAR).unwrap();
    let emulator = Scangate::spawn(&[
        "emulator",
        "--listen",
        socket.to_str().unwrap(),
        "--scan-root",
        root.to_str().unwrap(),
        "--max-body",
        "1000",
        "--scan-delay-ms",
        "1",
    ]);
    let (serve, _config, gateway) = serve_in_front_of(&c, socket.to_str().unwrap()).await;
    let post = |path: &str, body: String| {
        c.post(format!("{gateway}{path}"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };

    // --scan-root: a file under it is scanned, by path, on the emulator's side.
    let body = serde_json::json!({ "object": sample }).to_string();
    let up = eventually(Duration::from_secs(10), || async {
        matches!(post("/api/v3.0/scanfile", body.clone()).await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(up, "emulator on {} did not come up", socket.display());
    let r = post("/api/v3.0/scanfile", body).await.unwrap();
    let reply: serde_json::Value = r.json().await.unwrap();
    assert_eq!(reply["scanResult"], "DETECT", "{reply}");
    assert_eq!(reply["detectionName"], "EICAR-Test-File");

    // --max-body: 1000 bytes pass, 1001 get the emulator's 413 (the gateway allows 1 MiB).
    let padded = |len: usize| {
        let body = scan_body(b"clean");
        format!("{body}{}", " ".repeat(len - body.len()))
    };
    assert_eq!(
        post("/api/v3.0/scanmemory", padded(1000))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("/api/v3.0/scanmemory", padded(1001))
            .await
            .unwrap()
            .status(),
        413
    );

    assert_eq!(serve.stop("TERM").0.code(), Some(0));
    let (status, logs) = emulator.stop("TERM");
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(!socket.exists(), "the socket file outlived the emulator");
}

#[test]
fn emulator_bad_flags_exit_with_the_reason() {
    let missing = Scangate::spawn(&[
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--scan-root",
        "/nonexistent/scangate-root",
    ]);
    let (status, err) = missing.wait();
    assert_eq!(status.code(), Some(64));
    assert!(
        err.contains("scangate emulator: --scan-root /nonexistent/scangate-root: No such file"),
        "{err}"
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    let (status, err) =
        Scangate::spawn(&["emulator", "--listen", "127.0.0.1:0", "--scan-root", path]).wait();
    assert_eq!(status.code(), Some(64));
    assert!(
        err.contains(&format!("--scan-root {path}: not a folder")),
        "{err}"
    );

    let (status, err) = Scangate::spawn(&["emulator", "--listen", "kav.sock"]).wait();
    assert_ne!(status.code(), Some(0));
    assert!(
        err.contains("invalid value 'kav.sock' for '--listen <ADDR>': needs a port"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, err) = Scangate::spawn(&["emulator", "--listen", &addr]).wait();
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!("scangate emulator: cannot listen on {addr}: ")),
        "{err}"
    );
}
