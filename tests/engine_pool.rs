//! The engine pool (issue 14) with real sockets and real processes: engines that count their own
//! concurrency, and `scangate emulator` processes, behind one gateway. Per-engine MaxSessions under
//! 5× load, the FIFO queue and its 503, an engine SIGKILLed mid-load, a slow engine among fast
//! ones, tenant routing, and a kept scan retried when its engine dies before answering.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::{free_port, Scangate};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const TOKEN: &str = "sg_Pool-Token-1";
const ACME: &str = "sg_Pool-Acme-1";
const OTHER: &str = "sg_Pool-Other-1";
const SCAN: &str = "/api/v3.0/scanmemory";
/// A small scan: "hello", base64.
const BODY: &str = r#"{"object":"aGVsbG8="}"#;
const BUSY: &str = r#"{"error":"all scan engines busy"}"#;

fn toks() -> Vec<Tok> {
    vec![
        Tok::new("pool", TOKEN, true),
        Tok::new("acme", ACME, true).with_tenants(&["acme"]),
        Tok::new("other", OTHER, true).with_tenants(&["other"]),
    ]
}

/// An in-process engine that counts the requests in flight to it (the most at once, too), and
/// remembers the `x-seq` of each scan in order of arrival. Each scan takes `delay`, or the
/// request's `x-delay-ms`.
struct CountingEngine {
    addr: SocketAddr,
    /// The most connections open at once.
    most_conns: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    scans: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<String>>>,
}

