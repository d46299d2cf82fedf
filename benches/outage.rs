//! The cost of a Redis outage to requests made with access tokens: p50/p99 latency of
//! `GET /api/v3.0/version` through a real `scangate serve` (release build, one worker) in front of
//! the KAV emulator, with the session store in Redis, first with Redis up, then with Redis
//! stopped (SIGSTOP: sockets stay open, nothing answers), then killed. Needs `redis-server`.
//!
//! `cargo bench --bench outage` (optional arguments: SECONDS per phase, default 5, and CLIENTS,
//! default 16). Prints one line per phase; benches/RESULTS.md records a run.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scangate::auth::exchange::console_refresh_token;
use scangate::auth::jwt::JwtKeys;
use scangate::auth::token::TokenKey;
use scangate::config::validate::connections::{format_time, now_secs};

mod common;

const CID: &str = "OutageBenchClientId001";
const KEY: [u8; 32] = [9; 32];

/// A child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(cmd: &mut Command) -> Proc {
    Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts"),
    )
}

fn signal(redis: &common::Redis, sig: &str) {
    Command::new("kill")
        .args([&format!("-{sig}"), &redis.child.id().to_string()])
        .status()
        .unwrap();
}

async fn wait_for(deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < end, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `clients` loops of GETs for `secs`; returns (sorted latencies, failures).
async fn phase(url: &str, token: &str, clients: usize, secs: u64) -> (Vec<Duration>, usize) {
    let end = Instant::now() + Duration::from_secs(secs);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
            tokio::spawn(async move {
                let (mut lat, mut failed) = (Vec::new(), 0);
                while Instant::now() < end {
                    let t = Instant::now();
                    let ok = http
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    lat.push(t.elapsed());
                    failed += usize::from(!ok);
                }
                (lat, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (lat, f) = t.await.unwrap();
        all.extend(lat);
        failed += f;
    }
    all.sort();
    (all, failed)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let secs = nums.first().copied().unwrap_or(5);
    let clients = nums.get(1).copied().unwrap_or(16) as usize;
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = common::Redis::start(dir.path()) else {
        eprintln!("outage bench skipped: redis-server is not installed");
        return;
    };
    let redis_port = redis.port;
    let bin = env!("CARGO_BIN_EXE_scangate");
    let engine_port = free_port();
    let _engine = spawn(Command::new(bin).args([
        "emulator",
        "--listen",
        &format!("127.0.0.1:{engine_port}"),
    ]));

    use base64::Engine;
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    let key_path = dir.path().join("scangate.key");
    std::fs::write(&key_path, format!("{key_b64}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fit = now_secs() - 60;
    let static_value = TokenKey::from_bytes(&KEY).value("sg_OutageBenchStaticToken-1");
    let config = format!(
        r#"<Configuration><ServerSettings><ConnectionString>http://127.0.0.1:0</ConnectionString>
<AuthSettings><UseAccessToken>1</UseAccessToken><AuthRequestField>Authorization</AuthRequestField>
<UseBearerAuthScheme>1</UseBearerAuthScheme><AccessTokens><Token><Name>static</Name>
<Value>{static_value}</Value><Enabled>1</Enabled></Token></AccessTokens>
<ApiConnections><Connection><Name>bench</Name><ClientId>{CID}</ClientId><Role>SecurityOfficer</Role>
<Enabled>1</Enabled><NotBefore>{nb}</NotBefore></Connection></ApiConnections></AuthSettings>
</ServerSettings><GatewaySettings><Upstreams><Upstream>http://127.0.0.1:{engine_port}</Upstream></Upstreams>
<TokenKeyFile>scangate.key</TokenKeyFile><AdminConnectionString>off</AdminConnectionString>
<Sessions><StateStore>redis://127.0.0.1:{redis_port}/0</StateStore></Sessions>
</GatewaySettings></Configuration>"#,
        nb = format_time(fit)
    );
    let config_path = dir.path().join("scangate.xml");
    std::fs::write(&config_path, config).unwrap();
    let (port, admin) = (free_port(), free_port());
    let _gateway = spawn(Command::new(bin).env("RUST_LOG", "warn").args([
        "serve",
        "--config",
        config_path.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        "--threads",
        "1",
    ]));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    let store_up = |up: u8| {
        let (http, metrics) = (http.clone(), metrics.clone());
        async move {
            let text = match http.get(&metrics).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            text.lines()
                .any(|l| l == format!("scangate_session_store_up {up}"))
        }
    };
    wait_for(Duration::from_secs(15), async || store_up(1).await).await;
    let keys = JwtKeys::derive(&TokenKey::from_bytes(&KEY));
    let refresh = console_refresh_token(&keys, CID, Duration::from_secs(3600), fit).0;
    let issued: serde_json::Value = http
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/{CID}/session/confirm"
        ))
        .body(serde_json::json!({ "refresh_token": refresh }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = Arc::new(issued["access_token"].as_str().unwrap().to_owned());
    let url = format!("http://127.0.0.1:{port}/api/v3.0/version");

    println!("outage bench: {clients} clients, {secs} s per phase, GET /api/v3.0/version with an access token, serve --threads 1");
    for (name, sig) in [
        ("redis up", None),
        ("redis stopped (SIGSTOP)", Some("STOP")),
        ("redis up again (SIGCONT)", Some("CONT")),
        ("redis killed (SIGKILL)", Some("KILL")),
    ] {
        if let Some(sig) = sig {
            signal(&redis, sig);
            let up = u8::from(sig == "CONT");
            wait_for(Duration::from_secs(10), async || store_up(up).await).await;
        }
        let (lat, failed) = phase(&url, &access, clients, secs).await;
        println!(
            "{name:<26} requests {:>7}  failed {failed}  req/s {:>7.0}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            lat.len(),
            lat.len() as f64 / secs as f64,
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            pct(&lat, 1.0),
        );
    }
}
