//! The scan audit (issue 18) with the emulator as the engine: verdicts counted per token, one
//! `scangate::audit` JSON line per detection (never the content, never a token), answers that are
//! not verdicts counted as such and passed on unchanged, and getstatistics per credential.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::process::{free_port, Scangate};
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use scangate::emulator::{EmulatorOptions, EICAR};
use scangate::net::Listener;
use tokio::sync::oneshot;

const TOKEN_A: &str = "sg_Audit-Alpha-1";
const TOKEN_B: &str = "sg_Audit-Bravo-1";

fn toks() -> Vec<Tok> {
    vec![
        Tok::new("alpha", TOKEN_A, true).with_tenants(&["acme", "globex"]),
        Tok::new("bravo", TOKEN_B, true),
    ]
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The emulator in this process, scanning files under `root`.
async fn emulator(root: Option<&Path>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = EmulatorOptions {
        scan_root: root.map(Path::to_path_buf),
        ..EmulatorOptions::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let stop = async {
            let _ = rx.await;
        };
        scangate::emulator::run(listener, opts, stop).await.unwrap();
    });
    (addr, tx)
}

/// An engine that answers every request with `status` and `body`, as they are.
async fn canned(status: u16, body: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    let resp = http::Response::builder()
                        .status(status)
                        .header("content-type", "text/plain")
                        .body(Full::new(Bytes::from_static(body)))
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn post(url: &str, token: &str, body: impl Into<reqwest::Body>) -> (u16, Bytes) {
    let r = client()
        .post(url)
        .bearer_auth(token)
        .header("X-KAV-ProtocolVersion", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap())
}

/// The value of one series in the metrics text (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn audit_lines(logs: &str) -> Vec<serde_json::Value> {
    (logs.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "scangate::audit")
        .collect()
}

/// The gateway binary with JSON logs and `RUST_LOG=level`, in front of `engine`; returns it with
/// its client and admin base URLs once it is ready.
async fn gateway_binary(
    engine: &str,
    gateway_extra: &str,
    level: &str,
) -> (Scangate, ConfigDir, String, String) {
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = Cfg::new(engine, &toks());
    cfg.connection = format!("http://127.0.0.1:{port}");
    cfg.admin = format!("127.0.0.1:{admin_port}");
    cfg.gateway_extra = gateway_extra.to_owned();
    let dir = ConfigDir::new(&cfg);
    let args = ["--log-format", "json", "serve", "--config"];
    let child =
        Scangate::spawn_logging(&[&args[..], &[dir.path.to_str().unwrap()]].concat(), level);
    let admin = format!("http://127.0.0.1:{admin_port}");
    let c = client();
    let ready = eventually(Duration::from_secs(10), || async {
        let r = c.get(format!("{admin}/readyz")).send().await;
        r.is_ok_and(|r| r.status() == 200)
    });
    assert!(ready.await, "never ready");
    (child, dir, format!("http://127.0.0.1:{port}"), admin)
}

