//! The non-scan methods: info, statistics, updates, OPTIONS, and v1's plain-text forms.

use std::time::{Duration, Instant};

use scangate::emulator::{EmulatorOptions, EICAR};

use crate::harness::*;

#[tokio::test]
async fn v1_other_methods() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eicar.com"), EICAR).unwrap();
    let root = dir.path().to_owned();
    let emu = Emulator::start(EmulatorOptions {
        scan_root: Some(root),
        ..Default::default()
    })
    .await;
    use reqwest::Method as M;

    let version = emu.v1(M::GET, "/version", b"").await;
    assert_eq!(version.body, "KAV SDK version: 8.8.2.58");
    let license = emu.v1(M::GET, "/licenseinfo", b"").await;
    let expected = "key file name: scangate-emulator.key\nlicense expiration date: 31.12.2099";
    assert_eq!(license.body, expected);
    let date = emu.v1(M::GET, "/basesdate", b"").await;
    let date = date
        .body
        .strip_prefix("database version: ")
        .expect(&date.body);
    assert!(is_bases_date(date), "{date}");

    let url = emu
        .v1(M::POST, "/checkurl", b"http://phishing.example/login\n")
        .await;
    assert_eq!(url.body, "DETECT PHISHING_URL");
    let path = format!("{}\n", dir.path().join("eicar.com").display());
    let req = emu
        .client
        .post(emu.url("/scanfile"))
        .header("X-KAV-ProtocolVersion", "1");
    let file = send(req.body(path)).await;
    assert_eq!(file.body, "DETECT EICAR-Test-File");
    let outside = emu.v1(M::POST, "/scanfile", b"/etc/passwd").await;
    assert_eq!(outside.body, "NON_SCANNED (ACCESS DENIED)");

    let cleared = emu.v1(M::POST, "/clearstatistics", b"").await;
    assert_eq!((cleared.status, cleared.body.as_str()), (200, ""));
    assert_eq!(cleared.header("content-length"), "0");
    assert_eq!(
        emu.get("/api/v3.0/getstatistics").await.json()["statistics"]["total_requests"],
        0
    );
}

