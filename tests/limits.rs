//! Per-principal limits over real sockets: the rate bucket (kept across a reload, a limit edit
//! and a rotation), MaxConcurrent, the 429s and their headers, and nothing reaching the upstream
//! for a refused request; a daily quota that survives a restart (SQLite file).

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIM: &str = "sg_Limited-Token-1";
const LIM2: &str = "sg_Limited-Token-2";
const FREE: &str = "sg_Free-Token-1";

const FIVE_PER_SECOND: &str =
    "<RateLimit><RequestsPerSecond>5</RequestsPerSecond><Burst>5</Burst></RateLimit>";

struct Answer {
    status: u16,
    retry_after: Option<String>,
    policy: Option<String>,
    current: Option<String>,
    body: String,
}

async fn get(c: &reqwest::Client, url: &str, token: &str) -> Answer {
    let r = c
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let h = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (retry_after, policy, current) = (h("retry-after"), h("ratelimit-policy"), h("ratelimit"));
    Answer {
        status: r.status().as_u16(),
        retry_after,
        policy,
        current,
        body: r.text().await.unwrap(),
    }
}

/// Reloads now, on a blocking thread, and checks a new generation is in force.
async fn reload(gw: &TestGateway, cfg: &Cfg) {
    gw.rewrite(cfg);
    let before = gw.gw.generation();
    let g = gw.gw.clone();
    tokio::task::spawn_blocking(move || g.reload().unwrap())
        .await
        .unwrap();
    assert_eq!(gw.gw.generation(), before + 1);
}

#[tokio::test]
async fn five_per_second_admits_five_or_six_of_fifty_and_reloads_keep_the_bucket() {
    let up = Upstream::start(Behaviour::Ok).await;
    let mut cfg = Cfg::new(
        &up.url(),
        &[
            Tok::new("lim", LIM, true).with_extra(FIVE_PER_SECOND),
            Tok::new("free", FREE, true),
        ],
    );
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let c = client();
    let url = gw.url("/api/v3.0/version");

    let started = Instant::now();
    let mut answers = Vec::new();
    for i in 0..50 {
        match i {
            // An edit of the limits that leaves the rate alone (the record is replaced)...
            15 => {
                cfg.tokens[0].extra = "<RateLimit><RequestsPerSecond>5</RequestsPerSecond>\
                    <Burst>5</Burst><MaxConcurrent>100</MaxConcurrent></RateLimit>"
                    .into();
                reload(&gw, &cfg).await;
            }
            // ...and a rotation: a new Value under the same Name.
            30 => {
                cfg.tokens[0].token = LIM2.into();
                reload(&gw, &cfg).await;
                assert_eq!(get(&c, &url, LIM).await.status, 401);
            }
            _ => {}
        }
        let token = if i < 30 { LIM } else { LIM2 };
        answers.push(get(&c, &url, token).await);
        // The other token is never limited.
        let free = get(&c, &url, FREE).await;
        assert_eq!(free.status, 200);
        assert_eq!((free.policy, free.current), (None, None));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert!((5..=6).contains(&ok), "{ok} of 50 admitted");
    for a in &answers {
        let policy = a.policy.as_deref().unwrap();
        assert!(policy.starts_with("\"burst\";q=5;w=1"), "{policy}");
        match a.status {
            200 => assert!(a.current.as_deref().unwrap().starts_with("\"burst\";r=")),
            429 => {
                assert_eq!(a.body, r#"{"error":"rate limit exceeded"}"#);
                assert_eq!(a.retry_after.as_deref(), Some("1"));
                assert_eq!(a.current.as_deref(), Some("\"burst\";r=0;t=1"));
            }
            other => panic!("status {other}"),
        }
    }
    // Nothing of a refused request reached the upstream: it saw the admitted ones and the free
    // token's 50.
    assert_eq!(scans(&up), ok + 50);

    // The bucket refills at 5/s.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(get(&c, &url, LIM2).await.status, 200);

    let text = gw.gw.metrics.encode();
    let refused = 50 - ok;
    assert!(
        text.contains(&format!(
            "scangate_rate_limited_total{{token=\"lim\",kind=\"rate\"}} {refused}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn max_concurrent_two_refuses_the_third_at_once_and_frees_slots_when_bodies_end() {
    let up = Upstream::start(Behaviour::Delay(Duration::from_millis(1500))).await;
    let extra = "<RateLimit><MaxConcurrent>2</MaxConcurrent></RateLimit>";
    let cfg = Cfg::new(&up.url(), &[Tok::new("lim", LIM, true).with_extra(extra)]);
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let c = client();
    let url = gw.url("/api/v3.0/version");

    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get(&c, &url, LIM).await })
        })
        .collect();
    let record = gw.gw.tokens.find_by_name("lim").unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            record.stats.limits.in_flight() == 2
        })
        .await
    );
    let started = Instant::now();
    let third = get(&c, &url, LIM).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(third.status, 429);
    assert_eq!(third.body, r#"{"error":"too many concurrent requests"}"#);
    assert_eq!(third.retry_after.as_deref(), Some("1"));
    assert_eq!(
        third.policy.as_deref(),
        Some("\"concurrency\";q=2;qu=\"concurrent-requests\"")
    );
    for s in slow {
        let a = s.await.unwrap();
        assert_eq!(a.status, 200);
    }
    // Both slots are free again once the bodies have ended.
    assert!(
        eventually(Duration::from_secs(2), || async {
            record.stats.limits.in_flight() == 0
        })
        .await
    );
    let fourth = get(&c, &url, LIM).await;
    assert_eq!(fourth.status, 200);
    assert_eq!(fourth.current.as_deref(), Some("\"concurrency\";r=1"));
    assert_eq!(scans(&up), 3, "the refused request reached the upstream");
}

