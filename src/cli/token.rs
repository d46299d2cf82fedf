//! `scangate token add|list|enable|disable|remove|describe|rotate`: token management in place, as
//! kl_access_util and the Scan Engine GUI do it (reference §3), without ever writing a token to disk.
//!
//! Every edit runs under the config's lock: read, edit ([`Document`]), validate as `serve` would,
//! write atomically ([`ConfigFile`]). A refused edit writes nothing.

use std::io::{BufRead, Write as _};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::{columns, CliError, ConfigArg};
use crate::auth::token::{check_plaintext, encode_value, mint, TokenKey};
use crate::config::edit::{check_new_name, ConfigFile, Document, EntryKind, NewToken};
use crate::config::perms::Access;
use crate::config::validate::{check_description, check_tenant, parse_role};
use crate::config::{load, Role};

const TOKEN: EntryKind = EntryKind::Token;

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
    /// List the tokens: name, state, role, tenants, a fingerprint of the Value, description.
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
            edit(path, |_, doc| Ok(Some(doc.remove(TOKEN, &name)?)))?;
            eprintln!("removed token {name:?}");
            Ok(())
        }
        TokenCommand::Describe { name, description } => {
            check_description(&description).map_err(|rule| usage("--description", rule))?;
            edit(path, |_, doc| {
                Ok(Some(doc.set_description(TOKEN, &name, &description)?))
            })?;
            eprintln!("set the description of token {name:?}");
            Ok(())
        }
        TokenCommand::Rotate { name, token } => rotate(path, &name, token),
    }
}

fn usage(flag: &str, rule: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{flag}: {rule}"))
}

/// A supplied token checked against Scan Engine's rules, or a minted one. `--token -` reads it from
/// stdin; a token given in argv works but is visible to every local user while the command runs,
/// so it earns a warning. The error never quotes the token.
fn token_or_mint(token: Option<String>) -> Result<String, CliError> {
    let token = match token {
        None => return Ok(mint()),
        Some(dash) if dash == "-" => read_token(std::io::stdin().lock())?,
        Some(token) => {
            eprintln!(
                "warning: --token VALUE shows the token to every local user (ps, /proc) and \
                 leaves it in shell history; use --token - and write it on stdin"
            );
            token
        }
    };
    check_plaintext(&token).map_err(|e| usage("--token", e))?;
    Ok(token)
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

/// [`ConfigFile::edit`]: whether the file was written.
fn edit<F>(path: &Path, change: F) -> Result<bool, CliError>
where
    F: FnOnce(&ConfigFile, &Document<'_>) -> Result<Option<String>, CliError>,
{
    Ok(ConfigFile::edit(path, change)?.is_some())
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
    check_new_name(&args.name).map_err(|rule| usage("--name", rule))?;
    if let Some(description) = &args.description {
        check_description(description).map_err(|rule| usage("--description", rule))?;
    }
    for tenant in &args.tenants {
        check_tenant(tenant).map_err(|rule| usage("--tenant", rule))?;
    }
    let token = token_or_mint(args.token)?;

    let file = ConfigFile::open(path)?;
    let label = path.display().to_string();
    let doc = Document::read(file.text(), &label)?;
    let key_path = file.resolve(&doc.key_file());
    let (key, new_key) = TokenKey::read_or_new(&key_path)?;
    // A new key would orphan every Value already in the file: all those clients would get 401.
    if new_key.is_some() && doc.token_count() > 0 {
        return Err(CliError::KeyMissing {
            path: key_path,
            tokens: doc.token_count(),
        });
    }
    let new = NewToken {
        name: args.name,
        value: key.value(&token),
        description: args.description.filter(|d| !d.is_empty()),
        enabled: !args.disabled,
        role: args.role,
        tenants: args.tenants,
    };
    let text = doc.add(&new)?;
    let settings = file.validate(&text)?;
    let config = std::fs::metadata(path).map(|m| Access::of(&m)).ok();
    let created = match &new_key {
        Some(new_key) => Some(new_key.write(&key_path, config)?),
        None => None,
    };
    if let Err(e) = file.replace(&text) {
        // A refused command leaves no key behind: the next `add` may then create one.
        if created.is_some() {
            let _ = std::fs::remove_file(&key_path);
        }
        return Err(e.into());
    }
    if let Some(got) = created {
        let k = key_path.display();
        eprintln!(
            "created token key file {k} (mode {:04o}, owner {}:{})",
            got.mode, got.uid, got.gid
        );
        if let Some(config) = config.filter(|c| c.mode & 0o040 != 0 && c.gid != got.gid) {
            let g = config.gid;
            eprintln!(
                "note: group {g} may read the config but not the key; for a gateway running in \
                 that group, run: chgrp {g} {k} && chmod 0640 {k}"
            );
        }
    }
    print_token(&new.name, &token)?;
    let state = if new.enabled { "enabled" } else { "disabled" };
    eprintln!("added token {:?} ({state}) to {}", new.name, path.display());
    if !settings.auth.use_access_token {
        eprintln!(
            "note: UseAccessToken is 0 in {}: no request is checked until it is 1",
            path.display()
        );
    }
    Ok(())
}

fn rotate(path: &Path, name: &str, token: Option<String>) -> Result<(), CliError> {
    let token = token_or_mint(token)?;
    edit(path, |file, doc| {
        let key = TokenKey::read(&file.resolve(&doc.key_file()))?;
        Ok(Some(doc.set_value(name, &key.value(&token))?))
    })?;
    print_token(name, &token)?;
    eprintln!("rotated token {name:?}: the old token stops working when the gateway reloads");
    Ok(())
}

fn set_enabled(path: &Path, name: &str, enabled: bool) -> Result<(), CliError> {
    let state = if enabled { "enabled" } else { "disabled" };
    if edit(path, |_, doc| Ok(doc.set_enabled(TOKEN, name, enabled)?))? {
        eprintln!("{state} token {name:?}");
    } else {
        eprintln!("token {name:?} is already {state}; nothing to do");
    }
    Ok(())
}

/// One row of `token list`, and one object of `token list --json`.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    enabled: bool,
    description: Option<&'a str>,
    role: Option<&'static str>,
    tenants: &'a [String],
    /// The first 8 characters of the Value: enough to tell tokens apart, useless to an attacker.
    fingerprint: String,
}

fn list(path: &Path, json: bool) -> Result<(), CliError> {
    let (_, settings) = load::read_settings(path)?;
    let rows: Vec<Listed<'_>> = (settings.auth.tokens.iter())
        .map(|t| Listed {
            name: &t.name,
            enabled: t.enabled,
            description: t.description.as_deref(),
            role: t.role.map(Role::as_str),
            tenants: &t.tenants,
            fingerprint: encode_value(&t.digest)[..8].to_owned(),
        })
        .collect();
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
fn table(rows: &[Listed<'_>]) -> String {
    let header = [
        "NAME",
        "ENABLED",
        "ROLE",
        "TENANTS",
        "FINGERPRINT",
        "DESCRIPTION",
    ];
    let cells = rows.iter().map(|r| {
        [
            r.name.to_owned(),
            if r.enabled { "yes" } else { "no" }.to_owned(),
            r.role.unwrap_or("-").to_owned(),
            if r.tenants.is_empty() {
                "-".to_owned()
            } else {
                r.tenants.join(",")
            },
            r.fingerprint.clone(),
            r.description.unwrap_or("").to_owned(),
        ]
    });
    columns(header, cells)
}
