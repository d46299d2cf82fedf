//! Scale-out with real parts: a real `redis-server` as the shared session store and three real
//! `scangate serve` processes sharing one config folder. Each test skips with a message when
//! `redis-server` is missing, unless `SCANGATE_REQUIRE_REDIS` is set.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::free_port;
use common::replicas::{have, Haproxy, RedisServer, Replica, REDIS_PASSWORD};
use common::*;
use scangate::auth::exchange::console_refresh_token;
use scangate::auth::jwt::JwtKeys;
use scangate::config::validate::connections::{format_time, now_secs};

const STATIC: &str = "sg_StaticTokenForScaleOut-1";
const CID: &str = "ScaleOutClientId000001";
const INVALID_GRANT: &str = r#"{"error":"invalid_grant"}"#;
const UNAVAILABLE: &str = r#"{"error":"temporarily_unavailable"}"#;

/// Redis, an upstream, a config folder and `n` replicas of it.
struct Cluster {
    redis: RedisServer,
    _upstream: Upstream,
    config: ConfigDir,
    replicas: Vec<Replica>,
}

impl Cluster {
    /// None (the test skips) when redis-server is not installed.
    async fn start(n: usize) -> Option<Cluster> {
        Self::start_on(n, false).await
    }

    /// With `tls`, Redis speaks TLS only and the replicas trust its CA through `SSL_CERT_FILE`.
    async fn start_on(n: usize, tls: bool) -> Option<Cluster> {
        if !have("redis-server") {
            return None;
        }
        let redis = match tls {
            false => RedisServer::start(),
            true => RedisServer::start_tls(),
        };
        let upstream = Upstream::start(Behaviour::Ok).await;
        let mut cfg = Cfg::new(&upstream.url(), &[Tok::new("static", STATIC, true)]);
        cfg.gateway_extra = format!(
            "<Sessions><StateStore>{}</StateStore></Sessions>",
            redis.url()
        );
        let config = ConfigDir::new(&cfg);
        let connection = format!(
            "<ApiConnections><Connection><Name>siem</Name><ClientId>{CID}</ClientId>\
             <Role>SecurityOfficer</Role><Enabled>1</Enabled><NotBefore>{}</NotBefore>\
             </Connection></ApiConnections></AuthSettings>",
            format_time(not_before())
        );
        let xml = cfg.xml().replacen("</AuthSettings>", &connection, 1);
        std::fs::write(&config.path, xml).unwrap();
        let ca = redis.ca_file();
        let env = match tls {
            false => vec![],
            true => vec![("SSL_CERT_FILE", ca.to_str().unwrap())],
        };
        let mut replicas = Vec::new();
        for _ in 0..n {
            let (port, admin) = (free_port(), free_port());
            replicas.push(Replica::start_with(&config.path, port, admin, &env).await);
        }
        Some(Cluster {
            redis,
            _upstream: upstream,
            config,
            replicas,
        })
    }
}

/// The connection's `NotBefore`: when `connection add` wrote it, a minute before the test.
fn not_before() -> u64 {
    static AT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| now_secs() - 60)
}

/// A refresh token as `connection add` printed it: its family began at the `NotBefore` it wrote.
fn console_token() -> String {
    let keys = JwtKeys::derive(&key());
    console_refresh_token(&keys, CID, Duration::from_secs(86_400), not_before()).0
}

/// What session/confirm answered: status, body, Retry-After.
struct Answer {
    status: u16,
    body: String,
    retry_after: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn token(&self, which: &str) -> String {
        self.json()[which].as_str().unwrap().to_owned()
    }
}

async fn exchange(replica: &Replica, refresh: &str) -> Answer {
    let r = client()
        .post(replica.url(&format!("/api/v1/{CID}/session/confirm")))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "refresh_token": refresh }).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Answer {
        status,
        body: r.text().await.unwrap(),
        retry_after,
    }
}

