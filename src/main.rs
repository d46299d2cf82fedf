//! The `scangate` binary: parse arguments, set up tracing, load config, start the runtime, run.
//! Exit codes: 0 success, 1 runtime failure or invalid file, 64 bad usage or bad config at start-up.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use scangate::config::ListenAddr;
use scangate::net::Listener;
use scangate::state::Gateway;

/// Exit code for bad usage or a bad config (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "scangate",
    version,
    about = "Authenticating gateway for antivirus scan engines"
)]
struct Cli {
    /// Log format for stderr (the container image sets json).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "SCANGATE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the KAV-protocol scan-engine emulator.
    Emulator(scangate::cli::emulator::EmulatorArgs),
    /// Run an emulator and a gateway with a throwaway token, and print curl lines to try them.
    Demo(scangate::cli::demo::DemoArgs),
    /// Manage API tokens in the config file (the kl_access_util counterpart).
    Token(scangate::cli::token::TokenArgs),
    /// Manage MDR API connections in the config file: refresh tokens exchanged for access tokens.
    Connection(scangate::cli::connection::ConnectionArgs),
    /// Validate the config and key files; exit 1 when any error is found.
    Check(scangate::cli::check::CheckArgs),
    /// GET an admin URL; exit 0 on 200, else 1 (Docker HEALTHCHECK in an image without curl).
    Healthcheck(scangate::cli::healthcheck::HealthcheckArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AcceptArg {
    Reuseport,
    Shared,
}

impl From<AcceptArg> for scangate::net::Accept {
    fn from(a: AcceptArg) -> Self {
        match a {
            AcceptArg::Reuseport => scangate::net::Accept::ReusePort,
            AcceptArg::Shared => scangate::net::Accept::Shared,
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The config file (kavhttpd.xml-shaped).
    #[arg(long, env = "SCANGATE_CONFIG")]
    config: PathBuf,
    /// Also re-read the config every SECS seconds, for filesystems that emit no change events.
    #[arg(long, value_name = "SECS")]
    reload_poll: Option<u64>,
    /// Worker threads serving clients, each with its own event loop (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// How the worker threads take new connections: `reuseport`, a listening socket per worker
    /// with SO_REUSEPORT (the kernel spreads connections evenly), or `shared`, one socket that
    /// whichever worker is free first accepts from. Unix sockets are always shared.
    #[arg(long, value_enum, default_value_t = AcceptArg::Reuseport)]
    accept: AcceptArg,
    /// Seconds to let in-flight requests finish after SIGTERM or SIGINT.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Bind the client listener to IP:PORT instead of ConnectionString's address (its scheme,
    /// http or https, still applies): several replicas on one host can share one config file.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// Bind the admin listener to IP:PORT instead of AdminConnectionString, for the same reason.
    #[arg(long, value_name = "IP:PORT")]
    admin_listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // Dropped when main returns: writes the lines still queued for stderr.
    let _flusher = init_tracing(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Emulator(args) => scangate::cli::emulator::run(args),
        Command::Demo(args) => scangate::cli::demo::run(args),
        Command::Token(args) => scangate::cli::token::run(args),
        Command::Connection(args) => scangate::cli::connection::run(args),
        Command::Check(args) => scangate::cli::check::run(args),
        Command::Healthcheck(args) => scangate::cli::healthcheck::run(args),
    }
}

/// clap's own exit code for bad usage is 2; scangate's is 64. Help and version exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(EXIT_USAGE),
    }
}

/// Log lines go to stderr through one writer thread (`scangate::logging`), so serving threads
/// never block on stderr.
fn init_tracing(format: LogFormat) -> scangate::logging::Flusher {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // No colour codes when stderr is a pipe or a container log.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The access line is formatted straight into the serving thread's buffer in fmt's own shape
    // (see `scangate::logging::write_with`), except with colours, which only a terminal gets.
    let direct = match format {
        LogFormat::Json => Some(scangate::logging::LineFormat::Json),
        LogFormat::Text if !ansi => Some(scangate::logging::LineFormat::Text),
        LogFormat::Text => None,
    };
    let (writer, flusher) = scangate::logging::init(direct);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    flusher
}

fn serve(args: ServeArgs) -> ExitCode {
    let gw = match Gateway::start(&args.config) {
        Ok(gw) => gw,
        Err(e) => {
            eprintln!("scangate: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The client listener gets worker threads of its own (`run_workers`); this runtime runs the
    // rest: signals, reloads, the admin listener and the engines' health checks.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scangate: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_gateway(gw, &args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scangate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_gateway(gw: std::sync::Arc<Gateway>, args: &ServeArgs) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up must still end in a clean stop.
    let stop =
        scangate::cli::process::StopSignals::install().context("cannot install signal handlers")?;
    scangate::proxy::server::raise_fd_limit();
    let snap = gw.snapshot.load_full();
    let listener =
        match (&snap.settings.server.listen, args.listen) {
            (_, Some(addr)) | (&ListenAddr::Tcp { addr, .. }, None) => Listener::bind_tcp(addr)
                .await
                .with_context(|| format!("cannot bind {addr}"))?,
            (ListenAddr::Unix(path), None) => Listener::bind_unix(path)
                .with_context(|| format!("cannot bind {}", path.display()))?,
        };
    if !snap.auth_enabled {
        tracing::warn!("UseAccessToken is 0: EVERY REQUEST IS FORWARDED WITHOUT AUTHENTICATION");
    }
    for warning in scangate::config::hygiene::at_startup(&snap.settings) {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        listen = listener.describe(),
        generation = snap.generation,
        tokens = gw.tokens.len(),
        upstreams = snap.upstreams.all().len(),
        "scangate serving"
    );
    let _reloader = scangate::config::watch::start(
        gw.clone(),
        scangate::config::watch::Triggers::all(args.reload_poll.map(Duration::from_secs)),
    )?;
    // The admin listener outlives the client listener's drain, so /readyz can report it.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = match args.admin_listen.or(snap.settings.gateway.admin) {
        Some(addr) => {
            let admin = Listener::bind_tcp(addr)
                .await
                .with_context(|| format!("cannot bind admin listener {addr}"))?;
            let stopped = async {
                let _ = admin_stopped.await;
            };
            Some(tokio::spawn(scangate::admin::run(
                admin,
                gw.clone(),
                stopped,
            )))
        }
        None => None,
    };
    let workers = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    scangate::proxy::server::run_workers(
        listener,
        gw,
        stop.recv(),
        Duration::from_secs(args.drain_secs),
        workers,
        args.accept.into(),
    )
    .await?;
    let _ = admin_stop.send(());
    if let Some(admin) = admin {
        admin.await??;
    }
    tracing::info!("scangate stopped");
    Ok(())
}
