//! `scangate demo`: a scan-engine emulator on a free loopback port and a gateway in front of it, in
//! one process, with a throwaway config, key and minted token in a temp folder. It prints the
//! gateway's URL, the token and ready-to-paste curl lines with their expected output, serves until
//! SIGTERM or SIGINT, then removes the folder and exits 0.
//!
//! The printed lines are a small contract for scripts and tests: `URL: `, `Token: ` and
//! `Config folder: ` lines, then `curl …` lines each followed by an `expected: …` line.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::process::{self, Failure, StopSignals};
use crate::auth::token::{self, KeyError, TokenKey};
use crate::config::validate::socket_addr;
use crate::config::watch::{self, Triggers, WatchError};
use crate::emulator::{self, EmulatorOptions, EICAR};
use crate::net::Listener;
use crate::state::{Gateway, ReloadError};

/// `scangate demo`'s flags.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the gateway listens: IP:PORT, [V6]:PORT or localhost:PORT. The emulator behind it
    /// always takes a free port on 127.0.0.1.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_gateway_listen)]
    pub listen: SocketAddr,
}

/// How long in-flight requests may finish after Ctrl-C: a demo has few, and a user waits.
const DRAIN: Duration = Duration::from_secs(5);

/// The config's name inside the temp folder.
const CONFIG_FILE: &str = "scangate.xml";

/// The clean sample the printed curl line scans.
const CLEAN_SAMPLE: &[u8] = b"Hello, scangate!";

/// Why the demo could not start or stopped with an error. Every variant exits 1.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The gateway's address is taken: the most likely failure, so it gets its own words.
    #[error("{addr} is already in use; stop whatever listens there, or pick a free port with --listen 127.0.0.1:PORT")]
    AddrInUse {
        /// The requested gateway address.
        addr: SocketAddr,
    },
    /// Any other bind failure.
    #[error("cannot listen on {addr}: {source}")]
    BindFailed {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The temp folder or the config in it could not be written.
    #[error("cannot write the demo config folder: {0}")]
    Folder(io::Error),
    /// The key file could not be created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The generated config did not load (a bug: the demo writes it itself).
    #[error(transparent)]
    Start(#[from] ReloadError),
    /// The reload triggers could not start.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    /// The gateway or the emulator failed while serving.
    #[error("{0}")]
    Serve(io::Error),
    /// The temp folder could not be removed at exit.
    #[error("cannot remove {}: {source}", path.display())]
    Cleanup {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl Failure for DemoError {
    fn exit_code(&self) -> u8 {
        1
    }
}

/// Runs `scangate demo` and returns its exit code.
pub fn run(args: DemoArgs) -> ExitCode {
    process::run_command("demo", demo(args))
}

async fn demo(args: DemoArgs) -> Result<(), DemoError> {
    let stop = StopSignals::install().map_err(DemoError::Signals)?;
    // The gateway's port first: it is the one the user chose, so a clash is reported before
    // anything else is set up.
    let gateway_listener = bind_gateway(args.listen).await?;
    let gateway_addr = gateway_listener.local_addr().unwrap_or(args.listen);
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let emulator_listener =
        Listener::bind_tcp(loopback)
            .await
            .map_err(|source| DemoError::BindFailed {
                addr: loopback,
                source,
            })?;
    let emulator_addr = emulator_listener.local_addr().unwrap_or(loopback);

    let (folder, token) = write_folder(gateway_addr, emulator_addr)?;
    let gw = Gateway::start(&folder.path().join(CONFIG_FILE))?;
    let reloader = watch::start(Arc::clone(&gw), Triggers::all(None))?;
    let (stop_emulator, emulator_stopped) = oneshot::channel::<()>();
    let emulator = tokio::spawn(emulator::run(
        emulator_listener,
        EmulatorOptions::default(),
        async {
            let _ = emulator_stopped.await;
        },
    ));

    let url = format!("http://{gateway_addr}");
    let text = instructions(&url, &token, folder.path(), emulator_addr);
    // A closed stdout must not stop the demo: the gateway serves whether or not anyone reads this.
    let _ = io::stdout().lock().write_all(text.as_bytes());
    let _ = io::stdout().flush();

    // The gateway drains first, then the emulator behind it stops.
    let served = crate::proxy::server::run(gateway_listener, gw, stop.recv(), DRAIN).await;
    let _ = stop_emulator.send(());
    let emulator_result = emulator.await.map_err(io::Error::other);
    served.map_err(DemoError::Serve)?;
    emulator_result.and_then(|r| r).map_err(DemoError::Serve)?;
    drop(reloader);
    let path = folder.path().to_owned();
    folder
        .close()
        .map_err(|source| DemoError::Cleanup { path, source })?;
    tracing::info!("demo stopped; config folder removed");
    Ok(())
}

async fn bind_gateway(addr: SocketAddr) -> Result<Listener, DemoError> {
    Listener::bind_tcp(addr)
        .await
        .map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => DemoError::AddrInUse { addr },
            _ => DemoError::BindFailed { addr, source },
        })
}

/// Creates the temp folder with a fresh key (mode 0600) and the config, and mints the one token.
/// Dropping the folder removes it, so an error on the way cleans up too.
fn write_folder(gateway: SocketAddr, emulator: SocketAddr) -> Result<(TempDir, String), DemoError> {
    let folder = tempfile::Builder::new()
        .prefix("scangate-demo-")
        .tempdir()
        .map_err(DemoError::Folder)?;
    let key = TokenKey::read_or_create(&folder.path().join("scangate.key"))?;
    let token = token::mint();
    let xml = config_xml(gateway, emulator, &key.value(&token));
    std::fs::write(folder.path().join(CONFIG_FILE), xml).map_err(DemoError::Folder)?;
    Ok((folder, token))
}

/// `--listen` for the gateway: TCP only, since the printed curl lines need a URL.
fn parse_gateway_listen(text: &str) -> Result<SocketAddr, String> {
    socket_addr(text).map_err(str::to_owned)
}

/// The throwaway config: the gateway on `gateway`, the emulator as its one upstream, one token.
fn config_xml(gateway: SocketAddr, emulator: SocketAddr, value: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<!-- Written by `scangate demo` and removed when it stops. Edits here are reloaded live. -->
<Configuration>
  <ServerSettings>
    <ConnectionString>http://{gateway}</ConnectionString>
    <AuthSettings>
      <UseAccessToken>1</UseAccessToken>
      <AuthRequestField>Authorization</AuthRequestField>
      <UseBearerAuthScheme>1</UseBearerAuthScheme>
      <AccessTokens>
        <Token>
          <Name>demo</Name>
          <!-- HMAC-SHA-512 of the printed token under scangate.key; the token itself is nowhere on disk. -->
          <Value>{value}</Value>
          <Description>minted by scangate demo</Description>
          <Enabled>1</Enabled>
        </Token>
      </AccessTokens>
    </AuthSettings>
  </ServerSettings>
  <GatewaySettings>
    <Upstreams><Upstream>http://{emulator}</Upstream></Upstreams>
    <TokenKeyFile>scangate.key</TokenKeyFile>
    <!-- No admin listener: the demo must not take 9090 from a real gateway. -->
    <AdminConnectionString>off</AdminConnectionString>
    <Realm>scangate-demo</Realm>
  </GatewaySettings>
</Configuration>
"#
    )
}

