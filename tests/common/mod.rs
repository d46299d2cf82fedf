//! Test harness: an in-process upstream that records what it received, and a gateway started on
//! port 0 from a config written to a temp folder.
#![allow(dead_code)]

pub mod pki;
pub mod process;
pub mod replicas;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use scangate::auth::token::TokenKey;
use scangate::net::Listener;
use scangate::state::Gateway;
use tokio::sync::{mpsc, oneshot};

/// The HMAC key every test config uses.
pub const KEY: [u8; 32] = [42; 32];

/// The key as a `TokenKey`.
pub fn key() -> TokenKey {
    TokenKey::from_bytes(&KEY)
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How the test upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with body `upstream-ok`, after reading the whole request body.
    Ok,
    /// Like Ok, after a delay.
    Delay(Duration),
    /// Never answers.
    Hang,
}

/// An in-process HTTP/1.1 upstream on 127.0.0.1:0.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Receives a message when a request's first body chunk arrives (before the body is complete).
    pub first_chunk: Arc<Mutex<Option<mpsc::UnboundedSender<Bytes>>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Upstream {
    pub async fn start(behaviour: Behaviour) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let first_chunk: Arc<Mutex<Option<mpsc::UnboundedSender<Bytes>>>> =
            Arc::new(Mutex::new(None));
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let (seen2, first2) = (seen.clone(), first_chunk.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    _ = &mut stop_rx => return,
                };
                let (seen, first) = (seen2.clone(), first2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (seen, first) = (seen.clone(), first.clone());
                        async move { Ok::<_, Infallible>(answer(req, behaviour, seen, first).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            first_chunk,
            stop: Some(stop_tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops accepting (open connections keep running until they close).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    req: Request<Incoming>,
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<Seen>>>,
    first: Arc<Mutex<Option<mpsc::UnboundedSender<Bytes>>>>,
) -> Response<Full<Bytes>> {
    let (parts, mut body) = req.into_parts();
    let mut collected = Vec::new();
    let mut announced = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            if !announced && !data.is_empty() {
                announced = true;
                if let Some(tx) = first.lock().unwrap().as_ref() {
                    let _ = tx.send(data.clone());
                }
            }
            collected.extend_from_slice(data);
        }
    }
    seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
        body: Bytes::from(collected),
    });
    match behaviour {
        Behaviour::Ok => {}
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        Behaviour::Hang => std::future::pending::<()>().await,
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"upstream-ok")));
    resp.headers_mut()
        .insert("x-upstream", "1".parse().unwrap());
    // A hop-by-hop header the gateway must not pass back.
    resp.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    resp
}

/// A token in a test config.
#[derive(Debug, Clone)]
pub struct Tok {
    pub name: String,
    pub token: String,
    pub enabled: bool,
    /// `Tenants/Tenant`, none by default.
    pub tenants: Vec<String>,
    /// Extra XML inside the Token (a `RateLimit`), none by default.
    pub extra: String,
}

impl Tok {
    pub fn new(name: &str, token: &str, enabled: bool) -> Tok {
        Tok {
            name: name.into(),
            token: token.into(),
            enabled,
            tenants: Vec::new(),
            extra: String::new(),
        }
    }

    /// The same token with `xml` (a `RateLimit` element) inside it.
    pub fn with_extra(mut self, xml: &str) -> Tok {
        self.extra = xml.to_owned();
        self
    }

    /// The same token scoped to `tenants`.
    pub fn with_tenants(mut self, tenants: &[&str]) -> Tok {
        self.tenants = tenants.iter().map(|t| (*t).to_owned()).collect();
        self
    }
}

/// Knobs for a test config.
#[derive(Debug, Clone)]
pub struct Cfg {
    pub upstreams: Vec<String>,
    pub tokens: Vec<Tok>,
    pub use_access_token: bool,
    pub field: String,
    pub bearer: bool,
    pub max_bytes: u64,
    pub session_timeout_ms: u64,
    /// `ConnectionString` (the harness binds its own port-0 listener; only the scheme matters).
    pub connection: String,
    /// Extra XML inside `ServerSettings`.
    pub server_extra: String,
    /// Extra XML inside `GatewaySettings`.
    pub gateway_extra: String,
    /// `AdminConnectionString`: `off` by default, so binaries started in parallel never race
    /// for 127.0.0.1:9090.
    pub admin: String,
}

impl Cfg {
    pub fn new(upstream: &str, tokens: &[Tok]) -> Cfg {
        Cfg {
            upstreams: vec![upstream.to_owned()],
            tokens: tokens.to_vec(),
            use_access_token: true,
            field: "Authorization".into(),
            bearer: true,
            max_bytes: 1024 * 1024,
            session_timeout_ms: 10_000,
            connection: "http://127.0.0.1:0".into(),
            server_extra: String::new(),
            gateway_extra: String::new(),
            admin: "off".into(),
        }
    }

