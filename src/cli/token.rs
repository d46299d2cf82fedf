//! `scangate token add|list|enable|disable|remove|describe|rotate`: token management in place, as
//! kl_access_util and the Scan Engine GUI do it (reference §3), without ever writing a token to disk.
//!
//! The work is in [`crate::auth::token_ops`], which the web console calls too; this module parses
//! arguments, reads a supplied token and prints.

use std::io::{BufRead, Write as _};
use std::path::Path;
use std::process::ExitCode;

use super::{columns, CliError, ConfigArg};
use crate::auth::token_ops::{self as ops, TokenField, TokenListed, TokenOpError, TokenSpec};
use crate::config::validate::parse_role;
use crate::config::Role;

/// `scangate token …`. No Debug: `add` and `rotate` may hold a token.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// The config file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The token subcommands.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Add a token: mint one (or take --token), store its keyed digest, print it once on stdout.
    Add(AddArgs),
    /// List the tokens: name, state, role, tenants, limits, a fingerprint of the Value,
    /// description.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enable a token.
    Enable {
        /// The token's Name.
        name: String,
    },
    /// Disable a token: clients presenting it get 401 after the gateway reloads.
    Disable {
        /// The token's Name.
        name: String,
    },
    /// Remove a token.
    Remove {
        /// The token's Name.
        name: String,
    },
    /// Set a token's description (an empty one removes it).
    Describe {
        /// The token's Name.
        name: String,
        /// Up to 1000 characters.
        #[arg(long)]
        description: String,
    },
    /// Replace a token's Value with a new token's, printed once on stdout. Name, state, role,
    /// tenants and description stay.
    Rotate {
        /// The token's Name.
        name: String,
        /// Use this token instead of minting one (Scan Engine's plaintext rules apply). `-` reads
        /// it from stdin (one line), which keeps it out of the process list and shell history.
        #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
        token: Option<String>,
    },
}

/// `token add`.
#[derive(clap::Args)]
pub struct AddArgs {
    /// Unique, 1 to 40 characters.
    #[arg(long)]
    pub name: String,
    /// Up to 1000 characters.
    #[arg(long)]
    pub description: Option<String>,
    /// Add it with Enabled 0.
    #[arg(long)]
    pub disabled: bool,
    /// Use this token instead of minting one: 4 to 100 ASCII characters with an upper-case letter,
    /// a lower-case letter, a digit and one of - . _ ~ + /. `-` reads it from stdin (one line),
    /// which keeps it out of the process list and shell history.
    #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
    pub token: Option<String>,
    /// Administrator, SeniorSecurityOfficer or SecurityOfficer (no role: full access).
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Option<Role>,
    /// A tenant, sent upstream in X-Scangate-Tenants; repeat for several.
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// Its own limits (a RateLimit element); none given: the defaults apply.
    #[command(flatten)]
    pub limits: super::limits::LimitArgs,
}

/// Runs one token subcommand: 0 on success, 1 for an invalid file or key or a failed write, 64 for
/// bad usage. Failures go to stderr as `scangate token: …`.
pub fn run(args: TokenArgs) -> ExitCode {
    super::finish("token", execute(args))
}

fn execute(args: TokenArgs) -> Result<(), CliError> {
    let path = args.config.path()?;
    match args.command {
        TokenCommand::Add(add_args) => add(path, add_args),
        TokenCommand::List { json } => list(path, json),
        TokenCommand::Enable { name } => set_enabled(path, &name, true),
        TokenCommand::Disable { name } => set_enabled(path, &name, false),
        TokenCommand::Remove { name } => {
            ops::remove(path, &name).map_err(cli_error)?;
            eprintln!("removed token {name:?}");
            Ok(())
        }
        TokenCommand::Describe { name, description } => {
            ops::describe(path, &name, &description).map_err(cli_error)?;
            eprintln!("set the description of token {name:?}");
            Ok(())
        }
        TokenCommand::Rotate { name, token } => rotate(path, &name, token),
    }
}

/// The library's error as the CLI reports it: a bad input names its flag.
fn cli_error(e: TokenOpError) -> CliError {
    match e {
        TokenOpError::BadInput { field, rule } => {
            let flag = match field {
                TokenField::Name => "--name",
                TokenField::Description => "--description",
                TokenField::Tenant => "--tenant",
                TokenField::Token => "--token",
            };
            CliError::Usage(format!("{flag}: {rule}"))
        }
        TokenOpError::Edit(e) => CliError::Edit(e),
        TokenOpError::Load(e) => CliError::Load(e),
        TokenOpError::Key(e) => CliError::Key(e),
        e @ TokenOpError::KeyMissing { .. } => CliError::KeyMissing(e),
    }
}

