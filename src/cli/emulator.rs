//! `scangate emulator`: the KAV-protocol scan-engine emulator ([`crate::emulator`]) as a process, for
//! demos, tests and benchmarks. It serves until SIGTERM or SIGINT, then lets in-flight requests
//! finish and exits 0.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::process::{self, Failure, StopSignals, EXIT_USAGE};
use crate::config::validate::{socket_addr, unix_path};
use crate::config::ListenAddr;
use crate::emulator::{self, EmulatorOptions};
use crate::net::Listener;

/// `scangate emulator`'s flags. Nothing here reloads: restart the emulator to change them.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Where to listen: IP:PORT, [V6]:PORT or localhost:PORT (an http:// prefix is allowed), or a
    /// unix socket path, which must contain a '/' (as in ./kav.sock).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: ListenAddr,
    /// The only folder scanfile may read, with everything below it. Without it, every scanfile is
    /// answered NON_SCANNED (ACCESS DENIED), so the emulator never exposes the host's files.
    #[arg(long, value_name = "DIR")]
    pub scan_root: Option<PathBuf>,
    /// Simulated time each scan takes, in milliseconds, for benchmarks and timeout tests.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub scan_delay_ms: u64,
    /// Largest request body in bytes; a larger one gets 413 (the engine's MaxTCPFileSize default).
    #[arg(long, value_name = "BYTES", default_value_t = EmulatorOptions::default().max_body_bytes)]
    pub max_body: u64,
}

/// Why the emulator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// `--scan-root` does not exist or cannot be read.
    #[error("--scan-root {}: {source}", path.display())]
    ScanRootUnreadable {
        /// The folder as given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `--scan-root` names something that is not a folder.
    #[error("--scan-root {}: not a folder", path.display())]
    ScanRootNotFolder {
        /// The path as given.
        path: PathBuf,
    },
    /// The listen address is taken, not ours, or its folder is missing.
    #[error("cannot listen on {addr}: {source}")]
    BindFailed {
        /// The address as printed.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    /// The emulator itself failed.
    #[error("{0}")]
    Serve(io::Error),
}

impl Failure for EmulatorError {
    fn exit_code(&self) -> u8 {
        match self {
            EmulatorError::ScanRootUnreadable { .. } | EmulatorError::ScanRootNotFolder { .. } => {
                EXIT_USAGE
            }
            _ => 1,
        }
    }
}

/// Runs `scangate emulator` and returns its exit code.
pub fn run(args: EmulatorArgs) -> ExitCode {
    process::run_command("emulator", serve(args))
}

async fn serve(args: EmulatorArgs) -> Result<(), EmulatorError> {
    if let Some(root) = &args.scan_root {
        check_scan_root(root)?;
    }
    let stop = StopSignals::install().map_err(EmulatorError::Signals)?;
    let listener = bind(&args.listen).await?;
    let opts = EmulatorOptions {
        scan_root: args.scan_root,
        scan_delay: Duration::from_millis(args.scan_delay_ms),
        max_body_bytes: args.max_body,
        ..EmulatorOptions::default()
    };
    let served = emulator::run(listener, opts, stop.recv()).await;
    if let ListenAddr::Unix(path) = &args.listen {
        // The socket file is ours; leaving it would only confuse the next `ls`.
        let _ = std::fs::remove_file(path);
    }
    served.map_err(EmulatorError::Serve)?;
    tracing::info!("emulator stopped");
    Ok(())
}

fn check_scan_root(root: &Path) -> Result<(), EmulatorError> {
    let meta = std::fs::metadata(root).map_err(|source| EmulatorError::ScanRootUnreadable {
        path: root.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(EmulatorError::ScanRootNotFolder {
            path: root.to_owned(),
        })
    }
}

async fn bind(addr: &ListenAddr) -> Result<Listener, EmulatorError> {
    let (bound, shown) = match addr {
        ListenAddr::Tcp { addr, .. } => (Listener::bind_tcp(*addr).await, addr.to_string()),
        ListenAddr::Unix(path) => (Listener::bind_unix(path), path.display().to_string()),
    };
    bound.map_err(|source| EmulatorError::BindFailed {
        addr: shown,
        source,
    })
}

/// `--listen`: the rules of a `ConnectionString` address, with a unix socket told apart by its `/`,
/// so a mistyped `host:port` is an error rather than a socket file named after it.
pub fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if text.contains("://") {
        let Some(rest) = text.strip_prefix("http://") else {
            return Err("the emulator speaks plain HTTP: use IP:PORT or http://IP:PORT".into());
        };
        return socket_addr(rest.strip_suffix('/').unwrap_or(rest))
            .map(|addr| ListenAddr::Tcp { addr, tls: false })
            .map_err(str::to_owned);
    }
    if text.contains('/') {
        return unix_path(text).map(ListenAddr::Unix);
    }
    socket_addr(text)
        .map(|addr| ListenAddr::Tcp { addr, tls: false })
        .map_err(|why| format!("{why}; a unix socket path needs a '/', as in ./kav.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(text: &str) -> ListenAddr {
        ListenAddr::Tcp {
            addr: text.parse().unwrap(),
            tls: false,
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:9999"), Ok(tcp("127.0.0.1:9999")));
        assert_eq!(parse_listen("[::1]:9999"), Ok(tcp("[::1]:9999")));
        assert_eq!(parse_listen("localhost:9999"), Ok(tcp("127.0.0.1:9999")));
        assert_eq!(parse_listen("http://0.0.0.0:80/"), Ok(tcp("0.0.0.0:80")));
        assert_eq!(
            parse_listen("/run/kav.sock"),
            Ok(ListenAddr::Unix("/run/kav.sock".into()))
        );
        assert_eq!(
            parse_listen("./kav.sock"),
            Ok(ListenAddr::Unix("./kav.sock".into()))
        );
    }

    #[test]
    fn bad_listen_addresses_say_why() {
        assert_eq!(
            parse_listen("kav.sock").unwrap_err(),
            "needs a port, as in 127.0.0.1:8080; a unix socket path needs a '/', as in ./kav.sock"
        );
        assert_eq!(
            parse_listen("engine.local:9999").unwrap_err(),
            "use an IP address (or localhost), not a host name; a unix socket path needs a '/', \
             as in ./kav.sock"
        );
        assert_eq!(
            parse_listen("127.0.0.1:99999").unwrap_err(),
            "the port must be a number from 0 to 65535; a unix socket path needs a '/', as in \
             ./kav.sock"
        );
        assert_eq!(
            parse_listen("https://127.0.0.1:9999").unwrap_err(),
            "the emulator speaks plain HTTP: use IP:PORT or http://IP:PORT"
        );
        assert!(parse_listen(&format!("/{}", "s".repeat(200)))
            .unwrap_err()
            .contains("the limit is 107"));
    }
}