#[tokio::test]
async fn info_methods_have_the_documented_shape() {
    let emu = Emulator::plain().await;
    let version = emu.get("/api/v3.0/version").await;
    assert_eq!(
        (version.status, version.body.as_str()),
        (200, r#"{"KAVSDKVersion":"8.8.2.58"}"#)
    );
    let license = emu.get("/api/v3.0/licenseinfo").await;
    let expected =
        r#"{"licenseName":"scangate-emulator.key","licenseExpirationDate":"31.12.2099"}"#;
    assert_eq!(license.body, expected);
    let ksn = emu.get("/api/v3.1/ksninfo").await;
    assert_eq!(ksn.body, r#"{"ksnStatus":"KSN turned off"}"#);

    let date = emu.get("/api/v3.0/basesdate").await.json();
    let date = date["databaseVersion"].as_str().unwrap();
    assert!(is_bases_date(date), "{date}");
    assert_eq!(
        emu.get("/api/v3.0/basesdate").await.header("content-type"),
        "text/plain"
    );
}

#[tokio::test]
async fn statistics_count_real_scans_and_clear() {
    let emu = Emulator::plain().await;
    let zero = serde_json::json!({ "statistics": {
        "total_requests": 0, "infected_requests": 0, "protected_requests": 0, "error_requests": 0,
        "engine_errors": 0, "processed_data": 0, "infected_data": 0, "processed_urls": 0,
        "infected_urls": 0,
    }});
    assert_eq!(emu.get("/api/v3.0/getstatistics").await.json(), zero);

    let eicar = eicar_padded();
    emu.post("/api/v3.0/scanmemory", &scan_body(&b64(b"hello")))
        .await;
    emu.post("/api/v3.1/scanmemory", &scan_body(&b64(&eicar)))
        .await;
    emu.post("/api/v3.0/scanfile", &scan_body("/etc/passwd"))
        .await;
    emu.post(
        "/api/v3.0/checkurl",
        r#"{"url":"http://phishing.example/"}"#,
    )
    .await;
    emu.post("/api/v3.0/checkurl", r#"{"url":"http://example.com/"}"#)
        .await;
    emu.v1(reqwest::Method::POST, "/scanmemory", EICAR).await;
    // Refused requests are not scans.
    emu.post("/api/v3.0/scanmemory", "not json").await;
    emu.post("/scanmemory", "no protocol header").await;

    let stats = emu.get("/api/v3.0/getstatistics").await.json();
    let expected = serde_json::json!({ "statistics": {
        "total_requests": 6, "infected_requests": 3, "protected_requests": 0, "error_requests": 1,
        "engine_errors": 0, "processed_data": 5 + eicar.len() + EICAR.len(),
        "infected_data": eicar.len() + EICAR.len(), "processed_urls": 2, "infected_urls": 1,
    }});
    assert_eq!(stats, expected);

    let cleared = emu.post("/api/v3.0/clearstatistics", "{}").await;
    assert_eq!(
        (cleared.status, cleared.body.as_str()),
        (200, r#"{"error":"CLEARED"}"#)
    );
    assert_eq!(emu.get("/api/v3.0/getstatistics").await.json(), zero);
}

#[tokio::test]
async fn update_start_then_status_while_running() {
    let opts = EmulatorOptions {
        update_duration: Duration::from_secs(3600),
        ..Default::default()
    };
    let emu = Emulator::start(opts).await;
    let idle = emu.get("/api/v3.0/update/status").await.json();
    assert_eq!(idle["status"], "not started");
    assert_eq!(idle["last_update_result"], "success");
    assert!(
        is_shape(
            idle["last_update_time"].as_str().unwrap(),
            "00:00:00 00.00.0000"
        ),
        "{idle}"
    );
    assert_eq!(idle.as_object().unwrap().len(), 3, "{idle}");

    let started = emu.post("/api/v3.0/update/start", "{}").await;
    assert_eq!(
        (started.status, started.body.as_str()),
        (200, r#"{"status":"update started"}"#)
    );
    let again = emu.post("/api/v3.0/update/start", "{}").await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (200, r#"{"status":"update already launched"}"#)
    );

    for path in ["/api/v3.0/update/status", "/api/v3.1/update/status"] {
        let running = emu.get(path).await.json();
        assert_eq!(running["status"], "in progress", "{running}");
        assert!(running["progress"].as_u64().unwrap() < 100, "{running}");
        assert_eq!(running.as_object().unwrap().len(), 2, "{running}");
    }
}

#[tokio::test]
async fn update_finishes_and_can_run_again() {
    let opts = EmulatorOptions {
        update_duration: Duration::from_millis(50),
        ..Default::default()
    };
    let emu = Emulator::start(opts).await;
    assert_eq!(
        emu.post("/api/v3.0/update/start", "{}").await.body,
        r#"{"status":"update started"}"#
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let status = emu.get("/api/v3.1/update/status").await.json();
        if status["status"] == "not started" {
            break status;
        }
        assert!(Instant::now() < deadline, "update never finished: {status}");
        tokio::task::yield_now().await;
    };
    assert_eq!(done["last_update_result"], "success");
    assert_eq!(
        emu.post("/api/v3.0/update/start", "{}").await.body,
        r#"{"status":"update started"}"#
    );
}

#[tokio::test]
async fn options_lists_the_allowed_methods() {
    let emu = Emulator::plain().await;
    for (path, allow) in [
        ("/api/v3.0/scanmemory", "OPTIONS, POST"),
        ("/api/v3.1/scanfile", "OPTIONS, POST"),
        ("/api/v3.0/clearstatistics", "OPTIONS, POST"),
        ("/api/v3.0/basesdate", "OPTIONS, GET"),
        ("/api/v3.1/update/status", "OPTIONS, GET"),
        ("/scanmemory", "OPTIONS, POST"),
    ] {
        let req = emu.client.request(reqwest::Method::OPTIONS, emu.url(path));
        let reply = send(req).await;
        assert_eq!(
            (reply.status, reply.header("allow")),
            (200, allow),
            "{path}"
        );
        assert_eq!(
            (reply.header("content-length"), reply.body.as_str()),
            ("0", ""),
            "{path}"
        );
    }
}