fn usage(flag: &str, rule: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{flag}: {rule}"))
}

/// A supplied token, or `None` to mint one. `--token -` reads it from stdin; a token given in argv
/// works but is visible to every local user while the command runs, so it earns a warning.
fn supplied_token(token: Option<String>) -> Result<Option<String>, CliError> {
    match token {
        None => Ok(None),
        Some(dash) if dash == "-" => read_token(std::io::stdin().lock()).map(Some),
        Some(token) => {
            eprintln!(
                "warning: --token VALUE shows the token to every local user (ps, /proc) and \
                 leaves it in shell history; use --token - and write it on stdin"
            );
            Ok(Some(token))
        }
    }
}

/// The first line of `input` without its line ending: the token for `--token -`. At most 1 KiB is
/// read; anything longer is no token and fails the length rule.
fn read_token(input: impl BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    input
        .take(1024)
        .read_line(&mut line)
        .map_err(|e| usage("--token -", format!("cannot read stdin: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let token = line.strip_suffix('\r').unwrap_or(line);
    if token.is_empty() {
        return Err(usage("--token -", "no token on stdin"));
    }
    Ok(token.to_owned())
}

/// Prints the token, the one thing these commands put on stdout.
fn print_token(name: &str, token: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")
        .and_then(|()| out.flush())
        .map_err(|source| CliError::NotPrinted {
            name: name.to_owned(),
            source,
        })
}

fn add(path: &Path, args: AddArgs) -> Result<(), CliError> {
    let spec = TokenSpec {
        name: args.name,
        description: args.description,
        enabled: !args.disabled,
        role: args.role,
        tenants: args.tenants,
        limits: args.limits.limits(),
    };
    // Checked before stdin is read, so a bad input fails without waiting for a token.
    ops::check(&spec).map_err(cli_error)?;
    let supplied = supplied_token(args.token)?;
    let added = ops::add(path, &spec, supplied).map_err(cli_error)?;
    if let Some((key_path, got)) = &added.key_created {
        let k = key_path.display();
        eprintln!(
            "created token key file {k} (mode {:04o}, owner {}:{})",
            got.mode, got.uid, got.gid
        );
        if let Some(config) =
            (added.config_access).filter(|c| c.mode & 0o040 != 0 && c.gid != got.gid)
        {
            let g = config.gid;
            eprintln!(
                "note: group {g} may read the config but not the key; for a gateway running in \
                 that group, run: chgrp {g} {k} && chmod 0640 {k}"
            );
        }
    }
    print_token(&spec.name, &added.token)?;
    let state = if spec.enabled { "enabled" } else { "disabled" };
    eprintln!(
        "added token {:?} ({state}) to {}",
        spec.name,
        path.display()
    );
    if !added.use_access_token {
        eprintln!(
            "note: UseAccessToken is 0 in {}: no request is checked until it is 1",
            path.display()
        );
    }
    Ok(())
}

fn rotate(path: &Path, name: &str, token: Option<String>) -> Result<(), CliError> {
    let supplied = supplied_token(token)?;
    let token = ops::rotate(path, name, supplied).map_err(cli_error)?;
    print_token(name, &token)?;
    eprintln!("rotated token {name:?}: the old token stops working when the gateway reloads");
    Ok(())
}

fn set_enabled(path: &Path, name: &str, enabled: bool) -> Result<(), CliError> {
    let state = if enabled { "enabled" } else { "disabled" };
    if ops::set_enabled(path, name, enabled).map_err(cli_error)? {
        eprintln!("{state} token {name:?}");
    } else {
        eprintln!("token {name:?} is already {state}; nothing to do");
    }
    Ok(())
}

fn list(path: &Path, json: bool) -> Result<(), CliError> {
    let rows = ops::list(path).map_err(cli_error)?;
    let text = if json {
        let mut text = serde_json::to_string_pretty(&rows).expect("plain data serialises");
        text.push('\n');
        text
    } else {
        table(&rows)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(CliError::Stdout)
}

/// Aligned columns, description last since it is the long one.
fn table(rows: &[TokenListed]) -> String {
    let header = [
        "NAME",
        "ENABLED",
        "ROLE",
        "TENANTS",
        "LIMITS",
        "FINGERPRINT",
        "DESCRIPTION",
    ];
    let cells = rows.iter().map(|r| {
        [
            r.name.clone(),
            if r.enabled { "yes" } else { "no" }.to_owned(),
            r.role.unwrap_or("-").to_owned(),
            if r.tenants.is_empty() {
                "-".to_owned()
            } else {
                r.tenants.join(",")
            },
            r.limits.clone(),
            r.fingerprint.clone(),
            r.description.clone().unwrap_or_default(),
        ]
    });
    columns(header, cells)
}