/// What the demo prints on stdout.
fn instructions(url: &str, token: &str, folder: &Path, emulator: SocketAddr) -> String {
    let endpoint = format!("{url}/api/v3.0/scanmemory");
    let body = |sample: &[u8]| format!(r#"{{"object":"{}"}}"#, B64.encode(sample));
    let scan = |sample: &[u8]| {
        format!(
            r"curl -sS -w '\n' -H 'Authorization: Bearer {token}' -d '{}' {endpoint}",
            body(sample)
        )
    };
    let clean = scan(CLEAN_SAMPLE);
    let eicar = scan(EICAR);
    let anonymous = format!(r"curl -sS -w '\n' -d '{}' {endpoint}", body(CLEAN_SAMPLE));
    let folder = folder.display();
    format!(
        r#"scangate demo: a gateway in front of a scan-engine emulator, with a throwaway config and token.

URL: {url}
Token: {token}
Config folder: {folder}
Emulator: http://{emulator} (the upstream; it asks for no token)

Scan a clean string:
  {clean}
  expected: {{"object":"memory","scanResult":"CLEAN"}}

Scan the EICAR test string:
  {eicar}
  expected: {{"object":"memory","scanResult":"DETECT","detectionName":"EICAR-Test-File"}}

Without the token, the gateway answers 401 and the emulator never sees the request:
  {anonymous}
  expected: {{"error":"missing API token"}}

Ctrl-C stops the demo and removes the config folder.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_valid_and_points_at_both_ports() {
        let key = TokenKey::from_bytes(&[1; 32]);
        let gateway: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let emulator: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let xml = config_xml(gateway, emulator, &key.value("sg_x"));
        let settings = crate::config::validate::parse(&xml, "demo.xml").unwrap();
        assert_eq!(
            settings.server.listen,
            crate::config::ListenAddr::Tcp {
                addr: gateway,
                tls: false
            }
        );
        assert_eq!(settings.auth.tokens.len(), 1);
        assert_eq!(settings.gateway.admin, None);
        assert!(xml.contains("<Upstream>http://127.0.0.1:40000</Upstream>"));
        assert!(!xml.contains("sg_x"), "the token must not be in the config");
    }

    #[test]
    fn instructions_carry_the_token_and_both_samples() {
        let text = instructions(
            "http://127.0.0.1:8080",
            "sg_T0k3n",
            Path::new("/tmp/scangate-demo-x"),
            "127.0.0.1:40000".parse().unwrap(),
        );
        assert!(text.contains("\nURL: http://127.0.0.1:8080\n"));
        assert!(text.contains("\nToken: sg_T0k3n\n"));
        assert!(text.contains("\nConfig folder: /tmp/scangate-demo-x\n"));
        // The well-known base64 of the EICAR test string, as any AV vendor's docs print it.
        assert!(text.contains(
            r#"-d '{"object":"WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="}'"#
        ));
        assert!(text.contains(r#"-d '{"object":"SGVsbG8sIHNjYW5nYXRlIQ=="}'"#));
        assert_eq!(text.matches("Bearer sg_T0k3n").count(), 2);
        assert_eq!(
            text.lines()
                .filter(|l| l.trim_start().starts_with("curl "))
                .count(),
            3
        );
    }
}