#[tokio::test]
async fn eicar_through_a_and_clean_data_through_b_are_counted_per_token_and_audited_once() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("clean.txt"), b"just text").unwrap();
    let (engine, _stop) = emulator(Some(root.path())).await;
    let engine = format!("http://{engine}");
    // The access log off: the audit line is a target of its own, routed apart from it.
    let (child, _dir, url, admin) = gateway_binary(&engine, "", "info,scangate::access=off").await;

    // A: EICAR in memory, named (v3.1). B: clean memory (v3.0, v1) and a clean file (v3.0).
    let eicar_body = format!(r#"{{"object":"{}","name":"invoice.pdf"}}"#, b64(EICAR));
    let (status, answer) = post(
        &format!("{url}/api/v3.1/scanmemory"),
        TOKEN_A,
        eicar_body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // The client gets the engine's answer as the engine wrote it.
    let direct = client()
        .post(format!("{engine}/api/v3.1/scanmemory"))
        .body(eicar_body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(answer, direct);
    let clean = format!(r#"{{"object":"{}"}}"#, b64(b"hello, world"));
    assert_eq!(
        post(&format!("{url}/api/v3.0/scanmemory"), TOKEN_B, clean)
            .await
            .0,
        200
    );
    let (status, answer) = post(&format!("{url}/scanmemory"), TOKEN_B, "plain text").await;
    assert_eq!((status, &answer[..]), (200, &b"CLEAN"[..]));
    let file = format!(
        r#"{{"object":"{}"}}"#,
        root.path().join("clean.txt").display()
    );
    assert_eq!(
        post(&format!("{url}/api/v3.0/scanfile"), TOKEN_B, file)
            .await
            .0,
        200
    );
    // A CORS preflight to a scan path, and a call that is not a scan: not counted at all.
    let r = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{url}/api/v3.0/scanmemory"),
        )
        .bearer_auth(TOKEN_B)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{url}/api/v3.0/version"))
        .bearer_auth(TOKEN_B)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let text = client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A family's series come in hash order: compare them sorted.
    let mut results: Vec<&str> = (text.lines())
        .filter(|l| {
            l.starts_with("scangate_scan_results_total{")
                || l.starts_with("scangate_detections_total{")
        })
        .collect();
    results.sort_unstable();
    assert_eq!(
        results,
        [
            r#"scangate_detections_total{token="alpha"} 1"#,
            r#"scangate_scan_results_total{token="alpha",result="detect"} 1"#,
            r#"scangate_scan_results_total{token="bravo",result="clean"} 3"#,
        ],
        "{text}"
    );

    let (status, logs) = child.stop("TERM");
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    assert!(
        !logs.contains(r#""target":"scangate::access""#),
        "RUST_LOG silenced the access log only:\n{logs}"
    );
    let lines = audit_lines(&logs);
    assert_eq!(lines.len(), 1, "logs:\n{logs}");
    let line = lines[0].as_object().unwrap();
    let client_addr = line["client"].as_str().unwrap();
    assert!(client_addr.starts_with("127.0.0.1:"), "{client_addr}");
    let mut fields: Vec<(&str, &serde_json::Value)> = line
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "timestamp" | "client"))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    fields.sort_by_key(|(k, _)| *k);
    let expected = serde_json::json!({
        "level": "WARN",
        "message": "scan",
        "target": "scangate::audit",
        "credential": "alpha",
        "kind": "token",
        "tenants": "acme,globex",
        "engine": engine,
        "call": "scanmemory",
        "version": "v3.1",
        "object": "invoice.pdf",
        "result": "detect",
        "detection": "EICAR-Test-File",
    });
    let mut want: Vec<(&str, &serde_json::Value)> = expected
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    want.sort_by_key(|(k, _)| *k);
    assert_eq!(fields, want);
    assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    // Neither the scanned content (raw or Base64) nor a token is anywhere in the logs.
    for secret in [
        TOKEN_A,
        TOKEN_B,
        std::str::from_utf8(EICAR).unwrap(),
        &b64(EICAR),
        "hello, world",
        "plain text",
    ] {
        assert!(!logs.contains(secret), "{secret:?} in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn non_scanned_is_audited_behind_its_setting_and_objects_can_be_redacted() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("eicar.com"), EICAR).unwrap();
    let (engine, _stop) = emulator(Some(root.path())).await;
    let engine = format!("http://{engine}");
    let extra = "<Audit><LogNonScanned>1</LogNonScanned><RedactObjects>1</RedactObjects></Audit>";
    let (child, _dir, url, _admin) = gateway_binary(&engine, extra, "info").await;

    let eicar = root.path().join("eicar.com");
    let (status, answer) = post(
        &format!("{url}/scanfile"),
        TOKEN_A,
        eicar.display().to_string(),
    )
    .await;
    assert_eq!((status, &answer[..]), (200, &b"DETECT EICAR-Test-File"[..]));
    // A file that is not there: the emulator answers NON_SCANNED (ACCESS DENIED).
    let missing = root.path().join("secret-plans.doc");
    let body = format!(r#"{{"object":"{}"}}"#, missing.display());
    let (status, answer) = post(&format!("{url}/api/v3.0/scanfile"), TOKEN_B, body).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&answer).contains("NON_SCANNED (ACCESS DENIED)"));

    let (_, logs) = child.stop("TERM");
    let mut lines = audit_lines(&logs);
    // Lines from different worker threads need not be in request order.
    lines.sort_by_key(|l| l["credential"].as_str().unwrap_or_default().to_owned());
    assert_eq!(lines.len(), 2, "logs:\n{logs}");
    assert_eq!(
        (
            &lines[0]["credential"],
            &lines[0]["version"],
            &lines[0]["result"],
            &lines[0]["detection"]
        ),
        (
            &"alpha".into(),
            &"v1".into(),
            &"detect".into(),
            &"EICAR-Test-File".into()
        )
    );
    assert_eq!(
        (
            &lines[1]["credential"],
            &lines[1]["level"],
            &lines[1]["result"],
            &lines[1]["reason"]
        ),
        (
            &"bravo".into(),
            &"INFO".into(),
            &"non_scanned".into(),
            &"ACCESS DENIED".into()
        ),
        "{logs}"
    );
    assert_eq!(
        (
            &lines[1]["credential"],
            &lines[1]["level"],
            &lines[1]["result"],
            &lines[1]["reason"]
        ),
        (
            &"bravo".into(),
            &"INFO".into(),
            &"non_scanned".into(),
            &"ACCESS DENIED".into()
        )
    );
    for line in &lines {
        assert!(line.get("object").is_none(), "{line}");
    }
    assert!(
        !logs.contains("secret-plans") && !logs.contains("eicar.com"),
        "{logs}"
    );
}

/// An in-process gateway in front of `engine`, with `extra` in GatewaySettings.
async fn gateway(engine: SocketAddr, extra: &str) -> TestGateway {
    let mut cfg = Cfg::new(&format!("http://{engine}"), &toks());
    cfg.gateway_extra = extra.to_owned();
    TestGateway::start_in(ConfigDir::new(&cfg), false).await
}

#[tokio::test]
async fn answers_that_are_not_verdicts_are_counted_as_such_and_pass_unchanged() {
    let cases: [(&str, u16, &'static [u8], &str); 6] = [
        (
            "/api/v3.0/scanmemory",
            200,
            b"<html>bad gateway</html>",
            "unparsed",
        ),
        // Cut off mid-document (the length is right, the JSON is not).
        (
            "/api/v3.0/scanmemory",
            200,
            br#"{"object":"memory","scanResult":"DETECT","detectionN"#,
            "unparsed",
        ),
        ("/scanmemory", 200, b"\xff\xfe not text", "unparsed"),
        (
            "/api/v3.0/scanmemory",
            200,
            br#"{"error":"invalid base64"}"#,
            "error",
        ),
        ("/api/v3.0/checkurl", 503, b"Service overloaded", "error"),
        (
            "/api/v3.0/scanmemory",
            200,
            br#"{"object":"memory","scanResult":"QUARANTINED"}"#,
            "unknown",
        ),
    ];
    for (path, status, body, result) in cases {
        let gw = gateway(canned(status, body).await, "").await;
        let (got, answer) = post(&gw.url(path), TOKEN_A, r#"{"object":"aGk="}"#).await;
        assert_eq!((got, &answer[..]), (status, body), "{path} {result}");
        let text = gw.gw.metrics.encode();
        let series = format!(r#"scangate_scan_results_total{{token="alpha",result="{result}"}}"#);
        assert_eq!(metric(&text, &series), 1.0, "{result}: {text}");
        assert!(!text.contains("scangate_detections_total{"), "{text}");
    }
}

#[tokio::test]
async fn with_the_audit_off_scan_answers_are_not_read() {
    let gw = gateway(
        canned(
            200,
            br#"{"object":"memory","scanResult":"DETECT","detectionName":"X"}"#,
        )
        .await,
        "<Audit><Enabled>0</Enabled></Audit>",
    )
    .await;
    let (status, _) = post(&gw.url("/api/v3.0/scanmemory"), TOKEN_A, "{}").await;
    assert_eq!(status, 200);
    let text = gw.gw.metrics.encode();
    assert!(!text.contains("scangate_scan_results_total{"), "{text}");
    assert!(gw.gw.recent.latest(10, |_| true).is_empty());
}

#[tokio::test]
async fn getstatistics_per_credential_shows_each_token_its_own_scans_in_the_engine_format() {
    let (engine, _stop) = emulator(None).await;
    let gw = gateway(
        engine,
        "<Audit><GatewayStatistics>1</GatewayStatistics></Audit>",
    )
    .await;
    let scan = gw.url("/api/v3.0/scanmemory");
    let eicar = format!(r#"{{"object":"{}"}}"#, b64(EICAR));
    let clean = format!(r#"{{"object":"{}"}}"#, b64(b"hello"));
    post(&scan, TOKEN_A, eicar).await;
    post(&scan, TOKEN_A, clean.clone()).await;
    post(&scan, TOKEN_B, clean.clone()).await;
    let url = gw.url("/api/v3.0/checkurl");
    post(&url, TOKEN_B, r#"{"url":"http://malicious.example/x"}"#).await;

    let stats = |token: &'static str| {
        let url = gw.url("/api/v3.0/getstatistics");
        async move {
            let r = client().get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    assert_eq!(
        stats(TOKEN_A).await,
        concat!(
            r#"{"statistics":{"total_requests":2,"infected_requests":1,"protected_requests":0,"#,
            r#""error_requests":0,"engine_errors":0,"processed_data":73,"infected_data":68,"#,
            r#""processed_urls":0,"infected_urls":0}}"#
        )
    );
    let b: serde_json::Value = serde_json::from_str(&stats(TOKEN_B).await).unwrap();
    assert_eq!(b["statistics"]["total_requests"], 2);
    assert_eq!(b["statistics"]["infected_urls"], 1);
    assert_eq!(b["statistics"]["processed_data"], 5);
    // The engine's own answer has the same fields in the same order, and counts everyone.
    let engine_stats = client()
        .get(format!("http://{engine}/api/v3.0/getstatistics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys = |text: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["statistics"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&engine_stats), keys(&stats(TOKEN_A).await));
    let e: serde_json::Value = serde_json::from_str(&engine_stats).unwrap();
    assert_eq!(e["statistics"]["total_requests"], 4);
    assert_eq!(e["statistics"]["processed_data"], 78);

    // Without the setting, getstatistics is the engine's.
    let plain = gateway(engine, "").await;
    let r = client()
        .get(plain.url("/api/v3.0/getstatistics"))
        .bearer_auth(TOKEN_A)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), engine_stats);
}

#[tokio::test]
async fn the_console_ring_keeps_detections_with_credential_and_tenants() {
    let (engine, _stop) = emulator(None).await;
    let gw = gateway(engine, "").await;
    let eicar = format!(r#"{{"object":"{}","name":"a.zip"}}"#, b64(EICAR));
    post(&gw.url("/api/v3.1/scanmemory"), TOKEN_A, eicar).await;
    post(
        &gw.url("/api/v3.0/checkurl"),
        TOKEN_B,
        r#"{"url":"http://user:pw@malicious.example/x?k=s3cret"}"#,
    )
    .await;
    let latest = gw.gw.recent.latest(10, |_| true);
    assert_eq!(latest.len(), 2);
    assert_eq!(
        (
            &*latest[0].credential,
            latest[0].call,
            latest[0].object.as_deref()
        ),
        ("bravo", "checkurl", Some("malicious.example"))
    );
    assert_eq!(latest[1].tenants, ["acme", "globex"]);
    assert_eq!(latest[1].object.as_deref(), Some("a.zip"));
    let counts: Vec<(String, u64)> = (gw
        .gw
        .recent
        .per_credential(scangate::config::validate::connections::now_secs()))
    .into_iter()
    .map(|(n, c)| (n.to_string(), c))
    .collect();
    assert_eq!(counts, [("alpha".to_owned(), 1), ("bravo".to_owned(), 1)]);
}