impl CountingEngine {
    async fn start(delay: Duration) -> CountingEngine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let scans = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let most_conns = Arc::new(AtomicUsize::new(0));
        let (n, m, s, o) = (now, most.clone(), scans.clone(), order.clone());
        let (conns, mc) = (Arc::new(AtomicUsize::new(0)), most_conns.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let open = conns.fetch_add(1, Ordering::SeqCst) + 1;
                mc.fetch_max(open, Ordering::SeqCst);
                let conns = conns.clone();
                let (n, m, s, o) = (n.clone(), m.clone(), s.clone(), o.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (n, m, s, o) = (n.clone(), m.clone(), s.clone(), o.clone());
                        async move {
                            let inside = n.fetch_add(1, Ordering::SeqCst) + 1;
                            m.fetch_max(inside, Ordering::SeqCst);
                            let scan = req.uri().path() == SCAN;
                            if scan {
                                s.fetch_add(1, Ordering::SeqCst);
                                if let Some(seq) = req.headers().get("x-seq") {
                                    o.lock().unwrap().push(seq.to_str().unwrap().to_owned());
                                }
                            }
                            let wait = (req.headers().get("x-delay-ms"))
                                .and_then(|v| v.to_str().ok()?.parse().ok())
                                .map_or(delay, Duration::from_millis);
                            let _ = req.into_body().collect().await;
                            if scan {
                                tokio::time::sleep(wait).await;
                            }
                            n.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"{\"scanResult\":\"CLEAN\"}",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    conns.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        CountingEngine {
            addr,
            most_conns,
            most,
            scans,
            order,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `UpstreamSettings` with these children.
fn settings(children: &str) -> String {
    format!("<UpstreamSettings>{children}</UpstreamSettings>")
}

/// `clients` tasks, each sending `per_client` small scans with `token`; the statuses, in no order.
async fn load(url: &str, token: &str, clients: usize, per_client: usize) -> Vec<u16> {
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, url, token) = (c.clone(), url.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..per_client {
                let r = c.post(&url).bearer_auth(&token).body(BODY).send().await;
                statuses.push(r.map_or(0, |r| r.status().as_u16()));
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// How many of `statuses` are not 200, with a sample, for assertion messages.
fn failures(statuses: &[u16]) -> (usize, Vec<u16>) {
    let bad: Vec<u16> = statuses.iter().copied().filter(|s| *s != 200).collect();
    (bad.len(), bad.into_iter().take(10).collect())
}

/// One small scan with the default token.
async fn scan(c: &reqwest::Client, url: &str) -> reqwest::Response {
    c.post(url)
        .bearer_auth(TOKEN)
        .body(BODY)
        .send()
        .await
        .unwrap()
}

/// Whether `n` requests come to wait in `gw`'s queue within `deadline`.
async fn queued(gw: &TestGateway, n: usize, deadline: Duration) -> bool {
    eventually(deadline, || {
        let len = gw.gw.snapshot.load().upstreams.queue_len();
        async move { len == n }
    })
    .await
}

/// A series' value in Prometheus text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn no_engine_ever_sees_more_than_max_sessions_under_five_times_the_load() {
    let engines = [
        CountingEngine::start(Duration::from_millis(15)).await,
        CountingEngine::start(Duration::from_millis(15)).await,
        CountingEngine::start(Duration::from_millis(15)).await,
    ];
    let mut cfg = Cfg::new(&engines[0].url(), &toks());
    cfg.upstreams = engines.iter().map(CountingEngine::url).collect();
    cfg.session_timeout_ms = 30_000;
    cfg.gateway_extra =
        settings("<MaxSessions>4</MaxSessions><QueueTimeoutMs>20000</QueueTimeoutMs>");
    let gw = TestGateway::start(&cfg).await;

    // 3 engines × 4 sessions = 12; 60 clients at once is 5× that.
    let statuses = load(&gw.url(SCAN), TOKEN, 60, 10).await;
    assert_eq!(failures(&statuses), (0, vec![]));
    for (i, e) in engines.iter().enumerate() {
        let most = e.most.load(Ordering::SeqCst);
        // Never past the cap, and the cap was reached: the load did press on it.
        assert_eq!(most, 4, "engine {i} saw {most} requests at once");
    }
    let total: usize = engines.iter().map(|e| e.scans.load(Ordering::SeqCst)).sum();
    assert_eq!(total, 600);
    let text = gw.gw.metrics.encode();
    assert!(
        metric(&text, "scangate_upstream_queue_wait_seconds_count") > 0.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_together_keep_each_engine_to_max_sessions_connections() {
    let engines = [
        CountingEngine::start(Duration::from_millis(10)).await,
        CountingEngine::start(Duration::from_millis(10)).await,
    ];
    let mut cfg = Cfg::new(&engines[0].url(), &toks());
    cfg.upstreams = engines.iter().map(CountingEngine::url).collect();
    cfg.gateway_extra = format!(
        "<MaxConnectionsPerClient>0</MaxConnectionsPerClient>{}",
        settings("<MaxSessions>4</MaxSessions>")
    );
    let dir = ConfigDir::new(&cfg);
    let served = WorkersGateway::start(&dir, 3).await;
    let (addr, gw) = (served.addr, Arc::clone(&served.gw));
    let gw_most = Arc::new(AtomicUsize::new(0));
    let watch = {
        let (gw, gw_most) = (Arc::clone(&gw), Arc::clone(&gw_most));
        tokio::spawn(async move {
            loop {
                for u in gw.snapshot.load().upstreams.all() {
                    gw_most.fetch_max(u.open_connections(), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // Rounds of fresh client connections, so every worker gets some, and each worker keeps idle
    // engine connections between rounds.
    let url = format!("http://{addr}{SCAN}");
    for _ in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let r = client()
                    .post(url)
                    .bearer_auth(TOKEN)
                    .body(BODY)
                    .send()
                    .await;
                r.map_or(0, |r| r.status().as_u16())
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
    }
    watch.abort();
    // Sampled every millisecond: the gateway's own count of open connections per engine.
    let sampled = gw_most.load(Ordering::SeqCst);
    assert!(
        sampled <= 4,
        "the gateway held {sampled} connections to one engine"
    );
    for (i, e) in engines.iter().enumerate() {
        let (most, conns) = (
            e.most.load(Ordering::SeqCst),
            e.most_conns.load(Ordering::SeqCst),
        );
        assert_eq!(most, 4, "engine {i}: {most} requests at once");
        // A Scan Engine counts idle keep-alive connections against its sessions too.
        assert!(conns <= 4, "engine {i}: {conns} connections open at once");
    }
    served.stop().await;
}

#[tokio::test]
async fn queued_requests_are_served_in_arrival_order_and_past_the_queue_timeout_get_503() {
    let engine = CountingEngine::start(Duration::ZERO).await;
    let mut cfg = Cfg::new(&engine.url(), &toks());
    cfg.gateway_extra = settings(
        "<MaxSessions>1</MaxSessions><QueueTimeoutMs>5000</QueueTimeoutMs>\
         <HealthCheckIntervalMs>0</HealthCheckIntervalMs>",
    );
    let gw = TestGateway::start(&cfg).await;
    let c = client();
    let send = |seq: usize, delay_ms: u64| {
        let (c, url) = (c.clone(), gw.url(SCAN));
        tokio::spawn(async move {
            let r = (c.post(url).bearer_auth(TOKEN))
                .header("x-seq", seq.to_string())
                .header("x-delay-ms", delay_ms.to_string())
                .body(BODY)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    // The first holds the only session; the others arrive one by one and wait in line.
    let mut tasks = vec![send(0, 600)];
    assert!(
        eventually(Duration::from_secs(5), || async {
            engine.scans.load(Ordering::SeqCst) == 1
        })
        .await
    );
    for seq in 1..=5 {
        tasks.push(send(seq, 20));
        assert!(
            queued(&gw, seq, Duration::from_secs(5)).await,
            "request {seq} not queued"
        );
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let order = engine.order.lock().unwrap().clone();
    assert_eq!(order, ["0", "1", "2", "3", "4", "5"]);

    // Past QueueTimeoutMs: the exact 503, with Retry-After, never 504.
    let mut cfg2 = cfg.clone();
    cfg2.gateway_extra = settings(
        "<MaxSessions>1</MaxSessions><QueueTimeoutMs>400</QueueTimeoutMs><MaxQueue>1</MaxQueue>\
         <HealthCheckIntervalMs>0</HealthCheckIntervalMs>",
    );
    let gw2 = TestGateway::start(&cfg2).await;
    let hold = {
        let (c, url) = (c.clone(), gw2.url(SCAN));
        tokio::spawn(async move {
            let r = (c.post(url).bearer_auth(TOKEN)).header("x-delay-ms", "3000");
            r.body(BODY).send().await.unwrap().status().as_u16()
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            engine.scans.load(Ordering::SeqCst) == 7
        })
        .await
    );
    let started = Instant::now();
    let r = scan(&c, &gw2.url(SCAN)).await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.text().await.unwrap(), BUSY);
    assert!(
        waited >= Duration::from_millis(380) && waited < Duration::from_millis(2500),
        "answered after {waited:?}"
    );

    // A waiter whose client goes away leaves the queue at once: its place (MaxQueue = 1) is
    // free for the next one, which waits rather than being refused at once.
    let leaver = {
        let (c, url) = (c.clone(), gw2.url(SCAN));
        tokio::spawn(async move { c.post(url).bearer_auth(TOKEN).body(BODY).send().await })
    };
    assert!(queued(&gw2, 1, Duration::from_secs(2)).await);
    leaver.abort();
    assert!(
        queued(&gw2, 0, Duration::from_millis(300)).await,
        "the waiter stayed in line after its client left"
    );
    // MaxQueue = 1: one waits, the next is refused at once.
    let waiter = {
        let (c, url) = (c.clone(), gw2.url(SCAN));
        tokio::spawn(async move { c.post(url).bearer_auth(TOKEN).body(BODY).send().await })
    };
    assert!(queued(&gw2, 1, Duration::from_secs(2)).await);
    let started = Instant::now();
    let r = scan(&c, &gw2.url(SCAN)).await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap().as_str()),
        (503, BUSY)
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(waiter.await.unwrap().unwrap().status(), 503);
    assert_eq!(hold.await.unwrap(), 200);
}

#[tokio::test]
async fn tenant_routing_sends_acme_scans_only_to_acme_engines() {
    let default = CountingEngine::start(Duration::ZERO).await;
    let acme = [
        CountingEngine::start(Duration::from_millis(2)).await,
        CountingEngine::start(Duration::from_millis(2)).await,
    ];
    let mut cfg = Cfg::new(&default.url(), &toks());
    for a in &acme {
        cfg.upstreams
            .push(format!("<Upstream Tenants=\"acme\">{}</Upstream>", a.url()));
    }
    let gw = TestGateway::start(&cfg).await;
    let url = gw.url(SCAN);

    let statuses = load(&url, ACME, 4, 10).await;
    assert_eq!(failures(&statuses), (0, vec![]));
    let acme_scans: Vec<usize> = acme
        .iter()
        .map(|a| a.scans.load(Ordering::SeqCst))
        .collect();
    assert_eq!(default.scans.load(Ordering::SeqCst), 0);
    assert_eq!(acme_scans.iter().sum::<usize>(), 40);
    assert!(acme_scans.iter().all(|n| *n > 0), "{acme_scans:?}");

    // A tenant without engines of its own, and a token without tenants: the default group.
    for token in [OTHER, TOKEN] {
        assert_eq!(failures(&load(&url, token, 2, 10).await), (0, vec![]));
    }
    assert_eq!(default.scans.load(Ordering::SeqCst), 40);
    let after: Vec<usize> = acme
        .iter()
        .map(|a| a.scans.load(Ordering::SeqCst))
        .collect();
    assert_eq!(after, acme_scans);
}

/// `scangate emulator` on a free port, once it answers.
async fn emulator(port: u16, delay_ms: u64) -> Scangate {
    let p = Scangate::spawn(&[
        "emulator",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--scan-delay-ms",
        &delay_ms.to_string(),
    ]);
    let c = client();
    let url = format!("http://127.0.0.1:{port}/api/v3.0/version");
    let up = eventually(Duration::from_secs(10), || async {
        c.get(&url).send().await.is_ok()
    })
    .await;
    assert!(up, "emulator on {port} did not come up");
    p
}

/// The emulator's own count of scans.
async fn scans_seen(port: u16) -> u64 {
    let stats = get_json(&format!("http://127.0.0.1:{port}/api/v3.0/getstatistics")).await;
    stats["statistics"]["total_requests"].as_u64().unwrap()
}

/// A GET's JSON body.
async fn get_json(url: &str) -> serde_json::Value {
    let r = client().get(url).send().await.unwrap();
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_slow_engine_among_fast_ones_gets_clearly_fewer_requests() {
    let ports = [free_port(), free_port(), free_port()];
    let _engines = [
        emulator(ports[0], 0).await,
        emulator(ports[1], 0).await,
        emulator(ports[2], 150).await,
    ];
    let upstreams: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut cfg = Cfg::new(&upstreams[0], &toks());
    cfg.upstreams = upstreams;
    let gw = TestGateway::start(&cfg).await;

    let statuses = load(&gw.url(SCAN), TOKEN, 12, 60).await;
    assert_eq!(failures(&statuses), (0, vec![]));
    let mut seen = Vec::new();
    for p in ports {
        seen.push(scans_seen(p).await as f64);
    }
    assert_eq!(seen.iter().sum::<f64>(), 720.0);
    let fast = (seen[0] + seen[1]) / 2.0;
    let ratio = seen[2] / fast;
    println!("scans per engine {seen:?}: slow / fast = {ratio:.3}");
    // Round robin would give 1.0; least outstanding gives the 150 ms engine a small share (150 ms,
    // not 50, for margin: on a loaded machine the "fast" engines slow down too).
    assert!(ratio < 0.25, "slow / fast = {ratio:.3} ({seen:?})");
}

#[tokio::test]
async fn an_engine_killed_mid_load_costs_no_scan_takes_no_traffic_then_returns() {
    let ports = [free_port(), free_port(), free_port()];
    let mut engines = [
        emulator(ports[0], 1).await,
        emulator(ports[1], 1).await,
        emulator(ports[2], 1).await,
    ];
    let upstreams: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let dead = upstreams[1].clone();
    let mut cfg = Cfg::new(&upstreams[0], &toks());
    cfg.upstreams = upstreams;
    cfg.gateway_extra = settings("<HealthCheckIntervalMs>500</HealthCheckIntervalMs>");
    let gw = TestGateway::start(&cfg).await;
    let url = gw.url(SCAN);

    // Load runs throughout; the middle engine is SIGKILLed under it.
    let running = tokio::spawn({
        let url = url.clone();
        async move { load(&url, TOKEN, 12, 150).await }
    });
    assert!(
        eventually(Duration::from_secs(10), || async {
            scans_seen(ports[1]).await >= 50
        })
        .await,
        "the middle engine took no load"
    );
    engines[1].signal("KILL");
    let killed = Instant::now();
    let errors = |text: &str| {
        ["connect", "request"]
            .iter()
            .map(|k| {
                metric(
                    text,
                    &format!(r#"scangate_upstream_errors_total{{upstream="{dead}",kind="{k}"}}"#),
                )
            })
            .sum::<f64>()
    };
    // Within one health interval it takes no traffic: its error count stops growing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_interval = errors(&gw.gw.metrics.encode());
    let state = |gw: &TestGateway| {
        let snap = gw.gw.snapshot.load();
        let now = scangate::proxy::upstream::health::now_ms();
        snap.upstreams.all()[1].health.state(now).as_str()
    };
    assert_ne!(
        state(&gw),
        "up",
        "still up {:?} after the kill",
        killed.elapsed()
    );
    let statuses = running.await.unwrap();
    let text = gw.gw.metrics.encode();
    assert_eq!(
        errors(&text),
        at_interval,
        "attempts reached the dead engine after one interval"
    );
    assert_eq!(
        failures(&statuses),
        (0, vec![]),
        "scans failed while an engine died"
    );
    let retries: f64 = ["connect", "scan"]
        .iter()
        .map(|r| {
            metric(
                &text,
                &format!(r#"scangate_upstream_retries_total{{upstream="{dead}",reason="{r}"}}"#),
            )
        })
        .sum();
    println!(
        "retries after the kill: {retries}; failed attempts on the dead engine: {at_interval}"
    );
    assert!(
        retries >= 1.0 && retries >= at_interval,
        "retries {retries}, failures {at_interval}"
    );
    assert!(
        eventually(Duration::from_secs(5), || async { state(&gw) == "down" }).await,
        "active checks never took the dead engine down"
    );

    // Back on the same port: two passing checks later it takes traffic again.
    engines[1] = emulator(ports[1], 1).await;
    assert!(
        eventually(Duration::from_secs(10), || async { state(&gw) == "up" }).await,
        "the engine did not come back up"
    );
    assert_eq!(failures(&load(&url, TOKEN, 6, 30).await), (0, vec![]));
    let back = scans_seen(ports[1]).await;
    assert!(back > 0, "the returned engine got no scans");
}

#[tokio::test]
async fn a_reload_that_keeps_an_engine_keeps_its_health_and_its_sessions() {
    let a = CountingEngine::start(Duration::ZERO).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut cfg = Cfg::new(&a.url(), &toks());
    cfg.upstreams.push(dead.clone());
    cfg.gateway_extra =
        settings("<MaxSessions>1</MaxSessions><HealthCheckIntervalMs>100</HealthCheckIntervalMs>");
    let gw = TestGateway::start(&cfg).await;
    let engine = |i: usize| Arc::clone(&gw.gw.snapshot.load().upstreams.all()[i]);
    let state = |i: usize| {
        let now = scangate::proxy::upstream::health::now_ms();
        engine(i).health.state(now).as_str()
    };
    assert!(eventually(Duration::from_secs(5), || async { state(1) == "down" }).await);
    // The live engine's only session is taken for a while.
    let hold = {
        let (c, url) = (client(), gw.url(SCAN));
        tokio::spawn(async move {
            let r = (c.post(url).bearer_auth(TOKEN)).header("x-delay-ms", "2000");
            r.body(BODY).send().await.unwrap().status().as_u16()
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            engine(0).in_flight() == 1
        })
        .await
    );
    let before = engine(0);

    let c = CountingEngine::start(Duration::ZERO).await;
    cfg.upstreams.push(c.url());
    cfg.gateway_extra = settings(
        "<MaxSessions>1</MaxSessions><HealthCheckIntervalMs>100</HealthCheckIntervalMs>\
         <QueueTimeoutMs>3000</QueueTimeoutMs>",
    );
    gw.rewrite(&cfg);
    assert!(eventually(Duration::from_secs(5), || async { gw.gw.generation() == 2 }).await);
    // Same engine, same session count, same health: nothing was reset by the reload.
    assert!(Arc::ptr_eq(&before, &engine(0)));
    assert_eq!(engine(0).in_flight(), 1);
    assert_eq!(state(1), "down");
    // The cap still holds across the reload: the next scan goes to the new engine.
    let r = scan(&client(), &gw.url(SCAN)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(c.scans.load(Ordering::SeqCst), 1);
    assert_eq!(a.scans.load(Ordering::SeqCst), 1);
    assert_eq!(hold.await.unwrap(), 200);
}

#[tokio::test]
async fn the_binary_logs_queue_time_and_shows_engines_on_config_and_metrics() {
    let engine_port = free_port();
    let _engine = emulator(engine_port, 300).await;
    let engine = format!("http://127.0.0.1:{engine_port}");
    let (port, admin_port) = (free_port(), free_port());
    let mut cfg = Cfg::new(&engine, &toks());
    cfg.connection = format!("http://127.0.0.1:{port}");
    cfg.admin = format!("127.0.0.1:{admin_port}");
    cfg.gateway_extra = settings("<MaxSessions>1</MaxSessions>");
    let dir = ConfigDir::new(&cfg);
    let args = ["--log-format", "json", "serve", "--config"];
    let child = Scangate::spawn(&[&args[..], &[dir.path.to_str().unwrap()]].concat());
    let admin = format!("http://127.0.0.1:{admin_port}");
    let c = client();
    let ready = eventually(Duration::from_secs(10), || async {
        let r = c.get(format!("{admin}/readyz")).send().await;
        r.is_ok_and(|r| r.status() == 200)
    });
    assert!(ready.await, "never ready");

    // Two scans at once on one session: the second waits for the first (300 ms).
    let url = format!("http://127.0.0.1:{port}{SCAN}");
    let (a, b) = tokio::join!(scan(&c, &url), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        scan(&c, &url).await
    });
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));

    let config = get_json(&format!("{admin}/config")).await;
    let shown = &config["upstreams"][0];
    assert_eq!(shown["upstream"], engine);
    assert_eq!(shown["state"], "up");
    assert_eq!(
        (shown["in_flight"].as_u64(), shown["max_sessions"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(config["queue_length"], 0);
    let metrics = c.get(format!("{admin}/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert_eq!(
        metric(&text, "scangate_upstream_queue_wait_seconds_count"),
        1.0,
        "{text}"
    );
    let up = format!(r#"scangate_upstream_up{{upstream="{engine}"}}"#);
    assert_eq!(metric(&text, &up), 1.0, "{text}");

    let (status, logs) = child.stop("TERM");
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    let access: Vec<serde_json::Value> = (logs.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "scangate::access" && v["path"] == SCAN)
        .collect();
    assert_eq!(access.len(), 2, "logs:\n{logs}");
    let waited: Vec<f64> = access
        .iter()
        .filter_map(|v| v["queued_ms"].as_f64())
        .collect();
    assert_eq!(waited.len(), 1, "exactly one scan waited: {access:?}");
    assert!(
        waited[0] >= 150.0 && waited[0] < 5000.0,
        "queued {} ms",
        waited[0]
    );
}

/// An engine that reads each request whole, then closes the connection without answering (a
/// crash mid-scan); counts the requests it took.
async fn dropping_engine() -> (String, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&taken);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.ends_with(BODY.as_bytes()) {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                // Dropped here: the gateway sent the whole request and gets no answer.
            });
        }
    });
    (url, taken)
}

#[tokio::test]
async fn a_kept_scan_whose_engine_dies_before_answering_goes_to_another_engine_and_alone_gets_502()
{
    let (dropping, taken) = dropping_engine().await;
    let good = CountingEngine::start(Duration::ZERO).await;
    let mut cfg = Cfg::new(&dropping, &toks());
    cfg.upstreams = vec![dropping.clone(), good.url()];
    let gw = TestGateway::start(&cfg).await;
    let c = client();
    // The least loaded engine is picked, ties in turn: within a few scans one goes to the
    // dropping engine, and every scan is answered all the same.
    let mut sent = 0;
    while sent < 10 && taken.load(Ordering::SeqCst) == 0 {
        let r = scan(&c, &gw.url(SCAN)).await;
        assert_eq!(r.status(), 200);
        sent += 1;
    }
    let dropped = taken.load(Ordering::SeqCst);
    assert!(dropped > 0, "no scan went to the dropping engine");
    let text = gw.gw.metrics.encode();
    let series =
        format!(r#"scangate_upstream_retries_total{{upstream="{dropping}",reason="scan"}}"#);
    assert_eq!(metric(&text, &series), dropped as f64, "{text}");
    // Every scan was answered by the good engine, the retried ones included.
    assert_eq!(good.scans.load(Ordering::SeqCst), sent);

    // The dropping engine alone: there is no other engine to retry on, so the scan fails.
    let alone = Cfg::new(&dropping, &toks());
    let gw = TestGateway::start(&alone).await;
    let before = taken.load(Ordering::SeqCst);
    let r = scan(&c, &gw.url(SCAN)).await;
    assert_eq!(r.status(), 502);
    assert_eq!(taken.load(Ordering::SeqCst), before + 1);
    let text = gw.gw.metrics.encode();
    assert!(
        !text.contains("scangate_upstream_retries_total{"),
        "a retry with one engine: {text}"
    );
}
