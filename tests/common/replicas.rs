//! Real parts for the scale-out tests: a `redis-server` on a free port in a temp folder, and
//! `scangate serve` processes sharing one config folder (each on its own ports, through
//! `--listen` and `--admin-listen`).
//!
//! A missing `redis-server` or `haproxy` skips a test with a message, unless
//! `SCANGATE_REQUIRE_REDIS` is set (CI sets it), which turns the skip into a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{free_port, Scangate};

/// Whether `tool` is on PATH. When it is not: false with a note on stderr, or a panic when
/// `SCANGATE_REQUIRE_REDIS` is set.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("SCANGATE_REQUIRE_REDIS").is_none(),
            "{tool} is not installed but SCANGATE_REQUIRE_REDIS is set"
        );
        eprintln!("SKIPPED: {tool} is not installed (set SCANGATE_REQUIRE_REDIS to fail instead)");
    }
    found
}

/// The password every test Redis requires, so every test also checks it never leaks.
pub const REDIS_PASSWORD: &str = "Hunter2-redis-secret";

/// A `redis-server` child with append-only persistence (fsync on every write), so a SIGKILL
/// loses no consumed mark.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// TLS only (`--tls-port`), with certificates from a test CA written to `dir`.
    tls: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = spawn_redis(port, dir.path(), false);
        wait_redis(port);
        RedisServer {
            child,
            port,
            dir,
            tls: false,
        }
    }

    /// A server that speaks TLS only, with a certificate for `localhost` from a test CA whose
    /// certificate is at [`RedisServer::ca_file`].
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        write_test_pki(dir.path());
        let port = free_port();
        let server = RedisServer {
            child: spawn_redis(port, dir.path(), true),
            port,
            dir,
            tls: true,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while server.cli(&["ping"]).trim() != "PONG" {
            assert!(
                Instant::now() < end,
                "TLS redis-server did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The test CA's certificate (PEM), for `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/0`, or `rediss://…@localhost…` for TLS.
    pub fn url(&self) -> String {
        match self.tls {
            false => format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.port),
            true => format!("rediss://:{REDIS_PASSWORD}@localhost:{}/0", self.port),
        }
    }

    /// `kill -SIGNAL` (STOP, CONT, KILL…).
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} redis failed");
    }

    /// SIGKILL, then the same server again on the same port and folder.
    pub fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Starts the server again after [`RedisServer::kill`].
    pub fn restart(&mut self) {
        assert!(!self.tls, "restart is for plain servers");
        self.child = spawn_redis(self.port, self.dir.path(), false);
        wait_redis(self.port);
    }

    /// Runs one command with `redis-cli`, returning its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        if self.tls {
            cmd.args(["--tls", "--cacert"]).arg(self.ca_file());
        }
        let out = cmd
            .args([
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
                "-a",
                REDIS_PASSWORD,
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_redis(port: u16, dir: &Path, tls: bool) -> Child {
    let mut cmd = Command::new("redis-server");
    if tls {
        cmd.args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(dir.join("redis.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("redis.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.pem"));
    } else {
        cmd.args(["--port", &port.to_string()]);
    }
    cmd.args(["--bind", "127.0.0.1", "--logfile", "redis.log"])
        .arg("--dir")
        .arg(dir)
        .args(["--requirepass", REDIS_PASSWORD])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

/// `ca.pem`, and `redis.pem` + `redis.key` for `localhost` signed by it, in `dir`.
fn write_test_pki(dir: &Path) {
    let pki = super::pki::Pki::new();
    let (cert, key) = pki.leaf(1);
    std::fs::write(dir.join("ca.pem"), pki.ca_pem()).unwrap();
    std::fs::write(dir.join("redis.pem"), cert).unwrap();
    std::fs::write(dir.join("redis.key"), key).unwrap();
}

/// Waits until the server answers an authenticated PING.
fn wait_redis(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let auth = format!(
                "*2\r\n$4\r\nAUTH\r\n${}\r\n{REDIS_PASSWORD}\r\n*1\r\n$4\r\nPING\r\n",
                REDIS_PASSWORD.len()
            );
            let mut buf = [0u8; 64];
            if s.write_all(auth.as_bytes()).is_ok() {
                let mut got = String::new();
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    got.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if got.contains("PONG") {
                        return;
                    }
                }
            }
        }
        assert!(
            Instant::now() < end,
            "redis-server did not come up on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `scangate serve` process on ports of its own, reading the shared `config`.
pub struct Replica {
    pub proc: Scangate,
    pub port: u16,
    pub admin: u16,
}

impl Replica {
    /// Starts the replica and waits until it serves and its session store is in sync.
    pub async fn start(config: &Path) -> Replica {
        Self::start_on(config, free_port(), free_port()).await
    }

    /// Like [`Replica::start`] on given ports (a restart keeps its ports).
    pub async fn start_on(config: &Path, port: u16, admin: u16) -> Replica {
        Self::start_with(config, port, admin, &[]).await
    }

    /// Like [`Replica::start_on`] with more environment variables.
    pub async fn start_with(config: &Path, port: u16, admin: u16, env: &[(&str, &str)]) -> Replica {
        let listen = format!("127.0.0.1:{port}");
        let admin_listen = format!("127.0.0.1:{admin}");
        let config = config.to_str().unwrap();
        let args = [
            "serve",
            "--config",
            config,
            "--listen",
            &listen,
            "--admin-listen",
            &admin_listen,
            "--threads",
            "1",
            "--drain-secs",
            "5",
        ];
        let proc = Scangate::spawn_with(&args, "info", env);
        let replica = Replica { proc, port, admin };
        let ready = super::eventually(Duration::from_secs(15), || replica.store_up(true)).await;
        if !ready {
            let (_, stderr) = replica.proc.stop("TERM");
            panic!("replica on {port} never got in sync with Redis: {stderr}");
        }
        replica
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// The text of `/metrics`, or empty when the admin listener does not answer.
    pub async fn metrics(&self) -> String {
        let got = super::client().get(self.admin_url("/metrics")).send().await;
        match got {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Whether `scangate_session_store_up` reads `up`.
    pub async fn store_up(&self, up: bool) -> bool {
        let want = format!("scangate_session_store_up {}", u8::from(up));
        self.metrics().await.lines().any(|l| l == want)
    }
}

/// HAProxy (Debian's) in front of replicas: round robin, `/readyz` health checks on each admin
/// port every 100 ms, and retries on another server when a connection fails or a response never
/// comes (`retries`, `option redispatch`, `retry-on`).
pub struct Haproxy {
    child: Child,
    pub port: u16,
    stats: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Balances over `(port, admin port)` pairs.
    pub fn start(backends: &[(u16, u16)]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let (port, stats) = (free_port(), free_port());
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, (p, a))| format!("  server r{i} 127.0.0.1:{p} check port {a}\n"))
            .collect();
        let config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
             \x20 retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
             \x20 default-server inter 100ms fall 1 rise 1\n{servers}\
             listen stats\n  bind 127.0.0.1:{stats}\n  stats enable\n  stats uri /stats\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        Haproxy {
            child,
            port,
            stats,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many servers HAProxy's health checks see UP.
    pub async fn up(&self) -> usize {
        let csv = super::client()
            .get(format!("http://127.0.0.1:{}/stats;csv", self.stats))
            .send()
            .await;
        let Ok(csv) = csv else { return 0 };
        let text = csv.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("be,r") && l.split(',').nth(17) == Some("UP"))
            .count()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
