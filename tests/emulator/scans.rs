//! Scans: scanmemory (v3.0, v3.1, v1), scanfile and its root, checkurl, the scan delay.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use scangate::emulator::{self, EmulatorOptions, EICAR};
use scangate::net::Listener;

use crate::harness::*;

#[tokio::test]
async fn scanmemory_v30_clean_and_detect_with_the_engine_envelope() {
    let emu = Emulator::plain().await;
    let clean = emu
        .post("/api/v3.0/scanmemory", &scan_body(&b64(b"hello")))
        .await;
    assert_eq!((clean.status, clean.body.as_str()), (200, CLEAN_MEMORY));
    assert_eq!(clean.header("server"), "KAVHTTPD/1.0");
    assert_eq!(clean.header("x-kav-protocolversion"), "3");
    assert_eq!(clean.header("content-type"), "text/plain");
    assert_eq!(
        clean.header("connection"),
        "<none>",
        "keep-alive is not switched off"
    );

    let detect = emu
        .post("/api/v3.0/scanmemory", &scan_body(&b64(&eicar_padded())))
        .await;
    assert_eq!((detect.status, detect.body.as_str()), (200, EICAR_MEMORY));

    let no_timeout = emu.post("/api/v3.0/scanmemory", r#"{"object":""}"#).await;
    assert_eq!(
        (no_timeout.status, no_timeout.body.as_str()),
        (200, CLEAN_MEMORY)
    );
}

#[tokio::test]
async fn scanmemory_v31_echoes_name_and_takes_a_numeric_timeout() {
    let emu = Emulator::plain().await;
    let body = serde_json::json!({ "timeout": 10000, "object": b64(EICAR), "name": "eicar.com" });
    let detect = emu.post("/api/v3.1/scanmemory", &body.to_string()).await;
    let expected = r#"{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File","name":"eicar.com"}"#;
    assert_eq!((detect.status, detect.body.as_str()), (200, expected));

    let clean = emu
        .post("/api/v3.1/scanmemory", &scan_body(&b64(b"hello")))
        .await;
    assert_eq!((clean.status, clean.body.as_str()), (200, CLEAN_MEMORY));

    let named = r#"{"object":"aGVsbG8=","name":"a.txt"}"#;
    let clean = emu.post("/api/v3.0/scanmemory", named).await;
    assert_eq!(clean.body, CLEAN_MEMORY, "v3.0 does not echo name");
}

#[tokio::test]
async fn scan_delay_applies_and_a_shorter_timeout_cancels() {
    let opts = EmulatorOptions {
        scan_delay: Duration::from_millis(300),
        ..Default::default()
    };
    let emu = Emulator::start(opts).await;
    let started = Instant::now();
    let clean = emu.post("/api/v3.0/scanmemory", &scan_body("")).await;
    assert_eq!(clean.body, CLEAN_MEMORY);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let short = r#"{"timeout":"20","object":""}"#;
    let canceled = emu.post("/api/v3.0/scanmemory", short).await;
    assert_eq!(
        canceled.body,
        r#"{"object":"memory","scanResult":"NON_SCANNED (CANCELED)"}"#
    );
    let canceled = emu.post("/api/v3.1/scanmemory", short).await;
    let expected = r#"{"object":"memory","scanResult":"NON_SCANNED","reason":"Canceled"}"#;
    assert_eq!(canceled.body, expected);
}

#[tokio::test]
async fn v1_scanmemory_answers_in_plain_text() {
    let emu = Emulator::plain().await;
    let clean = emu.v1(reqwest::Method::POST, "/scanmemory", b"hello").await;
    assert_eq!((clean.status, clean.body.as_str()), (200, "CLEAN"));
    assert_eq!(clean.header("x-kav-protocolversion"), "1");
    assert_eq!(clean.header("content-type"), "text/plain");
    assert_eq!(clean.header("server"), "KAVHTTPD/1.0");

    let detect = emu.v1(reqwest::Method::POST, "/scanmemory", EICAR).await;
    assert_eq!(
        (detect.status, detect.body.as_str()),
        (200, "DETECT EICAR-Test-File")
    );
}

#[tokio::test]
async fn scanfile_inside_the_root_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clean.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("eicar.bin"), eicar_padded()).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let opts = EmulatorOptions {
        scan_root: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let emu = Emulator::start(opts).await;

    for (name, result) in [
        ("clean.txt", r#""scanResult":"CLEAN"}"#),
        (
            "eicar.bin",
            r#""scanResult":"DETECT","detectionName":"EICAR-Test-File"}"#,
        ),
        ("sub", r#""scanResult":"NON_SCANNED (SKIPPED)"}"#),
        ("sub/../clean.txt", r#""scanResult":"CLEAN"}"#),
    ] {
        let path = dir.path().join(name).display().to_string();
        let reply = emu.post("/api/v3.0/scanfile", &scan_body(&path)).await;
        let expected = format!(
            r#"{{"object":{},{result}"#,
            serde_json::to_string(&path).unwrap()
        );
        assert_eq!((reply.status, reply.body), (200, expected), "{name}");
    }
}

#[tokio::test]
async fn scanfile_outside_the_root_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(dir.path().join("outside"), EICAR).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).unwrap();
    let emu = Emulator::start(EmulatorOptions {
        scan_root: Some(root.clone()),
        ..Default::default()
    })
    .await;

    let denied = |path: &Path| {
        let path = serde_json::to_string(&path.display().to_string()).unwrap();
        (
            format!(r#"{{"object":{path},"scanResult":"NON_SCANNED (ACCESS DENIED)"}}"#),
            format!(r#"{{"object":{path},"scanResult":"NON_SCANNED","reason":"Access denied"}}"#),
        )
    };
    for path in [
        dir.path().join("outside"),
        root.join("../outside"),
        root.join("link"),
        root.join("missing"),
        "root/link".into(),
    ] {
        let body = scan_body(&path.display().to_string());
        let (v30, v31) = denied(&path);
        assert_eq!(emu.post("/api/v3.0/scanfile", &body).await.body, v30);
        assert_eq!(emu.post("/api/v3.1/scanfile", &body).await.body, v31);
    }

    let no_root = Emulator::plain().await;
    let path = dir.path().join("outside");
    let reply = no_root
        .post(
            "/api/v3.0/scanfile",
            &scan_body(&path.display().to_string()),
        )
        .await;
    assert_eq!(
        reply.body,
        denied(&path).0,
        "without --scan-root every scanfile is denied"
    );
}

#[tokio::test]
async fn a_missing_scan_root_fails_at_start() {
    let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let opts = EmulatorOptions {
        scan_root: Some("/nonexistent/scan/root".into()),
        ..Default::default()
    };
    let err = emulator::run(listener, opts, std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[tokio::test]
async fn checkurl_detects_listed_hosts() {
    let emu = Emulator::plain().await;
    for (url, tail) in [
        (
            "http://malicious.example/x",
            r#""scanResult":"DETECT","detectionName":"MALICIOUS_URL"}"#,
        ),
        (
            "http://malware.testing.google.test/testing/malware/",
            r#""scanResult":"DETECT","detectionName":"MALICIOUS_URL"}"#,
        ),
        (
            "https://login.phishing.example/",
            r#""scanResult":"DETECT","detectionName":"PHISHING_URL"}"#,
        ),
        ("http://example.com/", r#""scanResult":"CLEAN"}"#),
    ] {
        let body = serde_json::json!({ "timeout": "10000", "url": url }).to_string();
        let reply = emu.post("/api/v3.0/checkurl", &body).await;
        let expected = format!(r#"{{"url":{},{tail}"#, serde_json::to_string(url).unwrap());
        assert_eq!((reply.status, reply.body), (200, expected));
    }
}