#[tokio::test]
async fn a_daily_quota_survives_a_restart() {
    let up = Upstream::start(Behaviour::Ok).await;
    let extra = "<RateLimit><DailyQuota>3</DailyQuota></RateLimit>";
    let cfg = Cfg::new(
        &up.url(),
        &[
            Tok::new("lim", LIM, true).with_extra(extra),
            Tok::new("free", FREE, true),
        ],
    );
    let gw = TestGateway::start_in(ConfigDir::new(&cfg), false).await;
    let c = client();
    let url = gw.url("/api/v3.0/version");
    for left in [2, 1] {
        let a = get(&c, &url, LIM).await;
        assert_eq!(a.status, 200);
        let current = a.current.unwrap();
        assert!(
            current.starts_with(&format!("\"daily\";r={left};t=")),
            "{current}"
        );
    }
    let gw_state = gw.gw.clone();
    let config = gw.stop();
    // The stopped gateway's last flush reaches the file.
    let db = config.dir.path().join("scangate-state.db");
    assert!(
        eventually(Duration::from_secs(5), || async {
            stored_requests(&db) == Some(2)
        })
        .await,
        "the counts were not flushed at shutdown"
    );
    drop(gw_state);

    let gw = TestGateway::start_in(config, false).await;
    let url = gw.url("/api/v3.0/version");
    let a = get(&c, &url, LIM).await;
    assert_eq!(a.status, 200, "the third request of the day");
    let a = get(&c, &url, LIM).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body, r#"{"error":"quota exceeded"}"#);
    let retry: u64 = a.retry_after.unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - now % 86_400;
    assert!(
        (to_midnight..=to_midnight + 1).contains(&retry),
        "Retry-After {retry}, {to_midnight} s to UTC midnight"
    );
    assert_eq!(get(&c, &url, FREE).await.status, 200);
    assert_eq!(scans(&up), 4);
}

/// The requests counted today in the SQLite state file (any key of `lim`).
fn stored_requests(db: &std::path::Path) -> Option<u64> {
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.query_row(
        "SELECT sum(requests) FROM quota_usage WHERE key LIKE 'd%:lim@%'",
        [],
        |row| row.get::<_, Option<i64>>(0),
    )
    .ok()
    .flatten()
    .map(|n| n as u64)
}

/// The built binary's JSON access log names each refusal's reason, and no line holds a token.
#[tokio::test]
async fn the_access_log_gives_each_limit_reason_and_never_a_token() {
    use common::process::{free_port, Scangate};
    const RATE: &str = "sg_Rate-Limited-9";
    const QUOTA: &str = "sg_Quota-Limited-9";
    const CONC: &str = "sg_Conc-Limited-9";
    let up = Upstream::start(Behaviour::Delay(Duration::from_millis(400))).await;
    let port = free_port();
    let mut cfg = Cfg::new(
        &up.url(),
        &[
            Tok::new("rate", RATE, true)
                .with_extra("<RateLimit><RequestsPerSecond>1</RequestsPerSecond></RateLimit>"),
            Tok::new("quota", QUOTA, true)
                .with_extra("<RateLimit><DailyQuota>1</DailyQuota></RateLimit>"),
            Tok::new("conc", CONC, true)
                .with_extra("<RateLimit><MaxConcurrent>1</MaxConcurrent></RateLimit>"),
        ],
    );
    cfg.connection = format!("http://127.0.0.1:{port}");
    let dir = ConfigDir::new(&cfg);
    let child = Scangate::spawn(&[
        "--log-format",
        "json",
        "serve",
        "--config",
        dir.path.to_str().unwrap(),
    ]);
    let url = format!("http://127.0.0.1:{port}/api/v3.0/version");
    let c = client();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status_with(&c, &url, "nope").await == 401
        })
        .await
    );
    for token in [RATE, QUOTA] {
        assert_eq!(status_with(&c, &url, token).await, 200);
        assert_eq!(status_with(&c, &url, token).await, 429);
    }
    let (a, b) = tokio::join!(status_with(&c, &url, CONC), status_with(&c, &url, CONC));
    let mut both = [a, b];
    both.sort();
    assert_eq!(both, [200, 429]);

    let (status, logs) = child.stop("TERM");
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    let mut reasons: Vec<(String, String)> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "scangate::access" && v["status"] == 429)
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("token"), s("reason"))
        })
        .collect();
    reasons.sort();
    let want = [
        ("conc", "concurrency_limited"),
        ("quota", "quota_exceeded"),
        ("rate", "rate_limited"),
    ]
    .map(|(t, r)| (t.to_owned(), r.to_owned()));
    assert_eq!(reasons, want, "logs:\n{logs}");
    for token in [RATE, QUOTA, CONC] {
        assert!(!logs.contains(token), "token in logs");
    }
}

/// Requests the upstream saw on the path the tests call (active health checks use another).
fn scans(up: &Upstream) -> usize {
    (up.seen().iter())
        .filter(|s| s.uri.path() == "/api/v3.0/version")
        .count()
}
