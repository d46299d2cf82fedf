//! The admin listener over real sockets: `/metrics` counts by token and by failure reason, reloads
//! are counted, `/config` never shows a Value, and `/readyz` follows the upstreams and the drain.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use scangate::net::Listener;
use scangate::state::Gateway;
use tokio::sync::oneshot;

const A: &str = "sg_MetricsTokenA-1";
const OFF: &str = "sg_MetricsTokenOff-2";
const UNKNOWN: &str = "sg_NotInTheConfig-3";

/// An admin listener on 127.0.0.1:0 for `gw`, stopped on drop.
struct Admin {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Admin {
    async fn start(gw: &Arc<Gateway>) -> Admin {
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(scangate::admin::run(listener, gw.clone(), async {
            let _ = stopped.await;
        }));
        Admin { addr, _stop: stop }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = client()
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200);
        text
    }
}

/// The value of the series whose line starts with `series` followed by a space.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_each_token_and_each_failure_reason() {
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(
        &up.url(),
        &[Tok::new("alpha", A, true), Tok::new("off", OFF, false)],
    );
    let gw = TestGateway::start(&cfg).await;
    let admin = Admin::start(&gw.gw).await;
    let c = client();
    let (n, m) = (7, 4);
    for i in 0..n {
        let r = c
            .post(gw.url("/api/v3.0/scanmemory"))
            .header("authorization", format!("Bearer {A}"))
            .body(vec![b'x'; 100 + i])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..m {
        assert_eq!(status_with(&c, &gw.url("/x"), UNKNOWN).await, 401);
    }
    assert_eq!(status_with(&c, &gw.url("/x"), OFF).await, 401);
    assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 401);
    let basic = c
        .get(gw.url("/x"))
        .header("authorization", format!("Basic {A}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    // The logging phase runs as each response body ends; wait for the last one.
    let total = (n + m + 3) as f64;
    let done = eventually(Duration::from_secs(5), || async {
        value(
            &admin.metrics().await,
            "scangate_request_duration_seconds_count",
        ) == Some(total)
    })
    .await;
    let text = admin.metrics().await;
    assert!(done, "not every request was counted:\n{text}");

    let ok_series = format!(
        r#"scangate_requests_total{{token="alpha",status_class="2xx",upstream="{}"}}"#,
        up.url()
    );
    assert_eq!(value(&text, &ok_series), Some(n as f64), "{text}");
    let alpha_lines: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with(r#"scangate_requests_total{token="alpha""#))
        .collect();
    assert_eq!(alpha_lines, [format!("{ok_series} {n}")]);
    let body_bytes: usize = (0..n).map(|i| 100 + i).sum();
    assert_eq!(
        value(&text, r#"scangate_request_body_bytes_total{token="alpha"}"#),
        Some(body_bytes as f64)
    );
    assert_eq!(
        value(
            &text,
            r#"scangate_response_body_bytes_total{token="alpha"}"#
        ),
        Some((n * "upstream-ok".len()) as f64)
    );
    let reason = |r: &str| {
        value(
            &text,
            &format!(r#"scangate_auth_failures_total{{reason="{r}"}}"#),
        )
    };
    assert_eq!(reason("unknown"), Some(m as f64));
    assert_eq!(reason("disabled"), Some(1.0));
    assert_eq!(reason("missing"), Some(1.0));
    assert_eq!(reason("scheme"), Some(1.0));
    // Rejected requests are counted without a token label value of their own.
    assert_eq!(
        value(
            &text,
            r#"scangate_requests_total{token="",status_class="4xx",upstream=""}"#
        ),
        Some((m + 3) as f64)
    );
    assert!(
        !text.contains("off\""),
        "a disabled token got a series:\n{text}"
    );
    for secret in [A, OFF, UNKNOWN] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
    assert_eq!(
        value(&text, r#"scangate_tokens{state="enabled"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"scangate_tokens{state="disabled"}"#),
        Some(1.0)
    );
    assert_eq!(value(&text, "scangate_config_generation"), Some(1.0));
    assert!(value(&text, "scangate_connections_open").is_some());
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn reloads_are_counted_and_config_page_shows_names_never_values() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(&up.url(), &[Tok::new("alpha", A, true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let admin = Admin::start(&gw.gw).await;
    let reloads = |text: &str, result: &str| {
        value(
            text,
            &format!(r#"scangate_config_reload_total{{result="{result}"}}"#),
        )
    };
    let text = admin.metrics().await;
    assert_eq!(reloads(&text, "ok"), Some(0.0));

    cfg.tokens.push(Tok::new("off", OFF, false));
    gw.rewrite(&cfg);
    let worker = gw.gw.clone();
    tokio::task::spawn_blocking(move || worker.reload())
        .await
        .unwrap()
        .unwrap();
    let text = admin.metrics().await;
    assert_eq!(reloads(&text, "ok"), Some(1.0));
    assert_eq!(reloads(&text, "error"), Some(0.0));
    assert_eq!(value(&text, "scangate_config_generation"), Some(2.0));
    assert_eq!(
        value(&text, r#"scangate_tokens{state="disabled"}"#),
        Some(1.0)
    );

    let (status, page) = admin.get("/config").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&page).unwrap();
    assert_eq!(json["generation"], 2);
    assert_eq!(json["last_reload"]["result"], "ok");
    assert_eq!(json["last_reload"]["error"], serde_json::Value::Null);
    assert_eq!(
        json["tokens"],
        serde_json::json!([
            {"name": "alpha", "state": "enabled", "role": null},
            {"name": "off", "state": "disabled", "role": null},
        ])
    );

    write_atomic(&gw.config.path, "<Configuration><Broken>");
    let worker = gw.gw.clone();
    assert!(tokio::task::spawn_blocking(move || worker.reload())
        .await
        .unwrap()
        .is_err());
    let text = admin.metrics().await;
    assert_eq!(reloads(&text, "error"), Some(1.0));
    assert_eq!(value(&text, "scangate_config_generation"), Some(2.0));
    let (_, page) = admin.get("/config").await;
    let json: serde_json::Value = serde_json::from_str(&page).unwrap();
    assert_eq!(json["generation"], 2);
    assert_eq!(json["last_reload"]["result"], "error");
    let error = json["last_reload"]["error"].as_str().unwrap();
    assert!(error.contains("scangate.xml:1:"), "{error}");

    // Neither a Value, nor the key, nor a token appears anywhere on the page.
    let key = scangate::auth::token::TokenKey::from_bytes(&KEY);
    for secret in [
        key.value(A),
        key.value(OFF),
        base64_key(),
        A.into(),
        OFF.into(),
    ] {
        assert!(!page.contains(&secret), "{secret} on /config:\n{page}");
    }
}

/// An engine that answers every request 200 on `listener`, until the returned sender is dropped.
fn answer_200(listener: tokio::net::TcpListener) -> oneshot::Sender<()> {
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                a = listener.accept() => a.unwrap(),
                _ = &mut stopped => return,
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    stop
}

#[tokio::test]
async fn readyz_follows_the_only_upstream_and_the_drain() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = backend.local_addr().unwrap();
    let engine = answer_200(backend);
    let mut cfg = Cfg::new(&format!("http://{addr}"), &[Tok::new("alpha", A, true)]);
    cfg.gateway_extra =
        "<UpstreamSettings><HealthCheckIntervalMs>100</HealthCheckIntervalMs></UpstreamSettings>"
            .into();
    let gw = TestGateway::start(&cfg).await;
    let admin = Admin::start(&gw.gw).await;
    let readyz = || async {
        let (status, body) = admin.get("/readyz").await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        (status, json)
    };
    let (status, body) = admin.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"alive"}"#));

    assert!(
        eventually(Duration::from_secs(5), || async { readyz().await.0 == 200 }).await,
        "never ready with a listening upstream"
    );

    // Three failed checks in a row take the only engine down.
    drop(engine);
    assert!(
        eventually(Duration::from_secs(5), || async { readyz().await.0 == 503 }).await,
        "still ready after the only upstream died"
    );
    let (_, json) = readyz().await;
    assert_eq!(json["reason"], "no scan engine up");
    let text = admin.metrics().await;
    assert_eq!(
        value(
            &text,
            &format!(r#"scangate_upstream_up{{upstream="http://{addr}"}}"#)
        ),
        Some(0.0)
    );
    // A down engine takes no traffic: the client hears so at once.
    let resp = client()
        .get(gw.url("/api/v3.0/version"))
        .bearer_auth(A)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":"no scan engine available"}"#
    );

    let _engine = answer_200(tokio::net::TcpListener::bind(addr).await.unwrap());
    assert!(
        eventually(Duration::from_secs(5), || async { readyz().await.0 == 200 }).await,
        "not ready again after the upstream returned"
    );

    // Shutdown: the client listener drains and readiness says so (the admin keeps its own handle
    // on the gateway state).
    drop(gw);
    assert!(
        eventually(Duration::from_secs(5), || async {
            readyz().await.1["reason"] == "draining"
        })
        .await,
        "readiness did not report the drain"
    );
    assert_eq!(readyz().await.0, 503);
}

#[tokio::test]
async fn admin_answers_unknown_paths_and_methods_with_json() {
    let cfg = Cfg::new("http://127.0.0.1:9", &[Tok::new("alpha", A, true)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let admin = Admin::start(&gw.gw).await;
    let (status, body) = admin.get("/nope").await;
    assert_eq!((status, body.as_str()), (404, r#"{"error":"not found"}"#));
    let r = client()
        .post(format!("http://{}/metrics", admin.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = client()
        .get(format!("http://{}/metrics", admin.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}

/// Sends one raw HTTP/1.1 GET with `Host: host` and `extra` header lines, and returns the response
/// (the connection is closed after it).
async fn raw_get(addr: SocketAddr, path: &str, host: &str, extra: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn admin_answers_only_hosts_no_rebinding_page_can_send() {
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &[Tok::new("alpha", A, true)])).await;
    let admin = Admin::start(&gw.gw).await;
    let port = admin.addr.port();
    for host in [
        "attacker.example",
        &format!("rebind.example:{port}"),
        "localhost.evil",
    ] {
        for path in ["/metrics", "/config", "/readyz"] {
            let resp = raw_get(admin.addr, path, host, "").await;
            assert!(resp.starts_with("HTTP/1.1 421 "), "{host}{path}: {resp}");
            assert!(
                resp.ends_with(
                    r#"{"error":"admin requests must name an IP address or localhost as Host"}"#
                ),
                "{resp}"
            );
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".into(),
    ] {
        let resp = raw_get(admin.addr, "/healthz", &host, "").await;
        assert!(resp.starts_with("HTTP/1.1 200 "), "{host}: {resp}");
    }
}

/// Starts an admin listener bound to every address (off loopback), reached through 127.0.0.1.
async fn start_exposed(gw: &Arc<Gateway>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = Listener::bind_tcp("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], listener.local_addr().unwrap().port()));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(scangate::admin::run(listener, gw.clone(), async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test]
async fn config_page_off_loopback_needs_an_administrator_token() {
    const ADMIN: &str = "sg_AdminConsoleToken-7";
    const OFFICER: &str = "sg_OfficerToken-8";
    let up = Upstream::start(Behaviour::Ok).await;
    let cfg = Cfg::new(
        &up.url(),
        &[
            Tok::new("officer", OFFICER, true),
            Tok::new("root", ADMIN, true),
            Tok::new("off", OFF, false),
        ],
    );
    let config = ConfigDir::new(&cfg);
    let xml = cfg.xml().replacen(
        "<Enabled>1</Enabled></Token>",
        "<Enabled>1</Enabled><Role>SecurityOfficer</Role></Token>",
        1,
    );
    let xml = xml.replacen(
        "<Name>root</Name>",
        "<Name>root</Name><Role>Administrator</Role>",
        1,
    );
    std::fs::write(&config.path, xml).unwrap();
    let gw = TestGateway::start_in(config, false).await;
    let (addr, _stop) = start_exposed(&gw.gw).await;
    let host = format!("127.0.0.1:{}", addr.port());
    let auth = |t: &str| format!("Authorization: Bearer {t}\r\n");

    let missing = raw_get(addr, "/config", &host, "").await;
    assert!(missing.starts_with("HTTP/1.1 401 "), "{missing}");
    assert!(
        missing.contains("www-authenticate: Bearer realm=\"test-realm\"\r\n"),
        "{missing}"
    );
    assert!(
        missing.ends_with(r#"{"error":"missing API token"}"#),
        "{missing}"
    );
    for bad in [UNKNOWN, OFF] {
        let resp = raw_get(addr, "/config", &host, &auth(bad)).await;
        assert!(resp.starts_with("HTTP/1.1 401 "), "{resp}");
        assert!(resp.ends_with(r#"{"error":"invalid API token"}"#), "{resp}");
    }
    let officer = raw_get(addr, "/config", &host, &auth(OFFICER)).await;
    assert!(officer.starts_with("HTTP/1.1 403 "), "{officer}");
    assert!(
        officer.ends_with(r#"{"error":"token not allowed for this operation"}"#),
        "{officer}"
    );
    let ok = raw_get(addr, "/config", &host, &auth(ADMIN)).await;
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    assert!(ok.contains(r#""name":"officer""#), "{ok}");
    assert!(!ok.contains(ADMIN), "the token is never echoed: {ok}");
    // Probes and scrapers need no credential.
    for path in ["/healthz", "/metrics"] {
        let resp = raw_get(addr, path, &host, "").await;
        assert!(resp.starts_with("HTTP/1.1 200 "), "{path}: {resp}");
    }
    // On loopback the page stays open, as before.
    let admin = Admin::start(&gw.gw).await;
    assert_eq!(admin.get("/config").await.0, 200);
}

#[tokio::test]
async fn admin_connections_past_the_cap_are_closed_at_once() {
    use scangate::admin::guard::MAX_ADMIN_CONNECTIONS;
    use tokio::io::AsyncReadExt;
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &[Tok::new("alpha", A, true)])).await;
    let admin = Admin::start(&gw.gw).await;
    let mut held = Vec::new();
    for _ in 0..MAX_ADMIN_CONNECTIONS {
        held.push(tokio::net::TcpStream::connect(admin.addr).await.unwrap());
    }
    // Every slot is taken: the next connection is closed without an answer, well before the
    // 5 s header timeout would have freed a slot.
    let mut extra = tokio::net::TcpStream::connect(admin.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("an extra connection is closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(held);
    let freed = eventually(Duration::from_secs(3), || async {
        client()
            .get(format!("http://{}/healthz", admin.addr))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(freed, "closing the held connections frees their slots");
}

#[tokio::test]
async fn admin_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let up = Upstream::start(Behaviour::Ok).await;
    let gw = TestGateway::start(&Cfg::new(&up.url(), &[Tok::new("alpha", A, true)])).await;
    let admin = Admin::start(&gw.gw).await;
    let mut idle = tokio::net::TcpStream::connect(admin.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(8), idle.read(&mut buf))
        .await
        .expect("a silent admin connection is closed within the 5 s header timeout")
        .unwrap_or(0);
    // hyper may write a 408 before closing; either way the slot is given back.
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed too early"
    );
}