    /// The config XML for these settings.
    pub fn xml(&self) -> String {
        let key = key();
        let tokens: String = self
            .tokens
            .iter()
            .map(|t| {
                let tenants: String = (t.tenants.iter())
                    .map(|x| format!("<Tenant>{x}</Tenant>"))
                    .collect();
                let tenants = match tenants.is_empty() {
                    true => tenants,
                    false => format!("<Tenants>{tenants}</Tenants>"),
                };
                format!(
                    "        <Token><Name>{}</Name><Value>{}</Value><Enabled>{}</Enabled>{tenants}{}</Token>\n",
                    t.name,
                    key.value(&t.token),
                    u8::from(t.enabled),
                    t.extra
                )
            })
            .collect();
        let upstreams: String = self
            .upstreams
            .iter()
            // An entry that is already an element (`<Upstream Weight="2">…`) goes in as written.
            .map(|u| match u.starts_with('<') {
                true => u.clone(),
                false => format!("<Upstream>{u}</Upstream>"),
            })
            .collect();
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<Configuration>
  <ServerSettings>
    <ConnectionString>{connection}</ConnectionString>
    <MaxTCPFileSize>{max}</MaxTCPFileSize>{server_extra}
    <SessionTimeout>{timeout}</SessionTimeout>
    <AuthSettings>
      <UseAccessToken>{use_at}</UseAccessToken>
      <AuthRequestField>{field}</AuthRequestField>
      <UseBearerAuthScheme>{bearer}</UseBearerAuthScheme>
      <AccessTokens>
{tokens}      </AccessTokens>
    </AuthSettings>
  </ServerSettings>
  <GatewaySettings>
    <Upstreams>{upstreams}</Upstreams>
    <TokenKeyFile>scangate.key</TokenKeyFile>
    <AdminConnectionString>{admin}</AdminConnectionString>
    <Realm>test-realm</Realm>{gateway_extra}
  </GatewaySettings>
</Configuration>
"#,
            max = self.max_bytes,
            connection = self.connection,
            server_extra = self.server_extra,
            gateway_extra = self.gateway_extra,
            timeout = self.session_timeout_ms,
            use_at = u8::from(self.use_access_token),
            field = self.field,
            bearer = u8::from(self.bearer),
            admin = self.admin,
        )
    }
}

/// Writes `content` to `path` atomically: temp file in the same folder, then rename.
pub fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A folder with a config and key file.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigDir {
    pub fn new(cfg: &Cfg) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64_key();
        let key = dir.path().join("scangate.key");
        std::fs::write(&key, format!("{b64}\n")).unwrap();
        // As `token add` creates it: `check` refuses a key file others may read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("scangate.xml");
        std::fs::write(&path, cfg.xml()).unwrap();
        ConfigDir { dir, path }
    }
}

pub fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(KEY)
}

/// A running in-process gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gw: Arc<Gateway>,
    pub config: ConfigDir,
    stop: Option<oneshot::Sender<()>>,
    _reloader: Option<scangate::config::watch::Reloader>,
}

impl TestGateway {
    /// Starts a gateway with the folder watch and SIGHUP triggers on.
    pub async fn start(cfg: &Cfg) -> TestGateway {
        Self::start_in(ConfigDir::new(cfg), true).await
    }

    pub async fn start_in(config: ConfigDir, watch: bool) -> TestGateway {
        let gw = Gateway::start(&config.path).expect("test config loads");
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let reloader = watch.then(|| {
            scangate::config::watch::start(gw.clone(), scangate::config::watch::Triggers::all(None))
                .unwrap()
        });
        let gw2 = gw.clone();
        tokio::spawn(async move {
            scangate::proxy::server::run(
                listener,
                gw2,
                async {
                    let _ = stop_rx.await;
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        });
        TestGateway {
            addr,
            gw,
            config,
            stop: Some(stop_tx),
            _reloader: reloader,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the gateway and hands back its config folder, for a restart on the same files.
    pub fn stop(mut self) -> ConfigDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let empty = ConfigDir {
            dir: tempfile::tempdir().unwrap(),
            path: PathBuf::new(),
        };
        std::mem::replace(&mut self.config, empty)
    }

    /// Rewrites the config atomically (temp file + rename).
    pub fn rewrite(&self, cfg: &Cfg) {
        write_atomic(&self.config.path, &cfg.xml());
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A gateway served by `run_workers` (the production path: worker threads with their own
/// runtimes), from `dir`'s config.
pub struct WorkersGateway {
    pub addr: SocketAddr,
    pub gw: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl WorkersGateway {
    pub async fn start(dir: &ConfigDir, workers: usize) -> WorkersGateway {
        WorkersGateway::start_with(dir, workers, scangate::net::Accept::default()).await
    }

    /// As [`WorkersGateway::start`], taking connections as `accept` says.
    pub async fn start_with(
        dir: &ConfigDir,
        workers: usize,
        accept: scangate::net::Accept,
    ) -> WorkersGateway {
        let gw = Gateway::start(&dir.path).expect("test config loads");
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let served = tokio::spawn(scangate::proxy::server::run_workers(
            listener,
            Arc::clone(&gw),
            async {
                let _ = stop_rx.await;
            },
            Duration::from_secs(5),
            workers,
            accept,
        ));
        WorkersGateway {
            addr,
            gw,
            stop: Some(stop_tx),
            served: Some(served),
        }
    }

    /// Stops it and waits until every worker has stopped serving.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap().unwrap();
        }
    }
}

/// A plain HTTP/1.1 client with no proxy, no retries and no automatic decompression.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Polls `f` until it returns true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Status of a GET with `Authorization: Bearer <token>`.
pub async fn status_with(client: &reqwest::Client, url: &str, token: &str) -> u16 {
    client
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// What one run of the built binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A `scangate` command for the built binary, with `--config` set.
pub fn command(config: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scangate"));
    cmd.args(args).arg("--config").arg(config);
    cmd.env_remove("SCANGATE_CONFIG").env_remove("RUST_LOG");
    cmd
}

/// Runs `scangate ARGS --config CONFIG` to the end.
pub fn scangate(config: &Path, args: &[&str]) -> Run {
    finished(command(config, args).output().unwrap())
}

pub fn finished(out: std::process::Output) -> Run {
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `token list --json`, parsed.
pub fn list_json(config: &Path) -> Vec<serde_json::Value> {
    let run = scangate(config, &["token", "list", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}
