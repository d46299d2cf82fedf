//! What the long-running commands share: a runtime, SIGTERM/SIGINT as a stop future, and turning a
//! command's outcome into an exit code.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::process::ExitCode;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Exit code for bad usage or bad input (BSD `EX_USAGE`), as `serve` uses for a bad config.
pub const EXIT_USAGE: u8 = 64;

/// A command's failure that knows its exit code: [`EXIT_USAGE`] when the user's input was wrong,
/// 1 for anything else.
pub trait Failure: Display {
    /// The process exit code for this failure.
    fn exit_code(&self) -> u8;
}

/// Runs a command on a multi-thread runtime and maps its outcome to an exit code. Failures are
/// printed to stderr as `scangate <command>: <error>`.
pub fn run_command<E: Failure>(
    command: &str,
    work: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("scangate {command}: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scangate {command}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// SIGTERM and SIGINT, installed up front: once installed, neither kills the process, so a signal
/// that arrives before anyone awaits [`StopSignals::recv`] still ends in a graceful stop.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs the handlers. Needs a running tokio runtime.
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT (including one received before this call).
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}