/// The status of a scan through `base` (a replica or the load balancer) with `token`; 0 when
/// the request failed below HTTP.
async fn scan(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    http.post(format!("{base}/api/v3.0/scanmemory"))
        .bearer_auth(token)
        .body("{}")
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Polls until every replica answers `want` to a scan with `token`; returns how long it took.
async fn until_all(replicas: &[Replica], token: &str, want: u16, deadline: Duration) -> Duration {
    let started = Instant::now();
    let http = client();
    for r in replicas {
        let base = r.url("");
        let seen = eventually(deadline, || {
            let (http, base) = (&http, &base);
            async move { scan(http, base, token).await == want }
        })
        .await;
        assert!(seen, "replica {} never answered {want}", r.port);
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_used_at_one_replica_is_refused_at_another_and_the_reuse_kills_the_family_everywhere(
) {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    let console = console_token();
    let first = exchange(a, &console).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let access = first.token("access_token");
    let next = first.token("refresh_token");
    // The access token works on every replica: signed, with the shared key.
    until_all(&c.replicas, &access, 200, Duration::ZERO).await;

    // The console token, used at A, presented at B: a reuse.
    let again = exchange(b, &console).await;
    assert_eq!((again.status, again.body.as_str()), (400, INVALID_GRANT));
    // Its family is dead on every replica within a second, A included, which never saw the reuse.
    let took = until_all(&c.replicas, &access, 401, Duration::from_secs(1)).await;
    eprintln!("reuse at B refused the family on all replicas after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // And the family's latest refresh token is dead too, at a third replica.
    let late = exchange(&c.replicas[2], &next).await;
    assert_eq!((late.status, late.body.as_str()), (400, INVALID_GRANT));
    // The evidence lives in Redis, under the connection's hash tag, until the token's exp: one
    // mark (the dead family's last token was refused before it reached the store).
    let keys = c
        .redis
        .cli(&["--scan", "--pattern", &format!("scangate:{{{CID}}}:used:*")]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    let ttl: u64 = c.redis.cli(&["ttl", keys.trim()]).trim().parse().unwrap();
    assert!(
        (86_000..=86_340).contains(&ttl),
        "expires with the token: {ttl}"
    );
    let dead_set = format!("scangate:{{{CID}}}:dead");
    assert_eq!(c.redis.cli(&["zcard", &dead_set]).trim(), "1");
    let ttl: u64 = c.redis.cli(&["ttl", &dead_set]).trim().parse().unwrap();
    assert!(
        (604_000..=604_800).contains(&ttl),
        "kept while any token could live: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_exchanges_of_one_token_over_three_replicas_give_exactly_one_200() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let console = console_token();
    let bases: Vec<String> = c.replicas.iter().map(|r| r.url("")).collect();
    let mut racers = Vec::new();
    for i in 0..20 {
        let url = format!("{}/api/v1/{CID}/session/confirm", bases[i % 3]);
        let body = serde_json::json!({ "refresh_token": console }).to_string();
        racers.push(tokio::spawn(async move {
            let r = client().post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    let mut ok = 0;
    for racer in racers {
        let (status, body) = racer.await.unwrap();
        match status {
            200 => ok += 1,
            _ => assert_eq!((status, body.as_str()), (400, INVALID_GRANT)),
        }
    }
    assert_eq!(ok, 1, "exactly one exchange of a single-use token succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_in_the_shared_file_stops_the_access_token_on_every_replica_within_3s() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let issued = exchange(&c.replicas[0], &console_token()).await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let access = issued.token("access_token");
    until_all(&c.replicas, &access, 200, Duration::ZERO).await;
    let run = scangate(&c.config.path, &["connection", "revoke", "siem"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let took = until_all(&c.replicas, &access, 401, Duration::from_secs(3)).await;
    eprintln!("revoke reached all replicas after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Static tokens were never in question.
    until_all(&c.replicas, STATIC, 200, Duration::ZERO).await;
}

/// Requests with an access token and a static token, round robin over `bases`, until told to
/// stop; counts those not answered 200.
fn load(
    bases: Vec<String>,
    tokens: Vec<String>,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(usize, usize)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let http = client();
        let (sent, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut i = 0;
        while !done.load(Ordering::Relaxed) {
            let status = scan(&http, &bases[i % bases.len()], &tokens[i % tokens.len()]).await;
            sent.fetch_add(1, Ordering::Relaxed);
            if status != 200 {
                failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("load: request {i} answered {status}");
            }
            i += 1;
        }
        (sent.into_inner(), failed.into_inner())
    });
    (stop, task)
}

/// Exchanges fresh console tokens at `replica` until one is answered `want`.
async fn until_exchange(replica: &Replica, want: u16, deadline: Duration) -> Answer {
    let end = Instant::now() + deadline;
    loop {
        let answer = exchange(replica, &console_token()).await;
        if answer.status == want || Instant::now() > end {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_or_killed_mid_load_fails_no_access_token_request_and_recovers() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let issued = exchange(&c.replicas[0], &console_token()).await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let access = issued.token("access_token");
    let used = console_token();
    assert_eq!(exchange(&c.replicas[1], &used).await.status, 200);
    let bases = c.replicas.iter().map(|r| r.url("")).collect();
    let (stop, task) = load(bases, vec![access, STATIC.to_owned()]);

    for (down, up) in [("STOP", "CONT"), ("KILL", "")] {
        if down == "KILL" {
            c.redis.kill();
        } else {
            c.redis.signal(down);
        }
        for r in &c.replicas {
            let refused = until_exchange(r, 503, Duration::from_secs(5)).await;
            assert_eq!((refused.status, refused.body.as_str()), (503, UNAVAILABLE));
            assert_eq!(refused.retry_after, "1");
            // The data plane is fine: still ready, while the metric says the store is down.
            let ready = client().get(r.admin_url("/readyz")).send().await.unwrap();
            assert_eq!(ready.status(), 200);
            assert!(eventually(Duration::from_secs(3), || r.store_up(false)).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if down == "KILL" {
            c.redis.restart();
        } else {
            c.redis.signal(up);
        }
        for r in &c.replicas {
            let back = until_exchange(r, 200, Duration::from_secs(5)).await;
            assert_eq!(back.status, 200, "{down}: {}", back.body);
            assert!(eventually(Duration::from_secs(3), || r.store_up(true)).await);
        }
    }
    // Consumed before the kill, still consumed after it (append-only file, fsync always).
    let replay = exchange(&c.replicas[2], &used).await;
    assert_eq!((replay.status, replay.body.as_str()), (400, INVALID_GRANT));

    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = task.await.unwrap();
    eprintln!("load: {sent} access-token and static-token requests, {failed} failed");
    assert!(sent > 100, "only {sent} requests");
    assert_eq!(failed, 0, "{failed} of {sent} access-token requests failed");

    let page = client()
        .get(c.replicas[0].admin_url("/config"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("redis://***@127.0.0.1:{}/0", c.redis.port)),
        "{page}"
    );
    for r in c.replicas {
        let (_, stderr) = r.proc.stop("TERM");
        assert!(stderr.contains("session store down"), "{stderr}");
        assert!(stderr.contains("session store in sync"), "{stderr}");
        assert!(
            !stderr.contains(REDIS_PASSWORD),
            "the Redis password leaked: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!page.contains(REDIS_PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_replicas_behind_haproxy_fails_no_request() {
    if !have("haproxy") {
        return;
    }
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let issued = exchange(&c.replicas[0], &console_token()).await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let access = issued.token("access_token");
    let backends: Vec<(u16, u16)> = c.replicas.iter().map(|r| (r.port, r.admin)).collect();
    let lb = Haproxy::start(&backends);
    assert!(eventually(Duration::from_secs(10), || async { lb.up().await == 3 }).await);

    let mut loads = Vec::new();
    for _ in 0..4 {
        loads.push(load(
            vec![lb.url()],
            vec![access.clone(), STATIC.to_owned()],
        ));
    }
    for i in 0..c.replicas.len() {
        let (port, admin) = (c.replicas[i].port, c.replicas[i].admin);
        let old = c.replicas.remove(i);
        // SIGTERM: the replica turns unready, closes its listener and drains.
        let (status, stderr) = old.proc.stop("TERM");
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains("draining connections"), "{stderr}");
        assert!(
            eventually(Duration::from_secs(5), || async { lb.up().await == 2 }).await,
            "HAProxy never saw replica {i} go"
        );
        let fresh = Replica::start_on(&c.config.path, port, admin).await;
        c.replicas.insert(i, fresh);
        assert!(
            eventually(Duration::from_secs(10), || async { lb.up().await == 3 }).await,
            "replica {i} never came back in HAProxy"
        );
    }
    let (mut sent, mut failed) = (0, 0);
    for (stop, task) in loads {
        stop.store(true, Ordering::Relaxed);
        let (s, f) = task.await.unwrap();
        sent += s;
        failed += f;
    }
    eprintln!("rolling restart: {sent} requests through HAProxy, {failed} failed");
    assert!(sent > 50, "only {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rolling restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_keeps_single_use_across_replicas() {
    let Some(c) = Cluster::start_on(2, true).await else {
        return;
    };
    let console = console_token();
    let first = exchange(&c.replicas[0], &console).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = exchange(&c.replicas[1], &console).await;
    assert_eq!((again.status, again.body.as_str()), (400, INVALID_GRANT));
    until_all(
        &c.replicas,
        &first.token("access_token"),
        401,
        Duration::from_secs(1),
    )
    .await;
    let keys = c.redis.cli(&["dbsize"]);
    assert_eq!(
        keys.trim(),
        "3",
        "a used mark, the dead set, the last exchange: over TLS"
    );
}
