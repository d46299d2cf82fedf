//! Subcommands whose work lives in the library, so `main.rs` holds one enum variant and one dispatch
//! arm per command. Each module has the command's clap `Args` and its `run`, which returns the exit
//! code.
//!
//! - [`emulator`]: `scangate emulator`, the KAV-protocol scan-engine emulator as a process.
//! - [`demo`]: `scangate demo`, an emulator and a gateway in one process with a throwaway token.
//! - [`token`]: `scangate token …`, the kl_access_util and GUI counterpart: token edits in place.
//! - [`connection`]: `scangate connection …`, MDR API connections in place (the operations live in
//!   [`crate::auth::connections::ops`]).
//! - [`check`]: `scangate check`, the config and key files validated as `serve` would load them.
//! - [`healthcheck`]: `scangate healthcheck`, one GET against the admin listener for Docker.
//! - [`process`]: what these commands share: the runtime, stop signals, exit codes.
//!
//! `token`, `connection` and `check` fail with a [`CliError`], printed one line per problem. Their
//! output contract: a token goes to stdout and nowhere else; every human message goes to stderr.

pub mod check;
pub mod connection;
pub mod demo;
pub mod emulator;
pub mod healthcheck;
pub mod limits;
pub mod process;
pub mod token;

use std::path::{Path, PathBuf};

use std::process::ExitCode;

use self::process::{Failure, EXIT_USAGE};
use crate::auth::connections::ops::ConnectionError;
use crate::auth::token::KeyError;
use crate::config::edit::EditError;
use crate::config::LoadError;

/// `--config PATH` or `SCANGATE_CONFIG`, shared by `token`, `connection` and `check`. Global, so
/// it may stand before or after the subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArg {
    /// The config file (kavhttpd.xml-shaped).
    #[arg(long, env = "SCANGATE_CONFIG", value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The path, or a usage error naming both ways to give it.
    pub fn path(&self) -> Result<&Path, CliError> {
        self.config.as_deref().ok_or_else(|| {
            CliError::Usage("no config file: pass --config PATH or set SCANGATE_CONFIG".into())
        })
    }
}

/// Why a command failed. Each line of its text is one complete message.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments: exit 64.
    #[error("{0}")]
    Usage(String),
    /// An edit was refused or could not be written.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The config file could not be read or is invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The key file is unreadable or malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `token add` found no key file, but Values made with some key are already in the config
    /// (the library's [`TokenOpError::KeyMissing`](crate::auth::token_ops::TokenOpError), whose
    /// message this shows).
    #[error(transparent)]
    KeyMissing(crate::auth::token_ops::TokenOpError),
    /// A connection operation failed in a way of its own (a missing key file that Values and
    /// signatures depend on).
    #[error(transparent)]
    Connection(ConnectionError),
    /// Writing the listing failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
    /// The errors `check` found, one per line.
    #[error("{}", .0.join("\n"))]
    Check(Vec<String>),
    /// The file holds the new token's digest but the token could not be printed.
    #[error(
        "token {name:?} was written to the config but could not be printed ({source}); \
         run `scangate token rotate {name}` to get a new one"
    )]
    NotPrinted {
        /// The token's name.
        name: String,
        /// Why stdout failed.
        source: std::io::Error,
    },
    /// `connection add` or `refresh` wrote the config, so every older token family is dead, but
    /// the new refresh token could not be printed.
    #[error(
        "connection {name:?} was written to the config but its refresh token could not be \
         printed ({source}); run `scangate connection refresh {name}` to get a new one"
    )]
    RefreshTokenNotPrinted {
        /// The connection's name.
        name: String,
        /// Why stdout failed.
        source: std::io::Error,
    },
}

impl Failure for CliError {
    /// 64 for bad usage (bad arguments, a name missing or taken), 1 for everything else: an invalid
    /// file or key, a failed write.
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Edit(e) if e.is_usage() => EXIT_USAGE,
            CliError::Connection(e) if e.is_usage() => EXIT_USAGE,
            _ => 1,
        }
    }
}

/// Rows under a header, each column as wide as its widest cell plus two spaces, trailing spaces
/// trimmed.
fn columns<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
    let lines: Vec<[String; N]> = std::iter::once(header.map(str::to_owned))
        .chain(rows)
        .collect();
    let mut widths = [0usize; N];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut row = String::new();
        for (i, cell) in line.iter().enumerate() {
            row.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] - cell.chars().count() + 2;
                row.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// Prints a failure as `scangate <command>: …`, one line per problem, and picks the exit code.
fn finish(command: &str, result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("scangate {command}: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
